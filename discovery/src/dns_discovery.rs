//! The DNS discovery handle.

use crate::apply;
use crate::events::DiscoveryEvent;
use crate::records::{self, Endpoint, Set, SrvRecord};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use palisade_core::events::{EventBus, ListenerId};
use palisade_core::{ConfigError, Listener};
use palisade_load_balancer::Balancer;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::discover::Change;

/// What to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Query {
    /// A and AAAA records of a host, all on one port.
    Host { name: String, port: u16 },
    /// SRV records (`_service._proto.name`), each naming a target host, port and weight.
    Srv { name: String },
}

/// Follows a DNS name and keeps a [`Balancer`]'s endpoint set equal to its answer.
///
/// A and AAAA records ([`DnsDiscoveryBuilder::host`]) give endpoints of weight 1 on one port;
/// SRV records ([`DnsDiscoveryBuilder::srv`]) give each target's addresses with the record's
/// port and weight (at least 1), using only the best priority (RFC 2782: the others are
/// fallbacks). The name is resolved again when the answer's TTL runs out (clamped to
/// `[min_refresh, max_refresh]`, less up to 10 % jitter so replicas spread out).
///
/// **The last good set is kept**: a failing lookup (timeout, SERVFAIL, NXDOMAIN), an empty
/// answer or an answer of only unusable records (SRV target `.`, port 0) changes nothing; it
/// is reported as a [`DiscoveryEvent`] and retried with exponential backoff. The balancer never
/// drops to zero endpoints because of the resolver.
///
/// A handle: `Clone`, `subscribe`/`unsubscribe`, [`snapshot`](Self::snapshot).
#[derive(Clone)]
pub struct DnsDiscovery {
    inner: Arc<Inner>,
}

struct Inner {
    query: Query,
    resolver: TokioResolver,
    min_refresh: Duration,
    max_refresh: Duration,
    jitter: f64,
    events: EventBus<DiscoveryEvent>,
    state: Mutex<State>,
}

struct State {
    current: Set,
    /// Draws the jitter; seeded.
    rng: rand::rngs::SmallRng,
    resolutions: u64,
    failures: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
}

/// The outcome of one lookup.
struct Update {
    insert: Vec<Endpoint>,
    remove: Vec<SocketAddr>,
    wait: Duration,
}

/// A point-in-time view of a [`DnsDiscovery`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsSnapshot {
    /// The last good set.
    pub endpoints: Vec<Endpoint>,
    /// Lookups that gave a usable answer.
    pub resolutions: u64,
    /// Lookups that failed or gave nothing usable (the set was kept).
    pub failures: u64,
    /// The last failure's description.
    pub last_error: Option<String>,
}

