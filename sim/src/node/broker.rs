//! The broker node: recovers a `Broker` from its disk at every start and carries
//! out its disk operations on the simulated disk.

use super::Machine;
use crate::disk::SharedDisk;
use crate::invariants::Invariants;
use std::sync::Arc;
use kafsim_model::broker::{Broker, BrokerOutput};
use kafsim_model::config::BrokerConfig;
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};

pub struct BrokerNode {
    pub broker: Broker,
    disk: SharedDisk,
    invariants: Arc<Invariants>,
    out: Vec<BrokerOutput>,
}

impl BrokerNode {
    pub fn start(now: Instant, id: NodeId, controller: NodeId, config: BrokerConfig, disk: SharedDisk, invariants: Arc<Invariants>) -> BrokerNode {
        let durable = disk.lock().expect("disk lock").durable_state();
        let broker = Broker::recover(now, id, controller, config, &durable);
        let mut node = BrokerNode { broker, disk, invariants, out: Vec::new() };
        // Recovery only writes to disk (cutting torn tails); it sends nothing.
        node.carry_out(&mut Vec::new());
        node
    }

    /// Carries out one step's outputs, then its disk writes in the order the
    /// broker made them. The two kinds touch nothing in common (sends leave only
    /// after the step), so taking them apart keeps every effect as it was.
    fn carry_out(&mut self, sends: &mut Vec<Send>) {
        for output in self.out.drain(..) {
            match output {
                BrokerOutput::Send(send) => sends.push(send),
                BrokerOutput::BecameLeader { partition, leader_epoch } => self.invariants.leader_elected(&partition, leader_epoch, self.broker.id()),
            }
        }
        // Most steps write nothing to disk (a follower's fetch at the leader, say),
        // so the disk is locked only once there is something to write.
        if self.broker.has_disk_ops() {
            let mut disk = self.disk.lock().expect("disk lock");
            for op in self.broker.drain_disk_ops() {
                disk.apply(op);
            }
        }
    }
}

impl Machine for BrokerNode {
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, sends: &mut Vec<Send>) {
        self.broker.handle_message(now, from, message, &mut self.out);
        self.carry_out(sends);
    }

    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>) {
        self.broker.handle_timeout(now, &mut self.out);
        self.carry_out(sends);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.broker.next_deadline()
    }
}
