//! The network as Kafka's TCP connections see it: one connection per
//! (initiator endpoint, acceptor, channel), opened by a handshake, in order and
//! lossless while it is open, and closed only by what closes TCP connections.
//!
//! Faults it can inject, and what each does to a connection:
//! - A partition (a cut link, in one or both directions) or a machine that lost
//!   power delays what is sent across it: TCP retransmits with an exponential
//!   backoff (RTO from 200 ms, doubling up to 120 s; 1 s for a SYN), so the data
//!   arrives at the first retransmission after the link heals, unless the
//!   connection closed first.
//! - Packet loss is retransmission latency, never loss: a segment lost k times
//!   arrives 200 ms x (2^k - 1) late, and what follows it waits behind it.
//! - A process crash (the machine stays up) closes its sockets: each peer that
//!   opened a connection to it sees a reset one network delay later, after
//!   whatever the process had sent before it died.
//! - A power loss sends nothing: peers notice only by their own timeouts. When
//!   the machine comes back, a segment retransmitted on an old connection gets a
//!   reset, and so does the next one a peer sends on it.
//! - A connect to a machine whose process is down is refused (RST) after one
//!   round trip; to a machine that is off or cut off, the SYN is retransmitted.
//! - A paused process's kernel still accepts connections and data: they wait
//!   for the process in its socket buffers.
//!
//! Delivery runs on madsim's timer, not through madsim's own network: each
//! segment is handed to the receiving endpoint's mailbox at its arrival time.

use kafsim_model::net::{Channel, CloseReason, ConnectionCommand, ConnectionEvent, Destination};
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A link's one-way latency: madsim's default range.
const LATENCY_MIN_MICROS: u64 = 1_000;
const LATENCY_MAX_MICROS: u64 = 10_000;
/// Between two endpoints of one machine (loopback).
const LOOPBACK_MICROS: u64 = 50;
/// Linux's TCP_RTO_MIN (200 ms) and TCP_TIMEOUT_INIT (1 s, a SYN's first RTO).
const RTO_MIN_MICROS: u64 = 200_000;
const SYN_RTO_MICROS: u64 = 1_000_000;
/// Linux's TCP_RTO_MAX.
const RTO_MAX_MICROS: u64 = 120_000_000;
/// `tcp_retries2` = 15: a connection whose data goes unacknowledged this long
/// is given up (ETIMEDOUT), at least 924.6 s.
const RETRANSMISSION_LIMIT_MICROS: u64 = 924_600_000;
/// A socket its process closed with data still unacknowledged (an orphan) keeps
/// retransmitting it: `tcp_orphan_retries` = 0 means 8 retries, about 102 s.
const ORPHAN_RETRANSMISSION_LIMIT_MICROS: u64 = 102_200_000;
/// How many times one segment may be lost in a row (tcp_retries2).
const LOSS_RETRIES_MAX: u32 = 15;

/// What reaches a node: a message for one of its endpoints, or word on a
/// connection one of its endpoints opened.
#[derive(Debug)]
pub enum Arrival {
    Message { to: NodeId, from: NodeId, message: Message },
    Connection { at: NodeId, destination: Destination, event: ConnectionEvent },
    /// Not from the network: an application's call on one of the node's
    /// clients left work for the node's loop (`crate::app`).
    Wake,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ConnectionKey {
    initiator: NodeId,
    acceptor: NodeId,
    channel: Channel,
}

/// One connection, whether the current one of its key or an orphan: a key
/// may have been connected again while an older connection still holds data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnectionId {
    key: ConnectionKey,
    generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Initiator,
    Acceptor,
}

/// What travels in one direction of a connection.
#[derive(Debug)]
enum Segment {
    Data(Message),
    /// The initiator's SYN.
    Syn,
    /// What the initiator hears of its connection: the handshake's outcome, or its end.
    Event(ConnectionEvent),
}

#[derive(Debug, Default)]
struct Direction {
    /// When the last segment scheduled on it arrives (microseconds), so the
    /// next arrives after it: TCP delivers in order.
    last_arrival: u64,
    /// Segments waiting for a cut link to heal or a machine to come back.
    stalled: VecDeque<Segment>,
    /// When the oldest unacknowledged segment was first sent.
    unacked_since: Option<u64>,
}