impl fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("query", &self.inner.query)
            .field("min_refresh", &self.inner.min_refresh)
            .field("max_refresh", &self.inner.max_refresh)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DnsDiscovery`].
#[derive(Clone, Debug)]
pub struct DnsDiscoveryBuilder {
    query: Option<Query>,
    nameservers: Vec<SocketAddr>,
    min_refresh: Duration,
    max_refresh: Duration,
    lookup_timeout: Duration,
    seed: Option<u64>,
}

impl Default for DnsDiscoveryBuilder {
    fn default() -> Self {
        DnsDiscoveryBuilder {
            query: None,
            nameservers: Vec::new(),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(300),
            lookup_timeout: Duration::from_secs(2),
            seed: None,
        }
    }
}

impl DnsDiscoveryBuilder {
    /// Follow the A and AAAA records of `name`, every address on `port`.
    #[must_use]
    pub fn host(mut self, name: impl Into<String>, port: u16) -> Self {
        self.query = Some(Query::Host {
            name: name.into(),
            port,
        });
        self
    }

    /// Follow the SRV records of `name` (e.g. `_http._tcp.backend.example.com.`).
    #[must_use]
    pub fn srv(mut self, name: impl Into<String>) -> Self {
        self.query = Some(Query::Srv { name: name.into() });
        self
    }

    /// Ask this name server (UDP, then TCP for truncated answers); may be given several
    /// times. Default: the system's (`/etc/resolv.conf`).
    #[must_use]
    pub fn nameserver(mut self, addr: SocketAddr) -> Self {
        self.nameservers.push(addr);
        self
    }

    /// The shortest and longest time between lookups whatever the TTL says (defaults 1 s and
    /// 300 s); also the first and the largest retry delay after failures.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }

    /// How long one lookup may take (default 2 s).
    #[must_use]
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// Seeds the jitter (tests); default a random seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `query` (neither `host` nor `srv` given, or an
    /// empty name), `refresh_bounds` (zero or `min > max`), `lookup_timeout` (zero),
    /// `nameserver` (the system configuration could not be read).
    pub fn build(self) -> Result<DnsDiscovery, ConfigError> {
        let query = self
            .query
            .ok_or_else(|| ConfigError::new("query", "call host() or srv()"))?;
        let (Query::Host { name, .. } | Query::Srv { name }) = &query;
        if name.is_empty() {
            return Err(ConfigError::new("query", "the name is empty"));
        }
        if self.min_refresh.is_zero() || self.min_refresh > self.max_refresh {
            return Err(ConfigError::new("refresh_bounds", "needs 0 < min <= max"));
        }
        if self.lookup_timeout.is_zero() {
            return Err(ConfigError::new("lookup_timeout", "must be above zero"));
        }
        let provider = TokioRuntimeProvider::default();
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| {
                ConfigError::new("nameserver", format!("no system DNS configuration: {e}"))
            })?
        } else {
            let servers = self
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = self.lookup_timeout;
        opts.attempts = 1;
        // Discovery schedules its own lookups on the TTL; a cache would only serve it stale
        // answers in between.
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| ConfigError::new("nameserver", format!("resolver: {e}")))?;
        let seed = self.seed.unwrap_or_else(palisade_core::rng::random_seed);
        let events = EventBus::<DiscoveryEvent>::new();
        #[cfg(feature = "tracing")]
        events.subscribe(palisade_core::events::TracingListener::new(
            "discovery",
            name.as_str(),
        ));
        Ok(DnsDiscovery {
            inner: Arc::new(Inner {
                query,
                resolver,
                min_refresh: self.min_refresh,
                max_refresh: self.max_refresh,
                jitter: 0.1,
                events,
                state: Mutex::new(State {
                    current: Set::new(),
                    rng: rand::rngs::SmallRng::seed_from_u64(seed),
                    resolutions: 0,
                    failures: 0,
                    consecutive_failures: 0,
                    last_error: None,
                }),
            }),
        })
    }
}

/// A lookup that gave nothing usable.
#[derive(Debug)]
struct Failure(String);

impl DnsDiscovery {
    /// Starts a builder.
    #[must_use]
    pub fn builder() -> DnsDiscoveryBuilder {
        DnsDiscoveryBuilder::default()
    }

    /// Looks the name up once: the endpoints and the TTL to wait before the next lookup.
    async fn lookup(&self) -> Result<(Set, Duration), Failure> {
        let inner = &*self.inner;
        match &inner.query {
            Query::Host { name, port } => {
                let ips = inner
                    .resolver
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(|e| Failure(format!("{name}: {e}")))?;
                let ttl = ips
                    .as_lookup()
                    .answers()
                    .iter()
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(0);
                let set: Set = ips
                    .iter()
                    .map(|ip| (SocketAddr::new(ip, *port), 1))
                    .collect();
                Ok((set, Duration::from_secs(u64::from(ttl))))
            }
            Query::Srv { name } => {
                let lookup = inner
                    .resolver
                    .lookup(name.as_str(), RecordType::SRV)
                    .await
                    .map_err(|e| Failure(format!("{name}: {e}")))?;
                let mut ttl = u32::MAX;
                let mut records = Vec::new();
                for record in lookup.answers() {
                    if let RData::SRV(srv) = &record.data {
                        ttl = ttl.min(record.ttl);
                        records.push(SrvRecord {
                            priority: srv.priority,
                            weight: srv.weight,
                            port: srv.port,
                            target: (!srv.target.is_root()).then(|| srv.target.to_string()),
                        });
                    }
                }
                let (usable, problems) = records::usable_srv(&records);
                for detail in problems {
                    inner
                        .events
                        .emit_with(|| DiscoveryEvent::BadRecord { detail });
                }
                let mut set = Set::new();
                for record in usable {
                    let Some(target) = &record.target else {
                        continue;
                    };
                    match inner.resolver.lookup_ip(target.as_str()).await {
                        Ok(ips) => {
                            for r in ips.as_lookup().answers() {
                                ttl = ttl.min(r.ttl);
                            }
                            for ip in ips.iter() {
                                let weight = u32::from(record.weight.max(1));
                                set.insert(SocketAddr::new(ip, record.port), weight);
                            }
                        }
                        Err(e) => {
                            let detail = format!("SRV target {target}: {e}");
                            inner
                                .events
                                .emit_with(|| DiscoveryEvent::BadRecord { detail });
                        }
                    }
                }
                let ttl = if ttl == u32::MAX { 0 } else { ttl };
                Ok((set, Duration::from_secs(u64::from(ttl))))
            }
        }
    }

    /// Looks the name up once and works out the changes to the last good set (which it then
    /// becomes), emitting the events; a failure or an empty answer changes nothing.
    async fn update(&self) -> Update {
        let inner = &*self.inner;
        let draw: f64 = inner.state.lock().rng.random();
        let outcome = match self.lookup().await {
            Ok((set, _)) if set.is_empty() => {
                Err(Failure("the answer has no usable endpoint".to_owned()))
            }
            other => other,
        };
        match outcome {
            Ok((set, ttl)) => {
                let (insert, remove) = {
                    let mut state = inner.state.lock();
                    let changes = records::diff(&state.current, &set);
                    state.current = set;
                    state.resolutions += 1;
                    state.consecutive_failures = 0;
                    changes
                };
                for endpoint in &insert {
                    inner.events.emit_with(|| DiscoveryEvent::EndpointAdded {
                        addr: endpoint.addr,
                        weight: endpoint.weight,
                    });
                }
                for &addr in &remove {
                    inner
                        .events
                        .emit_with(|| DiscoveryEvent::EndpointRemoved { addr });
                }
                let wait = records::refresh_after(
                    ttl,
                    inner.min_refresh,
                    inner.max_refresh,
                    inner.jitter,
                    draw,
                );
                Update {
                    insert,
                    remove,
                    wait,
                }
            }
            Err(Failure(error)) => {
                let (kept, in_a_row) = {
                    let mut state = inner.state.lock();
                    state.failures += 1;
                    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                    state.last_error = Some(error.clone());
                    (state.current.len(), state.consecutive_failures)
                };
                inner
                    .events
                    .emit_with(|| DiscoveryEvent::ResolveFailed { error, kept });
                let wait = records::retry_after(
                    in_a_row.min(16),
                    inner.min_refresh,
                    inner.max_refresh,
                    inner.jitter,
                    draw,
                );
                Update {
                    insert: Vec::new(),
                    remove: Vec::new(),
                    wait,
                }
            }
        }
    }

    /// Looks the name up once and applies the answer to `balancer` (endpoints made by `make`,
    /// with the SRV weight), keeping the last good set on a failure or an empty answer.
    /// Returns how long to wait before the next lookup (the TTL, or the retry backoff, which
    /// grows with the failures in a row and resets on a good answer).
    pub async fn refresh<S, F>(&self, balancer: &Balancer<SocketAddr, S>, make: &mut F) -> Duration
    where
        S: Clone + Send + Sync + 'static,
        F: FnMut(SocketAddr) -> S,
    {
        let update = self.update().await;
        apply::to_balancer(balancer, make, update.insert, update.remove);
        update.wait
    }

    /// The changes as a tower [`Discover`](tower::discover::Discover) stream (for
    /// `Balancer::follow` or tower's own `Balance`): `Change::Insert` with a service made by
    /// `make`, `Change::Remove`, resolving again on the TTL. A plain `Discover` carries no
    /// weights; [`run`](Self::run) passes SRV weights to a Palisade balancer.
    pub fn discover<S, F>(self, make: F) -> DnsDiscover<S, F>
    where
        F: FnMut(SocketAddr) -> S + Unpin,
    {
        DnsDiscover {
            discovery: self,
            make,
            queue: VecDeque::new(),
            next: None,
            sleep: None,
        }
    }

    /// Keeps `balancer`'s endpoints equal to the name's answer, for ever: resolve, apply,
    /// wait for the TTL (or the retry backoff), again. Spawn it beside the traffic:
    /// `tokio::spawn(discovery.clone().run(balancer.clone(), |addr| connect(addr)))`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future (aborting the task) stops following; the balancer keeps the set it
    /// has.
    pub async fn run<S, F>(self, balancer: Balancer<SocketAddr, S>, mut make: F)
    where
        S: Clone + Send + Sync + 'static,
        F: FnMut(SocketAddr) -> S,
    {
        loop {
            let wait = self.refresh(&balancer, &mut make).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// The last good set and the counters.
    #[must_use]
    pub fn snapshot(&self) -> DnsSnapshot {
        let state = self.inner.state.lock();
        DnsSnapshot {
            endpoints: state
                .current
                .iter()
                .map(|(&addr, &weight)| Endpoint { addr, weight })
                .collect(),
            resolutions: state.resolutions,
            failures: state.failures,
            last_error: state.last_error.clone(),
        }
    }

    /// Registers a listener for this discovery's events.
    pub fn subscribe<L: Listener<DiscoveryEvent>>(&self, listener: L) -> ListenerId {
        self.inner.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not registered.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.events.unsubscribe(id)
    }
}

/// A [`DnsDiscovery`] as a tower `Discover` stream; made by [`DnsDiscovery::discover`]. Never
/// ends and never fails (a failed lookup keeps the set, so it yields nothing).
pub struct DnsDiscover<S, F> {
    discovery: DnsDiscovery,
    make: F,
    queue: VecDeque<Change<SocketAddr, S>>,
    /// The lookup in progress: boxed, a cold path (once per TTL).
    next: Option<Pin<Box<dyn Future<Output = Update> + Send>>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

// The services are only queued, never pinned: the stream is `Unpin` whatever `S` is.
impl<S, F: Unpin> Unpin for DnsDiscover<S, F> {}

impl<S, F> fmt::Debug for DnsDiscover<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscover")
            .field("discovery", &self.discovery)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<S, F> futures_core::Stream for DnsDiscover<S, F>
where
    F: FnMut(SocketAddr) -> S + Unpin,
{
    type Item = Result<Change<SocketAddr, S>, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if let Some(sleep) = &mut this.sleep {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            let next = this.next.get_or_insert_with(|| {
                let discovery = this.discovery.clone();
                Box::pin(async move { discovery.update().await })
            });
            let update = ready!(next.as_mut().poll(cx));
            this.next = None;
            this.sleep = Some(Box::pin(tokio::time::sleep(update.wait)));
            apply::to_queue(
                &mut this.queue,
                &mut this.make,
                update.insert,
                update.remove,
            );
        }
    }
}
