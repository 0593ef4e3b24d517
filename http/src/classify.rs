//! Classifiers for HTTP and gRPC responses: which answers count against a dependency's health.
//!
//! A resilience layer sees `Ok(response)` for every answer the server gave, a `503` included,
//! and `Err(error)` only when no answer came (a refused connection, a reset, a timeout) or a
//! Palisade layer below refused the call. [`HttpClassifier`] and [`GrpcClassifier`] turn both
//! into an [`Outcome`]:
//!
//! | result | [`HttpClassifier::new()`] | [`GrpcClassifier::new()`] |
//! | --- | --- | --- |
//! | 1xx, 2xx, 3xx | `Success` | by `grpc-status` (absent: by the HTTP status, gRPC's mapping) |
//! | 408, 429 | `Failure` | `UNAVAILABLE` (429) / `UNKNOWN` (408): `Failure` |
//! | other 4xx | `Ignore` (the caller's fault) | by the mapped code |
//! | 5xx | `Failure` | `UNAVAILABLE` (502–504) / `UNKNOWN`: `Failure` |
//! | 600–999 (no class, RFC 9110 §15) | `Failure` | `UNKNOWN`: `Failure` |
//! | `Err`: a Palisade local rejection | `Ignore` | `Ignore` |
//! | `Err`: anything else (transport, `tower::timeout::error::Elapsed`) | `Failure` | `Failure` |
//!
//! Both classifiers are `Copy`, work with any body type `B` and any `'static` error type (the
//! `BoxError` of a stack, or a client's own error when the classifier sits right above the
//! client), and implement [`Classify`] so every Palisade layer takes them.
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use palisade_core::{BoxError, Classify, Outcome};
//! use palisade_http::HttpClassifier;
//!
//! let classify = HttpClassifier::new();
//! let answer = |status: u16| Response::builder().status(status).body(()).unwrap();
//! let outcome = |status| Classify::<Response<()>, BoxError>::classify(&classify, Ok(&answer(status)));
//! assert_eq!(outcome(200), Outcome::Success);
//! assert_eq!(outcome(404), Outcome::Ignore);
//! assert_eq!(outcome(429), Outcome::Failure);
//! assert_eq!(outcome(503), Outcome::Failure);
//!
//! // 501 Not Implemented will not get better by retrying: not a failure of health.
//! let custom = HttpClassifier::new().without_failures(501..=501);
//! assert_eq!(
//!     Classify::<Response<()>, BoxError>::classify(&custom, Ok(&answer(501))),
//!     Outcome::Ignore
//! );
//! ```
//!
//! # gRPC trailers
//!
//! A classifier sees a response when its head arrives. A gRPC server that answers with a body
//! sends `grpc-status` in the *trailers*, after the body, which no classifier of the response
//! head can see: such a response is classified by its HTTP status (`200`: `Success`). Errors
//! without a body ("trailers-only" responses, which is how servers send most errors, e.g.
//! `UNAVAILABLE` from an overloaded server) carry `grpc-status` in the headers and are
//! classified by it. Where you read the trailers yourself (after collecting the body with
//! `http_body_util::BodyExt::collect`), classify them with [`GrpcClassifier::classify_status`].

use http::{HeaderMap, Response};
use palisade_core::classify::{Classify, Outcome, is_local_rejection_any};
use std::ops::RangeInclusive;

/// The lowest status code `http` accepts.
const MIN_STATUS: u16 = 100;
/// The highest status code `http` accepts.
const MAX_STATUS: u16 = 999;

/// A set of HTTP status codes (100–999) as a bitset: `Copy`, and a lookup is one shift.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusSet {
    bits: [u64; 16],
}

impl StatusSet {
    /// The empty set.
    #[must_use]
    pub const fn empty() -> StatusSet {
        StatusSet { bits: [0; 16] }
    }

    /// The set with every code in `range` added. Codes outside 100–999 are not HTTP status
    /// codes and are left out; an empty range adds nothing.
    #[must_use]
    pub const fn with(mut self, range: RangeInclusive<u16>) -> StatusSet {
        let (mut code, end) = clamp(range);
        while code <= end {
            self.bits[(code / 64) as usize] |= 1 << (code % 64);
            code += 1;
        }
        self
    }

