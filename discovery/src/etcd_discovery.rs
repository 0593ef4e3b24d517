//! etcd discovery: the endpoints under a key prefix, followed with a watch, and the
//! lease-based registration of the serving side.

use crate::apply;
use crate::etcd_values::{self, Applied, Table};
use crate::events::DiscoveryEvent;
use crate::records::{self, Endpoint, Set};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use palisade_core::events::{EventBus, ListenerId};
use palisade_core::{ConfigError, Listener};
use palisade_load_balancer::Balancer;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::discover::Change;

/// Follows the keys under an etcd prefix and keeps a [`Balancer`]'s endpoint set equal to
/// their values.
///
/// Each key under the prefix holds one endpoint: `10.0.0.7:8080`, or the JSON form
/// `{"addr": "10.0.0.7:8080", "weight": 3}` (weight optional, at least 1; other fields such as
/// `zone` are ignored; host names are not resolved). [`EtcdRegistration`] writes them.
///
/// [`run`](Self::run) lists the prefix once (a `Range` read, which gives the store revision),
/// then watches it from that revision + 1: **no polling**, every put and delete arrives as a
/// watch event, in order. When the connection or the watch fails, the set is kept, a
/// [`DiscoveryEvent::WatchFailed`] is reported, and discovery reconnects with exponential
/// backoff (jittered) and **resumes from the last revision it saw**, so the changes made while
/// it was away arrive as ordinary events. If etcd has compacted that revision away, it lists
/// the prefix again ([`DiscoveryEvent::WatchCompacted`]) and applies the difference between
/// the listing and the current set.
///
/// **Bad values are skipped**: a value that is not an endpoint is a
/// [`DiscoveryEvent::InvalidValue`]; the key keeps its last good endpoint (a new key is not
/// added). Deletes are applied as they come, down to an empty set: in etcd an absent key is
/// an answer, not an error (a lease that expired means the server stopped renewing it).
///
/// A handle: `Clone`, `subscribe`/`unsubscribe`, [`snapshot`](Self::snapshot).
#[derive(Clone)]
pub struct EtcdDiscovery {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    prefix: String,
    request_timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    keep_alive: Duration,
    jitter: f64,
    events: EventBus<DiscoveryEvent>,
    state: Mutex<State>,
}

struct State {
    table: Table,
    current: Set,
    /// The store revision the table reflects; 0 before the first listing.
    revision: i64,
    /// Set when the resume revision was compacted away: list again.
    relist: bool,
    rng: rand::rngs::SmallRng,
    consecutive_failures: u32,
    listings: u64,
    failures: u64,
    compactions: u64,
    rejected: u64,
    last_error: Option<String>,
}

/// A point-in-time view of an [`EtcdDiscovery`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdSnapshot {
    /// The current set.
    pub endpoints: Vec<Endpoint>,
    /// The etcd revision the set reflects (0 before the first listing).
    pub revision: i64,
    /// Full listings of the prefix (the first one, and one after each compaction).
    pub listings: u64,
    /// Connections or watches that failed (the set was kept; each was retried).
    pub failures: u64,
    /// Resumes that found their revision compacted away.
    pub compactions: u64,
    /// Values that were not an endpoint and were skipped.
    pub rejected: u64,
    /// The last failure's description.
    pub last_error: Option<String>,
}

