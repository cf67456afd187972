//! The controller node: recovers its metadata from its disk at every start.

use super::{Machine, Wire};
use crate::faults::disk::SharedDisk;
use kafsim_model::controller::{Controller, ControllerConfig, ControllerEvent};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};

pub struct ControllerNode {
    pub controller: Controller,
    disk: SharedDisk,
    out: Outbox<ControllerEvent>,
}

impl ControllerNode {
    pub fn start(now: Instant, id: NodeId, config: ControllerConfig, disk: SharedDisk, jitter_seed: u64) -> ControllerNode {
        let durable = disk.lock().expect("disk lock").durable_state();
        let controller = Controller::recover(now, config, &durable, jitter_seed);
        let mut node = ControllerNode { controller, disk, out: Outbox::new(id) };
        // Starting only persists the bootstrap metadata; it sends nothing.
        node.step(&mut Wire::new(id), |controller, out| controller.start(out));
        node
    }

    /// Runs one step with the wire's buffers as its own, then writes its disk.
    fn step(&mut self, wire: &mut Wire, step: impl FnOnce(&mut Controller, &mut Outbox<ControllerEvent>)) {
        self.out.swap_wire(wire);
        step(&mut self.controller, &mut self.out);
        self.out.swap_wire(wire);
        if !self.out.disk.is_empty() {
            let mut disk = self.disk.lock().expect("disk lock");
            for op in self.out.disk.drain(..) {
                disk.apply(op);
            }
        }
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
