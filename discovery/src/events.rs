//! Events of discovery.

use std::net::SocketAddr;

/// What a discovery did. Subscribe with `subscribe` on the handle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// An endpoint joined the set (or changed weight), and was inserted into the balancer.
    EndpointAdded {
        /// Its address.
        addr: SocketAddr,
        /// Its weight.
        weight: u32,
    },
    /// An endpoint left the set and was removed from the balancer (its calls in flight
    /// finish).
    EndpointRemoved {
        /// Its address.
        addr: SocketAddr,
    },
    /// A lookup failed or gave no usable endpoint; the last good set is kept.
    ResolveFailed {
        /// What went wrong.
        error: String,
        /// The endpoints kept.
        kept: usize,
    },
    /// A record of the answer was unusable and skipped (SRV target `.`, port 0, a target with
    /// no address).
    BadRecord {
        /// What is wrong with it.
        detail: String,
    },
    /// etcd discovery: a value under the prefix is not an endpoint and was skipped; the key
    /// keeps its last good endpoint (a new key is not added).
    InvalidValue {
        /// The key.
        key: String,
        /// What is wrong with the value.
        detail: String,
    },
    /// etcd discovery: connecting, listing or watching failed; the set is kept, and discovery
    /// reconnects with backoff and resumes from the last revision it saw.
    WatchFailed {
        /// What went wrong.
        error: String,
        /// The endpoints kept.
        kept: usize,
    },
    /// etcd discovery: the revision to resume from was compacted away; the prefix is listed
    /// again and the difference applied.
    WatchCompacted {
        /// The revision discovery asked to resume from.
        resume_revision: i64,
        /// The oldest revision etcd still has.
        compact_revision: i64,
    },
}

#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for DiscoveryEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match self {
            DiscoveryEvent::EndpointAdded { addr, weight } => tracing::info!(
                target: "palisade", layer, name, event = "endpoint_added", addr = %addr, weight
            ),
            DiscoveryEvent::EndpointRemoved { addr } => tracing::info!(
                target: "palisade", layer, name, event = "endpoint_removed", addr = %addr
            ),
            DiscoveryEvent::ResolveFailed { error, kept } => tracing::warn!(
                target: "palisade", layer, name, event = "resolve_failed", error = error.as_str(), kept
            ),
            DiscoveryEvent::BadRecord { detail } => tracing::warn!(
                target: "palisade", layer, name, event = "bad_record", detail = detail.as_str()
            ),
            DiscoveryEvent::InvalidValue { key, detail } => tracing::warn!(
                target: "palisade", layer, name, event = "invalid_value", key = key.as_str(),
                detail = detail.as_str()
            ),
            DiscoveryEvent::WatchFailed { error, kept } => tracing::warn!(
                target: "palisade", layer, name, event = "watch_failed", error = error.as_str(), kept
            ),
            DiscoveryEvent::WatchCompacted {
                resume_revision,
                compact_revision,
            } => tracing::info!(
                target: "palisade", layer, name, event = "watch_compacted", resume_revision,
                compact_revision
            ),
        }
    }
}