#[derive(Debug)]
struct Connection {
    generation: u64,
    open: bool,
    /// The initiator closed it (a request timed out): nothing more reaches it.
    closed_by_initiator: bool,
    /// The acceptor's machine restarted after a power loss and knows nothing of
    /// the connection: the initiator's next segment gets a reset.
    half_open: bool,
    initiator_incarnation: u64,
    acceptor_incarnation: u64,
    /// initiator -> acceptor, and acceptor -> initiator.
    forward: Direction,
    backward: Direction,
}

impl Connection {
    fn direction(&mut self, toward: Side) -> &mut Direction {
        match toward {
            Side::Acceptor => &mut self.forward,
            Side::Initiator => &mut self.backward,
        }
    }
}

#[derive(Debug, Default)]
struct Host {
    mailbox: Option<futures::channel::mpsc::UnboundedSender<Arrival>>,
    incarnation: u64,
    process_up: bool,
    machine_up: bool,
}

#[derive(Default)]
struct State {
    hosts: BTreeMap<NodeId, Host>,
    /// Every endpoint's host (a host is the endpoint named like it, and perhaps more).
    host_of: BTreeMap<NodeId, NodeId>,
    connections: BTreeMap<ConnectionKey, Connection>,
    /// Connections their initiator closed and then replaced, while their kernel
    /// still retransmits what they held.
    orphans: Vec<(ConnectionKey, Connection)>,
    /// Cut links between hosts, by direction, counted: faults may overlap.
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    cut_count: u64,
    loss_rate: f64,
    extra_latency_micros: u64,
    next_generation: u64,
    /// Requests on their way or waiting at their acceptor, by the id the
    /// acceptor knows them by: the connection they came on and the id their
    /// sender gave them. Kafka answers on the socket a request came in on, and
    /// a client restarted or reconnected reuses correlation ids, so a late
    /// answer must not reach a newer connection of the same key.
    routes: Routes,
}

#[derive(Clone, Copy, Debug)]
struct Route {
    generation: u64,
    correlation_id: u64,
}

/// Routes by id, ids handed out in order. Answers come back roughly in the
/// order requests went out, so a queue indexed from its oldest open id is a
/// map with O(1) insert and remove (one request in thousands goes unanswered
/// and holds its slot until the run ends).
#[derive(Debug, Default)]
struct Routes {
    /// The id of `slots[0]`.
    first: u64,
    slots: VecDeque<Option<Route>>,
}

impl Routes {
    fn insert(&mut self, route: Route) -> u64 {
        self.slots.push_back(Some(route));
        self.first + self.slots.len() as u64 - 1
    }

    fn remove(&mut self, id: u64) -> Option<Route> {
        let index = usize::try_from(id.checked_sub(self.first)?).ok()?;
        let route = self.slots.get_mut(index)?.take();
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        route
    }

    #[cfg(test)]
    fn get(&self, id: u64) -> Option<Route> {
        *self.slots.get(usize::try_from(id.checked_sub(self.first)?).ok()?)?
    }
}

pub struct Network {
    state: Mutex<State>,
    rng: Mutex<ChaCha8Rng>,
    time: madsim::time::TimeHandle,
    /// The madsim instant of the run's time zero.
    start: madsim::time::Instant,
}

