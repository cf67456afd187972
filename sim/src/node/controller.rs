//! The controller node: recovers its metadata from its disk at every start.

use super::Machine;
use crate::disk::SharedDisk;
use kafsim_model::controller::{Controller, ControllerConfig, ControllerOutput};
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};

pub struct ControllerNode {
    pub controller: Controller,
    disk: SharedDisk,
    out: Vec<ControllerOutput>,
}

impl ControllerNode {
    pub fn start(now: Instant, config: ControllerConfig, disk: SharedDisk) -> ControllerNode {
        let durable = disk.lock().expect("disk lock").durable_state();
        let mut controller = Controller::recover(now, config, &durable);
        let mut out = Vec::new();
        controller.start(&mut out);
        let mut node = ControllerNode { controller, disk, out };
        node.carry_out(&mut Vec::new());
        node
    }

    fn carry_out(&mut self, sends: &mut Vec<Send>) {
        let mut disk = self.disk.lock().expect("disk lock");
        for output in self.out.drain(..) {
            match output {
                ControllerOutput::Send(send) => sends.push(send),
                ControllerOutput::Disk(op) => disk.apply(op),
            }
        }
    }
}

impl Machine for ControllerNode {
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, sends: &mut Vec<Send>) {
        self.controller.handle_message(now, from, message, &mut self.out);
        self.carry_out(sends);
    }

    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>) {
        self.controller.handle_timeout(now, &mut self.out);
        self.carry_out(sends);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.controller.next_deadline()
    }
}
