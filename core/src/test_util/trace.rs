//! A `tracing` subscriber that keeps every event for a test (features `test-util` and
//! `tracing`).
//!
//! [`TraceCapture`] records each event's level, target and fields, each field's value as text
//! (a `&str` as it is, anything else by its `Debug`; the `message` field is the formatted
//! message), so a test can check that a layer traces at the right level, under the `palisade`
//! target, with structured fields rather than one `Debug` string. Spans are accepted and
//! ignored.
//!
//! # Example
//!
//! ```
//! use palisade_core::test_util::TraceCapture;
//! use tracing::Level;
//!
//! let capture = TraceCapture::new();
//! tracing::subscriber::with_default(capture.clone(), || {
//!     tracing::info!(target: "palisade", layer = "demo", from = 1, "limit changed");
//! });
//! let events = capture.events();
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].level, Level::INFO);
//! assert_eq!(events[0].target, "palisade");
//! assert_eq!(events[0].field("layer"), Some("demo"));
//! assert_eq!(events[0].field("from"), Some("1"));
//! assert_eq!(events[0].message(), Some("limit changed"));
//! ```

use ::tracing::field::{Field, Visit};
use ::tracing::span::{Attributes, Id, Record};
use ::tracing::{Event, Level, Metadata, Subscriber};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One event as [`TraceCapture`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedEvent {
    /// Its level.
    pub level: Level,
    /// Its target (`palisade` for every Palisade event).
    pub target: String,
    /// Its fields by name, the values as text; the formatted message under `message`.
    pub fields: BTreeMap<String, String>,
}

impl CapturedEvent {
    /// The value of a field, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The formatted message, if the event has one.
    pub fn message(&self) -> Option<&str> {
        self.field("message")
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A `tracing` subscriber that keeps every event; clones share the record.
///
/// Install it with `tracing::subscriber::with_default(capture.clone(), || …)` and read
/// [`events`](Self::events) afterwards.
#[derive(Clone, Default)]
pub struct TraceCapture {
    events: Arc<Mutex<Vec<CapturedEvent>>>,
}

impl fmt::Debug for TraceCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceCapture")
            .field("events", &self.events.lock().len())
            .finish()
    }
}

impl TraceCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event seen so far, in order.
    pub fn events(&self) -> Vec<CapturedEvent> {
        self.events.lock().clone()
    }
}

impl Subscriber for TraceCapture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let meta = event.metadata();
        self.events.lock().push(CapturedEvent {
            level: *meta.level(),
            target: meta.target().to_owned(),
            fields: fields.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn events_keep_level_target_and_fields_in_order_and_spans_are_ignored() {
        let capture = TraceCapture::new();
        ::tracing::subscriber::with_default(capture.clone(), || {
            let span = ::tracing::info_span!("outer", id = 3);
            let _entered = span.enter();
            ::tracing::trace!(target: "palisade", event = "call", outcome = "success", n = 2u64);
            ::tracing::warn!(target: "elsewhere", ok = true, "opened {}", "now");
        });
        let events = capture.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].level, Level::TRACE);
        assert_eq!(events[0].target, "palisade");
        assert_eq!(events[0].field("event"), Some("call"));
        assert_eq!(events[0].field("outcome"), Some("success"));
        assert_eq!(events[0].field("n"), Some("2"));
        assert_eq!(events[0].message(), None);
        assert_eq!(events[1].level, Level::WARN);
        assert_eq!(events[1].target, "elsewhere");
        assert_eq!(events[1].field("ok"), Some("true"));
        assert_eq!(events[1].message(), Some("opened now"));
        assert_eq!(
            events[1].field("id"),
            None,
            "span fields are not event fields"
        );
    }
}
