//! The broker's replica of the metadata log (KIP-631): it observes the
//! controller quorum (KIP-595's non-voting replica), fetching the log from
//! the leader, and applies it in order up to the high watermark, as
//! Kafka's `BrokerMetadataListener` does. The quorum's leader is the active
//! controller, where heartbeats and AlterPartition go.

use crate::controller::kraft::apply_committed;
use crate::controller::records::MetadataImage;
use crate::controller::ControllerSnapshot;
use crate::net::{ConnectionEvent, Destination};
use crate::node::Outbox;
use crate::quorum::link::QuorumLink;
use crate::quorum::{QuorumConfig, QuorumMessage, QuorumNode};
use crate::config::NetworkConfig;
use crate::time::Instant;
use crate::types::NodeId;

pub struct MetadataLog {
    quorum: QuorumNode,
    link: QuorumLink,
    image: MetadataImage,
    applied: u64,
}

impl MetadataLog {
    /// A broker keeps no metadata log on disk here: after every start it
    /// fetches the log from its first offset.
    pub fn new(now: Instant, id: NodeId, config: QuorumConfig, bootstrap: ControllerSnapshot, network: NetworkConfig, jitter_seed: u64) -> MetadataLog {
        let mut messages = Vec::new();
        let mut link = QuorumLink::new(network, config.request_timeout, jitter_seed ^ 0x11c);
        let quorum = QuorumNode::recover(now, id, config, Default::default(), jitter_seed ^ 0x5eed, &mut messages);
        link.hold(messages);
        MetadataLog { quorum, link, image: MetadataImage::new(bootstrap), applied: 0 }
    }

    /// The active controller, as far as this broker knows.
    pub fn controller(&self) -> Option<NodeId> {
        self.quorum.leader()
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Applies what the step committed; the first offset applied and each
    /// entry's digest, if anything was.
    fn step<E>(&mut self, now: Instant, messages: Vec<(NodeId, QuorumMessage)>, out: &mut Outbox<E>) -> Option<(u64, Vec<u64>)> {
        self.link.send_all(now, messages, out);
        apply_committed(&mut self.image, &mut self.applied, self.quorum.log(), self.quorum.high_watermark())
    }

    pub fn handle_message<E>(&mut self, now: Instant, from: NodeId, message: QuorumMessage, out: &mut Outbox<E>) -> Option<(u64, Vec<u64>)> {
        let mut messages = Vec::new();
        self.link.answered(from, &message);
        self.quorum.handle_message(now, from, message, &mut messages);
        self.step(now, messages, out)
    }

    pub fn handle_connection<E>(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<E>) {
        self.link.handle_connection(now, destination, event, out);
    }

    pub fn handle_timeout<E>(&mut self, now: Instant, out: &mut Outbox<E>) -> Option<(u64, Vec<u64>)> {
        let mut messages = Vec::new();
        self.link.handle_timeout(now, out);
        if self.quorum.next_deadline().is_some_and(|deadline| deadline <= now) {
            self.quorum.handle_timeout(now, &mut messages);
        }
        self.step(now, messages, out)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        crate::time::earliest(self.quorum.next_deadline(), self.link.next_deadline())
    }
}
