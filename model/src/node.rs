//! The one shape every node of the model has, as quinn-proto's `Connection`:
//! inputs through `handle_*`, outputs into an `Outbox`, and `next_deadline` for
//! when it wants `handle_timeout`. Brokers, the controller, producers and
//! consumers all implement `Node`; the simulator drives any of them the same way.

use crate::net::{ConnectionCommand, ConnectionEvent, Destination, DisconnectReason};
use crate::protocol::{Message, Send};
use crate::storage::DiskOp;
use crate::time::Instant;
use crate::types::NodeId;

/// What a node's step leaves for its driver, in lanes of their own: messages
/// for the network, connects and disconnects, writes for its disk, and events of
/// the node's own kind for whoever runs it (a history, an invariant check).
/// `me` is the network endpoint the messages and connections leave from (a
/// process may hold more than one client, each with an endpoint of its own).
#[derive(Debug)]
pub struct Outbox<E> {
    pub me: NodeId,
    pub sends: Vec<Send>,
    pub connections: Vec<(NodeId, ConnectionCommand)>,
    pub disk: Vec<DiskOp>,
    pub events: Vec<E>,
}

impl<E> Outbox<E> {
    pub fn new(me: NodeId) -> Outbox<E> {
        Outbox { me, sends: Vec::new(), connections: Vec::new(), disk: Vec::new(), events: Vec::new() }
    }

    pub fn send(&mut self, to: NodeId, message: Message) {
        self.sends.push(Send { from: self.me, to, message });
    }

    pub fn connect(&mut self, destination: Destination) {
        self.connections.push((self.me, ConnectionCommand::Connect(destination)));
    }

    pub fn disconnect(&mut self, destination: Destination, reason: DisconnectReason) {
        self.connections.push((self.me, ConnectionCommand::Disconnect(destination, reason)));
    }

    pub fn event(&mut self, event: E) {
        self.events.push(event);
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.connections.is_empty() && self.disk.is_empty() && self.events.is_empty()
    }

    /// Trades the network's lanes (sends, connection commands) with `wire`'s:
    /// a driver lends its buffers to a node's own outbox for a step, and takes
    /// them back with the step's sends in them, copying nothing.
    pub fn swap_wire<F>(&mut self, wire: &mut Outbox<F>) {
        std::mem::swap(&mut self.sends, &mut wire.sends);
        std::mem::swap(&mut self.connections, &mut wire.connections);
    }
}

/// A node of the model: a state machine with no IO, driven by its inputs.
pub trait Node {
    /// What the node reports besides its messages and disk writes.
    type Event;

    /// A message from `from` arrived.
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<Self::Event>);

    /// The network's word on a connection this node opened.
    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<Self::Event>);

    /// Time passed: `next_deadline` came (or something else woke the node).
    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<Self::Event>);

    /// When the node next wants `handle_timeout`.
    fn next_deadline(&self) -> Option<Instant>;
}
