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
        }
    }
}
