//! DNS discovery against an in-process authoritative server (`hickory-server`) on 127.0.0.1,
//! whose records change while a balancer carries traffic (issue 13).
//!
//! Real time: the resolver and the server talk over real UDP sockets, and discovery sleeps
//! for the records' TTLs (1 s here, with refreshes bounded to 200 ms..1 s).

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use palisade_discovery::{DiscoveryEvent, DnsDiscovery, Endpoint};
use palisade_load_balancer::Balancer;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

const TTL: u32 = 1;

struct Zone {
    handler: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    addr: SocketAddr,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

async fn start_zone() -> Zone {
    let origin = name("svc.test.");
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        name("ns.svc.test."),
        name("admin.svc.test."),
        1,
        60,
        60,
        60,
        TTL,
    );
    assert!(handler.upsert_mut(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1));
    let handler = Arc::new(handler);
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::new(&origin),
        vec![Arc::clone(&handler) as Arc<dyn ZoneHandler>],
    );
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    Zone {
        handler,
        addr,
        _server: server,
    }
}

impl Zone {
    /// Replaces the records of `owner` and `record_type` (none: removes them).
    async fn set(&self, owner: &str, record_type: RecordType, data: Vec<RData>) {
        let owner = name(owner);
        let key = RrKey::new(LowerName::new(&owner), record_type);
        let mut records = self.handler.records_mut().await;
        if data.is_empty() {
            records.remove(&key);
            return;
        }
        let mut set = RecordSet::new(owner.clone(), record_type, 1);
        for rdata in data {
            set.insert(Record::from_rdata(owner.clone(), TTL, rdata), 1);
        }
        records.insert(key, Arc::new(set));
    }
}

fn srv(weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(10, weight, port, name(target)))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

/// An endpoint that answers with its address.
#[derive(Clone, Debug)]
struct Backend(SocketAddr);

impl Service<u32> for Backend {
    type Response = SocketAddr;
    type Error = tower::BoxError;
    type Future = std::future::Ready<Result<SocketAddr, tower::BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tower::BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        std::future::ready(Ok(self.0))
    }
}

