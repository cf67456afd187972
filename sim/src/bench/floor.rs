//! The floor: bare madsim nodes moving messages by the means kafsim's network
//! uses (madsim's timer puts each message, after a link latency drawn from a
//! seeded generator, into the receiving node's mpsc mailbox), with no
//! connections, no faults and no Kafka logic. What is left of kafsim's cost
//! per message over this floor is its own.

use super::{floor_plan, send_offset, SenderPlan};
use crate::context::{NodeRole, Roster};
use futures::StreamExt;
use madsim::runtime::Handle;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The floor's payload: which node sent it, and whether it asks for an echo.
struct Ping {
    from: usize,
    reply: bool,
}

type Mailbox = futures::channel::mpsc::UnboundedReceiver<Ping>;

/// The floor's network: each node's mailbox, and the latency generator. A send
/// is handed to madsim's timer, which puts it in the receiver's mailbox after
/// its latency, as kafsim's `network` does (without its connections and faults).
struct FloorNet {
    mailboxes: Vec<futures::channel::mpsc::UnboundedSender<Ping>>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    time: madsim::time::TimeHandle,
    sent: AtomicU64,
}

impl FloorNet {
    fn send(&self, to: usize, ping: Ping) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let latency = Duration::from_micros(self.rng.lock().expect("floor rng lock").gen_range(1_000..10_000));
        let mailbox = self.mailboxes[to].clone();
        self.time.add_timer_at(self.time.now_instant() + latency, move || {
            let _ = mailbox.unbounded_send(ping);
        });
    }
}

/// A broker of the floor: echoes every ping that asks for a reply, until the run ends.
async fn echo(me: usize, net: Arc<FloorNet>, mut arrivals: Mailbox) {
    while let Some(ping) = arrivals.next().await {
        if ping.reply {
            net.send(ping.from, Ping { from: me, reply: false });
        }
    }
}

/// Any other node of the floor: sends its pings paced over `span`, and waits for every echo.
async fn send_pings(me: usize, peer: usize, plan: SenderPlan, span: Duration, net: Arc<FloorNet>, mut arrivals: Mailbox) {
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
            Some(None) => panic!("a floor node's mailbox closed while the node still waited for echoes"),
            None => {
                let reply = sent_count < plan.round_trips;
                net.send(peer, Ping { from: me, reply });
                sent_count += 1;
            }
        }
    }
}

/// One floor run inside its runtime: returns the simulated time it took and the messages sent.
pub(super) async fn simulation(roster: Roster, messages: u64, span: Duration) -> (Duration, u64) {
    let handle = Handle::current();
    let start = madsim::time::Instant::now();
    let (mut senders, mut mailboxes) = (Vec::new(), Vec::new());
    for _ in &roster.entries {
        let (sender, mailbox) = futures::channel::mpsc::unbounded();
        senders.push(sender);
        mailboxes.push(Some(mailbox));
    }
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(handle.seed());
    let net = Arc::new(FloorNet { mailboxes: senders, rng: Mutex::new(rng), time: madsim::time::TimeHandle::current(), sent: AtomicU64::new(0) });
    let brokers: Vec<usize> = (0..roster.entries.len()).filter(|index| roster.entries[*index].role == NodeRole::Broker).collect();
    let clients: Vec<usize> = (0..roster.entries.len()).filter(|index| roster.entries[*index].role != NodeRole::Broker).collect();
    assert!(!brokers.is_empty(), "a validated scenario has at least one broker for the floor's senders to ping");
    let mut nodes = Vec::new();
    for broker in &brokers {
        let entry = &roster.entries[*broker];
        let node = handle.create_node().name(entry.name.to_string()).ip(entry.ip).build();
        node.spawn(echo(*broker, net.clone(), mailboxes[*broker].take().expect("one mailbox per node")));
        nodes.push(node.id());
    }
    madsim::time::sleep(super::FLOOR_SETTLE).await;
    let plans = floor_plan(messages, clients.len() as u64);
    let mut running = Vec::new();
    for (index, (client, plan)) in clients.iter().zip(plans).enumerate() {
        let entry = &roster.entries[*client];
        let peer = brokers[index % brokers.len()];
        let node = handle.create_node().name(entry.name.to_string()).ip(entry.ip).build();
        running.push(node.spawn(send_pings(*client, peer, plan, span, net.clone(), mailboxes[*client].take().expect("one mailbox per node"))));
        nodes.push(node.id());
    }
    for task in running {
        task.await.expect("a floor sender finishes once every echo is back");
    }
    // As kafsim's runs do: killing the nodes lets the finished run be freed.
    for node in nodes {
        handle.kill(node);
    }
    (start.elapsed(), net.sent.load(Ordering::Relaxed))
}