impl Network {
    /// `endpoints` lists each host's endpoints, the host's own first.
    pub fn new(seed: u64, start: madsim::time::Instant, endpoints: &[(NodeId, Vec<NodeId>)]) -> Network {
        let mut state = State::default();
        for (host, list) in endpoints {
            // Every machine is on; its process starts when its node first runs.
            state.hosts.insert(*host, Host { machine_up: true, ..Host::default() });
            for endpoint in list {
                state.host_of.insert(*endpoint, *host);
            }
        }
        Network { state: Mutex::new(state), rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x7463_702d_6e65_7421)), time: madsim::time::TimeHandle::current(), start }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("network lock")
    }

    /// The current connection of `key`.
    fn current(state: &State, key: ConnectionKey) -> Option<ConnectionId> {
        state.connections.get(&key).map(|connection| ConnectionId { key, generation: connection.generation })
    }

    /// Carries out a node's connection commands.
    pub fn command(self: &Arc<Self>, now: Instant, from: NodeId, command: ConnectionCommand) {
        match command {
            ConnectionCommand::Connect(destination) => self.connect(now, from, destination),
            ConnectionCommand::Disconnect(destination, _) => {
                let key = ConnectionKey { initiator: from, acceptor: destination.node, channel: destination.channel };
                if let Some(connection) = self.lock().connections.get_mut(&key) {
                    // close(2): nothing more reaches the initiator, but what it sent
                    // and was not acknowledged is still retransmitted by its kernel
                    // (an orphaned socket), so a request delayed behind a partition
                    // may reach the broker after the client has given up on it.
                    connection.open = false;
                    connection.closed_by_initiator = true;
                    connection.forward.stalled.retain(|segment| matches!(segment, Segment::Data(_)));
                    connection.backward.stalled.clear();
                }
            }
        }
    }

    fn connect(self: &Arc<Self>, now: Instant, initiator: NodeId, destination: Destination) {
        let now = now.as_micros();
        let key = ConnectionKey { initiator, acceptor: destination.node, channel: destination.channel };
        let mut state = self.lock();
        let Some(&acceptor_host) = state.host_of.get(&destination.node) else { return };
        let initiator_host = state.host_of[&initiator];
        state.next_generation += 1;
        let connection = Connection {
            generation: state.next_generation,
            open: false,
            closed_by_initiator: false,
            half_open: false,
            initiator_incarnation: state.hosts[&initiator_host].incarnation,
            acceptor_incarnation: state.hosts[&acceptor_host].incarnation,
            forward: Direction::default(),
            backward: Direction::default(),
        };
        let id = ConnectionId { key, generation: connection.generation };
        if let Some(replaced) = state.connections.insert(key, connection) {
            if replaced.closed_by_initiator && !replaced.forward.stalled.is_empty() {
                state.orphans.push((key, replaced));
            }
        }
        self.transmit(&mut state, now, id, Side::Acceptor, Segment::Syn, 0);
    }

    /// A SYN leaves at `now` on a link that is up: the acceptor's kernel answers
    /// it with a SYN-ACK if its process listens (or is only paused), else a RST.
    fn handshake(self: &Arc<Self>, state: &mut State, now: u64, id: ConnectionId) {
        let (initiator_host, acceptor_host) = hosts_of(state, id.key, Side::Acceptor);
        let syn_arrival = now + self.one_way_delay(state, initiator_host, acceptor_host);
        let acceptor = &state.hosts[&acceptor_host];
        let (accepted, incarnation) = (acceptor.process_up, acceptor.incarnation);
        let connection = connection_mut(state, id).expect("a handshake of a known connection");
        let event = if accepted {
            connection.open = true;
            connection.acceptor_incarnation = incarnation;
            ConnectionEvent::Established
        } else {
            ConnectionEvent::Closed(CloseReason::Refused)
        };
        self.transmit(state, syn_arrival, id, Side::Initiator, Segment::Event(event), 0);
    }

    /// Sends a node's message on the connection it belongs to: a request on the
    /// sender's own connection, a response on the one its request came on.
    pub fn send(self: &Arc<Self>, now: Instant, send: Send, extra_micros: u64) {
        let Send { from, to, mut message } = send;
        let (key, toward) = if message.is_response() {
            (ConnectionKey { initiator: to, acceptor: from, channel: Channel::of(&message) }, Side::Initiator)
        } else {
            (ConnectionKey { initiator: from, acceptor: to, channel: Channel::of(&message) }, Side::Acceptor)
        };
        let now = now.as_micros();
        let mut state = self.lock();
        let Some(id) = Self::current(&state, key) else { return };
        let connection = state.connections.get_mut(&key).expect("looked up above");
        if !connection.open {
            // Gone already; the node hears of it (or has) by its own event.
            return;
        }
        if toward == Side::Acceptor && connection.half_open {
            // The acceptor's machine came back knowing nothing of this connection: RST.
            connection.open = false;
            self.transmit(&mut state, now, id, Side::Initiator, Segment::Event(ConnectionEvent::Closed(CloseReason::Reset)), 0);
            return;
        }
        if let Some(correlation_id) = message.correlation_id_mut() {
            if toward == Side::Acceptor {
                *correlation_id = state.routes.insert(Route { generation: id.generation, correlation_id: *correlation_id });
            } else {
                match state.routes.remove(*correlation_id) {
                    Some(route) if route.generation == id.generation => *correlation_id = route.correlation_id,
                    // Its request came on a connection that has closed since.
                    _ => return,
                }
            }
        }
        self.transmit(&mut state, now, id, toward, Segment::Data(message), extra_micros);
    }

    /// Puts `segment` on its way `toward` one end of `key`'s connection: stalled
    /// while the link is cut or the receiving machine is off, else scheduled
    /// after what is already on its way.
    fn transmit(self: &Arc<Self>, state: &mut State, now: u64, id: ConnectionId, toward: Side, segment: Segment, extra_micros: u64) {
        let (sender_host, receiver_host) = hosts_of(state, id.key, toward);
        let blocked = is_cut(state, sender_host, receiver_host) || !state.hosts[&receiver_host].machine_up;
        let connection = connection_mut(state, id).expect("transmitting on a known connection");
        let direction = connection.direction(toward);
        if blocked || !direction.stalled.is_empty() {
            direction.unacked_since.get_or_insert(now);
            direction.stalled.push_back(segment);
            return;
        }
        if let Segment::Syn = segment {
            return self.handshake(state, now, id);
        }
        let delay = self.one_way_delay(state, sender_host, receiver_host) + extra_micros;
        self.schedule(state, now + delay, id, toward, segment);
    }

    /// The latency of one segment, with the retransmissions packet loss costs it.
    fn one_way_delay(&self, state: &State, sender_host: NodeId, receiver_host: NodeId) -> u64 {
        if sender_host == receiver_host {
            return LOOPBACK_MICROS;
        }
        let mut rng = self.rng.lock().expect("network rng lock");
        let mut delay = rng.gen_range(LATENCY_MIN_MICROS..LATENCY_MAX_MICROS) + state.extra_latency_micros;
        if state.loss_rate > 0.0 {
            let mut rto = RTO_MIN_MICROS;
            let mut losses = 0;
            while losses < LOSS_RETRIES_MAX && rng.gen_bool(state.loss_rate) {
                delay += rto;
                rto = (rto * 2).min(RTO_MAX_MICROS);
                losses += 1;
            }
        }
        delay
    }

    /// Hands `segment` over at `arrival` (or just after what precedes it on its
    /// direction), through madsim's timer.
    fn schedule(self: &Arc<Self>, state: &mut State, arrival: u64, id: ConnectionId, toward: Side, segment: Segment) {
        let connection = connection_mut(state, id).expect("scheduling on a known connection");
        let direction = connection.direction(toward);
        let arrival = arrival.max(direction.last_arrival + 1);
        direction.last_arrival = arrival;
        // Weak: the timer belongs to the runtime the network holds a handle
        // to, and a strong reference would keep both alive past the run.
        let network = Arc::downgrade(self);
        let at = self.start + Duration::from_micros(arrival);
        self.time.add_timer_at(at, move || {
            if let Some(network) = network.upgrade() {
                network.arrive(arrival, id, toward, segment);
            }
        });
    }

    /// A segment reaches its end of the connection: handed to the endpoint, or
    /// dropped if that end is gone.
    fn arrive(self: &Arc<Self>, now: u64, id: ConnectionId, toward: Side, segment: Segment) {
        let mut state = self.lock();
        let key = id.key;
        let Some(connection) = connection_mut(&mut state, id) else { return };
        let (open, closed_by_initiator) = (connection.open, connection.closed_by_initiator);
        let (endpoint, peer, incarnation) = match toward {
            Side::Acceptor => (key.acceptor, key.initiator, connection.acceptor_incarnation),
            Side::Initiator => (key.initiator, key.acceptor, connection.initiator_incarnation),
        };
        let host = state.host_of[&endpoint];
        let receiver = &state.hosts[&host];
        let alive = receiver.process_up && receiver.incarnation == incarnation && !(toward == Side::Initiator && closed_by_initiator);
        if !alive {
            if !receiver.machine_up && open {
                // Lost into a machine that is off: retransmitted until it answers.
                let connection = connection_mut(&mut state, id).expect("looked up above");
                connection.direction(toward).unacked_since.get_or_insert(now);
            }
            return;
        }
        let arrival = match segment {
            // What was on the wire before a close still arrives (FIN follows data).
            Segment::Data(message) => Arrival::Message { to: endpoint, from: peer, message },
            Segment::Event(event) => Arrival::Connection { at: endpoint, destination: Destination::new(key.acceptor, key.channel), event },
            Segment::Syn => unreachable!("a SYN is answered when it is sent or flushed, never delivered"),
        };
        if let Some(mailbox) = &state.hosts[&host].mailbox {
            // A mailbox whose process just died refuses it, as its socket would.
            let _ = mailbox.unbounded_send(arrival);
        }
    }
}

