//! Runs `examples/http_client.rs` (the same code) and asserts what its stack promises: the
//! server's Retry-After is honoured, the breaker opens on the failing route and only there,
//! healthy routes never trip, and no request is lost.

#[path = "../http_client.rs"]
#[allow(unreachable_pub)] // reason: the example's items are `pub` for its own docs
mod http_client;

use palisade::circuit_breaker::State;
use std::time::Duration;

#[tokio::test(flavor = "current_thread")]
async fn the_http_stack_does_what_the_example_prints() {
    let report = http_client::run().await.expect("setup");
    http_client::print(&report);

    // No request lost: every call got exactly one answer, none an error.
    for (route, count) in http_client::ROUTES {
        assert_eq!(report.sent[route], count, "{route}");
        let answered: usize = report
            .statuses
            .get(route)
            .map_or(0, |s| s.values().sum::<usize>())
            + report.fallbacks.get(route).copied().unwrap_or(0);
        assert_eq!(answered, count, "{route}: every call answered once");
        assert_eq!(
            report.errors.get(route),
            None,
            "{route}: no error reached a caller"
        );
    }

    // Healthy: every call answered 200 by the server, its breaker closed and never rejecting.
    assert_eq!(report.statuses["/healthy"][&200], 400);
    assert_eq!(report.breakers["/healthy"], (State::Closed, 0));
    // (Not `== 400`: on a stalled machine an attempt may pass the 300 ms timeout and be retried.)
    assert!(report.server_hits["/healthy"] >= 400);

    // Failing (500s, and timeouts on /slow): the breaker opened on these routes, and then
    // spared the server.
    let (state, rejected) = report.breakers["/failing"];
    assert_eq!(state, State::Open, "the failing route's breaker opened");
    assert!(rejected > 0);
    assert_eq!(
        report.fallbacks["/failing"], 60,
        "each failing call answered by the fallback"
    );
    assert!(
        report.server_hits["/failing"] < 60 * 3,
        "the open breaker kept attempts off the server: {}",
        report.server_hits["/failing"]
    );

    // Limited: Retry-After: 1 honoured, retries at least the hint apart, then 200; a few
    // paced answers do not trip its breaker.
    assert_eq!(report.statuses["/limited"][&200], 6);
    assert_eq!(report.limited_gaps.len(), 2, "requests 0 and 3 were paced");
    for gap in &report.limited_gaps {
        assert!(
            *gap >= Duration::from_secs(1),
            "retried after {gap:?}, before the hint"
        );
    }
    assert_eq!(report.hinted_retries, 2);
    assert_eq!(report.breakers["/limited"], (State::Closed, 0));

    // Slow: every attempt timed out (Elapsed is a failure), the fallback answered, and the
    // route's breaker opened.
    assert_eq!(report.fallbacks["/slow"], 4);
    assert_eq!(report.breakers["/slow"].0, State::Open);
}
