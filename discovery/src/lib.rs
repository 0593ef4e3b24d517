//! Endpoint discovery for Palisade's load balancer: the endpoints a client balances over come
//! from DNS or etcd, not a constant.
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
//! # etcd (feature `etcd`)
//!
//! An `EtcdDiscovery` follows the keys under a prefix (each value `10.0.0.7:8080`, or
//! `{"addr": "10.0.0.7:8080", "weight": 3}`): one listing with its revision, then a watch from
//! revision + 1 (no polling); on a lost connection it keeps the set, reconnects with backoff
//! and resumes from the last revision it saw (re-listing and diffing if etcd compacted it
//! away). A value that is not an endpoint is a [`DiscoveryEvent::InvalidValue`] and is
//! skipped. `run` applies changes to a balancer with their weights; `discover` is a tower
//! `Discover` stream. `EtcdRegistration` is the serving side: a key under a lease with a TTL, kept
//! alive by a task, revoked on shutdown or drop.
//!
//! ```no_run
//! # #[cfg(feature = "etcd")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use palisade_discovery::{Endpoint, EtcdDiscovery, EtcdRegistration};
//! use palisade_load_balancer::Balancer;
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! # #[derive(Clone)] struct Client(SocketAddr);
//! // The serving side.
//! let me = Endpoint { addr: "10.0.0.7:8080".parse()?, weight: 1 };
//! let _registration = EtcdRegistration::register(
//!     &["http://127.0.0.1:2379"], "/services/backend/a", me, Duration::from_secs(10),
//! ).await?;
//! // The calling side.
//! let balancer: Balancer<SocketAddr, Client> = Balancer::builder().build()?;
//! let discovery = EtcdDiscovery::builder()
//!     .endpoint("http://127.0.0.1:2379")
//!     .prefix("/services/backend/")
//!     .build()?;
//! tokio::spawn(discovery.clone().run(balancer.clone(), Client));
//! # Ok(())
//! # }
//! ```
//!
//! The client is `etcd-client` (tonic/prost gRPC): the maintained async etcd v3 client, with
//! watch streams and lease keep-alive. Its build script runs `protoc` (Debian:
//! `protobuf-compiler`), which is why the feature is off by default.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod apply;
mod dns_discovery;
#[cfg(feature = "etcd")]
mod etcd_discovery;
#[cfg(feature = "etcd")]
mod etcd_values;
mod events;
mod records;

pub use dns_discovery::{DnsDiscover, DnsDiscovery, DnsDiscoveryBuilder, DnsSnapshot};
// For this crate's integration tests, which write and compact keys directly (a dev-dependency
// on etcd-client would need `protoc` in every `cargo test`); not part of the API.
#[cfg(feature = "etcd")]
#[doc(hidden)]
pub use etcd_client;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use etcd_discovery::{
    EtcdDiscover, EtcdDiscovery, EtcdDiscoveryBuilder, EtcdError, EtcdRegistration, EtcdSnapshot,
};
pub use events::DiscoveryEvent;
pub use records::Endpoint;