impl fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EtcdDiscovery`].
#[derive(Clone, Debug)]
pub struct EtcdDiscoveryBuilder {
    endpoints: Vec<String>,
    prefix: Option<String>,
    request_timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    keep_alive: Duration,
    seed: Option<u64>,
}

impl Default for EtcdDiscoveryBuilder {
    fn default() -> Self {
        EtcdDiscoveryBuilder {
            endpoints: Vec::new(),
            prefix: None,
            request_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            keep_alive: Duration::from_secs(10),
            seed: None,
        }
    }
}

impl EtcdDiscoveryBuilder {
    /// An etcd server to talk to, e.g. `http://127.0.0.1:2379`; may be given several times
    /// (the client balances over them).
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// The key prefix to follow, e.g. `/services/backend/`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long connecting, listing or starting a watch may take (default 5 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The first and the largest reconnect delay (defaults 100 ms and 10 s); the delay doubles
    /// with each failure in a row, less up to 10 % jitter, and resets once a watch runs.
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// The HTTP/2 keep-alive interval of the connection (default 10 s): a watch on a dead
    /// connection fails after about one interval and the request timeout, and discovery
    /// reconnects. Keep it at or above the server's `--grpc-keepalive-min-time` (5 s by
    /// default): etcd answers faster pings with `GOAWAY`.
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Seeds the backoff jitter (tests); default a random seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds. Connects to nothing yet: [`EtcdDiscovery::run`] does.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `endpoint` (none given, or an empty one), `prefix`
    /// (not given, or empty: a discovery of the whole keyspace is refused), `backoff` (zero or
    /// `min > max`), `request_timeout` or `keep_alive` (zero).
    pub fn build(self) -> Result<EtcdDiscovery, ConfigError> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "endpoint",
                "give at least one etcd URL, e.g. http://127.0.0.1:2379",
            ));
        }
        let prefix = self
            .prefix
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ConfigError::new("prefix", "give a non-empty key prefix"))?;
        if self.min_backoff.is_zero() || self.min_backoff > self.max_backoff {
            return Err(ConfigError::new("backoff", "needs 0 < min <= max"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be above zero"));
        }
        if self.keep_alive.is_zero() {
            return Err(ConfigError::new("keep_alive", "must be above zero"));
        }
        let seed = self.seed.unwrap_or_else(palisade_core::rng::random_seed);
        let events = EventBus::<DiscoveryEvent>::new();
        #[cfg(feature = "tracing")]
        events.subscribe(palisade_core::events::TracingListener::new(
            "discovery",
            prefix.as_str(),
        ));
        Ok(EtcdDiscovery {
            inner: Arc::new(Inner {
                endpoints: self.endpoints,
                prefix,
                request_timeout: self.request_timeout,
                min_backoff: self.min_backoff,
                max_backoff: self.max_backoff,
                keep_alive: self.keep_alive,
                jitter: 0.1,
                events,
                state: Mutex::new(State {
                    table: Table::default(),
                    current: Set::new(),
                    revision: 0,
                    relist: true,
                    rng: rand::rngs::SmallRng::seed_from_u64(seed),
                    consecutive_failures: 0,
                    listings: 0,
                    failures: 0,
                    compactions: 0,
                    rejected: 0,
                    last_error: None,
                }),
            }),
        })
    }
}

/// The changes one step made to the set.
type Changes = (Vec<Endpoint>, Vec<SocketAddr>);

impl EtcdDiscovery {
    /// Starts a builder.
    #[must_use]
    pub fn builder() -> EtcdDiscoveryBuilder {
        EtcdDiscoveryBuilder::default()
    }

