//! The madsim shells: each node kind wraps its model state machine, and `drive`
//! loops: receive or wake, step the machine, carry out its outputs.

mod alarm;
pub mod broker;
pub mod consumer;
pub mod controller;
pub mod live;
pub mod pipeline;
pub mod producer;

use crate::faults::buggify::Point;
use crate::context::{NodeRole, RunContext};
use crate::history::{OpBody, OpType};
use crate::faults::network::Arrival;
use alarm::{Alarm, Wake};
use kafsim_model::net::{CloseReason, ConnectionCommand, ConnectionEvent, Destination};
use kafsim_model::node::Outbox;
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a node's step leaves for the network: its messages and connection
/// commands. The node's own events and disk writes its shell carries out.
pub type Wire = Outbox<()>;

/// A model node as the shell drives it; the shell only moves messages and time.
/// `to` and `at` name which of the node's endpoints a message or connection
/// event is for (a pipeline member holds two clients, each an endpoint).
pub trait Machine: std::marker::Send + 'static {
    fn handle_message(&mut self, now: Instant, to: NodeId, from: NodeId, message: Message, wire: &mut Wire);
    fn handle_connection(&mut self, now: Instant, at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire);
    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire);
    fn next_deadline(&self) -> Option<Instant>;
    /// The node's own tasks left work for the loop (`Arrival::Wake`): an
    /// application's call on a client (`crate::app`). Other nodes have none.
    fn handle_wake(&mut self, _now: Instant, _wire: &mut Wire) {}
}

/// Seeds a client's reconnect jitter: different for every node and start, and
/// drawn from nothing random.
pub fn jitter_seed(id: NodeId, now: Instant) -> u64 {
    u64::from(id.0) << 40 ^ now.as_micros()
}

/// Whether a client process stops for good: a `replace` fault gave it a
/// successor, and its producer learned it was fenced. Kafka's
/// ProducerFencedException is fatal, and the supervisor already started the
/// successor that fenced it; re-initialising instead would fence the
/// successor in turn, each instance taking the id from the other.
pub fn fenced_by_successor(ctx: &RunContext, id: NodeId, producer: &kafsim_model::client::producer::Producer) -> bool {
    producer.was_fenced() && ctx.is_replaced(id)
}

/// After a timeout was handled, the next wake is at least this far away, so a
/// machine that keeps reporting a past deadline cannot spin without time passing.
const MIN_TIMER_STEP: Duration = Duration::from_micros(100);

/// The buggify fault points of the shell's send path (`crate::faults::buggify`): None
/// when the send goes now, Some(None) when it is dropped, Some(Some(delay)) when
/// it leaves `delay` microseconds late (what follows it on its connection waits
/// behind it, as TCP delivers in order).
fn buggify_send(message: &Message, lag_micros: Option<u64>) -> Option<Option<u64>> {
    match message {
        Message::FetchRequest { replica_id: Some(_), .. } if lag_micros.is_some() => Some(lag_micros),
        Message::FetchResponse { .. } | Message::ProduceResponse { .. } if crate::faults::buggify::fires(Point::DroppedResponse) => Some(None),
        Message::FetchResponse { .. } if crate::faults::buggify::fires(Point::DelayedFetchResponse) => Some(Some(crate::faults::buggify::draw_micros(50, 2_000))),
        _ => None,
    }
}

