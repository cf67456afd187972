//! Kafka's `NetworkClient` (clients/.../NetworkClient.java with
//! `ClusterConnectionStates` and `InFlightRequests`), sans-IO: the state of each
//! connection a node opens, and the requests in flight on them.
//!
//! - A request goes only on a ready connection. `ready` starts a connect when
//!   the connection is down and its reconnect backoff is over
//!   (`reconnect.backoff.ms`, doubling per failure up to
//!   `reconnect.backoff.max.ms`, with 20% jitter).
//! - A connect that does not complete within `socket.connection.setup.timeout.ms`
//!   (doubling per failure up to `socket.connection.setup.timeout.max.ms`,
//!   KIP-601) is given up.
//! - A closed connection (`handle_connection`) fails every request in flight on
//!   it, as `NetworkClient.processDisconnection` does.
//! - A request past its timeout closes its connection and fails every request in
//!   flight on it (`handleTimedOutRequests` -> `processTimeoutDisconnection`).
//!
//! Each request carries a tag of the caller's choosing, handed back with its
//! response or its failure: what the caller needs to know of the request then.

use super::{ConnectionEvent, Destination, DisconnectReason};
use crate::node::Outbox;
use crate::protocol::Message;
use crate::error::ErrorCode;
use crate::time::{earliest, Instant};
use crate::types::NodeId;
use std::collections::VecDeque;
use std::time::Duration;
use crate::config::NetworkConfig;

/// Why a request got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFailure {
    /// Its connection closed first (Kafka's `DisconnectException`).
    Disconnected,
    /// It outlived its own timeout, and the client closed its connection.
    TimedOut,
}

