//! Issue 9 §2: every public service, layer, future and handle is `Send + Sync` (and the
//! service and future `Unpin` over `Unpin` inner types), so stacks can be spawned and shared.
//! Compile-time checks (tokio's `async_send_sync` style); the test only has to build.

#![cfg(not(loom))]
#![allow(
    dead_code,
    reason = "the functions are only instantiated, never called"
)]

use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd, Gradient2, Sample, Vegas};
use palisade_bulkhead::future::ResponseFuture;
use palisade_bulkhead::{
    Bulkhead, BulkheadBuilder, BulkheadEvent, BulkheadFull, BulkheadLayer, BulkheadService,
    BulkheadSnapshot, RejectReason, WaitTimeout,
};
use palisade_core::test_util::Echo;
use std::future::Ready;

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn send_sync_unpin<T: Send + Sync + Unpin>() {}
fn clone_debug<T: Clone + std::fmt::Debug>() {}

type Fut = ResponseFuture<Ready<Result<u32, std::convert::Infallible>>>;

#[test]
fn public_types_are_send_sync_and_layers_clone_debug() {
    send_sync::<Bulkhead>();
    // A builder holds a `Box<dyn LimitAlgorithm>` (`Send`): it moves, it is not shared.
    send::<BulkheadBuilder>();
    send_sync::<BulkheadLayer>();
    send_sync_unpin::<BulkheadService<Echo>>();
    send_sync_unpin::<Fut>();
    send_sync::<BulkheadFull>();
    send_sync::<WaitTimeout>();
    send_sync::<BulkheadEvent>();
    send_sync::<BulkheadSnapshot>();
    send_sync::<RejectReason>();
    send_sync::<Aimd>();
    send_sync::<Gradient2>();
    send_sync::<Vegas>();
    send_sync::<AdaptiveConfig>();
    send_sync::<Sample>();
    clone_debug::<Bulkhead>();
    clone_debug::<BulkheadLayer>();
    clone_debug::<BulkheadService<Echo>>();
    // Zero-sized rejections: boxing them allocates nothing.
    assert_eq!(size_of::<BulkheadFull>() + size_of::<WaitTimeout>(), 0);
}