    /// Runs `f` under the request timeout.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.inner.request_timeout, f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!(
                "{what}: no answer within {:?}",
                self.inner.request_timeout
            )),
        }
    }

    /// Recomputes the set from the table and emits the changes.
    fn settle(&self, state: &mut State) -> Changes {
        let next = state.table.set();
        let changes = records::diff(&state.current, &next);
        state.current = next;
        changes
    }

    fn emit_changes(&self, (insert, remove): &Changes) {
        let events = &self.inner.events;
        for endpoint in insert {
            events.emit_with(|| DiscoveryEvent::EndpointAdded {
                addr: endpoint.addr,
                weight: endpoint.weight,
            });
        }
        for &addr in remove {
            events.emit_with(|| DiscoveryEvent::EndpointRemoved { addr });
        }
    }

    fn reject(&self, key: String, detail: String) {
        self.inner.state.lock().rejected += 1;
        self.inner
            .events
            .emit_with(|| DiscoveryEvent::InvalidValue { key, detail });
    }

    /// Lists the prefix and replaces the table with it.
    async fn list(&self, client: &mut Client) -> Result<Changes, String> {
        let prefix = self.inner.prefix.as_str();
        let response = self
            .timed(
                "list",
                client.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let listing: Vec<(String, Vec<u8>)> = response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?.to_owned();
                Some((key, kv.value().to_vec()))
            })
            .collect();
        let (changes, rejected) = {
            let mut state = self.inner.state.lock();
            let rejected = state
                .table
                .relist(listing.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            state.revision = revision;
            state.relist = false;
            state.listings += 1;
            (self.settle(&mut state), rejected)
        };
        for (key, detail) in rejected {
            self.reject(key, detail);
        }
        self.emit_changes(&changes);
        Ok(changes)
    }

    /// One connection: list if needed, watch from the last revision + 1, apply every event
    /// until the watch fails. Returns why it stopped.
    async fn session<A>(&self, apply: &mut A) -> String
    where
        A: FnMut(Changes),
    {
        let inner = &*self.inner;
        let options = ConnectOptions::new()
            .with_connect_timeout(inner.request_timeout)
            .with_keep_alive(inner.keep_alive, inner.request_timeout)
            .with_keep_alive_while_idle(true);
        let mut client = match self
            .timed(
                "connect",
                Client::connect(inner.endpoints.as_slice(), Some(options)),
            )
            .await
        {
            Ok(client) => client,
            Err(e) => return e,
        };
        loop {
            if inner.state.lock().relist {
                match self.list(&mut client).await {
                    Ok(changes) => apply(changes),
                    Err(e) => return e,
                }
            }
            let start = inner.state.lock().revision + 1;
            let watch = client.watch(
                inner.prefix.as_str(),
                Some(WatchOptions::new().with_prefix().with_start_revision(start)),
            );
            let mut stream = match self.timed("watch", watch).await {
                Ok(stream) => stream,
                Err(e) => return e,
            };
            loop {
                let response = match stream.message().await {
                    Ok(Some(response)) => response,
                    Ok(None) => return "watch: the stream ended".to_owned(),
                    Err(e) => return format!("watch: {e}"),
                };
                if response.compact_revision() > 0 {
                    let compact_revision = response.compact_revision();
                    {
                        let mut state = inner.state.lock();
                        state.relist = true;
                        state.compactions += 1;
                    }
                    inner.events.emit_with(|| DiscoveryEvent::WatchCompacted {
                        resume_revision: start,
                        compact_revision,
                    });
                    break;
                }
                if response.canceled() {
                    return format!("watch canceled: {}", response.cancel_reason());
                }
                if response.created() {
                    // The watch runs: the next failure starts the backoff again.
                    inner.state.lock().consecutive_failures = 0;
                }
                if response.events().is_empty() {
                    continue;
                }
                let mut rejected = Vec::new();
                let changes = {
                    let mut state = inner.state.lock();
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Ok(key) = kv.key_str() else { continue };
                        state.revision = state.revision.max(kv.mod_revision());
                        match event.event_type() {
                            EventType::Put => {
                                if let Applied::Rejected(detail) = state.table.put(key, kv.value())
                                {
                                    rejected.push((key.to_owned(), detail));
                                }
                            }
                            EventType::Delete => state.table.delete(key),
                        }
                    }
                    self.settle(&mut state)
                };
                for (key, detail) in rejected {
                    self.reject(key, detail);
                }
                self.emit_changes(&changes);
                apply(changes);
            }
            // Compacted: list again on this connection and watch from the listing.
        }
    }

    /// Follows the prefix for ever, handing each change to `apply`; reconnects with backoff.
    async fn follow<A>(&self, mut apply: A)
    where
        A: FnMut(Changes),
    {
        let inner = &*self.inner;
        loop {
            let error = self.session(&mut apply).await;
            let (kept, in_a_row, draw) = {
                let mut state = inner.state.lock();
                state.failures += 1;
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.last_error = Some(error.clone());
                let draw: f64 = state.rng.random();
                (state.current.len(), state.consecutive_failures, draw)
            };
            inner
                .events
                .emit_with(|| DiscoveryEvent::WatchFailed { error, kept });
            let wait = records::retry_after(
                in_a_row.min(16),
                inner.min_backoff,
                inner.max_backoff,
                inner.jitter,
                draw,
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Keeps `balancer`'s endpoints equal to the prefix's values, for ever (endpoints made by
    /// `make`, with the value's weight). Spawn it beside the traffic:
    /// `tokio::spawn(discovery.clone().run(balancer.clone(), |addr| connect(addr)))`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future (aborting the task) stops following; the balancer keeps the set it
    /// has, and a later `run` of the same handle resumes from the last revision.
    pub async fn run<S, F>(self, balancer: Balancer<SocketAddr, S>, mut make: F)
    where
        S: Clone + Send + Sync + 'static,
        F: FnMut(SocketAddr) -> S,
    {
        self.follow(|(insert, remove)| apply::to_balancer(&balancer, &mut make, insert, remove))
            .await;
    }

    /// The changes as a tower [`Discover`](tower::discover::Discover) stream (for
    /// `Balancer::follow` or tower's own `Balance`): `Change::Insert` with a service made by
    /// `make`, `Change::Remove`. The watch runs on a task spawned on the first poll (so poll it
    /// inside a tokio runtime) and aborted when the stream is dropped. A plain `Discover`
    /// carries no weights; [`run`](Self::run) passes them to a Palisade balancer.
    pub fn discover<S, F>(self, make: F) -> EtcdDiscover<S, F>
    where
        F: FnMut(SocketAddr) -> S + Unpin,
    {
        EtcdDiscover {
            discovery: self,
            make,
            queue: VecDeque::new(),
            changes: None,
            task: None,
        }
    }

    /// The current set and the counters.
    #[must_use]
    pub fn snapshot(&self) -> EtcdSnapshot {
        let state = self.inner.state.lock();
        EtcdSnapshot {
            endpoints: state
                .current
                .iter()
                .map(|(&addr, &weight)| Endpoint { addr, weight })
                .collect(),
            revision: state.revision,
            listings: state.listings,
            failures: state.failures,
            compactions: state.compactions,
            rejected: state.rejected,
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

/// An [`EtcdDiscovery`] as a tower `Discover` stream; made by [`EtcdDiscovery::discover`].
/// Never ends and never fails (a failed watch keeps the set and reconnects, so it yields
/// nothing meanwhile).
pub struct EtcdDiscover<S, F> {
    discovery: EtcdDiscovery,
    make: F,
    queue: VecDeque<Change<SocketAddr, S>>,
    changes: Option<tokio::sync::mpsc::UnboundedReceiver<Changes>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

// The services are only queued, never pinned: the stream is `Unpin` whatever `S` is.
impl<S, F: Unpin> Unpin for EtcdDiscover<S, F> {}

impl<S, F> fmt::Debug for EtcdDiscover<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscover")
            .field("discovery", &self.discovery)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<S, F> Drop for EtcdDiscover<S, F> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl<S, F> futures_core::Stream for EtcdDiscover<S, F>
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
            let changes = this.changes.get_or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let discovery = this.discovery.clone();
                this.task = Some(tokio::spawn(async move {
                    discovery
                        .follow(move |changes| {
                            // The stream was dropped: the task is being aborted too.
                            let _ = tx.send(changes);
                        })
                        .await;
                }));
                rx
            });
            match changes.poll_recv(cx) {
                Poll::Ready(Some((insert, remove))) => {
                    apply::to_queue(&mut this.queue, &mut this.make, insert, remove);
                }
                // The task never ends on its own; only a panic in it closes the channel.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Why an [`EtcdRegistration`] could not register (or revoke).
#[derive(Debug)]
pub struct EtcdError {
    detail: String,
    timed_out: bool,
    source: Option<etcd_client::Error>,
}

impl EtcdError {
    fn client(source: etcd_client::Error) -> Self {
        EtcdError {
            detail: source.to_string(),
            timed_out: false,
            source: Some(source),
        }
    }

    /// `true` when etcd did not answer in time (the TTL bounds every request).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.timed_out
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd: {}", self.detail)
    }
}

impl std::error::Error for EtcdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The serving side: puts `key = endpoint` in etcd under a lease with a TTL, and keeps the
/// lease alive from a background task, so the key disappears within the TTL of the process
/// dying. [`shutdown`](Self::shutdown) (or dropping it) revokes the lease, which deletes the
/// key at once.
///
/// The keep-alive task renews every third of the TTL. If the lease is lost (etcd unreachable
/// for longer than the TTL, so it expired), the task grants a new one and puts the key again
/// once etcd answers; it retries every third of the TTL.
///
/// ```no_run
/// use palisade_discovery::{Endpoint, EtcdRegistration};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_discovery::EtcdError> {
/// let me = Endpoint { addr: "10.0.0.7:8080".parse().unwrap(), weight: 1 };
/// let registration = EtcdRegistration::register(
///     &["http://127.0.0.1:2379"],
///     "/services/backend/10.0.0.7:8080",
///     me,
///     Duration::from_secs(10),
/// )
/// .await?;
/// // ... serve ...
/// registration.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct EtcdRegistration {
    key: String,
    shared: Arc<Mutex<RegistrationState>>,
    keeper: Option<tokio::task::JoinHandle<()>>,
}

struct RegistrationState {
    /// The client of the last good connection (the keep-alive task replaces it when it
    /// reconnects).
    client: Client,
    lease: i64,
    renewals: u64,
    regrants: u64,
}

impl fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("key", &self.key)
            .field("lease", &self.lease_id())
            .finish_non_exhaustive()
    }
}

/// What the keep-alive task needs to reconnect and register again.
struct Registrar {
    endpoints: Vec<String>,
    key: String,
    value: String,
    ttl_secs: i64,
    /// The bound of every request: the TTL.
    bound: Duration,
}

impl Registrar {
    fn timed_out(&self) -> EtcdError {
        EtcdError {
            detail: format!("no answer within the TTL ({:?})", self.bound),
            timed_out: true,
            source: None,
        }
    }

    /// A fresh connection (etcd-client's channel does not always recover a lost endpoint).
    async fn connect(&self) -> Result<Client, EtcdError> {
        let options = ConnectOptions::new().with_connect_timeout(self.bound);
        tokio::time::timeout(
            self.bound,
            Client::connect(self.endpoints.as_slice(), Some(options)),
        )
        .await
        .map_err(|_| self.timed_out())?
        .map_err(EtcdError::client)
    }

    /// Grants a lease and puts the key under it.
    async fn grant_and_put(&self, client: &mut Client) -> Result<i64, EtcdError> {
        let work = async {
            let lease = client.lease_grant(self.ttl_secs, None).await?.id();
            client
                .put(
                    self.key.as_str(),
                    self.value.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await?;
            Ok::<_, etcd_client::Error>(lease)
        };
        tokio::time::timeout(self.bound, work)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(EtcdError::client)
    }
}

impl EtcdRegistration {
    /// Connects to `endpoints`, grants a lease of `ttl` (whole seconds, at least 1; etcd may
    /// grant more, its minimum), puts `key` with `endpoint`'s value (the address, or the JSON
    /// form for a weight above 1) under it, and starts the keep-alive task (on the current
    /// tokio runtime).
    ///
    /// # Errors
    ///
    /// An [`EtcdError`] when etcd refuses the lease or the put, or does not answer within the
    /// TTL ([`EtcdError::is_timeout`]).
    pub async fn register<E: AsRef<str>>(
        endpoints: &[E],
        key: impl Into<String>,
        endpoint: Endpoint,
        ttl: Duration,
    ) -> Result<Self, EtcdError> {
        let ttl_secs = ttl.as_secs().max(1);
        let registrar = Registrar {
            endpoints: endpoints.iter().map(|e| e.as_ref().to_owned()).collect(),
            key: key.into(),
            value: etcd_values::format_value(endpoint),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
            bound: Duration::from_secs(ttl_secs),
        };
        let mut client = registrar.connect().await?;
        let lease = registrar.grant_and_put(&mut client).await?;
        let key = registrar.key.clone();
        let shared = Arc::new(Mutex::new(RegistrationState {
            client,
            lease,
            renewals: 0,
            regrants: 0,
        }));
        let keeper = tokio::spawn(keep_alive(registrar, Arc::clone(&shared)));
        Ok(EtcdRegistration {
            key,
            shared,
            keeper: Some(keeper),
        })
    }

    /// The registered key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the key is attached to now (a new one after a lost lease).
    #[must_use]
    pub fn lease_id(&self) -> i64 {
        self.shared.lock().lease
    }

    /// Keep-alives etcd acknowledged, and leases granted again after one was lost.
    #[must_use]
    pub fn renewals(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.renewals, state.regrants)
    }

    /// Stops the keep-alive and revokes the lease: the key is deleted now.
    ///
    /// # Errors
    ///
    /// An [`EtcdError`] if the revoke failed (the key then expires within the TTL).
    pub async fn shutdown(mut self) -> Result<(), EtcdError> {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        let (mut client, lease) = {
            let state = self.shared.lock();
            (state.client.clone(), state.lease)
        };
        client
            .lease_revoke(lease)
            .await
            .map(|_| ())
            .map_err(EtcdError::client)
    }
}

impl Drop for EtcdRegistration {
    /// Stops the keep-alive and, inside a tokio runtime, revokes the lease from a spawned task
    /// (so the key goes now); outside one, the key expires within the TTL.
    fn drop(&mut self) {
        let Some(keeper) = self.keeper.take() else {
            return;
        };
        keeper.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (mut client, lease) = {
                let state = self.shared.lock();
                (state.client.clone(), state.lease)
            };
            runtime.spawn(async move {
                // Best effort: a failed revoke leaves the lease to expire on its TTL.
                let _ = client.lease_revoke(lease).await;
            });
        }
    }
}

/// Renews the lease every third of the TTL. On a failed request it reconnects; when the
/// lease was lost (it expired while etcd was unreachable) it grants a new one and puts the
/// key again. Every request is bounded by the TTL, so an unreachable etcd never stalls it.
async fn keep_alive(registrar: Registrar, shared: Arc<Mutex<RegistrationState>>) {
    let ttl = registrar.bound;
    let beat = (ttl / 3).max(Duration::from_millis(100));
    let mut client = shared.lock().client.clone();
    let mut lost = false;
    loop {
        if lost {
            if let Ok(lease) = registrar.grant_and_put(&mut client).await {
                let mut state = shared.lock();
                state.lease = lease;
                state.regrants += 1;
                lost = false;
                continue;
            }
        } else {
            let lease = shared.lock().lease;
            let opened = tokio::time::timeout(ttl, client.lease_keep_alive(lease)).await;
            if let Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) = opened {
                // etcd-client's answer for a first keep-alive of TTL 0: the lease is gone.
                lost = true;
                continue;
            }
            if let Ok(Ok((mut keeper, mut stream))) = opened {
                loop {
                    if !matches!(
                        tokio::time::timeout(ttl, keeper.keep_alive()).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                    match tokio::time::timeout(ttl, stream.message()).await {
                        Ok(Ok(Some(response))) if response.ttl() > 0 => {
                            shared.lock().renewals += 1;
                        }
                        Ok(Ok(Some(_))) => {
                            // TTL 0: the lease expired (or was revoked) on the server.
                            lost = true;
                            break;
                        }
                        _ => break,
                    }
                    tokio::time::sleep(beat).await;
                }
                if lost {
                    continue;
                }
            }
        }
        // A request failed: wait a beat and reconnect.
        tokio::time::sleep(beat).await;
        if let Ok(fresh) = registrar.connect().await {
            shared.lock().client = fresh.clone();
            client = fresh;
        }
    }
}
