//! An inner service that answers at once, and a way to drive a call without a runtime: what
//! zero-allocation tests and benchmarks of a layer's synchronous path need.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower_service::Service;

/// Ready at once, answers at once with its request; its future is `std::future::Ready`, so
/// it adds no allocation and almost no time of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Echo;

impl<R> Service<R> for Echo {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        ready(Ok(request))
    }
}

/// Drives one request through `svc` without a runtime: `poll_ready`, `call`, and one poll of
/// the response future, all with a no-op waker. `None` if the service or its future was not
/// ready at once; `Some(Err(_))` if `poll_ready` or the call failed.
///
/// ```
/// use palisade_core::test_util::{Echo, call_now};
///
/// assert_eq!(call_now(&mut Echo, 7).map(Result::ok), Some(Some(7)));
/// ```
#[inline]
pub fn call_now<S, R>(svc: &mut S, request: R) -> Option<Result<S::Response, S::Error>>
where
    S: Service<R>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Some(Err(e)),
        Poll::Pending => return None,
    }
    let future = pin!(svc.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}
