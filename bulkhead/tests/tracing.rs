//! The `tracing` feature: limit changes at INFO, per-call events at TRACE, target `palisade`,
//! structured fields (not one Debug string).

#![cfg(all(feature = "tracing", not(loom)))]

use palisade_bulkhead::Bulkhead;
use palisade_core::test_util::{Echo, TraceCapture, call_now};
use tower::Layer;
use tracing::Level;

#[test]
fn limit_changes_at_info_per_call_events_at_trace_with_fields() {
    let capture = TraceCapture::new();
    tracing::subscriber::with_default(capture.clone(), || {
        let bulkhead = Bulkhead::builder()
            .name("inventory")
            .max_concurrent_calls(1)
            .build()
            .unwrap();
        let mut svc = bulkhead.layer().layer(Echo);
        assert!(matches!(call_now(&mut svc, 1u32), Some(Ok(1))));
        bulkhead.set_limit(0);
        assert!(matches!(call_now(&mut svc, 2u32), Some(Err(_))));
    });
    let seen: Vec<_> = capture
        .events()
        .into_iter()
        .map(|e| (e.level, e.target, e.fields))
        .collect();
    let find = |event: &str| {
        seen.iter()
            .filter(|(_, _, f)| f.get("event").map(String::as_str) == Some(event))
            .collect::<Vec<_>>()
    };
    for (level, target, fields) in seen.iter() {
        assert_eq!(target, "palisade");
        assert_eq!(fields["layer"], "bulkhead");
        assert_eq!(fields["name"], "inventory");
        let info = fields["event"] == "limit_changed";
        assert_eq!(*level, if info { Level::INFO } else { Level::TRACE });
    }
    let limits = find("limit_changed");
    assert_eq!(limits.len(), 2, "at build, then set_limit");
    assert_eq!(
        (limits[1].2["from"].as_str(), limits[1].2["to"].as_str()),
        ("1", "0")
    );
    assert_eq!(find("call_permitted")[0].2["in_flight"], "1");
    assert_eq!(find("call_finished")[0].2["outcome"], "success");
    let rejected = find("call_rejected");
    assert_eq!(rejected[0].2["reason"], "bulkhead_full");
    assert_eq!(rejected[0].2["detail"], "full");
}
