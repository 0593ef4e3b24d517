//! Replayable request bodies: buffer a body that is not `Clone` up to a limit, so the request
//! can be retried; a larger body is sent as it streams and not retried.
//!
//! A retry sends the request again, but a streaming body (`hyper::body::Incoming`,
//! `http_body_util::combinators::BoxBody`) is consumed by the first attempt and is not `Clone`.
//! [`BufferBodyLayer`] (above the retry layer) reads the body into memory up to `limit` bytes
//! and hands the stack a [`BufferedBody`], which [`BufferedBody::try_clone`] copies for free
//! (it shares the bytes). A body longer than the limit is not read past it: the bytes read so
//! far and the rest of the stream are sent as one body, and `try_clone` returns `None`, so the
//! request gets exactly one attempt. A `Content-Length` above the limit skips buffering
//! altogether.
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::{BodyExt, Full};
//! use palisade_http::body::buffer_request;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let small = Request::post("/").body(Full::new(Bytes::from_static(b"hello")))?;
//! let buffered = buffer_request(small, 1024).await?;
//! let copy = buffered.body().try_clone().expect("within the limit: replayable");
//! assert_eq!(copy.collect().await?.to_bytes(), "hello");
//!
//! let large = Request::post("/").body(Full::new(Bytes::from(vec![0u8; 4096])))?;
//! let streamed = buffer_request(large, 1024).await?;
//! assert!(streamed.body().try_clone().is_none(), "over the limit: sent once, not retried");
//! assert_eq!(streamed.into_body().collect().await?.to_bytes().len(), 4096);
//! # Ok(())
//! # }
//! ```

use crate::future::BufferBodyFuture;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use palisade_core::BoxError;
use pin_project::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// A request body buffered up to a limit: replayable when it fit, streaming when it did not.
#[pin_project(project = BodyProj)]
pub struct BufferedBody<B> {
    #[pin]
    state: State<B>,
}

#[pin_project(project = StateProj)]
enum State<B> {
    /// The whole body, in memory: replayable.
    Full {
        data: Bytes,
        trailers: Option<HeaderMap>,
        /// 0: data next, 1: trailers next, 2: done.
        at: u8,
    },
    /// Over the limit: the frames read so far, then the rest of the stream.
    Partial {
        read: VecDeque<Frame<Bytes>>,
        #[pin]
        rest: B,
    },
}

impl<B> BufferedBody<B> {
    /// A replayable body holding `data`.
    #[must_use]
    pub fn full(data: impl Into<Bytes>) -> BufferedBody<B> {
        BufferedBody {
            state: State::Full {
                data: data.into(),
                trailers: None,
                at: 0,
            },
        }
    }

    /// Whether the body was buffered whole (and can be copied for a retry).
    #[must_use]
    pub fn is_replayable(&self) -> bool {
        matches!(self.state, State::Full { .. })
    }

    /// A fresh copy of a buffered body (sharing its bytes), or `None` for a body that was over
    /// the limit.
    #[must_use]
    pub fn try_clone(&self) -> Option<BufferedBody<B>> {
        match &self.state {
            State::Full { data, trailers, .. } => Some(BufferedBody {
                state: State::Full {
                    data: data.clone(),
                    trailers: trailers.clone(),
                    at: 0,
                },
            }),
            State::Partial { .. } => None,
        }
    }
}

