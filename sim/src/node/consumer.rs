//! A consumer node: Kafka's consumer driven by the network and the clock, and
//! the consumer workload (`workload::consumer`) recording what it reads and
//! playing the application of a group member.

use super::{Machine, Wire};
use crate::context::RunContext;
use crate::workload::consumer::ConsumerWorkload;
use kafsim_model::client::consumer::{Consumer, ConsumerEvent};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::cell::Cell;
use std::sync::Arc;

pub struct ConsumerNode {
    consumer: Consumer,
    /// `consumer.next_deadline()`, kept until the consumer is next touched: the
    /// driver asks twice on a wake that times out, and only the two `Machine`
    /// handlers (and what they call) change the consumer, which others only read.
    consumer_deadline: Cell<Option<Option<Instant>>>,
    out: Outbox<ConsumerEvent>,
    workload: ConsumerWorkload,
}

impl ConsumerNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> ConsumerNode {
        let now = ctx.now();
        let spec = &ctx.scenario.consumers[spec];
        let group: Option<Arc<str>> = spec.group.as_deref().map(Arc::from);
        let workload = ConsumerWorkload::start(now, ctx.recorder(ctx.roster.entry(id).name.clone()), ctx.invariants.clone(), group.clone(), spec.delivery);
        let topics = vec![spec.topic.as_str().into()];
        let jitter_seed = super::jitter_seed(id, now);
        let consumer = match group {
            None => Consumer::new(spec.config.clone(), topics, ctx.roster.brokers(), number as usize, jitter_seed),
            Some(group) => Consumer::subscribe(spec.config.clone(), topics, group, ctx.roster.brokers(), number as usize, jitter_seed),
        };
        ConsumerNode { consumer, consumer_deadline: Cell::new(None), out: Outbox::new(id), workload }
    }

    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Whether the application has nothing left to process or commit.
    pub fn settled(&self) -> bool {
        self.workload.settled()
    }

    /// Runs one step of the consumer with the wire's buffers as its own, then
    /// has the workload record what it reported.
    fn step(&mut self, now: Instant, wire: &mut Wire, step: impl FnOnce(&mut Consumer, &mut Outbox<ConsumerEvent>)) {
        self.consumer_deadline.set(None);
        self.out.swap_wire(wire);
        step(&mut self.consumer, &mut self.out);
        self.workload.carry_out(now, &mut self.consumer, &mut self.out);
        self.out.swap_wire(wire);
    }
}

impl Machine for ConsumerNode {
    fn handle_message(&mut self, now: Instant, _to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        self.step(now, wire, |consumer, out| consumer.handle_message(now, from, message, out));
    }

    fn handle_connection(&mut self, now: Instant, _at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        self.step(now, wire, |consumer, out| consumer.handle_connection(now, destination, event, out));
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        self.step(now, wire, |consumer, out| consumer.handle_timeout(now, out));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.consumer_deadline.get().unwrap_or_else(|| {
            let deadline = self.consumer.next_deadline();
            self.consumer_deadline.set(Some(deadline));
            deadline
        })
    }
}
