//! A server's "try again later": `Retry-After` (RFC 9110 §10.2.3) and gRPC's
//! `grpc-retry-pushback-ms`, read from a response as a *remote* hint.
//!
//! A `429 Too Many Requests` or `503 Service Unavailable` may say when to come back, either as
//! delay-seconds (`Retry-After: 120`) or as an HTTP-date (`Retry-After: Fri, 31 Dec 1999
//! 23:59:59 GMT`). gRPC servers say it in milliseconds in `grpc-retry-pushback-ms`, and a
//! negative or malformed pushback means "do not retry at all" (gRPC retry design A6).
//!
//! What is done with odd values, never a panic:
//!
//! | value | hint |
//! | --- | --- |
//! | `120`, ` 120 ` | 120 s |
//! | a date in the future | the time until it (by the system clock) |
//! | a date in the past, `0` | zero: try again now |
//! | more than a day, up to any number of digits | capped at [`MAX_RETRY_AFTER`] (one day) |
//! | `-1`, `1.5`, `soon`, empty, not ASCII, a malformed date | no hint (`None`) |
//! | pushback `250` | 250 ms |
//! | pushback `-1` or malformed | [`MAX_RETRY_AFTER`]: "do not retry", longer than any retry cap |
//!
//! The retry layer (`palisade-retry`) honours a remote hint up to its `max_retry_after` cap
//! (default: its backoff cap) and never past its deadline; a longer hint ends retrying. So a
//! capped day-long hint, or a gRPC "do not retry", ends retrying at once with every sane cap.
//!
//! # Example
//!
//! ```
//! use http::Response;
//! use palisade_http::retry_after_of;
//! use std::time::Duration;
//!
//! let busy = Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
//! assert_eq!(retry_after_of(&busy), Some(Duration::from_secs(2)));
//!
//! let odd = Response::builder().status(503).header("retry-after", "-5").body(()).unwrap();
//! assert_eq!(retry_after_of(&odd), None);
//!
//! let grpc = Response::builder().header("grpc-retry-pushback-ms", "250").body(()).unwrap();
//! assert_eq!(retry_after_of(&grpc), Some(Duration::from_millis(250)));
//! ```

use http::{HeaderMap, HeaderValue, Response};
use std::time::{Duration, SystemTime};

/// The longest hint read from a response: one day. Longer values are capped to it (and so
/// end retrying under any retry cap shorter than a day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of gRPC's pushback header.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// The remote hint of `response`: its `Retry-After` if valid, else its
/// `grpc-retry-pushback-ms`, else `None`. HTTP-dates are measured from
/// [`SystemTime::now`]; see [`retry_after_in`] to pass the time. The module docs list what is
/// done with malformed, negative and enormous values.
#[must_use]
pub fn retry_after_of<B>(response: &Response<B>) -> Option<Duration> {
    retry_after_in(response.headers(), SystemTime::now())
}

/// The remote hint in `headers` (see [`retry_after_of`]), HTTP-dates measured from `now`.
#[must_use]
pub fn retry_after_in(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(hint) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| parse_retry_after(value, now))
    {
        return Some(hint);
    }
    headers
        .get(GRPC_RETRY_PUSHBACK_MS)
        .map(|value| match parse_grpc_pushback(value) {
            GrpcPushback::After(after) => after,
            GrpcPushback::DoNotRetry => MAX_RETRY_AFTER,
        })
}

/// Parses one `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, and the
/// obsolete RFC 850 and asctime forms recipients must accept), measured from `now`. `None` for
/// anything else; capped at [`MAX_RETRY_AFTER`].
#[must_use]
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // delay-seconds = 1*DIGIT: any number of digits is valid; saturate, then cap.
        let seconds = text.bytes().fold(0u64, |acc, d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(match date.duration_since(now) {
        Ok(ahead) => ahead.min(MAX_RETRY_AFTER),
        // Already past: trying again now is what the server allows.
        Err(_) => Duration::ZERO,
    })
}

/// What a `grpc-retry-pushback-ms` value asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcPushback {
    /// Retry after this long (capped at [`MAX_RETRY_AFTER`]).
    After(Duration),
    /// Do not retry: the value was negative or malformed (gRPC retry design A6).
    DoNotRetry,
}

/// Parses one `grpc-retry-pushback-ms` value.
#[must_use]
pub fn parse_grpc_pushback(value: &HeaderValue) -> GrpcPushback {
    let text = value.as_bytes().trim_ascii();
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return GrpcPushback::DoNotRetry;
    }
    let millis = text.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    GrpcPushback::After(Duration::from_millis(millis).min(MAX_RETRY_AFTER))
}