    /// The set with every code in `range` removed (codes outside 100–999 are ignored).
    #[must_use]
    pub const fn without(mut self, range: RangeInclusive<u16>) -> StatusSet {
        let (mut code, end) = clamp(range);
        while code <= end {
            self.bits[(code / 64) as usize] &= !(1 << (code % 64));
            code += 1;
        }
        self
    }

    /// Whether `code` is in the set.
    #[inline]
    #[must_use]
    pub const fn contains(&self, code: u16) -> bool {
        code <= MAX_STATUS && self.bits[(code / 64) as usize] & (1 << (code % 64)) != 0
    }
}

/// `range` cut to 100–999, as `(first, last)`; `first > last` when nothing is left.
const fn clamp(range: RangeInclusive<u16>) -> (u16, u16) {
    let start = *range.start();
    let end = *range.end();
    let start = if start < MIN_STATUS {
        MIN_STATUS
    } else {
        start
    };
    let end = if end > MAX_STATUS { MAX_STATUS } else { end };
    if start > end { (1, 0) } else { (start, end) }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ranges, not 900 booleans: `{408, 429, 500..=999}`.
        let mut set = f.debug_set();
        let mut code = MIN_STATUS;
        while code <= MAX_STATUS {
            if self.contains(code) {
                let start = code;
                while code < MAX_STATUS && self.contains(code + 1) {
                    code += 1;
                }
                if start == code {
                    set.entry(&start);
                } else {
                    set.entry(&(start..=code));
                }
            }
            code += 1;
        }
        set.finish()
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet::empty()
    }
}

/// Classifies `http::Response<B>` by status code; see the [module docs](self) for the table.
///
/// Defaults (Envoy's `retry_on: 5xx,retriable-4xx` and tower-http's `ServerErrorsAsFailures`
/// plus the two 4xx codes that say "not now" rather than "not this"): 408 Request Timeout, 429
/// Too Many Requests and every code from 500 up are failures; other 4xx are ignored (the
/// request was wrong, the dependency is fine); everything else is a success. A Palisade local
/// rejection from a layer below is ignored, every other error is a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HttpClassifier {
    failures: StatusSet,
}

impl HttpClassifier {
    /// The default failure codes: 408, 429, 500–999.
    pub const DEFAULT_FAILURES: StatusSet = StatusSet::empty()
        .with(408..=408)
        .with(429..=429)
        .with(500..=999);

    /// The default classifier: 408, 429 and 5xx (and the classless 600–999) are failures.
    #[must_use]
    pub const fn new() -> HttpClassifier {
        HttpClassifier {
            failures: Self::DEFAULT_FAILURES,
        }
    }

    /// A classifier whose failures are exactly `failures`.
    #[must_use]
    pub const fn with_failure_set(failures: StatusSet) -> HttpClassifier {
        HttpClassifier { failures }
    }

    /// Adds the codes in `range` to the failures (e.g. `409..=409` for a backend that answers
    /// 409 when it is overloaded).
    #[must_use]
    pub const fn with_failures(self, range: RangeInclusive<u16>) -> HttpClassifier {
        HttpClassifier {
            failures: self.failures.with(range),
        }
    }

    /// Removes the codes in `range` from the failures (e.g. `501..=501`); a removed 5xx is then
    /// ignored, like a 4xx.
    #[must_use]
    pub const fn without_failures(self, range: RangeInclusive<u16>) -> HttpClassifier {
        HttpClassifier {
            failures: self.failures.without(range),
        }
    }

    /// The failure codes.
    #[must_use]
    pub const fn failures(&self) -> StatusSet {
        self.failures
    }

