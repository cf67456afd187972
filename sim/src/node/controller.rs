//! The controller node: a voter of the KRaft quorum (`QuorumController`),
//! restarted from its quorum state and metadata log on disk, and recording
//! its elections and what it applies for the quorum's checkers.

use super::{Machine, Wire};
use crate::context::RunContext;
use crate::faults::disk::SharedDisk;
use crate::history::{OpBody, OpType};
use kafsim_model::controller::kraft::{KraftEvent, QuorumController};
use kafsim_model::controller::ControllerConfig;
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::Outbox;
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::sync::Arc;

pub struct ControllerNode {
    pub controller: QuorumController,
    ctx: Arc<RunContext>,
    id: NodeId,
    disk: SharedDisk,
    out: Outbox<KraftEvent>,
}

impl ControllerNode {
    pub fn start(ctx: Arc<RunContext>, now: Instant, id: NodeId, config: ControllerConfig, jitter_seed: u64) -> ControllerNode {
        let disk = ctx.disks[&id].clone();
        let cluster = &ctx.scenario.cluster.config;
        if cluster.mutation == Some(kafsim_model::config::BrokerMutation::NoQuorumFsync) {
            disk.lock().expect("disk lock").skip_quorum_fsync();
        }
        let durable = disk.lock().expect("disk lock").durable_state();
        let quorum = cluster.quorum_config(ctx.roster.controllers());
        let controller = QuorumController::recover(now, id, config, quorum, &durable, jitter_seed);
        ControllerNode { controller, ctx, id, disk, out: Outbox::new(id) }
    }

    /// Writes the step's disk operations, then records its events.
    fn carry_out(&mut self) {
        if !self.out.disk.is_empty() {
            let mut disk = self.disk.lock().expect("disk lock");
            for op in self.out.disk.drain(..) {
                disk.apply(op);
            }
        }
        if self.out.events.is_empty() {
            return;
        }
        let name = self.ctx.roster.entry(self.id).name.clone();
        let incarnation = self.ctx.incarnation(self.id) as u32;
        for event in self.out.events.drain(..) {
            let body = match event {
                KraftEvent::Elected { epoch, voter } => OpBody::ControllerElected { epoch, voter },
                KraftEvent::Applied { offset, digests } => OpBody::MetadataApplied { incarnation, offset, digests },
                KraftEvent::Change(event) => OpBody::ControllerChange { event },
            };
            self.ctx.record(&name, OpType::Info, body);
        }
    }

    /// Runs one step with the wire's buffers as its own.
    fn step(&mut self, wire: &mut Wire, step: impl FnOnce(&mut QuorumController, &mut Outbox<KraftEvent>)) {
        self.out.swap_wire(wire);
        step(&mut self.controller, &mut self.out);
        self.out.swap_wire(wire);
        self.carry_out();
    }
}

impl Machine for ControllerNode {
    fn handle_message(&mut self, now: Instant, _to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        self.step(wire, |controller, out| controller.handle_message(now, from, message, out));
    }

    fn handle_connection(&mut self, now: Instant, _at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        self.step(wire, |controller, out| controller.handle_connection(now, destination, event, out));
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        self.step(wire, |controller, out| controller.handle_timeout(now, out));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.controller.next_deadline()
    }
}
