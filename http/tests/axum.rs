//! `palisade_http::server::handle_error` as axum's `HandleErrorLayer` function, in front of a
//! Palisade rate limiter: an admitted request gets the handler's answer, a refused one `429`
//! with `Retry-After` from the limiter's hint.

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::{Request, StatusCode};
use palisade_rate_limit::RateLimiter;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn a_local_rejection_becomes_429_with_retry_after_in_axum() {
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(60))
        .burst(1)
        .build()
        .unwrap();
    let app = Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(palisade_http::server::handle_error))
            .layer(limiter.layer()),
    );
    let request = || Request::get("/").body(axum::body::Body::empty()).unwrap();

    let admitted = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);

    let refused = app.oneshot(request()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let hint: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&hint), "Retry-After: {hint}");
}
