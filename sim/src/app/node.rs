//! An application instance's node: the clients its code made, each a model
//! client on a network endpoint of its own, driven by the one `node::drive`
//! loop as every other node is. The application's calls (`session`) step the
//! same clients from its own task and wake the loop (`Arrival::Wake`), which
//! sends what they left and takes their new deadlines.

use super::consumer_core::ConsumerCore;
use super::producer_core::ProducerCore;
use crate::context::RunContext;
use crate::node::{Machine, Wire};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::sync::Arc;
use std::task::Waker;

/// The clients one instance may make in one run of its process.
pub const MAX_CLIENTS: u32 = 16;
/// App instance `n` is node `APP_NODE_BASE + n`; its clients' endpoints are
/// `APP_ENDPOINT_BASE + n * MAX_CLIENTS + k`.
pub const APP_NODE_BASE: u32 = 5000;
const APP_ENDPOINT_BASE: u32 = 10_000;

/// The network endpoint of client `index` of app node `node`.
pub fn client_endpoint(node: NodeId, index: u32) -> NodeId {
    NodeId(APP_ENDPOINT_BASE + (node.0 - APP_NODE_BASE) * MAX_CLIENTS + index)
}

/// The app node an endpoint belongs to, and the client's index, if it is an app client's.
pub fn endpoint_owner(endpoint: NodeId) -> Option<(NodeId, u32)> {
    let offset = endpoint.0.checked_sub(APP_ENDPOINT_BASE)?;
    Some((NodeId(APP_NODE_BASE + offset / MAX_CLIENTS), offset % MAX_CLIENTS))
}

pub(crate) enum Client {
    Producer(Box<ProducerCore>),
    Consumer(Box<ConsumerCore>),
}

impl Client {
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message) {
        match self {
            Client::Producer(core) => core.handle_message(now, from, message),
            Client::Consumer(core) => core.handle_message(now, from, message),
        }
    }

    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent) {
        match self {
            Client::Producer(core) => core.handle_connection(now, destination, event),
            Client::Consumer(core) => core.handle_connection(now, destination, event),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Client::Producer(core) => core.handle_timeout(now),
            Client::Consumer(core) => core.handle_timeout(now),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Client::Producer(core) => core.next_deadline(),
            Client::Consumer(core) => core.next_deadline(),
        }
    }

    /// Carries out what the client reported, and moves its sends to `wire`.
    /// True if it reported anything or had anything to send.
    fn settle(&mut self, now: Instant, wire: &mut Wire) -> bool {
        match self {
            Client::Producer(core) => core.settle(now, wire),
            Client::Consumer(core) => core.settle(now, wire),
        }
    }
}

pub struct AppNode {
    pub(crate) ctx: Arc<RunContext>,
    pub(crate) id: NodeId,
    /// The instance's number, from 1.
    pub(crate) number: u32,
    pub(crate) name: Arc<str>,
    pub(crate) clients: Vec<Client>,
    /// What the application's calls left for the loop to send.
    wire: Wire,
    /// The application's calls waiting for a client to move on.
    wakers: Vec<Waker>,
}

impl AppNode {
    pub(crate) fn new(ctx: Arc<RunContext>, id: NodeId, number: u32) -> AppNode {
        let name = ctx.roster.entry(id).name.clone();
        AppNode { ctx, id, number, name, clients: Vec::new(), wire: Wire::new(id), wakers: Vec::new() }
    }

    /// The endpoint and history name of the next client, or None when the
    /// instance already made `MAX_CLIENTS`. The first producer and the first
    /// consumer record under the instance's name, as a pipeline member's two
    /// clients do; any further one under its own (`app-1/consumer-2`), so two
    /// consumers' reads are never taken for one's.
    pub(crate) fn next_client(&self, kind: &str) -> Option<(NodeId, Arc<str>, u32)> {
        let index = self.clients.len() as u32;
        if index >= MAX_CLIENTS {
            return None;
        }
        let same_kind = self.clients.iter().filter(|client| matches!((client, kind), (Client::Producer(_), "producer") | (Client::Consumer(_), "consumer"))).count() as u32;
        let name: Arc<str> = if same_kind == 0 { self.name.clone() } else { format!("{}/{kind}-{}", self.name, same_kind + 1).into() };
        Some((client_endpoint(self.id, index), name, same_kind))
    }

    pub(crate) fn producer(&mut self, index: usize) -> &mut ProducerCore {
        match &mut self.clients[index] {
            Client::Producer(core) => core,
            Client::Consumer(_) => unreachable!("a producer handle names a producer"),
        }
    }

    pub(crate) fn consumer(&mut self, index: usize) -> &mut ConsumerCore {
        match &mut self.clients[index] {
            Client::Consumer(core) => core,
            Client::Producer(_) => unreachable!("a consumer handle names a consumer"),
        }
    }

    /// Carries out what every client reported; their sends wait in the node's
    /// wire. True if any client reported anything or had anything to send.
    pub(crate) fn settle(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        for client in &mut self.clients {
            progressed |= client.settle(now, &mut self.wire);
        }
        progressed
    }

    /// Whether the application's calls left sends for the loop.
    pub(crate) fn has_wire(&self) -> bool {
        !self.wire.sends.is_empty() || !self.wire.connections.is_empty()
    }

    pub(crate) fn add_waker(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|known| known.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }

    pub(crate) fn wake_all(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }

    /// After a step: settle, hand the sends to the loop, wake the waiting calls.
    fn finish(&mut self, now: Instant, wire: &mut Wire) {
        self.settle(now);
        wire.sends.append(&mut self.wire.sends);
        wire.connections.append(&mut self.wire.connections);
        self.wake_all();
    }

    fn client_at(&mut self, endpoint: NodeId) -> Option<&mut Client> {
        let (node, index) = endpoint_owner(endpoint)?;
        debug_assert_eq!(node, self.id, "an arrival for another node's client");
        self.clients.get_mut(index as usize)
    }
}

impl Machine for AppNode {
    fn handle_message(&mut self, now: Instant, to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        if let Some(client) = self.client_at(to) {
            client.handle_message(now, from, message);
        }
        self.finish(now, wire);
    }

    fn handle_connection(&mut self, now: Instant, at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        if let Some(client) = self.client_at(at) {
            client.handle_connection(now, destination, event);
        }
        self.finish(now, wire);
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        for client in &mut self.clients {
            client.handle_timeout(now);
        }
        self.finish(now, wire);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().fold(None, |deadline, client| kafsim_model::time::earliest(deadline, client.next_deadline()))
    }

    fn handle_wake(&mut self, now: Instant, wire: &mut Wire) {
        self.finish(now, wire);
    }
}
