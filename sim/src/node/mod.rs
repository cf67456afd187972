//! The madsim shells: each node kind wraps its model state machine, and `drive`
//! loops: receive or wake, step the machine, carry out its outputs.

mod alarm;
pub mod broker;
pub mod consumer;
pub mod controller;
pub mod pipeline;
pub mod producer;

use crate::buggify::Point;
use crate::context::{NodeRole, RunContext};
use crate::transport::{Envelope, HeldSends, Inbox, Outbox};
use alarm::{Alarm, Wake};
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};
use madsim::net::Endpoint;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A model node as the shell drives it; the shell only moves messages and time.
pub trait Machine: std::marker::Send + 'static {
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, sends: &mut Vec<Send>);
    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>);
    fn next_deadline(&self) -> Option<Instant>;
}

/// After a timeout was handled, the next wake is at least this far away, so a
/// machine that keeps reporting a past deadline cannot spin without time passing.
const MIN_TIMER_STEP: Duration = Duration::from_micros(100);

/// The buggify fault points of the shell's send path (`crate::buggify`): None
/// when the send goes now, Some(None) when it is dropped, Some(Some(delay)) when
/// it is held for `delay` microseconds.
fn buggify_send(message: &Message, lag_micros: Option<u64>) -> Option<Option<u64>> {
    match message {
        Message::FetchRequest { replica_id: Some(_), .. } if lag_micros.is_some() => Some(lag_micros),
        Message::FetchResponse { .. } | Message::ProduceResponse { .. } if crate::buggify::fires(Point::DroppedResponse) => Some(None),
        Message::FetchResponse { .. } if crate::buggify::fires(Point::DelayedFetchResponse) => Some(Some(crate::buggify::draw_micros(50, 2_000))),
        _ => None,
    }
}

/// A deliberately injected bug, behind a test-only switch: with the environment
/// variable `KAFSIM_TEST_PANIC_ON_RESTART` set, a broker panics when it restarts,
/// so tests can show that a panic is reported with its seed and that `shrink`
/// brings it down to the one crash that causes it.
fn panic_on_broker_restart() -> bool {
    static SWITCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SWITCH.get_or_init(|| std::env::var_os("KAFSIM_TEST_PANIC_ON_RESTART").is_some())
}