impl<B> fmt::Debug for BufferedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Full { data, .. } => f
                .debug_struct("BufferedBody")
                .field("buffered", &data.len())
                .finish(),
            State::Partial { read, .. } => f
                .debug_struct("BufferedBody")
                .field("over_limit", &true)
                .field("frames_read", &read.len())
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for BufferedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().state.project() {
            StateProj::Full { data, trailers, at } => {
                if *at == 0 {
                    *at = 1;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if *at == 1 {
                    *at = 2;
                    if let Some(trailers) = trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                }
                Poll::Ready(None)
            }
            StateProj::Partial { read, rest } => match read.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None => rest.poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Full { data, trailers, at } => match at {
                0 => data.is_empty() && trailers.is_none(),
                1 => trailers.is_none(),
                _ => true,
            },
            State::Partial { read, rest } => read.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Full { data, at, .. } => {
                SizeHint::with_exact(if *at == 0 { data.len() as u64 } else { 0 })
            }
            State::Partial { read, rest } => {
                let buffered: u64 = read
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                    .sum();
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(buffered));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}

/// Reads a body until it ends (a replayable [`BufferedBody`]) or passes `limit` bytes (a
/// streaming one): the future behind [`buffer_request`] and [`BufferBodyService`].
pub(crate) struct Collect<B> {
    body: Option<B>,
    limit: usize,
    frames: VecDeque<Frame<Bytes>>,
    read: usize,
}

impl<B: Body<Data = Bytes> + Unpin> Collect<B> {
    pub(crate) fn new(body: B, limit: usize, content_length: Option<u64>) -> Collect<B> {
        let mut collect = Collect {
            body: Some(body),
            limit,
            frames: VecDeque::new(),
            read: 0,
        };
        if content_length.is_some_and(|len| len > limit as u64) {
            // Longer than the limit by its own account: do not read any of it.
            collect.read = limit.saturating_add(1);
        }
        collect
    }

    /// The frames read, as one replayable body.
    fn finish(frames: VecDeque<Frame<Bytes>>) -> BufferedBody<B> {
        let mut data: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        let mut trailers: Option<HeaderMap> = None;
        for frame in frames {
            match frame.into_data() {
                Ok(chunk) => match (&mut joined, &data) {
                    (Some(joined), _) => joined.extend_from_slice(&chunk),
                    (None, None) => data = Some(chunk),
                    (None, Some(first)) => {
                        // A second chunk: copy once into one buffer.
                        let mut buf = BytesMut::with_capacity(first.len() + chunk.len());
                        buf.extend_from_slice(first);
                        buf.extend_from_slice(&chunk);
                        joined = Some(buf);
                    }
                },
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.get_or_insert_with(HeaderMap::new).extend(t);
                    }
                }
            }
        }
        let data = match joined {
            Some(joined) => joined.freeze(),
            None => data.unwrap_or_default(),
        };
        BufferedBody {
            state: State::Full {
                data,
                trailers,
                at: 0,
            },
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Future for Collect<B> {
    type Output = Result<BufferedBody<B>, B::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if this.read > this.limit {
                let rest = this.body.take().expect("polled after completion");
                return Poll::Ready(Ok(BufferedBody {
                    state: State::Partial {
                        read: std::mem::take(&mut this.frames),
                        rest,
                    },
                }));
            }
            let body = this.body.as_mut().expect("polled after completion");
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.read = this.read.saturating_add(data.len());
                    }
                    this.frames.push_back(frame);
                }
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => {
                    this.body = None;
                    return Poll::Ready(Ok(Self::finish(std::mem::take(&mut this.frames))));
                }
            }
        }
    }
}

fn content_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Buffers `request`'s body up to `limit` bytes (see the [module docs](self)). The body must
/// be `Unpin`, as hyper's, `Full`'s and the boxed bodies of `http-body-util` are; pin any other
/// with `Box::pin` first.
///
/// # Errors
///
/// The body's own error, when reading it failed before the limit.
pub async fn buffer_request<B>(
    request: Request<B>,
    limit: usize,
) -> Result<Request<BufferedBody<B>>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let length = content_length(&request);
    let (parts, body) = request.into_parts();
    let body = Collect::new(body, limit, length).await?;
    Ok(Request::from_parts(parts, body))
}

/// Buffers request bodies up to a limit before the inner service sees them, so a retry layer
/// below can copy the request (with [`Idempotency::clone_buffered`](crate::Idempotency::clone_buffered)
/// or [`BufferedBody::try_clone`]). See the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct BufferBodyLayer {
    limit: usize,
}