/// The `Retry-After` value for a hint: whole delay-seconds, rounded up (a 300 ms hint is
/// `1`, so a client that honours it does not come back early), capped at
/// [`MAX_RETRY_AFTER`].
#[must_use]
pub fn retry_after_value(hint: Duration) -> HeaderValue {
    let hint = hint.min(MAX_RETRY_AFTER);
    let seconds = hint.as_secs() + u64::from(hint.subsec_nanos() > 0);
    HeaderValue::from(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date).
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn delay_seconds() {
        let now = at(EXAMPLE);
        assert_eq!(parse_retry_after(&hv("0"), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&hv("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(&hv(" 7\t"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&hv("007"), now),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let now = at(EXAMPLE - 30);
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(&hv(date), now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        // In the past: now.
        assert_eq!(
            parse_retry_after(&hv("Sun, 06 Nov 1994 08:49:37 GMT"), at(EXAMPLE + 5)),
            Some(Duration::ZERO)
        );
        // Far in the future: capped.
        assert_eq!(
            parse_retry_after(&hv("Fri, 31 Dec 9999 23:59:59 GMT"), at(EXAMPLE)),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn malformed_negative_and_enormous_values_never_panic() {
        let now = at(EXAMPLE);
        for bad in [
            "",
            " ",
            "-1",
            "-0",
            "+5",
            "1.5",
            "1e3",
            "soon",
            "0x10",
            "5 s",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Mon, 06 Nov 1994",
            "GMT",
            "Sun, 06 Nov 19944 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(&hv(bad), now), None, "{bad:?}");
        }
        // Not UTF-8 / not visible ASCII.
        let opaque = HeaderValue::from_bytes(b"\xff\xfe12").unwrap();
        assert_eq!(parse_retry_after(&opaque, now), None);
        // Enormous: saturated and capped, whatever the number of digits.
        for big in [
            "86401",
            "18446744073709551615",
            "18446744073709551616",
            &"9".repeat(500),
        ] {
            assert_eq!(
                parse_retry_after(&hv(big), now),
                Some(MAX_RETRY_AFTER),
                "{big}"
            );
        }
        assert_eq!(parse_retry_after(&hv("86400"), now), Some(MAX_RETRY_AFTER));
        // The epoch itself and before: no panic.
        assert_eq!(
            parse_retry_after(&hv("Thu, 01 Jan 1970 00:00:00 GMT"), SystemTime::UNIX_EPOCH),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn grpc_pushback() {
        assert_eq!(
            parse_grpc_pushback(&hv("250")),
            GrpcPushback::After(Duration::from_millis(250))
        );
        assert_eq!(
            parse_grpc_pushback(&hv("0")),
            GrpcPushback::After(Duration::ZERO)
        );
        assert_eq!(
            parse_grpc_pushback(&hv(&"9".repeat(100))),
            GrpcPushback::After(MAX_RETRY_AFTER)
        );
        for bad in ["-1", "-250", "", "abc", "2.5"] {
            assert_eq!(
                parse_grpc_pushback(&hv(bad)),
                GrpcPushback::DoNotRetry,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn response_hint_prefers_a_valid_retry_after() {
        let now = at(EXAMPLE);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_in(&headers, now), None);
        headers.insert(GRPC_RETRY_PUSHBACK_MS, hv("1500"));
        assert_eq!(
            retry_after_in(&headers, now),
            Some(Duration::from_millis(1500))
        );
        headers.insert(http::header::RETRY_AFTER, hv("3"));
        assert_eq!(retry_after_in(&headers, now), Some(Duration::from_secs(3)));
        // A malformed Retry-After does not hide the pushback.
        headers.insert(http::header::RETRY_AFTER, hv("later"));
        assert_eq!(
            retry_after_in(&headers, now),
            Some(Duration::from_millis(1500))
        );
        headers.insert(GRPC_RETRY_PUSHBACK_MS, hv("-1"));
        assert_eq!(retry_after_in(&headers, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn header_value_rounds_up() {
        assert_eq!(retry_after_value(Duration::ZERO), "0");
        assert_eq!(retry_after_value(Duration::from_millis(300)), "1");
        assert_eq!(retry_after_value(Duration::from_secs(2)), "2");
        assert_eq!(retry_after_value(Duration::from_millis(2001)), "3");
        assert_eq!(retry_after_value(Duration::MAX), "86400");
    }
}
