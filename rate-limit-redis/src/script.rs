//! The GCRA script Redis runs, and the pure decoding of its reply (no connection, no tower).
//!
//! The script is the local limiter's GCRA ([`palisade_rate_limit::gcra`]) on microseconds of
//! the *Redis server's* clock (`TIME`), so every replica decides on one clock and clock skew
//! between replicas changes nothing. One script call is one round trip and atomic per key
//! (Redis runs a script alone).
//!
//! Arguments: `KEYS[1]` the bucket; `ARGV` = emission interval (µs), burst (tokens), `need`
//! (the request's cost), `want` (the tokens the caller would like, `>= need`: a two-tier
//! limiter leases a batch). The script grants `min(want, available)` tokens when at least
//! `need` are available, else none, and replies with an array of three integers:
//! `{granted, retry_after_us, available_after}`.

use redis::Value;
use std::fmt;

/// The Lua source. Numbers in Redis' Lua are doubles: microseconds since the epoch (~2^51)
/// are exact.
pub(crate) const GCRA_LUA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if tat == nil then
    return redis.error_reply('palisade: bucket ' .. KEYS[1] .. ' holds a non-number')
  end
  if tat < now then tat = now end
end
local tolerance = burst * interval
local available = math.floor((now + tolerance - tat) / interval)
if available < need then
  return {0, tat + need * interval - tolerance - now, available}
end
local granted = math.min(want, available)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, 0, available - granted}
";

/// What the script answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Tokens granted: `0` (denied) or between `need` and `want`.
    pub(crate) granted: u64,
    /// When `granted == 0`: microseconds until `need` tokens are available.
    pub(crate) retry_after_us: u64,
    /// Tokens left in the bucket after this decision.
    pub(crate) available: u64,
}

/// A reply that is not what the script returns: the key was written by something else, the
/// server is not Redis, or a proxy mangled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadReply(pub(crate) String);

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply from the GCRA script: {}", self.0)
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        // RESP2 proxies may hand integers back as strings.
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Decodes the script's reply, checking its shape and ranges; never panics.
pub(crate) fn parse_reply(value: &Value, need: u32, want: u32) -> Result<Reply, BadReply> {
    let Value::Array(items) = value else {
        return Err(BadReply(format!(
            "expected an array of 3 integers, got {value:?}"
        )));
    };
    let [granted, retry, available] = items.as_slice() else {
        return Err(BadReply(format!(
            "expected an array of 3 integers, got {} elements",
            items.len()
        )));
    };
    let (Some(granted), Some(retry), Some(available)) = (int(granted), int(retry), int(available))
    else {
        return Err(BadReply(format!("expected integers, got {items:?}")));
    };
    let (Ok(granted), Ok(retry_after_us)) = (u64::try_from(granted), u64::try_from(retry)) else {
        return Err(BadReply(format!("negative count or wait in {items:?}")));
    };
    if granted != 0 && (granted < u64::from(need) || granted > u64::from(want)) {
        return Err(BadReply(format!(
            "granted {granted} tokens, outside the {need}..={want} asked for"
        )));
    }
    Ok(Reply {
        granted,
        retry_after_us,
        // A negative "available" is a bucket behind on its refill: nothing available.
        available: u64::try_from(available).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(items: &[i64]) -> Value {
        Value::Array(items.iter().map(|n| Value::Int(*n)).collect())
    }

    #[test]
    fn decodes_grants_and_denials() {
        assert_eq!(
            parse_reply(&arr(&[1, 0, 4]), 1, 1),
            Ok(Reply {
                granted: 1,
                retry_after_us: 0,
                available: 4
            })
        );
        assert_eq!(
            parse_reply(&arr(&[0, 2500, 0]), 2, 2),
            Ok(Reply {
                granted: 0,
                retry_after_us: 2500,
                available: 0
            })
        );
        // A lease granted in part.
        assert_eq!(
            parse_reply(&arr(&[3, 0, 0]), 1, 8).map(|r| r.granted),
            Ok(3)
        );
        // Integers as strings (RESP2 proxies).
        let strings = Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::SimpleString("0".into()),
            Value::Int(-2),
        ]);
        assert_eq!(parse_reply(&strings, 1, 1).map(|r| r.available), Ok(0));
    }

    /// Bad input: a Redis (or proxy) answering with the wrong type is an error, never a panic
    /// or a silent admission.
    #[test]
    fn rejects_replies_of_the_wrong_shape() {
        for bad in [
            Value::Okay,
            Value::Nil,
            Value::Int(1),
            Value::SimpleString("OK".into()),
            arr(&[1, 0]),
            arr(&[1, 0, 0, 0]),
            Value::Array(vec![Value::Nil, Value::Int(0), Value::Int(0)]),
            Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::Int(0),
                Value::Int(0),
            ]),
            arr(&[-1, 0, 0]),
            arr(&[0, -5, 0]),
            // More than asked for, or less than needed: a script of another version.
            arr(&[9, 0, 0]),
            arr(&[1, 0, 0]),
        ] {
            let got = parse_reply(&bad, 2, 4);
            assert!(got.is_err(), "{bad:?} decoded as {got:?}");
        }
    }
}
