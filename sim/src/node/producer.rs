//! A producer node: Kafka's producer driven by the network and the clock, and
//! the producer workload (`workload::producer`) deciding what it sends.

use super::{Machine, Wire};
use crate::context::RunContext;
use crate::workload::producer::ProducerWorkload;
use kafsim_model::client::producer::{Producer, ProducerEvent};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::cell::Cell;
use std::sync::Arc;

pub struct ProducerNode {
    producer: Producer,
    /// `producer.next_deadline()`, kept until the producer is next touched: the
    /// driver asks twice per wake, and only the two `Machine` handlers (and
    /// what they call) change the producer.
    producer_deadline: Cell<Option<Option<Instant>>>,
    workload: ProducerWorkload,
    out: Outbox<ProducerEvent>,
    ctx: Arc<RunContext>,
    id: NodeId,
    /// A zombie fenced by its successor stops for good (see `step`).
    exited: bool,
}

impl ProducerNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> ProducerNode {
        let now = ctx.now();
        let spec = &ctx.scenario.producers[spec];
        let recorder = ctx.recorder(ctx.roster.entry(id).name.clone());
        let values_as = ctx.roster.entry(id).value_number(number);
        let workload = ProducerWorkload::start(now, recorder, spec, values_as, ctx.producer_progress[&id].clone(), ctx.stop_producing.clone());
        let mut config = spec.config.clone();
        // One transactional id per producer; a restart reuses it, fencing the zombie.
        if let Some(id) = &mut config.transactional_id {
            *id = format!("{id}-{number}");
        }
        let producer = Producer::new(config, ctx.roster.brokers(), number, super::jitter_seed(id, now));
        ProducerNode { producer, producer_deadline: Cell::new(None), workload, out: Outbox::new(id), ctx, id, exited: false }
    }

    /// Sends not yet acknowledged, failed or given up.
    pub fn pending_count(&self) -> usize {
        self.workload.pending_count()
    }

    /// Runs one step of the producer with the wire's buffers as its own, then
    /// has the workload record what it reported. A zombie fenced by its
    /// successor exits (`fenced_by_successor`).
    fn step(&mut self, now: Instant, wire: &mut Wire, step: impl FnOnce(&mut Producer, &mut ProducerWorkload, &mut Outbox<ProducerEvent>)) {
        if self.exited {
            return;
        }
        self.producer_deadline.set(None);
        self.out.swap_wire(wire);
        step(&mut self.producer, &mut self.workload, &mut self.out);
        self.workload.carry_out(now, &mut self.producer, &mut self.out);
        if super::fenced_by_successor(&self.ctx, self.id, &self.producer) {
            self.exited = true;
            self.workload.exit(now);
            self.out.sends.clear();
            self.out.connections.clear();
        }
        self.out.swap_wire(wire);
    }
}

impl Machine for ProducerNode {
    fn handle_message(&mut self, now: Instant, _to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        self.step(now, wire, |producer, _, out| producer.handle_message(now, from, message, out));
    }

    fn handle_connection(&mut self, now: Instant, _at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        self.step(now, wire, |producer, _, out| producer.handle_connection(now, destination, event, out));
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        self.step(now, wire, |producer, workload, out| {
            workload.send_due(now, producer, out);
            producer.handle_timeout(now, out);
        });
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.exited {
            return None;
        }
        let producer_deadline = self.producer_deadline.get().unwrap_or_else(|| {
            let deadline = self.producer.next_deadline();
            self.producer_deadline.set(Some(deadline));
            deadline
        });
        kafsim_model::time::earliest(producer_deadline, self.workload.next_send(&self.producer))
    }
}
