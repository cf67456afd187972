//! A controller node of the KRaft quorum (Kafka's `QuorumController` over
//! `KafkaRaftClient`): one voter of the quorum (KIP-595) that keeps the
//! metadata log, and, while it leads, the active controller (KIP-631).
//!
//! - Every controller applies the log up to its high watermark to its
//!   committed image, as a standby controller does.
//! - A newly elected leader becomes the active controller only once its
//!   epoch's first record is committed, so that everything before it is too,
//!   and takes its state from that committed image: a failover loses nothing
//!   committed and resumes from exactly what the log holds.
//! - The active controller logs each change it makes as metadata records
//!   (`records::changes`) and answers a request only once the records
//!   written so far are committed (QuorumController's deferred event queue:
//!   even a request that changed nothing read state that may not be).
//! - A controller that is not the active one answers NOT_CONTROLLER. One that
//!   loses the lead drops its uncommitted state and answers NOT_CONTROLLER to
//!   every request it still held.

use super::records::{changes, MetadataImage, MetadataRecord};
use super::{Controller, ControllerConfig, ControllerSnapshot};
use crate::error::ErrorCode;
use crate::net::{ConnectionEvent, Destination};
use crate::node::Outbox;
use crate::protocol::Message;
use crate::quorum::link::QuorumLink;
use crate::quorum::{Entry, QuorumConfig, QuorumNode};
use crate::storage::{DiskOp, DurableState};
use crate::time::Instant;
use crate::types::{BrokerEpoch, NodeId};

/// What a controller node reports besides its messages and disk writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KraftEvent {
    /// It became the active controller in this quorum epoch.
    Elected { epoch: u32, voter: bool },
    /// It applied committed log entries from `offset` on (`entry_digest` each).
    Applied { offset: u64, digests: Vec<u64> },
    /// A change in words: a broker registered, fenced or unfenced, a lead lost.
    Change(String),
}

/// A digest of one log entry, for `metadata-divergence`: equal entries at
/// one offset have equal digests on every node.
pub fn entry_digest(entry: &Entry) -> u64 {
    let mut hasher = crate::hash::StableHasher::default();
    hasher.write(&entry.epoch.to_le_bytes());
    if let Some(record) = &entry.record {
        hasher.write(record);
    }
    hasher.finish()
}

/// Applies the entries of `log` from `applied` up to `high_watermark` to
/// `image`: what a standby controller and a broker do as the log commits.
/// Returns the first offset applied and each entry's digest, if any were.
pub fn apply_committed(image: &mut MetadataImage, applied: &mut u64, log: &[Entry], high_watermark: u64) -> Option<(u64, Vec<u64>)> {
    let end = high_watermark.min(log.len() as u64);
    if end <= *applied {
        return None;
    }
    let first = *applied;
    let mut digests = Vec::with_capacity((end - first) as usize);
    for offset in first..end {
        let entry = &log[offset as usize];
        digests.push(entry_digest(entry));
        // The LeaderChange control record changes no metadata.
        if let Some(records) = entry.record.as_deref().and_then(MetadataRecord::decode_batch) {
            image.apply_batch(offset, &records);
        }
    }
    *applied = end;
    Some((first, digests))
}

struct Active {
    epoch: u32,
    controller: Controller,
    /// The image of the whole log, uncommitted records included.
    logged: MetadataImage,
    /// The offset of the last entry this controller wrote (or found on taking over).
    last_written: u64,
    /// Answers waiting for the log to commit up to their offset.
    pending: Vec<(u64, NodeId, Message)>,
}

pub struct QuorumController {
    config: ControllerConfig,
    quorum: QuorumNode,
    link: QuorumLink,
    /// The log applied up to the high watermark.
    committed: MetadataImage,
    applied: u64,
    active: Option<Active>,
    /// What the disk last got (epoch, vote, leader, log length), so that a
    /// step that changed none of it writes nothing.
    on_disk: (u32, Option<NodeId>, Option<NodeId>, usize),
}

impl QuorumController {
    /// Starts or restarts from the quorum state and log on disk.
    pub fn recover(now: Instant, id: NodeId, config: ControllerConfig, quorum: QuorumConfig, durable: &DurableState, jitter_seed: u64) -> QuorumController {
        let mut messages = Vec::new();
        let state = durable.quorum.clone().unwrap_or_default();
        let on_disk = (state.epoch, state.voted_for, state.leader, state.log.len());
        let request_timeout = quorum.request_timeout;
        let quorum = QuorumNode::recover(now, id, quorum, state, jitter_seed ^ 0x5eed, &mut messages);
        let committed = MetadataImage::new(Controller::bootstrap(&config));
        let mut link = QuorumLink::new(config.network, request_timeout, jitter_seed);
        // Nothing leaves while the node starts: the first timeout connects.
        link.hold(messages);
        QuorumController { config, quorum, link, committed, applied: 0, active: None, on_disk }
    }

    pub fn quorum(&self) -> &QuorumNode {
        &self.quorum
    }

    /// The metadata as committed, as this controller has applied it.
    pub fn committed(&self) -> &MetadataImage {
        &self.committed
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<KraftEvent>) {
        let mut messages = Vec::new();
        match message {
            Message::Quorum(message) => {
                self.link.answered(from, &message);
                self.quorum.handle_message(now, from, *message, &mut messages)
            }
            request => self.handle_request(now, from, request, &mut messages, out),
        }
        self.finish(now, messages, out);
    }

