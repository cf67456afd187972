//! The model consumer behind a `StreamConsumer`, and what it records: every
//! message `recv` hands out as a poll, seeks, assignments and revocations,
//! and every offset commit as invoke, then ok, fail or info.
//!
//! Fetched records wait in a queue until `recv` hands them out; the position
//! the application sees (`position`) and the offsets it stores move only then,
//! as librdkafka's do. Auto-commit (`enable.auto.commit`, on by default)
//! commits the stored offsets every `auto.commit.interval.ms`, and with
//! `enable.auto.offset.store` (on by default) an offset is stored as its
//! message is handed out, before the application processed it: librdkafka's
//! behaviour, which `at-least-once` finds when a crash follows.
//!
//! An eager rebalance holds the member's rejoin until the application's next
//! `recv`, which runs the context's callbacks first (Kafka's consumer
//! completes a rebalance only inside poll).

use super::error::{KafkaError, RDKafkaErrorCode};
use super::message::{record_value, Lineage, OwnedHeaders, OwnedMessage};
use super::shared::AppRegistry;
use crate::history::{OpBody, OpType};
use crate::node::Wire;
use crate::recorder::Recorder;
use kafsim_model::client::consumer::{Consumer, ConsumerEvent};
use kafsim_model::coordinator::group::protocol::{Generation, MemberId};
use kafsim_model::error::ErrorCode;
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId, Offset, TopicPartition};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The model's reason for a seek to the group's committed offset (OffsetFetch).
const COMMITTED_OFFSET: &str = "committed offset";

/// Fetching pauses while this many messages wait for `recv`.
const MAX_QUEUED: usize = 1000;

