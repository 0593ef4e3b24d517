//! Auto-trait assertions for the public types of every layer crate (issue 9 §2), in the style
//! of tokio's `tests/async_send_sync.rs`: each line names a concrete type and the traits it
//! must have, and the file does not compile when one of them loses one.
//!
//! What the conventions ask for:
//! - handles (`CircuitBreaker`, `Bulkhead`, `RateLimiter`, …): `Send + Sync + Unpin + Clone +
//!   Debug` (they are an `Arc` inside, shared by every service built from them);
//! - layers: `Send + Sync + Unpin + Clone + Debug` (CONVENTIONS rule 3);
//! - services over a `Send + Sync + Clone + Debug` inner service: the same;
//! - response futures: `Send` (and `Sync`) over a `Send + Sync` inner future, `Unpin` over an
//!   `Unpin` one (they are pin-projected, so they are `Unpin` exactly when what they pin is);
//! - rejections: `Send + Sync + Unpin + Debug + 'static` (they travel in a `BoxError`), and
//!   the hint-free ones zero-sized, so boxing one allocates nothing;
//! - builders: `Send + Unpin + Debug` (built where they are configured; a bulkhead builder
//!   holds a `Box<dyn LimitAlgorithm>` that is `Send` only, so builders are not asked to be
//!   `Sync`).
//!
//! The inner service is the core mock backend (its future holds a tokio `Sleep`, so it is not
//! `Unpin`) or the core `Echo` (whose future is `std::future::Ready`, `Unpin`).

#![cfg(all(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry"
))]
#![allow(
    clippy::extra_unused_type_parameters,
    reason = "the type parameter is the whole point of each assertion function"
)]

use palisade_core::classify::ErrorIsFailure;
use palisade_core::test_util::{Echo, MockBackend, MockFuture};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Ready;

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}
fn clone<T: Clone>() {}
fn debug<T: Debug>() {}
fn error<T: std::error::Error + Send + Sync + 'static>() {}

/// `$ty` has every listed property.
macro_rules! assert_traits {
    ($($ty:ty: $($check:ident)+;)*) => {$(
        $( $check::<$ty>(); )+
    )*};
}

/// The future of `Echo` for a `u32` request: `Send + Sync + Unpin`.
type EchoFuture = Ready<Result<u32, Infallible>>;
/// The future of the mock backend: `Send + Sync`, not `Unpin` (a tokio `Sleep` inside).
type MockFut = MockFuture<u32>;
/// A key function for the keyed rate limiter.
type KeyFn = fn(&u32) -> u32;

#[test]
fn core_types() {
    use palisade_core::rejection::{Rejection, RejectionKind};
    use palisade_core::{Clock, ConfigError, ManualClock, Outcome, RetryAfter};
    assert_traits! {
        Clock: send sync unpin clone;
        ManualClock: send sync unpin clone debug;
        ConfigError: send sync unpin clone debug error;
        RetryAfter: send sync unpin clone debug error;
        Rejection: send sync unpin clone debug error;
        RejectionKind: send sync unpin clone debug;
        Outcome: send sync unpin clone debug;
        ErrorIsFailure: send sync unpin clone debug;
        MockBackend: send sync unpin clone debug;
    }
}

#[test]
fn circuit_breaker() {
    use palisade_circuit_breaker::future::ResponseFuture;
    use palisade_circuit_breaker::{
        CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerEvent, CircuitBreakerLayer,
        CircuitBreakerService, CircuitOpen, Mode, OwnedPermit, Snapshot, State,
    };
    assert_traits! {
        CircuitBreaker: send sync unpin clone debug;
        CircuitBreakerBuilder: send unpin clone debug;
        CircuitBreakerLayer: send sync unpin clone debug;
        CircuitBreakerService<MockBackend>: send sync unpin clone debug;
        CircuitBreakerService<Echo>: send sync unpin clone debug;
        ResponseFuture<MockFut, ErrorIsFailure>: send sync;
        ResponseFuture<EchoFuture, ErrorIsFailure>: send sync unpin;
        CircuitOpen: send sync unpin clone debug error;
        CircuitBreakerEvent: send sync unpin clone debug;
        Snapshot: send sync unpin clone debug;
        State: send sync unpin clone debug;
        Mode: send sync unpin clone debug;
        OwnedPermit: send sync unpin debug;
    }
}

