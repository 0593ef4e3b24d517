//! Server side: answer a Palisade local rejection with `429` or `503` and `Retry-After`.
//!
//! A server that protects itself with a rate limiter, a bulkhead or a breaker in front of its
//! handlers gets their rejections as errors. [`rejection_response`] turns any error into the
//! response a client should see:
//!
//! | error | status | `Retry-After` |
//! | --- | --- | --- |
//! | a local rejection of a rate limiter (`RateLimited`, `CostExceedsBurst`, `TooManyKeys`) | 429 | the rejection's hint, whole seconds rounded up, when it has one |
//! | any other local rejection (`CircuitOpen`, `BulkheadFull`, `WaitTimeout`, `BudgetExhausted`, `DeadlineExceeded`, `NoHealthyEndpoints`, …) | 503 | likewise |
//! | `tower::timeout::error::Elapsed` | 504 | — |
//! | anything else | 500 | — |
//!
//! The body is a short lowercase reason (`rate limited`, `service unavailable: circuit_open`),
//! never the error's internals. [`handle_error`] is the same as an `async fn(BoxError)`, the
//! shape axum's `HandleErrorLayer::new` takes (`tests/axum.rs` runs this with a real limiter):
//!
//! ```ignore
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use tower::ServiceBuilder;
//!
//! let app = Router::new().route("/", get(handler)).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(palisade_http::server::handle_error))
//!         .layer(limiter.layer())
//!         .layer(bulkhead.layer()),
//! );
//! ```
//!
//! Without axum (any tower server):
//!
//! ```
//! use palisade_core::{BoxError, Rejection, RejectionKind};
//! use palisade_http::server::rejection_response;
//! use std::time::Duration;
//!
//! let limited: BoxError = Box::new(
//!     Rejection::new(RejectionKind::RateLimited).with_retry_after(Duration::from_millis(1500)),
//! );
//! let response = rejection_response::<String>(&*limited);
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["retry-after"], "2");
//! assert_eq!(response.body(), "rate limited");
//! ```

use crate::retry_after::retry_after_value;
use http::{HeaderValue, Response, StatusCode, header};
use palisade_core::rejection::{RejectionKind, rejection};
use palisade_core::{BoxError, retry_after};
use std::error::Error;

/// The response for `error` (see the [module docs](self) for the table). `B` is any body that
/// can be made from a `&'static str` (`String`, `Bytes`, `Full<Bytes>`, axum's `Body`).
#[must_use]
pub fn rejection_response<B: From<&'static str>>(error: &(dyn Error + 'static)) -> Response<B> {
    let (status, reason) = match rejection(error) {
        Some(found) => match found.kind() {
            RejectionKind::RateLimited
            | RejectionKind::CostExceedsBurst
            | RejectionKind::TooManyKeys => (StatusCode::TOO_MANY_REQUESTS, "rate limited"),
            other => (StatusCode::SERVICE_UNAVAILABLE, unavailable(other)),
        },
        None if is_elapsed(error) => (StatusCode::GATEWAY_TIMEOUT, "timed out"),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let mut response = Response::new(B::from(reason));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::INTERNAL_SERVER_ERROR
        && status != StatusCode::GATEWAY_TIMEOUT
        && let Some(hint) = retry_after(error)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after_value(hint));
    }
    response
}

/// The error handler for axum's `HandleErrorLayer`: [`rejection_response`] of `error`, with a
/// `String` body.
pub async fn handle_error(error: BoxError) -> Response<String> {
    rejection_response(&*error)
}

fn unavailable(kind: RejectionKind) -> &'static str {
    match kind {
        RejectionKind::CircuitOpen => "service unavailable: circuit_open",
        RejectionKind::BulkheadFull => "service unavailable: bulkhead_full",
        RejectionKind::WaitTimeout => "service unavailable: wait_timeout",
        RejectionKind::Throttled => "service unavailable: throttled",
        RejectionKind::BudgetExhausted => "service unavailable: budget_exhausted",
        RejectionKind::DeadlineExceeded => "service unavailable: deadline_exceeded",
        RejectionKind::NoHealthyEndpoints => "service unavailable: no_healthy_endpoints",
        _ => "service unavailable",
    }
}

/// Whether `tower::timeout::error::Elapsed` is anywhere in `error`'s source chain.
fn is_elapsed(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<tower::timeout::error::Elapsed>() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::Rejection;
    use std::time::Duration;

    fn respond(err: BoxError) -> Response<String> {
        rejection_response(&*err)
    }

    #[test]
    fn every_rejection_kind_has_a_status() {
        let kinds = [
            (RejectionKind::CircuitOpen, 503),
            (RejectionKind::BulkheadFull, 503),
            (RejectionKind::WaitTimeout, 503),
            (RejectionKind::RateLimited, 429),
            (RejectionKind::CostExceedsBurst, 429),
            (RejectionKind::TooManyKeys, 429),
            (RejectionKind::Throttled, 503),
            (RejectionKind::BudgetExhausted, 503),
            (RejectionKind::DeadlineExceeded, 503),
            (RejectionKind::NoHealthyEndpoints, 503),
        ];
        for (kind, status) in kinds {
            let r = respond(Box::new(Rejection::new(kind)));
            assert_eq!(r.status(), status, "{kind}");
            assert!(r.headers().get("retry-after").is_none(), "{kind}");
            let hinted = respond(Box::new(
                Rejection::new(kind).with_retry_after(Duration::from_secs(3)),
            ));
            assert_eq!(hinted.headers()["retry-after"], "3", "{kind}");
        }
        let open = respond(Box::new(Rejection::new(RejectionKind::CircuitOpen)));
        assert_eq!(open.body(), "service unavailable: circuit_open");
    }

    #[test]
    fn non_rejections_and_timeouts() {
        let r = respond("database on fire".into());
        assert_eq!(r.status(), 500);
        assert_eq!(r.body(), "internal error");
        let r = respond(Box::new(tower::timeout::error::Elapsed::new()));
        assert_eq!(r.status(), 504);
        // A remote hint on an error that is not a local rejection gives no Retry-After on 500.
        let r = respond(Box::new(palisade_core::RetryAfter::new(
            Duration::from_secs(9),
        )));
        assert_eq!(r.status(), 500);
        assert!(r.headers().get("retry-after").is_none());
        // Enormous hints are capped, never a panic.
        let r = respond(Box::new(
            Rejection::new(RejectionKind::RateLimited).with_retry_after(Duration::MAX),
        ));
        assert_eq!(r.headers()["retry-after"], "86400");
    }

    #[tokio::test]
    async fn handle_error_is_an_async_fn_of_box_error() {
        let r = handle_error(Box::new(Rejection::new(RejectionKind::BulkheadFull))).await;
        assert_eq!(r.status(), 503);
    }
}