impl Network {
    /// A process crashed on a machine that stays up: its kernel closes every
    /// socket, so each peer that opened a connection to it sees a reset one
    /// network delay later, after what the process sent before it died. What
    /// was on its way to the process is lost with it.
    pub fn crash(self: &Arc<Self>, now: Instant, host: NodeId) {
        let now = now.as_micros();
        let mut state = self.lock();
        let entry = state.hosts.get_mut(&host).expect("every host is known");
        entry.process_up = false;
        entry.mailbox = None;
        for id in connections_of(&state, host) {
            let (initiator_host, acceptor_host) = hosts_of(&state, id.key, Side::Acceptor);
            let connection = connection_mut(&mut state, id).expect("listed above");
            let was_open = std::mem::replace(&mut connection.open, false);
            if acceptor_host == host {
                connection.forward.stalled.retain(|segment| matches!(segment, Segment::Syn));
            }
            if initiator_host == host {
                connection.forward.stalled.clear();
                connection.backward.stalled.clear();
            }
            if was_open && acceptor_host == host && initiator_host != host {
                self.transmit(&mut state, now, id, Side::Initiator, Segment::Event(ConnectionEvent::Closed(CloseReason::Reset)), 0);
            }
        }
    }

    /// A machine lost power: it sends nothing, not even a reset. Its peers'
    /// segments go unanswered until it comes back (`attach`).
    pub fn power_loss(&self, host: NodeId) {
        let mut state = self.lock();
        let entry = state.hosts.get_mut(&host).expect("every host is known");
        entry.process_up = false;
        entry.machine_up = false;
        entry.mailbox = None;
    }