#[test]
fn bulkhead() {
    use palisade_bulkhead::adaptive::{Aimd, Gradient2, Vegas};
    use palisade_bulkhead::future::ResponseFuture;
    use palisade_bulkhead::{
        Bulkhead, BulkheadBuilder, BulkheadEvent, BulkheadFull, BulkheadLayer, BulkheadService,
        BulkheadSnapshot, WaitTimeout,
    };
    assert_traits! {
        Bulkhead: send sync unpin clone debug;
        BulkheadBuilder: send unpin debug;
        BulkheadLayer: send sync unpin clone debug;
        BulkheadService<MockBackend>: send sync unpin clone debug;
        BulkheadService<Echo>: send sync unpin clone debug;
        ResponseFuture<MockFut, ErrorIsFailure>: send sync;
        ResponseFuture<EchoFuture, ErrorIsFailure>: send sync unpin;
        BulkheadFull: send sync unpin clone debug error;
        WaitTimeout: send sync unpin clone debug error;
        BulkheadEvent: send sync unpin clone debug;
        BulkheadSnapshot: send sync unpin clone debug;
        Aimd: send sync unpin debug;
        Gradient2: send sync unpin debug;
        Vegas: send sync unpin debug;
    }
}

#[test]
fn rate_limit() {
    use palisade_rate_limit::future::{DeferredFuture, ResponseFuture};
    use palisade_rate_limit::{
        CostExceedsBurst, KeyedRateLimiter, KeyedRateLimiterLayer, KeyedRateLimiterService,
        KeyedRejection, KeyedSnapshot, Quota, RateLimited, RateLimiter, RateLimiterBuilder,
        RateLimiterEvent, RateLimiterLayer, RateLimiterService, Snapshot, TooManyKeys, UnitCost,
        WeightedRateLimiterLayer, WeightedRateLimiterService,
    };
    type Keyed<S> = KeyedRateLimiterService<S, u32, KeyFn>;
    assert_traits! {
        RateLimiter: send sync unpin clone debug;
        RateLimiterBuilder: send unpin debug;
        KeyedRateLimiter<u32>: send sync unpin clone debug;
        RateLimiterLayer: send sync unpin clone debug;
        WeightedRateLimiterLayer<UnitCost>: send sync unpin clone debug;
        KeyedRateLimiterLayer<u32, KeyFn>: send sync unpin clone debug;
        RateLimiterService<MockBackend>: send sync unpin clone debug;
        RateLimiterService<Echo>: send sync unpin clone debug;
        WeightedRateLimiterService<MockBackend, UnitCost>: send sync unpin clone debug;
        Keyed<MockBackend>: send sync unpin clone debug;
        ResponseFuture<MockFut>: send sync;
        ResponseFuture<EchoFuture>: send sync unpin;
        DeferredFuture<MockBackend, u32>: send sync;
        DeferredFuture<Echo, u32>: send sync;
        RateLimited: send sync unpin clone debug error;
        CostExceedsBurst: send sync unpin clone debug error;
        TooManyKeys: send sync unpin clone debug error;
        KeyedRejection: send sync unpin clone debug error;
        RateLimiterEvent: send sync unpin clone debug;
        Snapshot: send sync unpin clone debug;
        KeyedSnapshot: send sync unpin clone debug;
        Quota: send sync unpin clone debug;
    }
}

