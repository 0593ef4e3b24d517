//! Every public service, layer, future and handle is `Send + Sync` (and `Clone`, `Unpin`
//! where it applies), so it works under `Buffer`, in spawned tasks and across threads.

#![cfg(not(loom))]

mod support;

use palisade_rate_limit::future::{DeferredFuture, ResponseFuture};
use palisade_rate_limit::{
    KeyedRateLimiter, KeyedRateLimiterLayer, KeyedRateLimiterService, RateLimiter,
    RateLimiterLayer, RateLimiterService, UnitCost, WeightedRateLimiterLayer,
    WeightedRateLimiterService,
};
use support::Echo;

fn send_sync<T: Send + Sync>() {}
fn send_sync_clone<T: Send + Sync + Clone + std::fmt::Debug>() {}
fn send_unpin<T: Send + Unpin>() {}

type Key = fn(&u32) -> u32;
type Weight = fn(&u32) -> u32;

#[test]
fn services_layers_futures_and_handles_are_send_and_sync() {
    send_sync_clone::<RateLimiter>();
    send_sync_clone::<KeyedRateLimiter<u32>>();
    send_sync_clone::<RateLimiterLayer>();
    send_sync_clone::<WeightedRateLimiterLayer<Weight>>();
    send_sync_clone::<KeyedRateLimiterLayer<u32, Key, UnitCost>>();
    send_sync_clone::<RateLimiterService<Echo>>();
    send_sync::<WeightedRateLimiterService<Echo, Weight>>();
    send_sync::<KeyedRateLimiterService<Echo, u32, Key, UnitCost>>();
    send_unpin::<ResponseFuture<std::future::Ready<Result<u32, tower::BoxError>>>>();
    fn send<T: Send>() {}
    send::<DeferredFuture<Echo, u32>>();
    send::<DeferredFuture<Echo, u32, u32>>();
}