/// Runs one node until madsim kills it. The machine is a trait object, so that
/// every node kind runs this one loop: five copies of it, one per kind, took
/// turns message by message and did not fit the instruction cache together.
pub async fn drive(ctx: Arc<RunContext>, me: NodeId, machine: Arc<Mutex<dyn Machine>>) {
    let endpoint = Endpoint::bind(ctx.roster.address(me)).await.expect("each node binds its own address once per start");
    let incarnation = ctx.next_incarnation(me);
    if incarnation > 1 && ctx.roster.entry(me).role == NodeRole::Broker && panic_on_broker_restart() {
        panic!("test switch KAFSIM_TEST_PANIC_ON_RESTART: broker {me:?} restarted");
    }
    let (sender, mut arrivals) = futures::channel::mpsc::unbounded::<Box<Envelope>>();
    let receiver = endpoint.clone();
    madsim::task::spawn(async move {
        while let Ok((payload, _)) = receiver.recv_from_raw(0).await {
            if let Ok(envelope) = payload.downcast::<Envelope>() {
                if sender.unbounded_send(envelope).is_err() {
                    return;
                }
            }
        }
    });
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    let mut sends = Vec::new();
    let mut delivered = Vec::new();
    let mut earliest_wake = ctx.now();
    let mut alarm = Alarm::default();
    // Buggify (off unless the scenario asks): sends held back, a stalled disk,
    // and, for a broker incarnation drawn as a laggard, every replica fetch late.
    let buggify = ctx.scenario.faults.buggify;
    let mut held = HeldSends::default();
    let mut released = Vec::new();
    let disk = ctx.disks.get(&me).cloned();
    // Trace lines name the node that is stepping; other nodes run whenever this
    // one awaits, so it names itself again after every await.
    let name = ctx.roster.entry(me).name.clone();
    crate::trace::set_current_node(&name);
    let is_broker = ctx.roster.entry(me).role == NodeRole::Broker;
    let lag_micros = (buggify && is_broker && crate::buggify::fires(Point::LaggingFollower)).then(|| crate::buggify::draw_micros(50, 1_500));
    let mut machine_deadline = {
        let mut state = machine.lock().expect("node state lock");
        state.handle_timeout(ctx.now(), &mut sends);
        state.next_deadline()
    };
    loop {
        if buggify {
            stall_for_slow_flushes(disk.as_ref()).await;
            machine_deadline = machine.lock().expect("node state lock").next_deadline();
            buggify_sends(ctx.now().as_micros(), &mut sends, &mut held, &mut released, lag_micros);
        }
        for send in sends.drain(..) {
            if tracing::level_enabled!(tracing::Level::DEBUG) {
                trace_send(&ctx, &name, &send);
            }
            let envelope = outbox.stamp(me, incarnation, send.to, send.message);
            ctx.count_message();
            // A send to an unreachable node fails like a lost packet would.
            let _ = endpoint.send_to_raw(ctx.roster.address(send.to), 0, Box::new(envelope)).await;
        }
        let inbox_deadline = inbox.next_deadline().map(Instant::from_micros);
        let own_deadline = kafsim_model::time::earliest(machine_deadline, held.next_deadline().map(Instant::from_micros));
        let deadline = kafsim_model::time::earliest(own_deadline, inbox_deadline).map(|deadline| deadline.max(earliest_wake));
        let deadline = deadline.map(|deadline| ctx.start + Duration::from_micros(deadline.as_micros()));
        let wake = alarm.next(&mut arrivals, deadline).await;
        let now = ctx.now();
        crate::trace::set_current_node(&name);
        match wake {
            Wake::Arrival(Some(envelope)) => inbox.accept(now.as_micros(), envelope, &mut delivered),
            Wake::Arrival(None) => return,
            Wake::Deadline => {}
        }
        // A process that wakes (after a pause, say) reads its socket backlog before
        // its timers fire, as a real event loop would.
        while let Ok(envelope) = arrivals.try_recv() {
            inbox.accept(now.as_micros(), envelope, &mut delivered);
        }
        inbox.expire(now.as_micros(), &mut delivered);
        let mut state = machine.lock().expect("node state lock");
        for envelope in delivered.drain(..) {
            let Envelope { from, message, .. } = *envelope;
            state.handle_message(now, from, message, &mut sends);
        }
        machine_deadline = state.next_deadline();
        if machine_deadline.is_some_and(|deadline| deadline <= now) {
            state.handle_timeout(now, &mut sends);
            earliest_wake = now + MIN_TIMER_STEP;
            machine_deadline = state.next_deadline();
        }
    }
}

/// Passes `sends` through the buggify send faults: drops some, holds some back,
/// and puts back those whose hold is over. Out of line, as it runs only with buggify on.
#[inline(never)]
fn buggify_sends(now: u64, sends: &mut Vec<Send>, held: &mut HeldSends, released: &mut Vec<(NodeId, Message)>, lag_micros: Option<u64>) {
    for send in sends.drain(..) {
        let fault = buggify_send(&send.message, lag_micros);
        if fault == Some(None) {
            continue;
        }
        if let Some(message) = held.hold(now, send.to, send.message, fault.flatten()) {
            released.push((send.to, message));
        }
    }
    held.release(now, released);
    sends.extend(released.drain(..).map(|(to, message)| Send { to, message }));
}

/// The trace line of one send; out of line, as only `replay --trace` wants it.
#[cold]
#[inline(never)]
fn trace_send(ctx: &RunContext, name: &Arc<str>, send: &Send) {
    crate::trace::set_current_node(name);
    tracing::debug!(target: "kafsim::net", to = &*ctx.roster.entry(send.to).name, "send {:?}", send.message);
}

/// A slow flush (buggify) stalls the node's loop, as a log thread blocked in
/// fsync does; its writes are durable when the stall ends. A node killed during
/// the stall never gets there.
async fn stall_for_slow_flushes(disk: Option<&crate::disk::SharedDisk>) {
    let Some(disk) = disk else { return };
    let stall = disk.lock().expect("disk lock").take_stall();
    if !stall.is_zero() {
        madsim::time::sleep(stall).await;
        disk.lock().expect("disk lock").complete_slow_flushes();
    }
}