/// A rebalance the application's context hears of at its next `recv`.
#[derive(Clone, Debug)]
pub(crate) enum RebalanceNote {
    Assign(Vec<TopicPartition>),
    Revoke(Vec<TopicPartition>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitKind {
    /// OffsetCommit, asked for by the application or by auto-commit.
    Plain,
    /// TxnOffsetCommit (`send_offsets_to_transaction`).
    Transactional,
}

struct CommitInFlight {
    id: u64,
    kind: CommitKind,
}

pub(crate) struct ConsumerCore {
    pub(crate) consumer: Consumer,
    out: Outbox<ConsumerEvent>,
    recorder: Recorder,
    registry: Arc<Mutex<AppRegistry>>,
    pub(crate) group: Option<Arc<str>>,
    pub(crate) auto_store: bool,
    auto_commit_interval: Option<Duration>,
    next_auto_commit: Option<Instant>,
    pub(crate) queue: VecDeque<OwnedMessage>,
    pub(crate) rebalances: VecDeque<RebalanceNote>,
    pub(crate) errors: VecDeque<KafkaError>,
    /// Per partition, the next offset to commit (librdkafka's stored offsets).
    pub(crate) stored: BTreeMap<TopicPartition, Offset>,
    /// What auto-commit committed last, so it commits only what moved.
    auto_committed: BTreeMap<TopicPartition, Offset>,
    /// Per partition, the offset after the last message handed out.
    pub(crate) handed: BTreeMap<TopicPartition, Offset>,
    commit: Option<CommitInFlight>,
    next_commit_id: u64,
    pub(crate) commit_results: BTreeMap<u64, Result<(), ErrorCode>>,
    /// The member's generation and id when `recv` last handed out a message
    /// (Kafka's `consumer.groupMetadata()`, which moves only inside poll).
    pub(crate) group_metadata: Option<(Generation, MemberId)>,
}

impl ConsumerCore {
    /// `auto_commit_interval`: Some when `enable.auto.commit` is on; the model's own auto-commit is off.
    pub(crate) fn new(consumer: Consumer, endpoint: NodeId, recorder: Recorder, registry: Arc<Mutex<AppRegistry>>, group: Option<Arc<str>>, auto_store: bool, auto_commit_interval: Option<Duration>) -> ConsumerCore {
        ConsumerCore {
            consumer,
            out: Outbox::new(endpoint),
            recorder,
            registry,
            group,
            auto_store,
            auto_commit_interval,
            next_auto_commit: None,
            queue: VecDeque::new(),
            rebalances: VecDeque::new(),
            errors: VecDeque::new(),
            stored: BTreeMap::new(),
            auto_committed: BTreeMap::new(),
            handed: BTreeMap::new(),
            commit: None,
            next_commit_id: 0,
            commit_results: BTreeMap::new(),
            group_metadata: None,
        }
    }

    pub(crate) fn handle_message(&mut self, now: Instant, from: NodeId, message: Message) {
        self.consumer.handle_message(now, from, message, &mut self.out);
    }

    pub(crate) fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent) {
        self.consumer.handle_connection(now, destination, event, &mut self.out);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.consumer.handle_timeout(now, &mut self.out);
        if let Some(interval) = self.auto_commit_interval {
            let due = *self.next_auto_commit.get_or_insert(now + interval);
            if now >= due {
                self.next_auto_commit = Some(now + interval);
                let moved: Vec<(TopicPartition, Offset)> = self.stored.iter().filter(|(tp, offset)| self.auto_committed.get(*tp) != Some(*offset)).map(|(tp, offset)| (tp.clone(), *offset)).collect();
                if self.start_commit(now, moved.clone(), CommitKind::Plain).is_some() {
                    self.auto_committed.extend(moved);
                }
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        kafsim_model::time::earliest(self.consumer.next_deadline(), self.next_auto_commit)
    }

    /// Sends an OffsetCommit of `offsets` (Plain); its id, or None if a commit
    /// is in flight, the member cannot commit now, or there is nothing to commit.
    pub(crate) fn start_commit(&mut self, now: Instant, offsets: Vec<(TopicPartition, Offset)>, kind: CommitKind) -> Option<u64> {
        debug_assert_eq!(kind, CommitKind::Plain, "TxnOffsetCommit goes through start_txn_offset_commit");
        if self.commit.is_some() || offsets.is_empty() || !self.consumer.commit(now, offsets.clone(), &mut self.out) {
            return None;
        }
        let generation = self.consumer.group().map_or(-1, |member| member.generation().0);
        let group = self.group.clone().unwrap_or_else(|| "".into());
        self.recorder.record(now, OpType::Invoke, OpBody::Commit { group, generation, offsets, error: None });
        Some(self.begin_commit(kind))
    }

    /// Sends a TxnOffsetCommit (KIP-447) for the producer `identity`; as `start_commit`.
    pub(crate) fn start_txn_offset_commit(
        &mut self,
        now: Instant,
        identity: (Arc<str>, kafsim_model::ProducerId, u16),
        group_metadata: (Generation, MemberId),
        offsets: Vec<(TopicPartition, Offset)>,
    ) -> Option<u64> {
        if self.commit.is_some() || !self.consumer.txn_offset_commit(now, identity, group_metadata, offsets, &mut self.out) {
            return None;
        }
        Some(self.begin_commit(CommitKind::Transactional))
    }

    fn begin_commit(&mut self, kind: CommitKind) -> u64 {
        let id = self.next_commit_id;
        self.next_commit_id += 1;
        self.commit = Some(CommitInFlight { id, kind });
        id
    }

    pub(crate) fn settle(&mut self, now: Instant, wire: &mut Wire) -> bool {
        let events = std::mem::take(&mut self.out.events);
        let progressed = !events.is_empty() || !self.out.sends.is_empty() || !self.out.connections.is_empty();
        for event in events {
            self.handle_event(now, event);
        }
        // The queue shrinks as `recv` hands messages out, and as a rebalance
        // or a rewind drops them: fetching resumes as soon as there is room.
        if self.queue.len() >= MAX_QUEUED {
            self.consumer.set_paused(true);
        } else if self.consumer.is_paused() {
            self.consumer.set_paused(false);
            self.consumer.handle_timeout(now, &mut self.out);
            for event in std::mem::take(&mut self.out.events) {
                self.handle_event(now, event);
            }
        }
        wire.sends.append(&mut self.out.sends);
        wire.connections.append(&mut self.out.connections);
        progressed
    }

    fn group_name(&self) -> Arc<str> {
        self.group.clone().unwrap_or_else(|| "".into())
    }

    fn handle_event(&mut self, now: Instant, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Records(records) => {
                for (partition, offset, record) in records {
                    let lineage = record_value(&record).map(|value| Lineage { value, group: self.group.clone() });
                    self.queue.push_back(OwnedMessage {
                        key: record.key.clone(),
                        payload: Some(record.value.clone()),
                        topic: partition.topic.clone(),
                        partition: partition.partition as i32,
                        offset: offset.0 as i64,
                        headers: OwnedHeaders::from_record(record.headers.as_ref()),
                        lineage,
                    });
                }
            }
            ConsumerEvent::Seek { partition, offset, reason } => {
                // OffsetFetch (with require_stable, KIP-447) answered what the
                // group committed, perhaps by a process that died before it learned so.
                if let Some(group) = self.group.as_ref().filter(|_| reason == COMMITTED_OFFSET) {
                    self.registry.lock().expect("registry lock").committed(group, &[(partition.clone(), offset)]);
                }
                self.drop_queued(|tp| *tp == partition);
                self.handed.insert(partition.clone(), offset);
                self.recorder.record(now, OpType::Ok, OpBody::Seek { partition, offset, reason: reason.to_string() });
            }
            ConsumerEvent::Error { partition, error } => {
                let reason = format!("{error}: position lost, auto.offset.reset=none");
                self.recorder.record(now, OpType::Fail, OpBody::Seek { partition, offset: Offset(0), reason });
                self.errors.push_back(KafkaError::MessageConsumption(RDKafkaErrorCode::from_broker(error)));
            }
            ConsumerEvent::Assigned { generation, partitions } => {
                self.recorder.record(now, OpType::Ok, OpBody::Assign { group: self.group_name(), generation: generation.0, partitions: partitions.clone() });
                self.rebalances.push_back(RebalanceNote::Assign(partitions));
            }
            ConsumerEvent::Revoked { generation, partitions, reason } => {
                self.drop_queued(|tp| partitions.contains(tp));
                for partition in &partitions {
                    self.handed.remove(partition);
                }
                self.recorder.record(now, OpType::Ok, OpBody::Revoke { group: self.group_name(), generation: generation.0, partitions: partitions.clone(), reason: reason.to_string() });
                self.rebalances.push_back(RebalanceNote::Revoke(partitions));
            }
            ConsumerEvent::CommitCompleted { generation, offsets, result, .. } => {
                let Some(commit) = self.commit.take() else { return };
                if commit.kind == CommitKind::Plain {
                    let (kind, error) = crate::workload::commit_outcome(result);
                    if kind == OpType::Ok {
                        if let Some(group) = &self.group {
                            self.registry.lock().expect("registry lock").committed(group, &offsets);
                        }
                    }
                    self.recorder.record(now, kind, OpBody::Commit { group: self.group_name(), generation: generation.0, offsets, error });
                }
                self.commit_results.insert(commit.id, result);
            }
        }
    }

    fn drop_queued(&mut self, dropped: impl Fn(&TopicPartition) -> bool) {
        self.queue.retain(|message| !dropped(&TopicPartition::new(message.topic.clone(), message.partition as u32)));
        self.stored.retain(|tp, _| !dropped(tp));
    }

    /// The next message for the application: recorded as a poll, its offset
    /// stored if `enable.auto.offset.store`, the group metadata taken.
    pub(crate) fn hand_out(&mut self, now: Instant) -> Option<OwnedMessage> {
        let message = self.queue.pop_front()?;
        let partition = TopicPartition::new(message.topic.clone(), message.partition as u32);
        let next = Offset(message.offset as u64 + 1);
        self.handed.insert(partition.clone(), next);
        if self.auto_store {
            self.stored.insert(partition.clone(), next);
        }
        self.group_metadata = self.consumer.group().and_then(|member| Some((member.generation(), member.member_id()?.clone())));
        if let Some(lineage) = &message.lineage {
            let record = crate::history::PolledRecord { partition, offset: Offset(message.offset as u64), value: lineage.value };
            self.recorder.record(now, OpType::Ok, OpBody::Poll { records: vec![record] });
        }
        Some(message)
    }

    /// Back to the committed offsets (`seek_partitions` to `Offset::Stored`).
    pub(crate) fn rewind_to_committed(&mut self, now: Instant) {
        self.queue.clear();
        self.stored.clear();
        self.handed.clear();
        self.consumer.rewind_to_committed();
        self.consumer.handle_timeout(now, &mut self.out);
        // The next reads start from the committed offsets: earlier reads say nothing of them.
        self.recorder.record(now, OpType::Info, OpBody::ClientStart);
    }

    /// Whether the member holds its rejoin for the application (an eager revocation).
    pub(crate) fn is_revoking(&self) -> bool {
        self.consumer.group().is_some_and(|member| member.is_revoking())
    }

    pub(crate) fn revocation_done(&mut self, now: Instant) {
        self.consumer.revocation_done(now, &mut self.out);
    }

    /// Auto-commit's commit of the stored offsets of `partitions`, as
    /// librdkafka makes when they are revoked.
    pub(crate) fn stored_of(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, Offset)> {
        self.stored.iter().filter(|(tp, offset)| partitions.contains(tp) && self.auto_committed.get(*tp) != Some(*offset)).map(|(tp, offset)| (tp.clone(), *offset)).collect()
    }

    pub(crate) fn auto_commits(&self) -> bool {
        self.auto_commit_interval.is_some()
    }
}
