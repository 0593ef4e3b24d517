//! Every public handle, layer, service and future of the crate is `Send + Sync` (and the
//! handles, layers and services `Clone`, the layers `Debug`), checked at compile time in the
//! style of tokio's `async_send_sync`.

#![cfg(not(loom))]
#![allow(dead_code)]

use palisade_retry::{
    AdaptiveThrottle, AdaptiveThrottleLayer, AdaptiveThrottleService, HedgePolicy,
    HedgePolicyLayer, HedgePolicyService, RetryBudget, RetryPolicy, RetryPolicyLayer,
    RetryPolicyService, RetryThrottle,
};
use std::fmt::Debug;

fn send_sync<T: Send + Sync>() {}
fn handle<T: Send + Sync + Clone + Debug + Unpin + 'static>() {}
fn layer<T: Send + Sync + Clone + Debug + 'static>() {}
fn service<T: Send + Sync + Clone>() {}

/// A stand-in inner service: `Send + Sync + Clone`.
#[derive(Clone, Debug)]
struct Inner;

impl tower::Service<u8> for Inner {
    type Response = u8;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u8, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u8) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

#[test]
fn public_types_are_send_sync_and_clone() {
    handle::<RetryPolicy>();
    handle::<HedgePolicy>();
    handle::<AdaptiveThrottle>();
    handle::<RetryBudget>();
    handle::<RetryThrottle>();
    layer::<RetryPolicyLayer>();
    layer::<HedgePolicyLayer>();
    layer::<AdaptiveThrottleLayer>();
    service::<RetryPolicyService<Inner>>();
    service::<HedgePolicyService<Inner>>();
    service::<AdaptiveThrottleService<Inner>>();
    send_sync::<
        palisade_retry::future::ResponseFuture<
            Inner,
            u8,
            palisade_core::ErrorIsFailure,
            palisade_retry::CloneAll,
        >,
    >();
    send_sync::<
        palisade_retry::hedge::future::ResponseFuture<
            Inner,
            u8,
            palisade_core::ErrorIsFailure,
            palisade_retry::CloneAll,
        >,
    >();
    send_sync::<
        palisade_retry::adaptive::future::ResponseFuture<
            std::future::Ready<Result<u8, std::io::Error>>,
            palisade_core::ErrorIsFailure,
        >,
    >();
    send_sync::<palisade_retry::DeadlineExceeded>();
    send_sync::<palisade_retry::Throttled>();
    send_sync::<palisade_retry::AttemptTimedOut>();
}
