//! A pipeline member's process (DESIGN §4 `[[pipelines]]`): Kafka's consumer
//! and producer, each on its own network endpoint, driven by the network and
//! the clock, and the pipeline workload (`workload::pipeline`) deciding what
//! they do.

use super::{Machine, Wire};
use crate::context::RunContext;
use crate::workload::pipeline::PipelineWorkload;
use kafsim_model::client::consumer::Consumer;
use kafsim_model::client::producer::Producer;
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::Node;
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::sync::Arc;

pub struct PipelineNode {
    pub workload: PipelineWorkload,
    /// The producer's own network endpoint (`Roster::endpoints`).
    producer_endpoint: NodeId,
    ctx: Arc<RunContext>,
    id: NodeId,
    /// A zombie fenced by its successor stops for good (see `step`).
    exited: bool,
}

impl PipelineNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> PipelineNode {
        let now = ctx.now();
        let spec = &ctx.scenario.pipelines[spec];
        let recorder = ctx.recorder(ctx.roster.entry(id).name.clone());
        let producer_endpoint = crate::context::pipeline_producer_endpoint(id);
        let consumer = Consumer::subscribe(spec.consumer_config.clone(), vec![spec.from.as_str().into()], spec.group.as_str().into(), ctx.roster.brokers(), number as usize, super::jitter_seed(id, now));
        let mut producer_config = spec.producer_config.clone();
        // One transactional id per member, stable across restarts: the restarted
        // member's InitProducerId fences its zombie (KIP-98).
        if let Some(id) = &mut producer_config.transactional_id {
            *id = format!("{id}-{number}");
        }
        // Producer numbers only spread first brokers; pipelines start after producers.
        let producer = Producer::new(producer_config, ctx.roster.brokers(), number, super::jitter_seed(producer_endpoint, now));
        let workload = PipelineWorkload::start(now, recorder, ctx.invariants.clone(), spec, (consumer, producer), ctx.pipeline_progress[&id].clone(), (id, producer_endpoint));
        PipelineNode { workload, producer_endpoint, ctx, id, exited: false }
    }

    /// A zombie fenced by its successor that stopped for good.
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// Moves the workload on. A zombie fenced by its successor exits
    /// (`fenced_by_successor`).
    fn step(&mut self, now: Instant, wire: &mut Wire) {
        self.workload.step(now, wire);
        if super::fenced_by_successor(&self.ctx, self.id, &self.workload.producer) {
            self.exited = true;
            self.workload.exit(now);
            wire.sends.clear();
            wire.connections.clear();
        }
    }

    pub fn consumer(&self) -> &Consumer {
        &self.workload.consumer
    }

    /// Nothing polled is left unprocessed, and no send or transaction is pending.
    pub fn settled(&self) -> bool {
        self.workload.settled()
    }
}

impl Machine for PipelineNode {
    fn handle_message(&mut self, now: Instant, to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        if self.exited {
            return;
        }
        if to == self.producer_endpoint {
            self.workload.producer.handle_message(now, from, message, &mut self.workload.producer_out);
        } else {
            self.workload.consumer.handle_message(now, from, message, &mut self.workload.consumer_out);
        }
        self.step(now, wire);
    }

    fn handle_connection(&mut self, now: Instant, at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        if self.exited {
            return;
        }
        if at == self.producer_endpoint {
            self.workload.producer.handle_connection(now, destination, event, &mut self.workload.producer_out);
        } else {
            self.workload.consumer.handle_connection(now, destination, event, &mut self.workload.consumer_out);
        }
        self.step(now, wire);
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        if self.exited {
            return;
        }
        self.workload.consumer.handle_timeout(now, &mut self.workload.consumer_out);
        self.workload.producer.handle_timeout(now, &mut self.workload.producer_out);
        self.step(now, wire);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.exited {
            return None;
        }
        kafsim_model::time::earliest(self.workload.consumer.next_deadline(), self.workload.producer.next_deadline())
    }
}