    /// A process starts on `host` at `now` (at the run's start, or after a crash
    /// or a power loss): its mailbox, for every endpoint it holds. A machine
    /// back from a power loss answers every old connection with a reset: at once
    /// where a peer was retransmitting to it, else on the peer's next segment.
    pub fn attach(self: &Arc<Self>, now: Instant, host: NodeId) -> futures::channel::mpsc::UnboundedReceiver<Arrival> {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let mut state = self.lock();
        let entry = state.hosts.get_mut(&host).expect("every host is known");
        let powered_on = !entry.machine_up && entry.incarnation > 0;
        entry.mailbox = Some(sender);
        entry.incarnation += 1;
        entry.process_up = true;
        entry.machine_up = true;
        let now = now.as_micros();
        for id in connections_of(&state, host) {
            let (initiator_host, acceptor_host) = hosts_of(&state, id.key, Side::Acceptor);
            let connection = connection_mut(&mut state, id).expect("listed above");
            if powered_on && connection.open && acceptor_host == host && initiator_host != host {
                if connection.forward.unacked_since.is_some() || !connection.forward.stalled.is_empty() {
                    let since = connection.forward.unacked_since.take().unwrap_or(now);
                    connection.forward.stalled.clear();
                    connection.open = false;
                    let retransmission = next_retransmission(since, now, RTO_MIN_MICROS);
                    self.transmit(&mut state, retransmission, id, Side::Initiator, Segment::Event(ConnectionEvent::Closed(CloseReason::Reset)), 0);
                } else {
                    connection.half_open = true;
                }
            } else if powered_on && initiator_host == host {
                connection.open = false;
                connection.forward.stalled.clear();
                connection.backward.stalled.clear();
            }
            // SYNs retransmitted to the machine now find it.
            self.flush(&mut state, now, id, Side::Acceptor);
        }
        receiver
    }

    /// A sender into the mailbox of `host`'s running process, for the
    /// process's own tasks to wake its loop (`Arrival::Wake`).
    pub fn mailbox(&self, host: NodeId) -> Option<futures::channel::mpsc::UnboundedSender<Arrival>> {
        self.lock().hosts.get(&host)?.mailbox.clone()
    }

    /// Cuts the links `from -> to` between hosts.
    pub fn cut(&self, links: &[(NodeId, NodeId)]) {
        let mut state = self.lock();
        for link in links {
            *state.cuts.entry(*link).or_insert(0) += 1;
            state.cut_count += 1;
        }
    }