    /// The outcome of an answer with status `code`.
    #[inline]
    #[must_use]
    pub const fn classify_status(&self, code: u16) -> Outcome {
        if self.failures.contains(code) {
            Outcome::Failure
        } else if code >= 400 {
            Outcome::Ignore
        } else {
            Outcome::Success
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        HttpClassifier::new()
    }
}

impl<B, E: 'static> Classify<Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status().as_u16()),
            Err(err) if is_local_rejection_any(err) => Outcome::Ignore,
            Err(_) => Outcome::Failure,
        }
    }
}

/// A gRPC status code (`grpc-status`), 0–16, with the names of the gRPC spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcCode(pub u32);

#[allow(missing_docs)] // reason: the names are gRPC's own, documented by the gRPC spec
impl GrpcCode {
    pub const OK: GrpcCode = GrpcCode(0);
    pub const CANCELLED: GrpcCode = GrpcCode(1);
    pub const UNKNOWN: GrpcCode = GrpcCode(2);
    pub const INVALID_ARGUMENT: GrpcCode = GrpcCode(3);
    pub const DEADLINE_EXCEEDED: GrpcCode = GrpcCode(4);
    pub const NOT_FOUND: GrpcCode = GrpcCode(5);
    pub const ALREADY_EXISTS: GrpcCode = GrpcCode(6);
    pub const PERMISSION_DENIED: GrpcCode = GrpcCode(7);
    pub const RESOURCE_EXHAUSTED: GrpcCode = GrpcCode(8);
    pub const FAILED_PRECONDITION: GrpcCode = GrpcCode(9);
    pub const ABORTED: GrpcCode = GrpcCode(10);
    pub const OUT_OF_RANGE: GrpcCode = GrpcCode(11);
    pub const UNIMPLEMENTED: GrpcCode = GrpcCode(12);
    pub const INTERNAL: GrpcCode = GrpcCode(13);
    pub const UNAVAILABLE: GrpcCode = GrpcCode(14);
    pub const DATA_LOSS: GrpcCode = GrpcCode(15);
    pub const UNAUTHENTICATED: GrpcCode = GrpcCode(16);
}

impl GrpcCode {
    /// The code of a `grpc-status` value: a decimal number; a malformed value, or a number
    /// above 16, is `UNKNOWN` (gRPC: "unknown codes are treated as UNKNOWN").
    #[must_use]
    pub fn parse(value: &[u8]) -> GrpcCode {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 2 || !value.iter().all(u8::is_ascii_digit) {
            return GrpcCode::UNKNOWN;
        }
        let code = value
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        if code > 16 {
            GrpcCode::UNKNOWN
        } else {
            GrpcCode(code)
        }
    }

    /// The code gRPC assigns to a response without `grpc-status`, by its HTTP status (gRPC's
    /// "HTTP to gRPC status code mapping"; 200 without a status in the headers is `OK` here,
    /// since the real status may still come in the trailers).
    #[must_use]
    pub const fn from_http_status(status: u16) -> GrpcCode {
        match status {
            200 => GrpcCode::OK,
            400 => GrpcCode::INTERNAL,
            401 => GrpcCode::UNAUTHENTICATED,
            403 => GrpcCode::PERMISSION_DENIED,
            404 => GrpcCode::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => GrpcCode::UNAVAILABLE,
            _ => GrpcCode::UNKNOWN,
        }
    }
}

/// Classifies gRPC responses by `grpc-status` (headers), or by the HTTP status when there is
/// none; see the [module docs](self) for trailers.
///
/// Default failures, the codes that say the *server* is in trouble (the retryable set of the
/// gRPC retry design A6 — `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `ABORTED` —
/// plus `UNKNOWN`, `INTERNAL`, `DATA_LOSS`): 2, 4, 8, 10, 13, 14, 15. Codes that say the *request*
/// was wrong (`INVALID_ARGUMENT`, `NOT_FOUND`, `UNIMPLEMENTED`, `UNAUTHENTICATED`, …) and
/// `CANCELLED` are ignored; `OK` is a success. Errors: local rejections ignored, others failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrpcClassifier {
    /// Bit `n` set: code `n` is a failure.
    failures: u32,
}

