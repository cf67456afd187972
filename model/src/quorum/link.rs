//! The quorum's messages on the wire: KafkaRaftClient sends over its own
//! NetworkClient, apart from a node's other traffic (`Channel::Quorum`).
//! The quorum pairs requests with responses and retries by its own timers,
//! so the link only holds a request until its connection is up: a node's
//! first fetch after a start waits for the connect instead of for
//! `quorum.request.timeout.ms`. Like any NetworkClient request, a Fetch or
//! Vote unanswered after `controller.quorum.request.timeout.ms` closes its
//! connection: the retry then goes on a new one, instead of queueing behind
//! a connection that TCP is still retransmitting on with a backoff of up to
//! two minutes.

use super::QuorumMessage;
use crate::config::NetworkConfig;
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient};
use crate::node::Outbox;
use crate::protocol::Message;
use crate::time::Instant;
use crate::types::NodeId;
use std::time::Duration;

/// Requests a connect holds back at most per peer; the quorum resends
/// anything that matters, so older ones are dropped first.
const QUEUED_PER_PEER: usize = 4;

/// The response a request in flight waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    /// A FetchResponse with this correlation id.
    Fetch(u64),
    /// A VoteResponse from this voter.
    Vote(NodeId),
}

impl Awaiting {
    fn request(to: NodeId, message: &QuorumMessage) -> Option<Awaiting> {
        match message {
            QuorumMessage::Fetch { correlation_id, .. } => Some(Awaiting::Fetch(*correlation_id)),
            QuorumMessage::Vote { .. } => Some(Awaiting::Vote(to)),
            _ => None,
        }
    }

    fn response(from: NodeId, message: &QuorumMessage) -> Option<Awaiting> {
        match message {
            QuorumMessage::FetchResponse { correlation_id, .. } => Some(Awaiting::Fetch(*correlation_id)),
            QuorumMessage::VoteResponse { .. } => Some(Awaiting::Vote(from)),
            _ => None,
        }
    }
}

pub struct QuorumLink {
    network: NetworkClient<Awaiting>,
    queued: Vec<(NodeId, QuorumMessage)>,
    request_timeout: Duration,
}

impl QuorumLink {
    pub fn new(config: NetworkConfig, request_timeout: Duration, jitter_seed: u64) -> QuorumLink {
        QuorumLink { network: NetworkClient::new(config, jitter_seed), queued: Vec::new(), request_timeout }
    }

    /// A response came: its request is no longer in flight (the oldest of
    /// its kind, as responses on one connection come in order).
    pub fn answered(&mut self, from: NodeId, message: &QuorumMessage) {
        let Some(awaiting) = Awaiting::response(from, message) else { return };
        let mut found = false;
        self.network.forget_where(|tag| {
            let this = !found && *tag == awaiting;
            found |= this;
            this
        });
    }

    /// Holds requests made while the node starts, when it may not send yet:
    /// the first `handle_timeout` connects for them.
    pub fn hold(&mut self, messages: Vec<(NodeId, QuorumMessage)>) {
        self.queued.extend(messages.into_iter().filter(|(_, message)| !message.is_response()));
    }

    /// Sends what one quorum step produced. A response goes back on its
    /// request's connection; a request goes on this node's own connection,
    /// or waits for it.
    pub fn send_all<E>(&mut self, now: Instant, messages: Vec<(NodeId, QuorumMessage)>, out: &mut Outbox<E>) {
        for (to, message) in messages {
            if message.is_response() {
                out.send(to, Message::Quorum(Box::new(message)));
                continue;
            }
            let destination = Destination::new(to, Channel::Quorum);
            if self.network.ready(now, destination, out) {
                match Awaiting::request(to, &message) {
                    Some(awaiting) => {
                        self.network.send(now, destination, self.request_timeout, awaiting, |_| Message::Quorum(Box::new(message)), out);
                    }
                    None => self.network.send_one_way(destination, Message::Quorum(Box::new(message)), out),
                }
            } else {
                if self.queued.iter().filter(|(peer, _)| *peer == to).count() >= QUEUED_PER_PEER {
                    let oldest = self.queued.iter().position(|(peer, _)| *peer == to).expect("counted above");
                    self.queued.remove(oldest);
                }
                self.queued.push((to, message));
            }
        }
    }

    /// The network's word on one of the link's connections.
    pub fn handle_connection<E>(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<E>) {
        self.network.handle_connection(now, destination, event);
        if matches!(event, ConnectionEvent::Established) {
            let (held, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued).into_iter().partition(|(peer, _)| *peer == destination.node);
            self.queued = rest;
            self.send_all(now, held, out);
        } else {
            // Refused or closed: what waits for it reconnects after the backoff.
            let _ = self.network.ready(now, destination, out);
        }
    }

    /// Connects whose setup timed out, requests unanswered too long (each
    /// closes its connection), and reconnects whose backoff ended.
    pub fn handle_timeout<E>(&mut self, now: Instant, out: &mut Outbox<E>) {
        self.network.poll_timeouts(now, out);
        let peers: Vec<NodeId> = self.queued.iter().map(|(peer, _)| *peer).collect();
        for peer in peers {
            let _ = self.network.ready(now, Destination::new(peer, Channel::Quorum), out);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.network.next_deadline()
    }
}