    /// Heals links `cut` cut; what waited behind them goes at the next retransmission.
    pub fn heal(self: &Arc<Self>, now: Instant, links: &[(NodeId, NodeId)]) {
        let mut state = self.lock();
        for link in links {
            let count = state.cuts.get_mut(link).expect("a healed link was cut");
            *count -= 1;
            if *count == 0 {
                state.cuts.remove(link);
            }
            state.cut_count -= 1;
        }
        let now = now.as_micros();
        // Orphans whose data all arrived are gone for good.
        state.orphans.retain(|(_, orphan)| !orphan.forward.stalled.is_empty() || orphan.forward.last_arrival >= now);
        let ids: Vec<ConnectionId> = all_connections(&state);
        for id in ids {
            self.flush(&mut state, now, id, Side::Acceptor);
            self.flush(&mut state, now, id, Side::Initiator);
        }
    }

    pub fn set_loss_rate(&self, rate: f64) {
        self.lock().loss_rate = rate;
    }

    pub fn set_extra_latency(&self, extra: Duration) {
        self.lock().extra_latency_micros = extra.as_micros() as u64;
    }

    /// Sends what stalled on one direction once nothing blocks it: from TCP's
    /// next retransmission on, in order. A connection that stalled past TCP's
    /// retransmission limit died meanwhile (ETIMEDOUT).
    fn flush(self: &Arc<Self>, state: &mut State, now: u64, id: ConnectionId, toward: Side) {
        let (sender_host, receiver_host) = hosts_of(state, id.key, toward);
        if is_cut(state, sender_host, receiver_host) || !state.hosts[&receiver_host].machine_up {
            return;
        }
        let connection = connection_mut(state, id).expect("flushing a known connection");
        let direction = connection.direction(toward);
        if direction.stalled.is_empty() {
            direction.unacked_since = None;
            return;
        }
        let since = direction.unacked_since.take().unwrap_or(now);
        let first_rto = if matches!(direction.stalled.front(), Some(Segment::Syn)) { SYN_RTO_MICROS } else { RTO_MIN_MICROS };
        let segments = std::mem::take(&mut direction.stalled);
        let retransmission = next_retransmission(since, now, first_rto);
        if connection.closed_by_initiator && retransmission.saturating_sub(since) > ORPHAN_RETRANSMISSION_LIMIT_MICROS {
            // The orphan gave up: what it held is lost, and nobody is told.
            return;
        }
        if retransmission.saturating_sub(since) > RETRANSMISSION_LIMIT_MICROS {
            connection.open = false;
            if toward == Side::Acceptor {
                self.transmit(state, now, id, Side::Initiator, Segment::Event(ConnectionEvent::Closed(CloseReason::TimedOut)), 0);
            }
            return;
        }
        for segment in segments {
            self.transmit(state, retransmission, id, toward, segment, 0);
        }
    }
}

/// TCP's first retransmission at or after `now` of a segment first sent at
/// `since`: the RTO starts at `first_rto` and doubles up to TCP_RTO_MAX.
fn next_retransmission(since: u64, now: u64, first_rto: u64) -> u64 {
    let mut rto = first_rto;
    let mut at = since + rto;
    while at < now {
        rto = (rto * 2).min(RTO_MAX_MICROS);
        at += rto;
    }
    at
}

/// Every connection, current ones first, then orphans.
fn all_connections(state: &State) -> Vec<ConnectionId> {
    let current = state.connections.iter().map(|(key, connection)| ConnectionId { key: *key, generation: connection.generation });
    let orphans = state.orphans.iter().map(|(key, connection)| ConnectionId { key: *key, generation: connection.generation });
    current.chain(orphans).collect()
}

/// The connections with an end on `host`.
fn connections_of(state: &State, host: NodeId) -> Vec<ConnectionId> {
    all_connections(state).into_iter().filter(|id| state.host_of[&id.key.initiator] == host || state.host_of[&id.key.acceptor] == host).collect()
}

/// The connection `id` names, current or orphaned; None once it is gone.
fn connection_mut(state: &mut State, id: ConnectionId) -> Option<&mut Connection> {
    if state.connections.get(&id.key).is_some_and(|connection| connection.generation == id.generation) {
        return state.connections.get_mut(&id.key);
    }
    state.orphans.iter_mut().find(|(key, orphan)| *key == id.key && orphan.generation == id.generation).map(|(_, orphan)| orphan)
}