#[test]
fn retry() {
    use palisade_retry::adaptive::future::ResponseFuture as ThrottleFuture;
    use palisade_retry::future::ResponseFuture;
    use palisade_retry::hedge::future::ResponseFuture as HedgeFuture;
    use palisade_retry::{
        AdaptiveThrottle, AdaptiveThrottleEvent, AdaptiveThrottleLayer, AdaptiveThrottleService,
        AdaptiveThrottleSnapshot, AttemptTimedOut, Backoff, BudgetEvent, CloneAll,
        DeadlineExceeded, HedgePolicy, HedgePolicyLayer, HedgePolicyService, HedgePolicySnapshot,
        RetryBudget, RetryBudgetBuilder, RetryBudgetSnapshot, RetryEvent, RetryPolicy,
        RetryPolicyBuilder, RetryPolicyLayer, RetryPolicyService, RetryPolicySnapshot,
        RetryThrottle, RetryThrottleBuilder, RetryThrottleSnapshot, Throttled,
    };
    assert_traits! {
        RetryPolicy: send sync unpin clone debug;
        RetryPolicyBuilder: send unpin debug;
        RetryPolicyLayer: send sync unpin clone debug;
        RetryPolicyService<MockBackend>: send sync unpin clone debug;
        RetryPolicyService<Echo>: send sync unpin clone debug;
        ResponseFuture<MockBackend, u32, ErrorIsFailure, CloneAll>: send sync;
        RetryPolicySnapshot: send sync unpin clone debug;
        RetryBudget: send sync unpin clone debug;
        RetryBudgetBuilder: send unpin debug;
        RetryBudgetSnapshot: send sync unpin clone debug;
        RetryThrottle: send sync unpin clone debug;
        RetryThrottleBuilder: send unpin debug;
        RetryThrottleSnapshot: send sync unpin clone debug;
        Backoff: send sync unpin clone debug;
        RetryEvent: send sync unpin clone debug;
        BudgetEvent: send sync unpin clone debug;
        AttemptTimedOut: send sync unpin clone debug error;
        DeadlineExceeded: send sync unpin clone debug error;
        Throttled: send sync unpin clone debug error;
        HedgePolicy: send sync unpin clone debug;
        HedgePolicyLayer: send sync unpin clone debug;
        HedgePolicyService<MockBackend>: send sync unpin clone debug;
        HedgePolicySnapshot: send sync unpin clone debug;
        HedgeFuture<MockBackend, u32, ErrorIsFailure, CloneAll>: send sync;
        AdaptiveThrottle: send sync unpin clone debug;
        AdaptiveThrottleLayer: send sync unpin clone debug;
        AdaptiveThrottleService<MockBackend>: send sync unpin clone debug;
        AdaptiveThrottleSnapshot: send sync unpin clone debug;
        AdaptiveThrottleEvent: send sync unpin clone debug;
        ThrottleFuture<MockFut, ErrorIsFailure>: send sync;
        ThrottleFuture<EchoFuture, ErrorIsFailure>: send sync unpin;
    }
}

#[test]
fn load_balancer() {
    use palisade_load_balancer::future::ResponseFuture;
    use palisade_load_balancer::{
        Balancer, BalancerBuilder, BalancerEvent, BalancerService, BalancerSnapshot, EndpointMeta,
        EndpointSnapshot, LeastPending, NoHealthyEndpoints, OutlierDetection, P2cPeakEwma,
        P2cPending, Random, RoundRobin, WeightedP2cPeakEwma, WeightedRandom, WeightedResponseTime,
    };
    assert_traits! {
        Balancer<u32, MockBackend>: send sync unpin clone debug;
        BalancerBuilder: send unpin debug;
        BalancerService<u32, MockBackend>: send sync unpin clone debug;
        ResponseFuture<MockFut>: send sync;
        ResponseFuture<EchoFuture>: send sync unpin;
        NoHealthyEndpoints: send sync unpin clone debug error;
        BalancerEvent<u32>: send sync unpin clone debug;
        BalancerSnapshot<u32>: send sync unpin clone debug;
        OutlierDetection: send sync unpin clone debug;
        EndpointSnapshot<u32>: send sync unpin clone debug;
        EndpointMeta: send sync unpin clone debug;
        P2cPeakEwma: send sync unpin clone debug;
        P2cPending: send sync unpin clone debug;
        LeastPending: send sync unpin clone debug;
        RoundRobin: send sync unpin debug;
        Random: send sync unpin clone debug;
        WeightedP2cPeakEwma: send sync unpin debug;
        WeightedRandom: send sync unpin debug;
        WeightedResponseTime: send sync unpin debug;
    }
}

/// The rejections without a hint are zero-sized: boxing one into a `BoxError` allocates
/// nothing, the hot path of a rejecting layer.
#[test]
fn hint_free_rejections_are_zero_sized() {
    assert_eq!(size_of::<palisade_bulkhead::BulkheadFull>(), 0);
    assert_eq!(size_of::<palisade_bulkhead::WaitTimeout>(), 0);
    assert_eq!(size_of::<palisade_retry::DeadlineExceeded>(), 0);
    assert_eq!(size_of::<palisade_retry::AttemptTimedOut>(), 0);
    assert_eq!(size_of::<palisade_retry::Throttled>(), 0);
    assert_eq!(size_of::<palisade_load_balancer::NoHealthyEndpoints>(), 0);
}