fn recorder(discovery: &DnsDiscovery) -> Arc<Mutex<Vec<DiscoveryEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    discovery.subscribe(move |e: &DiscoveryEvent| sink.lock().unwrap().push(e.clone()));
    seen
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn keys(balancer: &Balancer<SocketAddr, Backend>) -> BTreeSet<SocketAddr> {
    balancer.keys().into_iter().collect()
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_feed_the_balancer_and_changes_under_load_lose_no_call() {
    let zone = start_zone().await;
    zone.set("a.svc.test.", RecordType::A, vec![a([127, 0, 0, 1])])
        .await;
    zone.set("b.svc.test.", RecordType::A, vec![a([127, 0, 0, 2])])
        .await;
    zone.set("c.svc.test.", RecordType::A, vec![a([127, 0, 0, 3])])
        .await;
    let service = "_http._tcp.svc.test.";
    zone.set(
        service,
        RecordType::SRV,
        vec![srv(5, 8001, "a.svc.test."), srv(1, 8002, "b.svc.test.")],
    )
    .await;

    let discovery = DnsDiscovery::builder()
        .srv(service)
        .nameserver(zone.addr)
        .refresh_bounds(Duration::from_millis(200), Duration::from_secs(1))
        .lookup_timeout(Duration::from_millis(500))
        .seed(7)
        .build()
        .unwrap();
    let seen = recorder(&discovery);
    let balancer: Balancer<SocketAddr, Backend> = Balancer::builder().build().unwrap();
    let follower = tokio::spawn(discovery.clone().run(balancer.clone(), Backend));

    let (ea, eb, ec) = (
        addr([127, 0, 0, 1], 8001),
        addr([127, 0, 0, 2], 8002),
        addr([127, 0, 0, 3], 8003),
    );
    until("a and b discovered", || {
        keys(&balancer) == BTreeSet::from([ea, eb])
    })
    .await;
    assert_eq!(
        discovery.snapshot().endpoints,
        vec![
            Endpoint {
                addr: ea,
                weight: 5
            },
            Endpoint {
                addr: eb,
                weight: 1
            }
        ],
        "SRV ports and weights"
    );

    // Traffic through the balancer while the records change.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let served = Arc::new(Mutex::new(BTreeMap::<SocketAddr, u64>::new()));
    let load = {
        let (stop, failed, served) = (Arc::clone(&stop), Arc::clone(&failed), Arc::clone(&served));
        let mut svc = balancer.service();
        tokio::spawn(async move {
            let mut calls = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                match svc.ready().await.unwrap().call(1).await {
                    Ok(addr) => *served.lock().unwrap().entry(addr).or_default() += 1,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                calls += 1;
                if calls.is_multiple_of(64) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            calls
        })
    };

    // b leaves, c joins with weight 2.
    zone.set(
        service,
        RecordType::SRV,
        vec![srv(5, 8001, "a.svc.test."), srv(2, 8003, "c.svc.test.")],
    )
    .await;
    until("c replaced b", || {
        keys(&balancer) == BTreeSet::from([ea, ec])
    })
    .await;
    assert!(discovery.snapshot().endpoints.contains(&Endpoint {
        addr: ec,
        weight: 2
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Bad input: only unusable SRV records (target ".", port 0): the last good set stays.
    let before = discovery.snapshot().failures;
    zone.set(
        service,
        RecordType::SRV,
        vec![
            RData::SRV(SRV::new(10, 1, 80, Name::root())),
            srv(1, 0, "a.svc.test."),
        ],
    )
    .await;
    until("the malformed answer was seen", || {
        discovery.snapshot().failures > before
    })
    .await;
    assert_eq!(
        keys(&balancer),
        BTreeSet::from([ea, ec]),
        "kept the last good set"
    );

    // The name disappears (NXDOMAIN / no records): still the last good set.
    zone.set(service, RecordType::SRV, vec![]).await;
    let before = discovery.snapshot().failures;
    until("the empty answer was seen", || {
        discovery.snapshot().failures > before
    })
    .await;
    assert_eq!(
        keys(&balancer),
        BTreeSet::from([ea, ec]),
        "never drops to zero endpoints"
    );

    stop.store(true, Ordering::Relaxed);
    let calls = load.await.unwrap();
    follower.abort();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no call lost across {calls} calls"
    );
    let served = served.lock().unwrap().clone();
    assert!(
        served.get(&ec).copied().unwrap_or(0) > 0,
        "the new endpoint took traffic: {served:?}"
    );

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&DiscoveryEvent::EndpointAdded {
            addr: ec,
            weight: 2
        }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&DiscoveryEvent::EndpointRemoved { addr: eb }),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(
            |e| matches!(e, DiscoveryEvent::BadRecord { detail } if detail.contains("port 0"))
        )
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, DiscoveryEvent::ResolveFailed { kept: 2, .. }))
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DiscoveryEvent::EndpointRemoved { addr } if *addr == ea))
    );
}

#[tokio::test]
async fn a_and_aaaa_records_follow_the_host() {
    let zone = start_zone().await;
    let host = "web.svc.test.";
    zone.set(host, RecordType::A, vec![a([127, 0, 0, 1])]).await;
    zone.set(
        host,
        RecordType::AAAA,
        vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))],
    )
    .await;
    let discovery = DnsDiscovery::builder()
        .host(host, 80)
        .nameserver(zone.addr)
        .refresh_bounds(Duration::from_millis(200), Duration::from_secs(1))
        .seed(1)
        .build()
        .unwrap();
    let balancer: Balancer<SocketAddr, Backend> = Balancer::builder().build().unwrap();
    let mut make = Backend;
    let wait = discovery.refresh(&balancer, &mut make).await;
    assert!(
        wait >= Duration::from_millis(200) && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 80));
    assert_eq!(
        keys(&balancer),
        BTreeSet::from([addr([127, 0, 0, 1], 80), v6])
    );

    zone.set(
        host,
        RecordType::A,
        vec![a([127, 0, 0, 5]), a([127, 0, 0, 6])],
    )
    .await;
    zone.set(host, RecordType::AAAA, vec![]).await;
    discovery.refresh(&balancer, &mut make).await;
    assert_eq!(
        keys(&balancer),
        BTreeSet::from([addr([127, 0, 0, 5], 80), addr([127, 0, 0, 6], 80)])
    );

    zone.set(host, RecordType::A, vec![]).await;
    let wait = discovery.refresh(&balancer, &mut make).await;
    assert_eq!(balancer.len(), 2, "an empty answer keeps the set");
    // The first retry: the minimum refresh, less up to 10 % jitter.
    assert!(
        wait > Duration::from_millis(179) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    assert_eq!(discovery.snapshot().failures, 1);
}