/// The sending and receiving hosts of a segment going `toward` one end.
fn hosts_of(state: &State, key: ConnectionKey, toward: Side) -> (NodeId, NodeId) {
    let initiator = state.host_of[&key.initiator];
    let acceptor = state.host_of[&key.acceptor];
    match toward {
        Side::Acceptor => (initiator, acceptor),
        Side::Initiator => (acceptor, initiator),
    }
}

fn is_cut(state: &State, from: NodeId, to: NodeId) -> bool {
    state.cut_count > 0 && state.cuts.get(&(from, to)).is_some_and(|count| *count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc::UnboundedReceiver;

    const CLIENT: NodeId = NodeId(2001);
    const BROKER: NodeId = NodeId(1);
    const DEFAULT: Channel = Channel::Default;

    fn run(test: impl std::future::Future<Output = ()> + 'static) {
        madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default()).block_on(test);
    }

    struct Net {
        network: Arc<Network>,
        start: madsim::time::Instant,
        client: UnboundedReceiver<Arrival>,
        broker: UnboundedReceiver<Arrival>,
    }

    impl Net {
        fn new() -> Net {
            let start = madsim::time::Instant::now();
            let network = Arc::new(Network::new(7, start, &[(CLIENT, vec![CLIENT]), (BROKER, vec![BROKER])]));
            let client = network.attach(Instant::ZERO, CLIENT);
            let broker = network.attach(Instant::ZERO, BROKER);
            Net { network, start, client, broker }
        }

        fn now(&self) -> Instant {
            Instant::from_micros(self.start.elapsed().as_micros() as u64)
        }

        async fn wait(&self, millis: u64) {
            madsim::time::sleep(Duration::from_millis(millis)).await;
        }

        fn connect(&self) {
            self.network.command(self.now(), CLIENT, ConnectionCommand::Connect(Destination::new(BROKER, DEFAULT)));
        }

        fn request(&self, correlation_id: u64) {
            self.network.send(self.now(), Send { from: CLIENT, to: BROKER, message: Message::MetadataRequest { correlation_id } }, 0);
        }

        fn client_events(&mut self) -> Vec<ConnectionEvent> {
            let mut events = Vec::new();
            while let Ok(arrival) = self.client.try_recv() {
                if let Arrival::Connection { event, .. } = arrival {
                    events.push(event);
                }
            }
            events
        }

        /// The requests the broker received, by the ids the client gave them
        /// (the broker knows each by an id unique to its connection).
        fn broker_requests(&mut self) -> Vec<u64> {
            self.broker_request_routes().into_iter().map(|route| self.network.lock().routes.get(route).expect("the request is unanswered").correlation_id).collect()
        }

        fn broker_request_routes(&mut self) -> Vec<u64> {
            let mut ids = Vec::new();
            while let Ok(Arrival::Message { message: Message::MetadataRequest { correlation_id }, .. }) = self.broker.try_recv() {
                ids.push(correlation_id);
            }
            ids
        }

        fn answer(&self, route: u64) {
            let metadata = Arc::new(kafsim_model::protocol::ClusterMetadata::default());
            self.network.send(self.now(), Send { from: BROKER, to: CLIENT, message: Message::MetadataResponse { correlation_id: route, metadata } }, 0);
        }

        fn client_responses(&mut self) -> Vec<u64> {
            let mut ids = Vec::new();
            while let Ok(arrival) = self.client.try_recv() {
                if let Arrival::Message { message: Message::MetadataResponse { correlation_id, .. }, .. } = arrival {
                    ids.push(correlation_id);
                }
            }
            ids
        }

        async fn established(&mut self) {
            self.connect();
            self.wait(30).await;
            assert_eq!(self.client_events(), vec![ConnectionEvent::Established]);
        }
    }

    #[test]
    fn requests_arrive_in_order_after_the_handshake() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            for id in 0..50 {
                net.request(id);
            }
            net.wait(20).await;
            assert_eq!(net.broker_requests(), (0..50).collect::<Vec<_>>(), "TCP delivers in order, whatever each segment's latency");
        });
    }

    #[test]
    fn a_partition_delays_requests_until_the_next_retransmission_after_it_heals() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.network.cut(&[(CLIENT, BROKER)]);
            net.request(1);
            net.request(2);
            net.wait(5_000).await;
            assert!(net.broker_requests().is_empty(), "nothing crosses the cut link");
            let healed = net.now();
            net.network.heal(healed, &[(CLIENT, BROKER)]);
            net.wait(10_000).await;
            assert_eq!(net.broker_requests(), vec![1, 2], "delayed, never lost");
            assert!(net.client_events().is_empty(), "the connection stays open");
        });
    }

    #[test]
    fn packet_loss_delays_but_loses_nothing() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.network.set_loss_rate(0.5);
            for id in 0..40 {
                net.request(id);
            }
            net.wait(60_000).await;
            assert_eq!(net.broker_requests(), (0..40).collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_crashed_process_resets_its_peers_and_refuses_connects_until_it_restarts() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.network.crash(net.now(), BROKER);
            net.wait(20).await;
            assert_eq!(net.client_events(), vec![ConnectionEvent::Closed(CloseReason::Reset)], "a reset one network delay later");
            net.connect();
            net.wait(30).await;
            assert_eq!(net.client_events(), vec![ConnectionEvent::Closed(CloseReason::Refused)], "nothing listens");
            net.broker = net.network.attach(net.now(), BROKER);
            net.established().await;
        });
    }

    #[test]
    fn a_power_loss_is_silent_and_the_machine_resets_old_connections_when_it_returns() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.network.power_loss(BROKER);
            net.request(1);
            net.wait(5_000).await;
            assert!(net.client_events().is_empty(), "no reset from a machine that is off");
            net.broker = net.network.attach(net.now(), BROKER);
            net.wait(10_000).await;
            assert_eq!(net.client_events(), vec![ConnectionEvent::Closed(CloseReason::Reset)], "the retransmitted request meets a machine that knows nothing of it");
            assert!(net.broker_requests().is_empty(), "the request died with the old incarnation");
        });
    }

    #[test]
    fn a_request_the_client_gave_up_on_still_reaches_the_broker_after_the_heal() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.network.cut(&[(CLIENT, BROKER)]);
            net.request(1);
            net.wait(30_000).await;
            // request.timeout.ms: the client closes the connection and connects anew.
            net.network.command(net.now(), CLIENT, ConnectionCommand::Disconnect(Destination::new(BROKER, DEFAULT), kafsim_model::net::DisconnectReason::RequestTimedOut));
            net.connect();
            net.wait(1_000).await;
            net.network.heal(net.now(), &[(CLIENT, BROKER)]);
            net.wait(3_000).await;
            assert_eq!(net.client_events(), vec![ConnectionEvent::Established], "the new connection opens after the heal");
            net.request(2);
            net.wait(40_000).await;
            assert_eq!(net.broker_requests(), vec![2, 1], "the orphaned socket's retransmission lands after the retry");
        });
    }

    #[test]
    fn a_response_reaches_only_the_connection_its_request_came_on() {
        run(async {
            let mut net = Net::new();
            net.established().await;
            net.request(5);
            net.wait(20).await;
            let old_request = net.broker_request_routes();
            assert_eq!(old_request.len(), 1);
            // The client's process restarts and reuses its correlation ids.
            net.network.crash(net.now(), CLIENT);
            net.client = net.network.attach(net.now(), CLIENT);
            net.established().await;
            net.request(5);
            net.wait(20).await;
            let new_request = net.broker_request_routes();
            net.answer(old_request[0]);
            net.wait(20).await;
            assert!(net.client_responses().is_empty(), "the answer to the dead incarnation's request is dropped with its socket");
            net.answer(new_request[0]);
            net.wait(20).await;
            assert_eq!(net.client_responses(), vec![5], "the new request's answer comes back under the client's own id");
        });
    }

    /// A segment still on its way when the run ends must not keep the network
    /// (and through its timer handle, the runtime) alive: that leaked every
    /// seed's network into the next.
    #[test]
    fn the_network_is_freed_with_its_run() {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
        let network = runtime.block_on(async {
            let mut net = Net::new();
            net.established().await;
            net.request(1);
            Arc::downgrade(&net.network)
        });
        drop(runtime);
        assert!(network.upgrade().is_none(), "the network outlived its run");
    }
}