impl BufferBodyLayer {
    /// Buffers bodies of at most `limit` bytes; larger bodies stream through, not replayable.
    #[must_use]
    pub const fn new(limit: usize) -> BufferBodyLayer {
        BufferBodyLayer { limit }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBodyService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`BufferBodyLayer`]: takes `Request<B>`, calls the inner service with
/// `Request<BufferedBody<B>>`.
///
/// The inner service is called once the body is buffered; like tower's own
/// `ServiceExt::oneshot`-style middleware it calls a clone of the ready inner service, so
/// `S: Clone`. A body error while buffering is the call's error.
#[derive(Clone, Debug)]
pub struct BufferBodyService<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferBodyService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferBodyService<S>
where
    S: Service<Request<BufferedBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferBodyFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays here for the next
        // `poll_ready` (tower's pattern for middleware that calls the inner service later).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let length = content_length(&request);
        let (parts, body) = request.into_parts();
        BufferBodyFuture::new(ready, parts, Collect::new(body, self.limit, length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body of scripted frames (chunks, then trailers or an error), counting how much of it
    /// was read.
    pub(crate) struct Script {
        frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
        pub(crate) polled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Script {
        pub(crate) fn chunks(parts: &[&'static [u8]]) -> Script {
            Script {
                frames: parts
                    .iter()
                    .map(|p| Ok(Frame::data(Bytes::from_static(p))))
                    .collect(),
                polled: Default::default(),
            }
        }
        fn then(mut self, frame: Result<Frame<Bytes>, BoxError>) -> Script {
            self.frames.push_back(frame);
            self
        }
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            // Relaxed: a test counter read after the body is dropped or from the same task.
            self.polled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Poll::Ready(self.frames.pop_front())
        }
    }

    #[tokio::test]
    async fn within_the_limit_is_replayable() {
        let req = Request::post("/")
            .body(Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        let buffered = buffer_request(req, 3).await.unwrap();
        assert!(buffered.body().is_replayable());
        let copy = buffered.body().try_clone().unwrap();
        assert_eq!(copy.size_hint().exact(), Some(3));
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abc");
        // The original is still whole after a copy was read.
        assert_eq!(
            buffered.into_body().collect().await.unwrap().to_bytes(),
            "abc"
        );
    }

    #[tokio::test]
    async fn chunks_and_trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Script::chunks(&[b"ab", b"cd", b"e"]).then(Ok(Frame::trailers(trailers)));
        let req = Request::post("/").body(body).unwrap();
        let buffered = buffer_request(req, 16).await.unwrap();
        for _ in 0..2 {
            let copy = buffered.body().try_clone().unwrap();
            let collected = copy.collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
            assert_eq!(collected.to_bytes(), "abcde");
        }
        let empty = buffer_request(Request::new(Script::chunks(&[])), 0)
            .await
            .unwrap();
        assert!(empty.body().is_end_stream());
        assert!(empty.body().is_replayable());
    }

    #[tokio::test]
    async fn a_body_larger_than_the_limit_streams_once_and_is_not_replayable() {
        let body = Script::chunks(&[b"0123", b"4567", b"89", b"ab"]);
        let polled = body.polled.clone();
        let buffered = buffer_request(Request::new(body), 5).await.unwrap();
        assert!(!buffered.body().is_replayable());
        assert!(buffered.body().try_clone().is_none());
        // Read up to the first chunk past the limit, not further.
        assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(format!("{:?}", buffered.body()).contains("over_limit"));
        // Nothing is lost: the whole body is sent.
        let all = buffered.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(all, "0123456789ab");
    }

    #[tokio::test]
    async fn a_content_length_over_the_limit_skips_buffering() {
        let body = Script::chunks(&[b"0123456789"]);
        let polled = body.polled.clone();
        let req = Request::post("/")
            .header("content-length", "10")
            .body(body)
            .unwrap();
        let buffered = buffer_request(req, 4).await.unwrap();
        assert!(!buffered.body().is_replayable());
        assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(
            buffered.into_body().collect().await.unwrap().to_bytes(),
            "0123456789"
        );
        // A malformed Content-Length is not trusted either way: the body is read.
        let req = Request::post("/")
            .header("content-length", "-3")
            .body(Script::chunks(&[b"ab"]))
            .unwrap();
        assert!(buffer_request(req, 4).await.unwrap().body().is_replayable());
    }

    #[tokio::test]
    async fn a_body_error_while_buffering_is_returned() {
        let body = Script::chunks(&[b"ab"]).then(Err("reset".into()));
        let err = buffer_request(Request::new(body), 16).await.unwrap_err();
        assert_eq!(err.to_string(), "reset");
    }
}