impl GrpcClassifier {
    /// The default failure codes, as bits.
    const DEFAULT_FAILURES: u32 =
        (1 << 2) | (1 << 4) | (1 << 8) | (1 << 10) | (1 << 13) | (1 << 14) | (1 << 15);

    /// The default classifier (see the type's docs).
    #[must_use]
    pub const fn new() -> GrpcClassifier {
        GrpcClassifier {
            failures: Self::DEFAULT_FAILURES,
        }
    }

    /// Also counts `code` as a failure. A code above 16 is not a gRPC code and changes nothing.
    #[must_use]
    pub const fn with_failure(mut self, code: GrpcCode) -> GrpcClassifier {
        if code.0 <= 16 {
            self.failures |= 1 << code.0;
        }
        self
    }

    /// No longer counts `code` as a failure (it is then ignored, or a success for `OK`).
    #[must_use]
    pub const fn without_failure(mut self, code: GrpcCode) -> GrpcClassifier {
        if code.0 <= 16 {
            self.failures &= !(1 << code.0);
        }
        self
    }

    /// The outcome of an answer with `code`.
    #[inline]
    #[must_use]
    pub const fn classify_code(&self, code: GrpcCode) -> Outcome {
        if code.0 <= 16 && self.failures & (1 << code.0) != 0 {
            Outcome::Failure
        } else if code.0 == 0 {
            Outcome::Success
        } else if code.0 > 16 {
            // Not a gRPC code: treated as UNKNOWN.
            self.classify_code(GrpcCode::UNKNOWN)
        } else {
            Outcome::Ignore
        }
    }

    /// The outcome of a header map holding `grpc-status` (a trailers-only response's headers,
    /// or the trailers of a body you collected); `None` when there is no `grpc-status`.
    #[must_use]
    pub fn classify_status(&self, headers: &HeaderMap) -> Option<Outcome> {
        headers
            .get("grpc-status")
            .map(|value| self.classify_code(GrpcCode::parse(value.as_bytes())))
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        GrpcClassifier::new()
    }
}

