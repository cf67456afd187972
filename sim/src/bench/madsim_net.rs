//! The madsim-net floor: the same pings over madsim's own network
//! (`Endpoint::send_to_raw` of a boxed payload, one receiver task per node
//! feeding an mpsc channel), as kafsim itself moved its messages before its
//! connections came (and as `reports/bench.md`'s earlier figures were measured
//! against). kafsim's network no longer goes this way, so this floor is kept
//! only to compare with those figures.

use super::{floor_plan, send_offset, SenderPlan};
use crate::context::{NodeRole, Roster};
use futures::StreamExt;
use madsim::net::Endpoint;
use madsim::runtime::Handle;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The floor's payload: small, boxed, sent raw like kafsim's `Envelope`.
struct Ping {
    reply: bool,
}

/// The receiver task of a floor node, as `node::drive` has one: forwards arrivals into a channel.
fn forward_arrivals(endpoint: &Endpoint) -> futures::channel::mpsc::UnboundedReceiver<(Ping, SocketAddr)> {
    let (sender, arrivals) = futures::channel::mpsc::unbounded();
    let receiver = endpoint.clone();
    madsim::task::spawn(async move {
        while let Ok((payload, from)) = receiver.recv_from_raw(0).await {
            if let Ok(ping) = payload.downcast::<Ping>() {
                if sender.unbounded_send((*ping, from)).is_err() {
                    return;
                }
            }
        }
    });
    arrivals
}

/// A broker of the floor: echoes every ping that asks for a reply, until the run ends.
async fn echo(me: SocketAddr, sent: Arc<AtomicU64>) {
    let endpoint = Endpoint::bind(me).await.expect("each floor node binds its own address once");
    let mut arrivals = forward_arrivals(&endpoint);
    while let Some((ping, from)) = arrivals.next().await {
        if ping.reply {
            sent.fetch_add(1, Ordering::Relaxed);
            let _ = endpoint.send_to_raw(from, 0, Box::new(Ping { reply: false })).await;
        }
    }
}

/// Any other node of the floor: sends its pings paced over `span`, and waits for every echo.
async fn send_pings(me: SocketAddr, peer: SocketAddr, plan: SenderPlan, span: Duration, sent: Arc<AtomicU64>) {
    let endpoint = Endpoint::bind(me).await.expect("each floor node binds its own address once");
    let mut arrivals = forward_arrivals(&endpoint);
    let start = madsim::time::Instant::now();
    let sends = plan.round_trips + plan.one_way;
    let (mut sent_count, mut echo_count) = (0, 0);
    while sent_count < sends || echo_count < plan.round_trips {
        let arrival = if sent_count < sends {
            let due = start + send_offset(span, sent_count, sends);
            madsim::time::timeout(due.saturating_duration_since(madsim::time::Instant::now()), arrivals.next()).await.ok()
        } else {
            Some(arrivals.next().await)
        };
        match arrival {
            Some(Some(_echo)) => echo_count += 1,
            Some(None) => panic!("a floor node's receiver task ended while the node still waited for echoes"),
            None => {
                let reply = sent_count < plan.round_trips;
                sent.fetch_add(1, Ordering::Relaxed);
                let _ = endpoint.send_to_raw(peer, 0, Box::new(Ping { reply })).await;
                sent_count += 1;
            }
        }
    }
}

/// A node's socket address: its roster address, on Kafka's port.
fn address(roster: &Roster, id: kafsim_model::NodeId) -> SocketAddr {
    SocketAddr::new(roster.entry(id).ip, 9092)
}

/// One floor run inside its runtime: returns the simulated time it took and the messages sent.
pub(super) async fn simulation(roster: Roster, messages: u64, span: Duration) -> (Duration, u64) {
    let handle = Handle::current();
    let sent = Arc::new(AtomicU64::new(0));
    let start = madsim::time::Instant::now();
    let brokers: Vec<_> = roster.entries.iter().filter(|entry| entry.role == NodeRole::Broker).collect();
    let senders: Vec<_> = roster.entries.iter().filter(|entry| entry.role != NodeRole::Broker).collect();
    assert!(!brokers.is_empty(), "a validated scenario has at least one broker for the floor's senders to ping");
    let mut nodes = Vec::new();
    for broker in &brokers {
        let node = handle.create_node().name(broker.name.to_string()).ip(broker.ip).build();
        node.spawn(echo(address(&roster, broker.id), sent.clone()));
        nodes.push(node.id());
    }
    madsim::time::sleep(super::FLOOR_SETTLE).await;
    let plans = floor_plan(messages, senders.len() as u64);
    let mut running = Vec::new();
    for (index, (entry, plan)) in senders.iter().zip(plans).enumerate() {
        let peer = address(&roster, brokers[index % brokers.len()].id);
        let node = handle.create_node().name(entry.name.to_string()).ip(entry.ip).build();
        running.push(node.spawn(send_pings(address(&roster, entry.id), peer, plan, span, sent.clone())));
        nodes.push(node.id());
    }
    for task in running {
        task.await.expect("a floor sender finishes once every echo is back");
    }
    // As kafsim's runs do: closing the sockets lets the finished run be freed.
    for node in nodes {
        handle.kill(node);
    }
    (start.elapsed(), sent.load(Ordering::Relaxed))
}
