//! Endpoint discovery for Palisade's load balancer: the endpoints a client balances over come
//! from DNS, not a constant.
//!
//! Finagle and linkerd resolve names through DNS; Envoy's `STRICT_DNS` clusters re-resolve on
//! TTL. A [`DnsDiscovery`] follows the A/AAAA records of a host, or the SRV records of a
//! service (targets, ports and weights), re-resolves when the TTL runs out (with jitter), and
//! applies each change to a [`Balancer`](palisade_load_balancer::Balancer) with its
//! `insert`/`remove` (so SRV weights reach the balancer's `EndpointMeta`, which a plain tower
//! `Discover` stream cannot carry), or yields them as a tower `Discover` stream
//! ([`DnsDiscovery::discover`], for `Balancer::follow` or tower's `Balance`). Changes are
//! [`DiscoveryEvent::EndpointAdded`] and [`DiscoveryEvent::EndpointRemoved`] events here, and
//! the balancer's own `BalancerEvent::EndpointAdded`/`EndpointRemoved`.
//!
//! **A resolver error never empties the balancer**: a failing lookup, an empty answer or an
//! answer of only unusable records keeps the last good set, reports a
//! [`DiscoveryEvent::ResolveFailed`], and is retried with exponential backoff.
//!
//! ```no_run
//! use palisade_discovery::DnsDiscovery;
//! use palisade_load_balancer::Balancer;
//! use std::net::SocketAddr;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::ConfigError> {
//! # #[derive(Clone)] struct Client(SocketAddr);
//! let balancer: Balancer<SocketAddr, Client> = Balancer::builder().build()?;
//! let discovery = DnsDiscovery::builder().srv("_http._tcp.backend.example.com.").build()?;
//! tokio::spawn(discovery.clone().run(balancer.clone(), Client));
//! # Ok(())
//! # }
//! ```
//!
//! The DNS client is `hickory-resolver` (tokio, no TLS features: ~80 s of a cold build on 2
//! cores together with the test server). Its cache is off: discovery schedules its own lookups
//! on the TTL.
//!
//! Not yet here: etcd discovery (prefix watch, lease-based registration). `etcd-client`
//! needs `protoc` at build time and adds ~1 min 40 s to a cold debug build on 2 cores (more
//! with CI's release loom build), so it waits for a decision on CI time.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod dns_discovery;
mod events;
mod records;

pub use dns_discovery::{DnsDiscover, DnsDiscovery, DnsDiscoveryBuilder, DnsSnapshot};
pub use events::DiscoveryEvent;
pub use records::Endpoint;