    pub fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<KraftEvent>) {
        self.link.handle_connection(now, destination, event, out);
        self.finish(now, Vec::new(), out);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<KraftEvent>) {
        let mut messages = Vec::new();
        self.link.handle_timeout(now, out);
        self.quorum.handle_timeout(now, &mut messages);
        self.settle_leadership(now, out);
        if let Some(active) = &mut self.active {
            active.controller.handle_timeout(now);
            self.log_changes(now, &mut messages, out);
        }
        self.finish(now, messages, out);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let controller = self.active.as_ref().and_then(|active| active.controller.next_deadline());
        crate::time::earliest(crate::time::earliest(self.quorum.next_deadline(), self.link.next_deadline()), controller)
    }

    fn handle_request(&mut self, now: Instant, from: NodeId, request: Message, messages: &mut Vec<(NodeId, crate::quorum::QuorumMessage)>, out: &mut Outbox<KraftEvent>) {
        let Some(active) = &mut self.active else {
            if let Some(answer) = not_controller(request) {
                out.send(from, answer);
            }
            return;
        };
        let Some(answer) = active.controller.handle_request(now, from, request) else { return };
        self.log_changes(now, messages, out);
        if let Some(active) = &mut self.active {
            active.pending.push((active.last_written, from, answer));
        }
    }

    /// Logs what the active controller changed, as records, and has its
    /// state follow the log's image.
    fn log_changes(&mut self, now: Instant, messages: &mut Vec<(NodeId, crate::quorum::QuorumMessage)>, out: &mut Outbox<KraftEvent>) {
        let Some(active) = &mut self.active else { return };
        for event in active.controller.take_events() {
            out.events.push(KraftEvent::Change(event));
        }
        if !active.controller.take_changed() {
            return;
        }
        let records = changes(active.logged.state(), active.controller.state());
        if !records.is_empty() {
            let offset = self.quorum.append(now, MetadataRecord::encode_batch(&records), messages).expect("the active controller leads the quorum");
            active.logged.apply_batch(offset, &records);
            active.last_written = offset;
        }
        active.controller.adopt(active.logged.state().clone());
    }

    /// Persists, sends, applies what committed, and takes or gives up the
    /// active controller's role.
    fn finish(&mut self, now: Instant, messages: Vec<(NodeId, crate::quorum::QuorumMessage)>, out: &mut Outbox<KraftEvent>) {
        let durable = self.quorum.durable();
        let stamp = (durable.epoch, durable.voted_for, durable.leader, durable.log.len());
        if stamp != self.on_disk {
            // Before anything the step sends leaves: the shell writes the disk first.
            out.disk.push(DiskOp::Quorum(Box::new(durable.clone())));
            self.on_disk = stamp;
        }
        self.link.send_all(now, messages, out);
        let high_watermark = self.quorum.high_watermark();
        if let Some((offset, digests)) = apply_committed(&mut self.committed, &mut self.applied, self.quorum.log(), high_watermark) {
            out.events.push(KraftEvent::Applied { offset, digests });
        }
        self.settle_leadership(now, out);
        if let Some(active) = &mut self.active {
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut active.pending).into_iter().partition(|(offset, _, _)| *offset < high_watermark);
            active.pending = waiting;
            for (_, to, answer) in ready {
                out.send(to, answer);
            }
        }
    }

    fn settle_leadership(&mut self, now: Instant, out: &mut Outbox<KraftEvent>) {
        let (leading, epoch) = (self.quorum.is_leader(), self.quorum.epoch());
        if let Some(active) = self.active.take_if(|active| !leading || active.epoch != epoch) {
            out.events.push(KraftEvent::Change(format!("controller gives up the lead of quorum epoch {}", active.epoch)));
            for (_, to, answer) in active.pending {
                if let Some(refusal) = refusal(answer) {
                    out.send(to, refusal);
                }
            }
        }
        let log_end = self.quorum.log().len() as u64;
        if self.active.is_none() && leading && self.applied == log_end {
            let controller = Controller::activate(now, self.config.clone(), self.committed.state().clone());
            let logged = self.committed.clone();
            self.active = Some(Active { epoch, controller, logged, last_written: log_end - 1, pending: Vec::new() });
            out.events.push(KraftEvent::Elected { epoch, voter: self.quorum.is_voter() });
        }
    }

    /// The committed state, for the simulator's final snapshot.
    pub fn committed_state(&self) -> &ControllerSnapshot {
        self.committed.state()
    }
}

/// NOT_CONTROLLER for a request a controller will not serve.
fn not_controller(request: Message) -> Option<Message> {
    match request {
        Message::BrokerHeartbeat { correlation_id, .. } => {
            Some(Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: BrokerEpoch(0), error: Some(ErrorCode::NotController) })
        }
        Message::AlterPartitionRequest { correlation_id, partition, .. } => Some(Message::AlterPartitionResponse { correlation_id, partition, result: Err(ErrorCode::NotController) }),
        _ => None,
    }
}

/// NOT_CONTROLLER in place of an answer held for a commit that this
/// controller, no longer active, will not see.
fn refusal(answer: Message) -> Option<Message> {
    match answer {
        Message::BrokerHeartbeatResponse { correlation_id, broker_epoch, .. } => {
            Some(Message::BrokerHeartbeatResponse { correlation_id, broker_epoch, error: Some(ErrorCode::NotController) })
        }
        Message::AlterPartitionResponse { correlation_id, partition, .. } => Some(Message::AlterPartitionResponse { correlation_id, partition, result: Err(ErrorCode::NotController) }),
        _ => None,
    }
}
