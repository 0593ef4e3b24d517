//! Delivering one change set (endpoints to insert, addresses to remove) to where the
//! discovered endpoints go: a [`Balancer`] through its handle, or the queue of a tower
//! `Discover` stream. DNS and etcd discovery both end in these two.

use crate::records::Endpoint;
use palisade_load_balancer::{Balancer, EndpointMeta};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tower::discover::Change;

/// Inserts each endpoint into `balancer` (its service made by `make`, with its weight) and
/// removes each address.
pub(crate) fn to_balancer<S, F>(
    balancer: &Balancer<SocketAddr, S>,
    make: &mut F,
    insert: Vec<Endpoint>,
    remove: Vec<SocketAddr>,
) where
    S: Clone + Send + Sync + 'static,
    F: FnMut(SocketAddr) -> S,
{
    for endpoint in insert {
        balancer.insert(
            endpoint.addr,
            make(endpoint.addr),
            EndpointMeta::new().weight(endpoint.weight),
        );
    }
    for addr in remove {
        balancer.remove(&addr);
    }
}

/// Queues the set as `Discover` changes: an `Insert` per endpoint (its service made by
/// `make`), then a `Remove` per address. A plain `Discover` carries no weight.
pub(crate) fn to_queue<S, F>(
    queue: &mut VecDeque<Change<SocketAddr, S>>,
    make: &mut F,
    insert: Vec<Endpoint>,
    remove: Vec<SocketAddr>,
) where
    F: FnMut(SocketAddr) -> S,
{
    for endpoint in insert {
        queue.push_back(Change::Insert(endpoint.addr, make(endpoint.addr)));
    }
    queue.extend(remove.into_iter().map(Change::Remove));
}