#[tokio::test]
async fn an_unreachable_name_server_fails_cleanly_and_keeps_the_set() {
    // Nobody answers on this port.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = socket.local_addr().unwrap();
    drop(socket);
    let discovery = DnsDiscovery::builder()
        .host("web.svc.test.", 80)
        .nameserver(dead)
        .lookup_timeout(Duration::from_millis(200))
        .refresh_bounds(Duration::from_millis(100), Duration::from_secs(2))
        .seed(3)
        .build()
        .unwrap();
    let seen = recorder(&discovery);
    let balancer: Balancer<SocketAddr, Backend> = Balancer::builder().build().unwrap();
    let kept = addr([127, 0, 0, 9], 80);
    balancer.insert(
        kept,
        Backend(kept),
        palisade_load_balancer::EndpointMeta::new(),
    );
    let mut make = Backend;
    let first = discovery.refresh(&balancer, &mut make).await;
    let second = discovery.refresh(&balancer, &mut make).await;
    assert!(second > first, "backoff grows: {first:?} then {second:?}");
    assert_eq!(keys(&balancer), BTreeSet::from([kept]));
    let snap = discovery.snapshot();
    assert_eq!((snap.resolutions, snap.failures), (0, 2));
    assert!(snap.last_error.is_some());
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn config_errors_name_the_field() {
    let err = DnsDiscovery::builder().build().unwrap_err();
    assert_eq!(err.field(), "query");
    let err = DnsDiscovery::builder().srv("").build().unwrap_err();
    assert_eq!(err.field(), "query");
    let err = DnsDiscovery::builder()
        .host("x.", 1)
        .refresh_bounds(Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "refresh_bounds");
}

/// The changes also come as a tower `Discover` stream, which `Balancer::follow` applies.
#[tokio::test]
async fn the_discover_stream_feeds_balancer_follow() {
    let zone = start_zone().await;
    let host = "api.svc.test.";
    zone.set(host, RecordType::A, vec![a([127, 0, 0, 1])]).await;
    let discovery = DnsDiscovery::builder()
        .host(host, 9000)
        .nameserver(zone.addr)
        .refresh_bounds(Duration::from_millis(100), Duration::from_millis(300))
        .seed(5)
        .build()
        .unwrap();
    let balancer: Balancer<SocketAddr, Backend> = Balancer::builder().build().unwrap();
    let follower = tokio::spawn(balancer.clone().follow(discovery.clone().discover(Backend)));
    until("the first answer", || {
        keys(&balancer) == BTreeSet::from([addr([127, 0, 0, 1], 9000)])
    })
    .await;
    zone.set(host, RecordType::A, vec![a([127, 0, 0, 2])]).await;
    until("the changed answer", || {
        keys(&balancer) == BTreeSet::from([addr([127, 0, 0, 2], 9000)])
    })
    .await;
    zone.set(host, RecordType::A, vec![]).await;
    let before = discovery.snapshot().failures;
    until("the empty answer", || {
        discovery.snapshot().failures > before
    })
    .await;
    assert_eq!(
        balancer.len(),
        1,
        "the stream removes nothing on a failed lookup"
    );
    follower.abort();
}

/// Regression: the retry backoff grows with the failures *in a row* and starts again after a
/// good answer (it used to grow with every failure since the start).
#[tokio::test]
async fn the_retry_backoff_resets_after_a_good_answer() {
    let zone = start_zone().await;
    let host = "flaky.svc.test.";
    let min = Duration::from_millis(100);
    let discovery = DnsDiscovery::builder()
        .host(host, 80)
        .nameserver(zone.addr)
        .refresh_bounds(min, Duration::from_secs(10))
        .seed(9)
        .build()
        .unwrap();
    let balancer: Balancer<SocketAddr, Backend> = Balancer::builder().build().unwrap();
    let mut make = Backend;
    let first = discovery.refresh(&balancer, &mut make).await;
    let second = discovery.refresh(&balancer, &mut make).await;
    let third = discovery.refresh(&balancer, &mut make).await;
    assert!(
        first <= min && second > min && third > 2 * min,
        "{first:?} {second:?} {third:?}"
    );
    zone.set(host, RecordType::A, vec![a([127, 0, 0, 1])]).await;
    discovery.refresh(&balancer, &mut make).await;
    assert_eq!(balancer.len(), 1);
    zone.set(host, RecordType::A, vec![]).await;
    let after = discovery.refresh(&balancer, &mut make).await;
    assert!(after <= min, "the backoff starts again: {after:?}");
}