/// Runs one node until madsim kills it. The machine is a trait object, so that
/// every node kind runs this one loop: five copies of it, one per kind, took
/// turns message by message and did not fit the instruction cache together.
pub async fn drive(ctx: Arc<RunContext>, me: NodeId, machine: Arc<Mutex<dyn Machine>>) {
    let incarnation = ctx.next_incarnation(me);
    if incarnation > 1 && ctx.roster.entry(me).role == NodeRole::Broker && ctx.scenario.cluster.config.panic_on_restart {
        panic!("test switch kafsim.test.panic.on.restart: broker {me:?} restarted");
    }
    let mut arrivals = ctx.network.attach(ctx.now(), me);
    let mut wire = Wire::new(me);
    let mut delivered = Vec::new();
    let mut earliest_wake = ctx.now();
    let mut alarm = Alarm::default();
    // Buggify (off unless the scenario asks): a stalled disk, sends dropped or
    // late, and, for a broker incarnation drawn as a laggard, every replica fetch late.
    let buggify = ctx.scenario.faults.buggify;
    let disk = ctx.disks.get(&me).cloned();
    // Trace lines name the node that is stepping; other nodes run whenever this
    // one awaits, so it names itself again after every await.
    let name = ctx.roster.entry(me).name.clone();
    crate::trace::set_current_node(&name);
    let is_broker = ctx.roster.entry(me).role == NodeRole::Broker;
    let lag_micros = (buggify && is_broker && crate::faults::buggify::fires(Point::LaggingFollower)).then(|| crate::faults::buggify::draw_micros(50, 1_500));
    let mut machine_deadline = {
        let mut state = machine.lock().expect("node state lock");
        state.handle_timeout(ctx.now(), &mut wire);
        state.next_deadline()
    };
    loop {
        if buggify {
            stall_for_slow_flushes(disk.as_ref()).await;
            machine_deadline = machine.lock().expect("node state lock").next_deadline();
        }
        let now = ctx.now();
        for send in wire.sends.drain(..) {
            if tracing::level_enabled!(tracing::Level::DEBUG) {
                trace_send(&ctx, &name, &send);
            }
            ctx.count_message();
            let extra_micros = match buggify.then(|| buggify_send(&send.message, lag_micros)).flatten() {
                None => 0,
                Some(None) => continue,
                Some(Some(delay)) => delay,
            };
            ctx.network.send(now, send, extra_micros);
        }
        for (from, command) in wire.connections.drain(..) {
            if let ConnectionCommand::Disconnect(destination, reason) = command {
                record_connection(&ctx, &name, destination, reason.describe());
            }
            ctx.network.command(now, from, command);
        }
        let deadline = machine_deadline.map(|deadline| deadline.max(earliest_wake));
        let deadline = deadline.map(|deadline| ctx.start + Duration::from_micros(deadline.as_micros()));
        let wake = alarm.next(&mut arrivals, deadline).await;
        let now = ctx.now();
        crate::trace::set_current_node(&name);
        match wake {
            Wake::Arrival(Some(arrival)) => delivered.push(arrival),
            Wake::Arrival(None) => return,
            Wake::Deadline => {}
        }
        // A process that wakes (after a pause, say) reads its socket backlog before
        // its timers fire, as a real event loop would.
        while let Ok(arrival) = arrivals.try_recv() {
            delivered.push(arrival);
        }
        let mut state = machine.lock().expect("node state lock");
        for arrival in delivered.drain(..) {
            match arrival {
                Arrival::Message { to, from, message } => state.handle_message(now, to, from, message, &mut wire),
                Arrival::Wake => state.handle_wake(now, &mut wire),
                Arrival::Connection { at, destination, event } => {
                    match event {
                        // A refused connect is a try, not news: trace lines only.
                        ConnectionEvent::Closed(CloseReason::Refused) | ConnectionEvent::Established => {
                            let peer = ctx.roster.endpoint_name(destination.node);
                            tracing::debug!(target: "kafsim::net", peer = &*peer, channel = destination.channel.name(), "connection {}", describe(event));
                        }
                        ConnectionEvent::Closed(reason) => record_connection(&ctx, &name, destination, reason.describe()),
                    }
                    state.handle_connection(now, at, destination, event, &mut wire);
                }
            }
        }
        machine_deadline = state.next_deadline();
        if machine_deadline.is_some_and(|deadline| deadline <= now) {
            state.handle_timeout(now, &mut wire);
            earliest_wake = now + MIN_TIMER_STEP;
            machine_deadline = state.next_deadline();
        }
    }
}

/// A connection `name` opened closed, and why: in the history, so the trace
/// and the report show what the node's clients reacted to.
#[cold]
#[inline(never)]
fn record_connection(ctx: &RunContext, name: &Arc<str>, destination: Destination, why: &str) {
    let peer = ctx.roster.endpoint_name(destination.node);
    let event = format!("connection to {peer} ({}) closed: {why}", destination.channel.name());
    ctx.record(name, OpType::Info, OpBody::Connection { event });
}

fn describe(event: ConnectionEvent) -> &'static str {
    match event {
        ConnectionEvent::Established => "established",
        ConnectionEvent::Closed(reason) => reason.describe(),
    }
}

/// The trace line of one send; out of line, as only `replay --trace` wants it.
#[cold]
#[inline(never)]
fn trace_send(ctx: &RunContext, name: &Arc<str>, send: &Send) {
    crate::trace::set_current_node(name);
    tracing::debug!(target: "kafsim::net", to = &*ctx.roster.endpoint_name(send.to), "send {:?}", send.message);
}

/// A slow flush (buggify) stalls the node's loop, as a log thread blocked in
/// fsync does; its writes are durable when the stall ends. A node killed during
/// the stall never gets there.
async fn stall_for_slow_flushes(disk: Option<&crate::faults::disk::SharedDisk>) {
    let Some(disk) = disk else { return };
    let stall = disk.lock().expect("disk lock").take_stall();
    if !stall.is_zero() {
        madsim::time::sleep(stall).await;
        disk.lock().expect("disk lock").complete_slow_flushes();
    }
}
