//! The madsim shells: each node kind wraps its model state machine, and `drive`
//! loops: receive or wake, step the machine, carry out its outputs.

pub mod broker;
pub mod consumer;
pub mod controller;
pub mod producer;

use crate::context::RunContext;
use crate::transport::{Envelope, Inbox, Outbox};
use futures::StreamExt;
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

/// Runs one node until madsim kills it.
pub async fn drive<M: Machine>(ctx: Arc<RunContext>, me: NodeId, machine: Arc<Mutex<M>>) {
    let endpoint = Endpoint::bind(ctx.roster.address(me)).await.expect("each node binds its own address once per start");
    let incarnation = ctx.next_incarnation(me);
    let (sender, mut arrivals) = futures::channel::mpsc::unbounded::<Envelope>();
    let receiver = endpoint.clone();
    madsim::task::spawn(async move {
        while let Ok((payload, _)) = receiver.recv_from_raw(0).await {
            if let Ok(envelope) = payload.downcast::<Envelope>() {
                if sender.unbounded_send(*envelope).is_err() {
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
    // Trace lines name the node that is stepping; other nodes run whenever this
    // one awaits, so it names itself again after every await.
    let name = ctx.roster.entry(me).name.clone();
    crate::trace::set_current_node(Some(name.clone()));
    machine.lock().expect("node state lock").handle_timeout(ctx.now(), &mut sends);
    loop {
        for send in sends.drain(..) {
            crate::trace::set_current_node(Some(name.clone()));
            tracing::debug!(target: "kafsim::net", to = &*ctx.roster.entry(send.to).name, "send {:?}", send.message);
            let envelope = outbox.stamp(me, incarnation, send.to, send.message);
            ctx.count_message();
            // A send to an unreachable node fails like a lost packet would.
            let _ = endpoint.send_to_raw(ctx.roster.address(send.to), 0, Box::new(envelope)).await;
        }
        let machine_deadline = machine.lock().expect("node state lock").next_deadline();
        let inbox_deadline = inbox.next_deadline().map(Instant::from_micros);
        let deadline = kafsim_model::time::earliest(machine_deadline, inbox_deadline).map(|deadline| deadline.max(earliest_wake));
        let arrival = match deadline {
            Some(deadline) => {
                let wait = deadline.saturating_since(ctx.now());
                madsim::time::timeout(wait, arrivals.next()).await.ok()
            }
            None => Some(arrivals.next().await),
        };
        let now = ctx.now();
        crate::trace::set_current_node(Some(name.clone()));
        match arrival {
            Some(Some(envelope)) => inbox.accept(now.as_micros(), envelope, &mut delivered),
            Some(None) => return,
            None => {}
        }
        // A process that wakes (after a pause, say) reads its socket backlog before
        // its timers fire, as a real event loop would.
        while let Ok(envelope) = arrivals.try_recv() {
            inbox.accept(now.as_micros(), envelope, &mut delivered);
        }
        inbox.expire(now.as_micros(), &mut delivered);
        let mut state = machine.lock().expect("node state lock");
        for (from, message) in delivered.drain(..) {
            state.handle_message(now, from, message, &mut sends);
        }
        if state.next_deadline().is_some_and(|deadline| deadline <= now) {
            state.handle_timeout(now, &mut sends);
            earliest_wake = now + MIN_TIMER_STEP;
        }
    }
}
