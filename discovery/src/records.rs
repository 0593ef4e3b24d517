//! The pure part of DNS discovery: turning answers into endpoints, diffing sets, and choosing
//! when to resolve again. No resolver, no balancer, no runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One discovered endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The balancer weight: the SRV weight (at least 1), 1 for A/AAAA records; for etcd the
    /// value's `weight` (default 1).
    pub weight: u32,
}

/// An SRV record as far as discovery cares (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SrvRecord {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    /// The target host, `None` for the root name `.` ("service decidedly not available").
    pub(crate) target: Option<String>,
}

/// Why a record was not used.
pub(crate) fn srv_problem(record: &SrvRecord) -> Option<String> {
    if record.target.is_none() {
        return Some("SRV target \".\": the service is not available there".to_owned());
    }
    if record.port == 0 {
        return Some(format!(
            "SRV record for {} has port 0",
            record.target.as_deref().unwrap_or(".")
        ));
    }
    None
}

/// The usable SRV records of the best (lowest) priority; the others are only fallbacks in
/// RFC 2782 and are not balanced over. Returns them and a description of each unusable one.
pub(crate) fn usable_srv(records: &[SrvRecord]) -> (Vec<&SrvRecord>, Vec<String>) {
    let mut problems = Vec::new();
    let usable: Vec<&SrvRecord> = records
        .iter()
        .filter(|r| match srv_problem(r) {
            Some(problem) => {
                problems.push(problem);
                false
            }
            None => true,
        })
        .collect();
    let Some(best) = usable.iter().map(|r| r.priority).min() else {
        return (Vec::new(), problems);
    };
    (
        usable.into_iter().filter(|r| r.priority == best).collect(),
        problems,
    )
}

/// An endpoint set keyed by address.
pub(crate) type Set = BTreeMap<SocketAddr, u32>;

/// What to change to go from `old` to `new`: endpoints to insert (new, or with a new weight)
/// and addresses to remove.
pub(crate) fn diff(old: &Set, new: &Set) -> (Vec<Endpoint>, Vec<SocketAddr>) {
    let insert = new
        .iter()
        .filter(|(addr, weight)| old.get(addr) != Some(weight))
        .map(|(&addr, &weight)| Endpoint { addr, weight })
        .collect();
    let remove = old
        .keys()
        .filter(|a| !new.contains_key(a))
        .copied()
        .collect();
    (insert, remove)
}

/// When to resolve again after an answer with this TTL: the TTL clamped to `[min, max]`, less
/// up to `jitter` of it (`draw` in `[0, 1)`), so a fleet that resolved together spreads out.
pub(crate) fn refresh_after(
    ttl: Duration,
    min: Duration,
    max: Duration,
    jitter: f64,
    draw: f64,
) -> Duration {
    let base = ttl.clamp(min, max);
    base.mul_f64(1.0 - jitter * draw.clamp(0.0, 1.0))
        .max(min.min(base))
}

/// The delay before retrying after the `failures`-th failure in a row: exponential from `min`,
/// capped at `max`, less up to `jitter` of it.
pub(crate) fn retry_after(
    failures: u32,
    min: Duration,
    max: Duration,
    jitter: f64,
    draw: f64,
) -> Duration {
    let factor = 2_f64.powi(i32::try_from(failures.saturating_sub(1).min(30)).unwrap_or(30));
    let base = min.mul_f64(factor).min(max);
    base.mul_f64(1.0 - jitter * draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: Option<&str>) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.map(str::to_owned),
        }
    }

    /// Bad input: a malformed SRV answer (target ".", port 0) is reported and skipped, never a
    /// panic; only the best priority is used.
    #[test]
    fn srv_records_are_checked_and_the_best_priority_kept() {
        let records = [
            srv(10, 5, 8080, Some("a.")),
            srv(10, 1, 8081, Some("b.")),
            srv(20, 9, 8082, Some("backup.")),
            srv(5, 1, 0, Some("zero-port.")),
            srv(1, 1, 80, None),
        ];
        let (usable, problems) = usable_srv(&records);
        assert_eq!(usable, vec![&records[0], &records[1]]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (usable, problems) = usable_srv(&records[3..]);
        assert!(usable.is_empty());
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn diff_inserts_new_and_reweighted_and_removes_gone() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let old = Set::from([(a, 1), (b, 1)]);
        let new = Set::from([(b, 3), (c, 1)]);
        let (insert, remove) = diff(&old, &new);
        assert_eq!(
            insert,
            vec![
                Endpoint { addr: b, weight: 3 },
                Endpoint { addr: c, weight: 1 }
            ]
        );
        assert_eq!(remove, vec![a]);
        assert_eq!(diff(&new, &new), (vec![], vec![]));
    }

    #[test]
    fn refresh_follows_the_ttl_within_bounds_with_jitter() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            refresh_after(Duration::from_secs(30), min, max, 0.1, 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(30), min, max, 0.1, 0.5),
            Duration::from_secs(30).mul_f64(0.95)
        );
        assert_eq!(
            refresh_after(Duration::ZERO, min, max, 0.1, 0.0),
            min,
            "TTL 0 is not a busy loop"
        );
        assert_eq!(
            refresh_after(Duration::from_secs(86_400), min, max, 0.0, 0.0),
            max
        );
        assert_eq!(retry_after(1, min, max, 0.0, 0.0), min);
        assert_eq!(retry_after(3, min, max, 0.0, 0.0), Duration::from_secs(4));
        assert_eq!(retry_after(40, min, max, 0.0, 0.0), max);
    }
}
