//! The pure part of etcd discovery: parsing values into endpoints and keeping the per-key
//! table whose union is the endpoint set. No client, no balancer, no runtime.

use crate::records::{Endpoint, Set};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Parses an etcd value into an endpoint.
///
/// Two forms: a socket address, `10.0.0.7:8080` or `[::1]:8080` (weight 1), or a JSON object
/// `{"addr": "10.0.0.7:8080", "weight": 3}` (`weight` optional, default 1, at least 1; other
/// fields such as `zone` are ignored). Host names are not resolved: the value must name an IP.
pub(crate) fn parse_value(value: &[u8]) -> Result<Endpoint, String> {
    let text = std::str::from_utf8(value).map_err(|_| "the value is not UTF-8".to_owned())?;
    let text = text.trim();
    if text.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let addr = json
            .get("addr")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| "JSON value without a string \"addr\"".to_owned())?;
        let addr = parse_addr(addr)?;
        let weight = match json.get("weight") {
            None | Some(serde_json::Value::Null) => 1,
            Some(w) => w
                .as_u64()
                .and_then(|w| u32::try_from(w).ok())
                .filter(|&w| w >= 1)
                .ok_or_else(|| format!("\"weight\" must be an integer in 1..=2^32-1, not {w}"))?,
        };
        Ok(Endpoint { addr, weight })
    } else {
        Ok(Endpoint {
            addr: parse_addr(text)?,
            weight: 1,
        })
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP:port address"))?;
    if addr.port() == 0 {
        return Err(format!("{text:?} has port 0"));
    }
    Ok(addr)
}

/// The value to register for `endpoint`: the plain address for weight 1, else the JSON form.
pub(crate) fn format_value(endpoint: Endpoint) -> String {
    if endpoint.weight == 1 {
        endpoint.addr.to_string()
    } else {
        format!(
            "{{\"addr\":\"{}\",\"weight\":{}}}",
            endpoint.addr, endpoint.weight
        )
    }
}

/// The endpoint each key under the prefix holds (only keys whose value parsed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    keys: BTreeMap<String, Endpoint>,
}

/// What happened to one key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The value parsed (or the key was deleted): the table follows it.
    Ok,
    /// The value did not parse: the key keeps its last good endpoint (if it had one).
    Rejected(String),
}

impl Table {
    /// A put of `key` with `value`.
    pub(crate) fn put(&mut self, key: &str, value: &[u8]) -> Applied {
        match parse_value(value) {
            Ok(endpoint) => {
                self.keys.insert(key.to_owned(), endpoint);
                Applied::Ok
            }
            Err(detail) => Applied::Rejected(detail),
        }
    }