impl RequestFailure {
    /// The error a caller reports for it. Both are retriable, and the request
    /// may have been served all the same.
    pub fn error_code(self) -> ErrorCode {
        match self {
            RequestFailure::Disconnected => ErrorCode::NetworkException,
            RequestFailure::TimedOut => ErrorCode::NetworkTimeout,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection. `wanted`: a caller asked for it during its backoff, so the
    /// client wakes when the backoff ends.
    Disconnected { retry_at: Instant, wanted: bool },
    Connecting { deadline: Instant },
    Ready,
}

#[derive(Clone, Copy, Debug)]
struct Connection {
    destination: Destination,
    state: State,
    /// Failed connects and closes since the connection was last ready.
    failures: u32,
    last_attempt: Instant,
}

struct InFlight<T> {
    correlation_id: u64,
    destination: Destination,
    deadline: Instant,
    tag: T,
}

pub struct NetworkClient<T> {
    config: NetworkConfig,
    /// Sorted by destination: a node talks to a handful of peers.
    connections: Vec<Connection>,
    /// In correlation id order, which is send order.
    in_flight: VecDeque<InFlight<T>>,
    next_correlation_id: u64,
    /// The state of the jitter's generator (splitmix64), seeded by the caller:
    /// the model owns no source of randomness.
    jitter_state: u64,
}

impl<T> NetworkClient<T> {
    pub fn new(config: NetworkConfig, jitter_seed: u64) -> NetworkClient<T> {
        NetworkClient { config, connections: Vec::new(), in_flight: VecDeque::new(), next_correlation_id: 0, jitter_state: jitter_seed }
    }

    fn index(&self, destination: Destination) -> Result<usize, usize> {
        self.connections.binary_search_by_key(&destination, |connection| connection.destination)
    }

    fn connection_mut(&mut self, destination: Destination) -> &mut Connection {
        let index = self.index(destination).unwrap_or_else(|index| {
            let state = State::Disconnected { retry_at: Instant::ZERO, wanted: false };
            self.connections.insert(index, Connection { destination, state, failures: 0, last_attempt: Instant::ZERO });
            index
        });
        &mut self.connections[index]
    }

    /// Kafka's `NetworkClient.ready`: whether a request may go to `destination`
    /// now. If not, starts connecting when the connection is down and its
    /// backoff is over.
    pub fn ready<E>(&mut self, now: Instant, destination: Destination, out: &mut Outbox<E>) -> bool {
        let connection = self.connection_mut(destination);
        match connection.state {
            State::Ready => true,
            State::Connecting { .. } => false,
            State::Disconnected { retry_at, .. } if now >= retry_at => {
                let failures = connection.failures;
                let jitter = self.next_jitter();
                let timeout = exponential(self.config.connection_setup_timeout, self.config.connection_setup_timeout_max, failures, jitter);
                let connection = self.connection_mut(destination);
                connection.state = State::Connecting { deadline: now + timeout };
                connection.last_attempt = now;
                out.connect(destination);
                false
            }
            State::Disconnected { retry_at, .. } => {
                connection.state = State::Disconnected { retry_at, wanted: true };
                false
            }
        }
    }

    /// Asks to be woken (`next_deadline`) when a connect to any of `nodes` may
    /// start: for a caller that found every node backing off.
    pub fn want_any(&mut self, nodes: &[NodeId], channel: super::Channel) {
        for node in nodes {
            if let Ok(index) = self.index(Destination::new(*node, channel)) {
                if let State::Disconnected { retry_at, .. } = self.connections[index].state {
                    self.connections[index].state = State::Disconnected { retry_at, wanted: true };
                }
            }
        }
    }

    /// Kafka's `NetworkClient.isUnavailable`: the last connect to
    /// `destination` failed and its backoff runs, so a caller that needs that
    /// very node (a coordinator) should look it up again.
    pub fn is_unavailable(&self, now: Instant, destination: Destination) -> bool {
        self.index(destination).is_ok_and(|index| {
            let connection = &self.connections[index];
            connection.failures > 0 && matches!(connection.state, State::Disconnected { retry_at, .. } if retry_at > now)
        })
    }

    pub fn is_ready(&self, destination: Destination) -> bool {
        self.index(destination).is_ok_and(|index| self.connections[index].state == State::Ready)
    }

    /// Whether a connect to `destination` could start now (no backoff running).
    fn can_connect(&self, now: Instant, destination: Destination) -> bool {
        match self.index(destination) {
            Err(_) => true,
            Ok(index) => matches!(self.connections[index].state, State::Disconnected { retry_at, .. } if now >= retry_at),
        }
    }

    fn is_connecting(&self, destination: Destination) -> bool {
        self.index(destination).is_ok_and(|index| matches!(self.connections[index].state, State::Connecting { .. }))
    }

    /// Kafka's `leastLoadedNode`: among `nodes` (tried from `start` on), a ready
    /// one with nothing in flight, else the ready one with least in flight, else
    /// one already connecting, else the one that can connect and tried least
    /// recently. None while every node is backing off.
    pub fn least_loaded_node(&self, now: Instant, nodes: &[NodeId], start: usize, channel: super::Channel) -> Option<NodeId> {
        let mut ready: Option<(usize, NodeId)> = None;
        let mut connecting = None;
        let mut can_connect: Option<(Instant, NodeId)> = None;
        for index in 0..nodes.len() {
            let node = nodes[(start + index) % nodes.len()];
            let destination = Destination::new(node, channel);
            if self.is_ready(destination) {
                let count = self.in_flight_to(destination);
                if count == 0 {
                    return Some(node);
                }
                if ready.is_none_or(|(least, _)| count < least) {
                    ready = Some((count, node));
                }
            } else if self.is_connecting(destination) {
                connecting = Some(node);
            } else if self.can_connect(now, destination) {
                let last = self.index(destination).map_or(Instant::ZERO, |index| self.connections[index].last_attempt);
                if can_connect.is_none_or(|(oldest, _)| last < oldest) {
                    can_connect = Some((last, node));
                }
            }
        }
        ready.map(|(_, node)| node).or(connecting).or(can_connect.map(|(_, node)| node))
    }

    /// Sends a request on a ready connection; `message` is made with the
    /// request's correlation id. Returns that id.
    pub fn send<E>(&mut self, now: Instant, destination: Destination, timeout: Duration, tag: T, message: impl FnOnce(u64) -> Message, out: &mut Outbox<E>) -> u64 {
        assert!(self.is_ready(destination), "a request goes only on a ready connection ({destination:?})");
        self.next_correlation_id += 1;
        let correlation_id = self.next_correlation_id;
        let message = message(correlation_id);
        debug_assert_eq!(super::Channel::of(&message), destination.channel, "a request travels on its kind's channel");
        out.send(destination.node, message);
        self.in_flight.push_back(InFlight { correlation_id, destination, deadline: now + timeout, tag });
        correlation_id
    }

    /// A message that expects no response (UpdateMetadata), on a ready connection.
    pub fn send_one_way<E>(&mut self, destination: Destination, message: Message, out: &mut Outbox<E>) {
        assert!(self.is_ready(destination), "a message goes only on a ready connection ({destination:?})");
        out.send(destination.node, message);
    }

    /// The tag of the request a response answers, taken out of flight; None for
    /// a response to a request no longer in flight (its connection closed, so
    /// Kafka would never have read it).
    pub fn take(&mut self, correlation_id: u64) -> Option<T> {
        // Responses mostly come in the order requests went out: the oldest first.
        let index = if self.in_flight.front().is_some_and(|request| request.correlation_id == correlation_id) {
            0
        } else {
            self.in_flight.binary_search_by_key(&correlation_id, |request| request.correlation_id).ok()?
        };
        self.in_flight.remove(index).map(|request| request.tag)
    }

    /// The tag of the request in flight with `correlation_id`, left in flight.
    pub fn get(&self, correlation_id: u64) -> Option<&T> {
        let index = self.in_flight.binary_search_by_key(&correlation_id, |request| request.correlation_id).ok()?;
        Some(&self.in_flight[index].tag)
    }

    /// The network's word on a connection; returns the requests it failed.
    pub fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent) -> Vec<(T, RequestFailure)> {
        let Ok(index) = self.index(destination) else { return Vec::new() };
        let connection = &mut self.connections[index];
        match (event, connection.state) {
            (ConnectionEvent::Established, State::Connecting { .. }) => {
                connection.state = State::Ready;
                connection.failures = 0;
                Vec::new()
            }
            (ConnectionEvent::Closed(_), State::Ready | State::Connecting { .. }) => self.disconnected(now, destination, None),
            // An event about a connection this client already gave up.
            _ => Vec::new(),
        }
    }

    /// Marks `destination` down after a failure, starting its backoff, and fails
    /// what was in flight on it; `timed_out` ones fail as timeouts.
    fn disconnected(&mut self, now: Instant, destination: Destination, timed_out_before: Option<Instant>) -> Vec<(T, RequestFailure)> {
        let backoff = self.config.reconnect_backoff;
        let backoff_max = self.config.reconnect_backoff_max;
        let jitter = self.next_jitter();
        let connection = self.connection_mut(destination);
        connection.state = State::Disconnected { retry_at: now + exponential(backoff, backoff_max, connection.failures, jitter), wanted: false };
        connection.failures = connection.failures.saturating_add(1);
        let mut failed = Vec::new();
        let mut index = 0;
        while index < self.in_flight.len() {
            if self.in_flight[index].destination == destination {
                let request = self.in_flight.remove(index).expect("index is in range");
                let failure = match timed_out_before {
                    Some(now) if request.deadline <= now => RequestFailure::TimedOut,
                    _ => RequestFailure::Disconnected,
                };
                failed.push((request.tag, failure));
            } else {
                index += 1;
            }
        }
        failed
    }

    /// Gives up connects and requests whose time is over: each closes its
    /// connection (a command for the network) and fails what was in flight on it.
    pub fn poll_timeouts<E>(&mut self, now: Instant, out: &mut Outbox<E>) -> Vec<(T, RequestFailure)> {
        // A wanted connection whose backoff is over has had its wake: a caller
        // that still wants it asks `ready` again in this pass.
        for connection in &mut self.connections {
            if let State::Disconnected { retry_at, wanted: true } = connection.state {
                if retry_at <= now {
                    connection.state = State::Disconnected { retry_at, wanted: false };
                }
            }
        }
        let mut failed = Vec::new();
        let setup_expired: Vec<Destination> = self
            .connections
            .iter()
            .filter(|connection| matches!(connection.state, State::Connecting { deadline } if deadline <= now))
            .map(|connection| connection.destination)
            .collect();
        for destination in setup_expired {
            out.disconnect(destination, DisconnectReason::SetupTimedOut);
            failed.extend(self.disconnected(now, destination, None));
        }
        while let Some(destination) = self.in_flight.iter().find(|request| request.deadline <= now).map(|request| request.destination) {
            out.disconnect(destination, DisconnectReason::RequestTimedOut);
            failed.extend(self.disconnected(now, destination, Some(now)));
        }
        failed
    }

    /// When `poll_timeouts` next has work, or a wanted connection's backoff ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.in_flight.iter().map(|request| request.deadline).min();
        for connection in &self.connections {
            match connection.state {
                State::Connecting { deadline: setup } => deadline = earliest(deadline, Some(setup)),
                State::Disconnected { retry_at, wanted: true } => deadline = earliest(deadline, Some(retry_at)),
                _ => {}
            }
        }
        deadline
    }

