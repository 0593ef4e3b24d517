//! Which requests may be sent twice: RFC 9110 §9.2.2 idempotent methods by default, with
//! overrides per route and per predicate.
//!
//! A retry sends a request again; for a `POST` that created an order the second attempt
//! creates a second order. RFC 9110 calls `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE`
//! idempotent: sending them twice has the effect of sending them once. [`Idempotency`]
//! accepts those, and lets you say otherwise for a route (`POST /search` is a read) or by a
//! predicate of your own; rules are checked in the order they were added, the first that
//! matches decides, the method decides when none does.
//!
//! Hand it to the retry layer with `clone_requests_with` (the copy is made only when another
//! attempt may follow):
//!
//! ```
//! use http::{Method, Request};
//! use palisade_http::Idempotency;
//!
//! let idempotency = Idempotency::rfc9110()
//!     .route(Method::POST, "/search", true)      // a read, despite its method
//!     .route(Method::DELETE, "/admin/", false)    // never repeat these
//!     .idempotency_key_header("idempotency-key"); // a POST with a key may be repeated
//!
//! let get = Request::get("/items/7").body(()).unwrap();
//! let post = Request::post("/orders").body(()).unwrap();
//! let search = Request::post("/search?q=shoes").body(()).unwrap();
//! let keyed = Request::post("/orders").header("idempotency-key", "a1").body(()).unwrap();
//! assert!(idempotency.allows(&get));
//! assert!(!idempotency.allows(&post));
//! assert!(idempotency.allows(&search));
//! assert!(idempotency.allows(&keyed));
//!
//! // With palisade-retry:
//! // RetryPolicy::builder().clone_requests_with(move |req| idempotency.clone_request(req))
//! let copy = idempotency.clone_request(&get).expect("GET is retried");
//! assert_eq!(copy.uri(), "/items/7");
//! assert!(idempotency.clone_request(&post).is_none());
//! ```

use crate::body::BufferedBody;
use http::{HeaderMap, HeaderName, Method, Request, Uri};
use std::fmt;
use std::sync::Arc;

/// `true` for the methods RFC 9110 §9.2.2 calls idempotent: `GET`, `HEAD`, `OPTIONS`, `TRACE`,
/// `PUT`, `DELETE`.
#[must_use]
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

type Predicate = dyn Fn(&Method, &Uri, &HeaderMap) -> Option<bool> + Send + Sync;

#[derive(Clone)]
enum Rule {
    Route {
        method: Method,
        prefix: Arc<str>,
        retry: bool,
    },
    Header(HeaderName),
    Predicate(Arc<Predicate>),
}

/// A request predicate: may this request be sent again? See the [module docs](self).
///
/// `Clone` (the rules are shared), `Send + Sync`.
#[derive(Clone, Default)]
pub struct Idempotency {
    rules: Vec<Rule>,
}

impl Idempotency {
    /// RFC 9110's idempotent methods, no overrides.
    #[must_use]
    pub fn rfc9110() -> Idempotency {
        Idempotency { rules: Vec::new() }
    }

    /// Requests with `method` whose path starts with `path_prefix` are retried (`retry: true`)
    /// or not, whatever the method says.
    #[must_use]
    pub fn route(mut self, method: Method, path_prefix: &str, retry: bool) -> Idempotency {
        self.rules.push(Rule::Route {
            method,
            prefix: Arc::from(path_prefix),
            retry,
        });
        self
    }

