//! Static checks: every public service, layer, handle, future and error is `Send + Sync`
//! (the future `Send`), services and layers `Clone`, the service `Unpin` (tokio's
//! `async_send_sync` style). Gate mode's timer is boxed, so the service stays `Unpin`.
#![cfg(not(loom))]

use palisade_circuit_breaker::future::ResponseFuture;
use palisade_circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, CircuitOpen, Mode, OwnedPermit,
    Snapshot,
};
use palisade_core::classify::ErrorIsFailure;
use std::future::Ready;

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn clone<T: Clone>() {}
fn unpin<T: Unpin>() {}
fn is_static<T: 'static>() {}

type Inner = tower::util::ServiceFn<fn(u32) -> Ready<Result<u32, std::io::Error>>>;

#[test]
fn public_types_are_send_sync_clone_unpin() {
    send_sync::<CircuitBreaker>();
    clone::<CircuitBreaker>();
    send_sync::<CircuitBreakerLayer>();
    clone::<CircuitBreakerLayer>();
    send_sync::<CircuitBreakerService<Inner>>();
    clone::<CircuitBreakerService<Inner>>();
    unpin::<CircuitBreakerService<Inner>>();
    send::<ResponseFuture<Ready<Result<u32, std::io::Error>>, ErrorIsFailure>>();
    send_sync::<CircuitOpen>();
    is_static::<CircuitOpen>();
    send_sync::<OwnedPermit>();
    send_sync::<Snapshot>();
    send_sync::<Mode>();
}