    pub fn in_flight_to(&self, destination: Destination) -> usize {
        self.in_flight.iter().filter(|request| request.destination == destination).count()
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// The tags of every request in flight, oldest first.
    pub fn in_flight_tags(&self) -> impl Iterator<Item = &T> {
        self.in_flight.iter().map(|request| &request.tag)
    }

    /// Takes every request in flight whose tag `pick` picks, without a response:
    /// a caller that no longer wants their answers (which `take` will then ignore).
    pub fn forget_where(&mut self, mut pick: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut forgotten = Vec::new();
        let mut index = 0;
        while index < self.in_flight.len() {
            if pick(&self.in_flight[index].tag) {
                forgotten.push(self.in_flight.remove(index).expect("index is in range").tag);
            } else {
                index += 1;
            }
        }
        forgotten
    }

    /// A factor in [0.8, 1.2): Kafka's `ExponentialBackoff` jitter of 0.2.
    fn next_jitter(&mut self) -> f64 {
        self.jitter_state = self.jitter_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.jitter_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        0.8 + 0.4 * ((z >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Kafka's `ExponentialBackoff.backoff(attempts)`: `initial * 2^attempts`, at
/// most `max`, times a jitter factor.
fn exponential(initial: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    let term = initial.saturating_mul(1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX)).min(max);
    term.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::super::{Channel, CloseReason, ConnectionCommand};
    use super::*;

    fn destination(node: u32) -> Destination {
        Destination::new(NodeId(node), Channel::Default)
    }

    fn at(millis: u64) -> Instant {
        Instant::from_micros(millis * 1000)
    }

    fn metadata_request(correlation_id: u64) -> Message {
        Message::MetadataRequest { correlation_id }
    }

    fn connected(client: &mut NetworkClient<&'static str>, node: u32, now: Instant) {
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        assert!(!client.ready(now, destination(node), &mut out));
        assert_eq!(out.connections, vec![(NodeId(0), ConnectionCommand::Connect(destination(node)))]);
        assert!(client.handle_connection(now, destination(node), ConnectionEvent::Established).is_empty());
        assert!(client.ready(now, destination(node), &mut out));
    }

    #[test]
    fn a_request_waits_for_its_connection_and_its_response_returns_its_tag() {
        let mut client = NetworkClient::new(NetworkConfig::default(), 1);
        connected(&mut client, 1, at(0));
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        let id = client.send(at(0), destination(1), Duration::from_secs(30), "metadata", metadata_request, &mut out);
        assert_eq!(out.sends.len(), 1);
        assert_eq!(client.take(id), Some("metadata"));
        assert_eq!(client.take(id), None, "a second answer to one request is ignored");
    }

    #[test]
    fn a_reset_fails_what_was_in_flight_on_that_connection_only_and_backs_off() {
        let mut client = NetworkClient::new(NetworkConfig::default(), 1);
        connected(&mut client, 1, at(0));
        connected(&mut client, 2, at(0));
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        client.send(at(0), destination(1), Duration::from_secs(30), "to 1", metadata_request, &mut out);
        client.send(at(0), destination(2), Duration::from_secs(30), "to 2", metadata_request, &mut out);
        let failed = client.handle_connection(at(5), destination(1), ConnectionEvent::Closed(CloseReason::Reset));
        assert_eq!(failed, vec![("to 1", RequestFailure::Disconnected)]);
        assert_eq!(client.in_flight_count(), 1);
        out.connections.clear();
        assert!(!client.ready(at(6), destination(1), &mut out), "backing off after the reset");
        assert!(out.connections.is_empty());
        assert_eq!(client.next_deadline().map(|deadline| deadline <= at(5 + 60)), Some(true), "it wakes when the wanted connection may be tried");
        assert!(!client.ready(at(5 + 60), destination(1), &mut out));
        assert_eq!(out.connections, vec![(NodeId(0), ConnectionCommand::Connect(destination(1)))], "a new connect once the backoff is over");
    }

    #[test]
    fn a_request_timeout_closes_its_connection_and_fails_every_request_on_it() {
        let mut client = NetworkClient::new(NetworkConfig::default(), 1);
        connected(&mut client, 1, at(0));
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        client.send(at(0), destination(1), Duration::from_secs(30), "old", metadata_request, &mut out);
        client.send(at(20_000), destination(1), Duration::from_secs(30), "young", metadata_request, &mut out);
        assert!(client.poll_timeouts(at(29_999), &mut out).is_empty());
        let failed = client.poll_timeouts(at(30_000), &mut out);
        assert_eq!(failed, vec![("old", RequestFailure::TimedOut), ("young", RequestFailure::Disconnected)]);
        assert_eq!(out.connections, vec![(NodeId(0), ConnectionCommand::Disconnect(destination(1), DisconnectReason::RequestTimedOut))]);
        assert!(!client.is_ready(destination(1)));
    }

    #[test]
    fn a_connect_that_never_completes_is_given_up_and_its_timeout_grows() {
        let mut client: NetworkClient<()> = NetworkClient::new(NetworkConfig::default(), 7);
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        let mut now = at(0);
        let mut timeouts = Vec::new();
        for _ in 0..4 {
            while !client.ready(now, destination(3), &mut out) && out.connections.last() != Some(&(NodeId(0), ConnectionCommand::Connect(destination(3)))) {
                now = client.next_deadline().expect("it wakes for the wanted connection");
            }
            let started = now;
            out.connections.clear();
            now = client.next_deadline().expect("a connect has a deadline");
            client.poll_timeouts(now, &mut out);
            assert_eq!(out.connections, vec![(NodeId(0), ConnectionCommand::Disconnect(destination(3), DisconnectReason::SetupTimedOut))]);
            out.connections.clear();
            timeouts.push(now.saturating_since(started));
        }
        assert!(timeouts[0] >= Duration::from_secs(8) && timeouts[0] <= Duration::from_secs(12), "{timeouts:?}");
        assert!(timeouts[1] >= Duration::from_secs(16) && timeouts[1] <= Duration::from_secs(24), "{timeouts:?}");
        assert!(timeouts[3] <= Duration::from_secs(36), "capped at the maximum, with jitter: {timeouts:?}");
    }

    #[test]
    fn the_least_loaded_node_prefers_idle_ready_then_connecting_then_connectable() {
        let mut client = NetworkClient::new(NetworkConfig::default(), 1);
        let nodes = [NodeId(1), NodeId(2), NodeId(3)];
        assert_eq!(client.least_loaded_node(at(0), &nodes, 1, Channel::Default), Some(NodeId(2)), "nothing tried yet: the first that can connect");
        connected(&mut client, 3, at(0));
        let mut out: Outbox<()> = Outbox::new(NodeId(0));
        client.send(at(0), destination(3), Duration::from_secs(30), "busy", metadata_request, &mut out);
        assert_eq!(client.least_loaded_node(at(0), &nodes, 0, Channel::Default), Some(NodeId(3)), "a ready node beats ones that must connect");
        client.ready(at(0), destination(1), &mut out);
        client.handle_connection(at(1), destination(1), ConnectionEvent::Established);
        assert_eq!(client.least_loaded_node(at(1), &nodes, 0, Channel::Default), Some(NodeId(1)), "an idle ready node beats a busy one");
    }
}
