//! Hostile input never panics: any header bytes as `Retry-After`, `grpc-retry-pushback-ms` or
//! `grpc-status`, any status code, any classifier range. Each gives a clear result: a hint of
//! at most a day or none, a defined outcome.

use http::{HeaderMap, HeaderValue, Response};
use palisade_core::{BoxError, Classify, Outcome};
use palisade_http::retry_after::{parse_grpc_pushback, parse_retry_after, retry_after_in};
use palisade_http::{GrpcClassifier, HttpClassifier, MAX_RETRY_AFTER, StatusSet};
use proptest::prelude::*;
use std::time::{Duration, SystemTime};

/// Bytes a `HeaderValue` accepts (visible ASCII, obs-text, space, tab).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"0123456789 -+.,:GMTSunMonNov".to_vec()),
            1 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
            1 => Just(b'\t'),
        ],
        0..40,
    )
}

fn now_strategy() -> impl Strategy<Value = SystemTime> {
    (0u64..=u64::from(u32::MAX) * 4).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

proptest! {
    // Fixed seed (core's shared configuration): the same inputs every run.
    #![proptest_config(palisade_core::test_util::proptest_config(2_000))]

    #[test]
    fn any_retry_after_value_gives_a_bounded_hint_or_none(bytes in header_bytes(), now in now_strategy()) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()); };
        if let Some(hint) = parse_retry_after(&value, now) {
            prop_assert!(hint <= MAX_RETRY_AFTER);
        }
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", value.clone());
        headers.insert("grpc-retry-pushback-ms", value.clone());
        prop_assert!(retry_after_in(&headers, now).is_some_and(|h| h <= MAX_RETRY_AFTER));
        let _ = parse_grpc_pushback(&value);
    }

    #[test]
    fn any_digits_are_a_capped_delay(digits in "[0-9]{1,400}") {
        let value = HeaderValue::from_str(&digits).unwrap();
        let hint = parse_retry_after(&value, SystemTime::UNIX_EPOCH).unwrap();
        let small: Option<u64> = digits.parse().ok();
        let expected = small.map_or(MAX_RETRY_AFTER, |s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        prop_assert_eq!(hint, expected);
    }

    #[test]
    fn any_status_and_ranges_classify(status in 100u16..=999, a in any::<u16>(), b in any::<u16>(), grpc in header_bytes()) {
        let classifier = HttpClassifier::new().with_failures(a..=b).without_failures(b..=a);
        let response = Response::builder().status(status).body(()).unwrap();
        let outcome = Classify::<Response<()>, BoxError>::classify(&classifier, Ok(&response));
        let in_set = classifier.failures().contains(status);
        prop_assert_eq!(outcome == Outcome::Failure, in_set);
        let _ = StatusSet::empty().with(a..=b).contains(status);
        if let Ok(value) = HeaderValue::from_bytes(&grpc) {
            let response = Response::builder().status(status).header("grpc-status", value).body(()).unwrap();
            let _ = Classify::<Response<()>, BoxError>::classify(&GrpcClassifier::new(), Ok(&response));
        }
    }
}