    /// A delete of `key`.
    pub(crate) fn delete(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// A full listing replaces the table: keys not listed go, listed keys follow their value,
    /// and a listed key whose value does not parse keeps its last good endpoint. Returns the
    /// rejected keys with the reason.
    pub(crate) fn relist<'a>(
        &mut self,
        listing: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Vec<(String, String)> {
        let mut next = BTreeMap::new();
        let mut rejected = Vec::new();
        for (key, value) in listing {
            match parse_value(value) {
                Ok(endpoint) => {
                    next.insert(key.to_owned(), endpoint);
                }
                Err(detail) => {
                    if let Some(&good) = self.keys.get(key) {
                        next.insert(key.to_owned(), good);
                    }
                    rejected.push((key.to_owned(), detail));
                }
            }
        }
        self.keys = next;
        rejected
    }

    /// The endpoint set: one entry per address (two keys naming one address give it the
    /// larger weight).
    pub(crate) fn set(&self) -> Set {
        let mut set = Set::new();
        for endpoint in self.keys.values() {
            let weight = set.entry(endpoint.addr).or_insert(endpoint.weight);
            *weight = (*weight).max(endpoint.weight);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, weight: u32) -> Endpoint {
        Endpoint {
            addr: s.parse().unwrap(),
            weight,
        }
    }

    #[test]
    fn plain_and_json_values_parse() {
        assert_eq!(parse_value(b"10.0.0.7:8080"), Ok(ep("10.0.0.7:8080", 1)));
        assert_eq!(parse_value(b" [::1]:9000\n"), Ok(ep("[::1]:9000", 1)));
        assert_eq!(
            parse_value(br#"{"addr":"10.0.0.7:8080","weight":3,"zone":"eu-1"}"#),
            Ok(ep("10.0.0.7:8080", 3))
        );
        assert_eq!(
            parse_value(br#"{"addr":"10.0.0.7:8080"}"#),
            Ok(ep("10.0.0.7:8080", 1))
        );
    }

    /// Bad input: values that are not an address are a clear error, never a panic.
    #[test]
    fn values_that_are_not_an_address_are_rejected_with_a_reason() {
        for (value, needle) in [
            (&b"backend-1:8080"[..], "not an IP:port"),
            (b"10.0.0.7", "not an IP:port"),
            (b"10.0.0.7:0", "port 0"),
            (b"", "not an IP:port"),
            (b"\xff\xfe", "UTF-8"),
            (b"{\"addr\":", "invalid JSON"),
            (b"{\"weight\":2}", "\"addr\""),
            (b"{\"addr\":7}", "\"addr\""),
            (b"{\"addr\":\"10.0.0.7:80\",\"weight\":0}", "weight"),
            (b"{\"addr\":\"10.0.0.7:80\",\"weight\":-1}", "weight"),
            (b"{\"addr\":\"10.0.0.7:80\",\"weight\":\"2\"}", "weight"),
            (
                b"{\"addr\":\"10.0.0.7:80\",\"weight\":5000000000}",
                "weight",
            ),
        ] {
            let err = parse_value(value).unwrap_err();
            assert!(err.contains(needle), "{value:?}: {err}");
        }
    }

    #[test]
    fn format_value_round_trips() {
        for endpoint in [ep("10.0.0.7:8080", 1), ep("[::1]:9000", 4)] {
            assert_eq!(parse_value(format_value(endpoint).as_bytes()), Ok(endpoint));
        }
        assert_eq!(format_value(ep("10.0.0.7:8080", 1)), "10.0.0.7:8080");
    }

    #[test]
    fn a_rejected_put_keeps_the_keys_last_good_endpoint() {
        let mut table = Table::default();
        assert_eq!(table.put("/s/a", b"10.0.0.1:80"), Applied::Ok);
        assert!(matches!(
            table.put("/s/a", b"garbage"),
            Applied::Rejected(_)
        ));
        assert!(matches!(
            table.put("/s/b", b"garbage"),
            Applied::Rejected(_)
        ));
        assert_eq!(
            table.set(),
            Set::from([("10.0.0.1:80".parse().unwrap(), 1)])
        );
        table.delete("/s/a");
        assert!(table.set().is_empty());
    }

    #[test]
    fn relist_replaces_the_table_and_keeps_last_good_values() {
        let mut table = Table::default();
        table.put("/s/a", b"10.0.0.1:80");
        table.put("/s/b", b"10.0.0.2:80");
        table.put("/s/c", b"10.0.0.3:80");
        let rejected = table.relist([
            ("/s/a", &b"not an address"[..]),
            ("/s/c", b"{\"addr\":\"10.0.0.3:80\",\"weight\":2}"),
            ("/s/d", b"10.0.0.4:80"),
            ("/s/e", b"nope"),
        ]);
        assert_eq!(
            rejected.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["/s/a", "/s/e"]
        );
        assert_eq!(
            table.set(),
            Set::from([
                ("10.0.0.1:80".parse().unwrap(), 1),
                ("10.0.0.3:80".parse().unwrap(), 2),
                ("10.0.0.4:80".parse().unwrap(), 1),
            ])
        );
    }

    #[test]
    fn two_keys_naming_one_address_give_it_the_larger_weight() {
        let mut table = Table::default();
        table.put("/s/a", b"{\"addr\":\"10.0.0.1:80\",\"weight\":3}");
        table.put("/s/b", b"10.0.0.1:80");
        assert_eq!(
            table.set(),
            Set::from([("10.0.0.1:80".parse().unwrap(), 3)])
        );
        table.delete("/s/a");
        assert_eq!(
            table.set(),
            Set::from([("10.0.0.1:80".parse().unwrap(), 1)])
        );
    }
}
