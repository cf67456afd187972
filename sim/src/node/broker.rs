//! The broker node: recovers a `Broker` from its disk at every start and carries
//! out its disk operations on the simulated disk.

use super::Machine;
use crate::disk::SharedDisk;
use crate::invariants::Invariants;
use std::sync::Arc;
use kafsim_model::broker::Broker;
use kafsim_model::config::BrokerConfig;
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};

pub struct BrokerNode {
    pub broker: Broker,
    disk: SharedDisk,
    invariants: Arc<Invariants>,
}

impl BrokerNode {
    pub fn start(now: Instant, id: NodeId, controller: NodeId, config: BrokerConfig, disk: SharedDisk, invariants: Arc<Invariants>) -> BrokerNode {
        let durable = disk.lock().expect("disk lock").durable_state();
        let broker = Broker::recover(now, id, controller, config, &durable);
        let mut node = BrokerNode { broker, disk, invariants };
        // Recovery only writes to disk (cutting torn tails); it sends nothing.
        node.carry_out();
        node
    }

    /// Carries out what one step left besides its sends (which the broker put
    /// straight into the node's list): the leaderships it took, then its disk
    /// writes in the order it made them. The two touch nothing in common, nor
    /// do they touch the sends, which leave only after the step.
    fn carry_out(&mut self) {
        let me = self.broker.id();
        for (partition, leader_epoch) in self.broker.drain_leaderships() {
            self.invariants.leader_elected(&partition, leader_epoch, me);
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
        self.broker.handle_message(now, from, message, sends);
        self.carry_out();
    }

    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>) {
        self.broker.handle_timeout(now, sends);
        self.carry_out();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.broker.next_deadline()
    }
}
