//! The broker node: recovers a `Broker` from its disk at every start and carries
//! out its disk writes on the simulated disk.

use super::{Machine, Wire};
use crate::faults::disk::SharedDisk;
use crate::invariants::{Invariants, ReplicaWatch};
use crate::context::RunContext;
use crate::history::{OpBody, OpType};
use kafsim_model::broker::{Broker, BrokerEvent, QuorumSetup};
use kafsim_model::config::BrokerConfig;
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use std::sync::Arc;

pub struct BrokerNode {
    pub broker: Broker,
    disk: SharedDisk,
    watch: ReplicaWatch,
    out: Outbox<BrokerEvent>,
    ctx: Arc<RunContext>,
}

impl BrokerNode {
    pub fn start(ctx: Arc<RunContext>, now: Instant, id: NodeId, quorum: QuorumSetup, config: BrokerConfig, jitter_seed: u64) -> BrokerNode {
        let (disk, invariants): (SharedDisk, Arc<Invariants>) = (ctx.disks[&id].clone(), ctx.invariants.clone());
        let durable = disk.lock().expect("disk lock").durable_state();
        let mut out = Outbox::new(id);
        let broker = Broker::recover(now, id, quorum, config, &durable, jitter_seed, &mut out);
        let mut watch = ReplicaWatch::new(invariants, id);
        // What the process recovered must agree with the other replicas too.
        for (_, partition) in broker.partitions().iter() {
            watch.high_watermark_moved(partition);
        }
        let mut node = BrokerNode { broker, disk, watch, out, ctx };
        // Recovery only writes to disk (cutting torn tails); it sends nothing.
        node.carry_out();
        node
    }

    /// Carries out what one step left besides its network outputs (which went
    /// straight into the wire): the leaderships it took, then its disk writes
    /// in the order it made them.
    fn carry_out(&mut self) {
        for event in self.out.events.drain(..) {
            match event {
                BrokerEvent::LeadershipTaken { partition, leader_epoch, high_watermark } => self.watch.leader_elected(&partition, leader_epoch, high_watermark),
                BrokerEvent::HighWatermarkMoved { partition } => {
                    if let Some(replica) = self.broker.partitions().get(&partition) {
                        self.watch.high_watermark_moved(replica);
                    }
                }
                BrokerEvent::MetadataApplied { offset, digests } => {
                    let id = self.broker.id();
                    let incarnation = self.ctx.incarnation(id) as u32;
                    self.ctx.record(&self.ctx.roster.entry(id).name.clone(), OpType::Info, OpBody::MetadataApplied { incarnation, offset, digests });
                }
            }
        }
        // Most steps write nothing to disk (a follower's fetch at the leader, say),
        // so the disk is locked only once there is something to write.
        if !self.out.disk.is_empty() {
            let mut disk = self.disk.lock().expect("disk lock");
            for op in self.out.disk.drain(..) {
                disk.apply(op);
            }
        }
    }

    /// Runs one step of the broker with the wire's buffers as its own, so its
    /// sends land there without a copy.
    fn step(&mut self, wire: &mut Wire, step: impl FnOnce(&mut Broker, &mut Outbox<BrokerEvent>)) {
        self.out.swap_wire(wire);
        step(&mut self.broker, &mut self.out);
        self.out.swap_wire(wire);
        self.carry_out();
    }
}

impl Machine for BrokerNode {
    fn handle_message(&mut self, now: Instant, _to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        self.step(wire, |broker, out| broker.handle_message(now, from, message, out));
    }

    fn handle_connection(&mut self, now: Instant, _at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        self.step(wire, |broker, out| broker.handle_connection(now, destination, event, out));
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        self.step(wire, |broker, out| broker.handle_timeout(now, out));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.broker.next_deadline()
    }
}