impl<B, E: 'static> Classify<Response<B>, E> for GrpcClassifier {
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.headers()).unwrap_or_else(|| {
                self.classify_code(GrpcCode::from_http_status(response.status().as_u16()))
            }),
            Err(err) if is_local_rejection_any(err) => Outcome::Ignore,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::BoxError;
    use palisade_core::rejection::{Rejection, RejectionKind};

    fn answer(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    fn http(c: &HttpClassifier, status: u16) -> Outcome {
        Classify::<Response<()>, BoxError>::classify(c, Ok(&answer(status)))
    }

    #[test]
    fn default_http_table() {
        let c = HttpClassifier::new();
        for s in [100, 200, 204, 301, 304, 399] {
            assert_eq!(http(&c, s), Outcome::Success, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422, 499] {
            assert_eq!(http(&c, s), Outcome::Ignore, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(http(&c, s), Outcome::Failure, "{s}");
        }
    }

    #[test]
    fn unknown_status_codes_have_a_clear_outcome() {
        let c = HttpClassifier::new();
        // Unassigned codes of a known class follow the class (RFC 9110 §15).
        assert_eq!(http(&c, 299), Outcome::Success);
        assert_eq!(http(&c, 451), Outcome::Ignore);
        assert_eq!(http(&c, 555), Outcome::Failure);
        // Codes with no class at all: the server is broken.
        assert_eq!(http(&c, 600), Outcome::Failure);
        assert_eq!(http(&c, 999), Outcome::Failure);
        // Out-of-range codes in a configuration are ignored, never a panic or an overflow.
        let odd = HttpClassifier::new()
            .with_failures(0..=99)
            .with_failures(1000..=u16::MAX)
            .without_failures(600..=u16::MAX)
            .with_failures(RangeInclusive::new(500, 400));
        assert_eq!(http(&odd, 700), Outcome::Ignore);
        assert_eq!(http(&odd, 500), Outcome::Failure);
        assert!(!odd.failures().contains(u16::MAX));
        assert!(!odd.failures().contains(0));
    }

    #[test]
    fn ranges_are_configurable() {
        let c = HttpClassifier::new()
            .without_failures(501..=501)
            .with_failures(409..=409);
        assert_eq!(http(&c, 501), Outcome::Ignore);
        assert_eq!(http(&c, 409), Outcome::Failure);
        assert_eq!(http(&c, 500), Outcome::Failure);
        let only_503 = HttpClassifier::with_failure_set(StatusSet::empty().with(503..=503));
        assert_eq!(http(&only_503, 500), Outcome::Ignore);
        assert_eq!(http(&only_503, 503), Outcome::Failure);
        assert_eq!(
            format!("{:?}", HttpClassifier::DEFAULT_FAILURES),
            "{408, 429, 500..=999}"
        );
    }

    #[test]
    fn errors_fail_except_local_rejections() {
        let c = HttpClassifier::new();
        let transport: BoxError = "connection reset".into();
        let local: BoxError = Box::new(Rejection::new(RejectionKind::CircuitOpen));
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&transport)),
            Outcome::Failure
        );
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&local)),
            Outcome::Ignore
        );
        // A client's own error type works too (no BoxError needed).
        let io = std::io::Error::other("refused");
        assert_eq!(
            Classify::<Response<()>, std::io::Error>::classify(&c, Err(&io)),
            Outcome::Failure
        );
        let grpc = GrpcClassifier::new();
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&grpc, Err(&local)),
            Outcome::Ignore
        );
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&grpc, Err(&transport)),
            Outcome::Failure
        );
    }

    fn grpc_with(status: &str) -> Response<()> {
        Response::builder()
            .status(200)
            .header("grpc-status", status)
            .body(())
            .unwrap()
    }

    fn grpc(c: &GrpcClassifier, r: &Response<()>) -> Outcome {
        Classify::<Response<()>, BoxError>::classify(c, Ok(r))
    }

    #[test]
    fn grpc_status_from_headers() {
        let c = GrpcClassifier::new();
        assert_eq!(grpc(&c, &grpc_with("0")), Outcome::Success);
        for code in ["14", "8", "4", "10", "13", "2", "15"] {
            assert_eq!(grpc(&c, &grpc_with(code)), Outcome::Failure, "{code}");
        }
        for code in ["1", "3", "5", "6", "7", "9", "11", "12", "16"] {
            assert_eq!(grpc(&c, &grpc_with(code)), Outcome::Ignore, "{code}");
        }
        // Malformed or unknown codes are UNKNOWN: a failure.
        for code in [
            "",
            "abc",
            "-1",
            "17",
            "99",
            "123456789012345678901234567890",
            " 14x",
        ] {
            assert_eq!(grpc(&c, &grpc_with(code)), Outcome::Failure, "{code:?}");
        }
        assert_eq!(grpc(&c, &grpc_with(" 0 ")), Outcome::Success);
        let custom = c
            .without_failure(GrpcCode::ABORTED)
            .with_failure(GrpcCode::NOT_FOUND)
            .with_failure(GrpcCode(99));
        assert_eq!(grpc(&custom, &grpc_with("10")), Outcome::Ignore);
        assert_eq!(grpc(&custom, &grpc_with("5")), Outcome::Failure);
    }

    #[test]
    fn grpc_without_status_maps_the_http_status() {
        let c = GrpcClassifier::new();
        assert_eq!(grpc(&c, &answer(200)), Outcome::Success);
        assert_eq!(grpc(&c, &answer(503)), Outcome::Failure);
        assert_eq!(grpc(&c, &answer(429)), Outcome::Failure);
        assert_eq!(grpc(&c, &answer(404)), Outcome::Ignore); // UNIMPLEMENTED
        assert_eq!(grpc(&c, &answer(401)), Outcome::Ignore); // UNAUTHENTICATED
        assert_eq!(grpc(&c, &answer(418)), Outcome::Failure); // UNKNOWN
        // Trailers, read by the user.
        let mut trailers = HeaderMap::new();
        assert_eq!(c.classify_status(&trailers), None);
        trailers.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(c.classify_status(&trailers), Some(Outcome::Failure));
    }
}