    /// A request carrying header `name` (e.g. `idempotency-key`, IETF draft
    /// "The Idempotency-Key HTTP Header Field") is retried, whatever its method: the server
    /// deduplicates it. A `name` that is not a valid header name adds no rule.
    #[must_use]
    pub fn idempotency_key_header(mut self, name: &str) -> Idempotency {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            self.rules.push(Rule::Header(name));
        }
        self
    }

    /// Your own rule: `Some(retry)` decides, `None` passes to the next rule.
    #[must_use]
    pub fn predicate(
        mut self,
        rule: impl Fn(&Method, &Uri, &HeaderMap) -> Option<bool> + Send + Sync + 'static,
    ) -> Idempotency {
        self.rules.push(Rule::Predicate(Arc::new(rule)));
        self
    }

    /// Whether `request` may be sent again.
    #[must_use]
    pub fn allows<B>(&self, request: &Request<B>) -> bool {
        self.allows_parts(request.method(), request.uri(), request.headers())
    }

    /// Whether a request with this method, URI and headers may be sent again.
    #[must_use]
    pub fn allows_parts(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        for rule in &self.rules {
            let decided = match rule {
                Rule::Route {
                    method: m,
                    prefix,
                    retry,
                } => (m == method && uri.path().starts_with(&**prefix)).then_some(*retry),
                Rule::Header(name) => headers.contains_key(name).then_some(true),
                Rule::Predicate(rule) => rule(method, uri, headers),
            };
            if let Some(decided) = decided {
                return decided;
            }
        }
        is_idempotent(method)
    }

    /// A copy of `request` for another attempt when it may be sent again (and its body is
    /// `Clone`), else `None`: the shape `palisade-retry`'s `clone_requests_with` takes.
    #[must_use]
    pub fn clone_request<B: Clone>(&self, request: &Request<B>) -> Option<Request<B>> {
        self.allows(request)
            .then(|| copy_request(request, request.body().clone()))
    }

    /// As [`clone_request`](Self::clone_request) for a [`BufferedBody`]: `None` also when the
    /// body was larger than its buffer limit (it cannot be replayed).
    #[must_use]
    pub fn clone_buffered<B>(
        &self,
        request: &Request<BufferedBody<B>>,
    ) -> Option<Request<BufferedBody<B>>> {
        if !self.allows(request) {
            return None;
        }
        let body = request.body().try_clone()?;
        Some(copy_request(request, body))
    }
}

/// A copy of `request`'s head (method, URI, version, headers, extensions) with `body`.
pub(crate) fn copy_request<B, B2>(request: &Request<B>, body: B2) -> Request<B2> {
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for rule in &self.rules {
            match rule {
                Rule::Route {
                    method,
                    prefix,
                    retry,
                } => list.entry(&format_args!("{method} {prefix}* -> {retry}")),
                Rule::Header(name) => list.entry(&format_args!("header {name} -> true")),
                Rule::Predicate(_) => list.entry(&format_args!("predicate")),
            };
        }
        list.entry(&format_args!("RFC 9110 methods"));
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn rfc9110_methods() {
        let i = Idempotency::rfc9110();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(i.allows(&req(m.clone(), "/")), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!i.allows(&req(m.clone(), "/")), "{m}");
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert!(!i.allows(&req(custom, "/")));
    }

    #[test]
    fn first_matching_rule_decides() {
        let i = Idempotency::rfc9110()
            .route(Method::GET, "/pay/", false)
            .route(Method::GET, "/", true)
            .predicate(|m, _, _| (m == Method::PATCH).then_some(true))
            .idempotency_key_header("not a header\n");
        assert!(!i.allows(&req(Method::GET, "/pay/now")));
        assert!(i.allows(&req(Method::GET, "/pay")));
        assert!(i.allows(&req(Method::PATCH, "/x")));
        assert!(!i.allows(&req(Method::POST, "/x")));
        assert!(format!("{i:?}").contains("GET /pay/* -> false"));
    }

    #[test]
    fn copies_keep_the_head() {
        let i = Idempotency::rfc9110();
        let mut original = Request::builder()
            .method(Method::PUT)
            .uri("http://h/a?b=1")
            .version(http::Version::HTTP_2)
            .header("x-id", "7")
            .body(String::from("payload"))
            .unwrap();
        original.extensions_mut().insert(5u32);
        let copy = i.clone_request(&original).unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), "http://h/a?b=1");
        assert_eq!(copy.version(), http::Version::HTTP_2);
        assert_eq!(copy.headers()["x-id"], "7");
        assert_eq!(copy.extensions().get::<u32>(), Some(&5));
        assert_eq!(copy.body(), "payload");
    }
}
