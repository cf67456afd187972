//! The transaction coordinator (KIP-98, KIP-890): producer ids and epochs, transaction state, kept on `__transaction_state`.
//!
//! Each transactional id lives on the `__transaction_state` partition its name
//! hashes to; the leader of that partition coordinates it. Every transition
//! (`state::TxnMetadata`) is written to that partition with acks=all and takes
//! effect, and is answered, only once committed. Once a commit or abort is
//! decided (PrepareCommit / PrepareAbort written) the coordinator sends
//! WriteTxnMarkers to the leader of every partition of the transaction, again
//! and again until each has answered, then writes CompleteCommit / CompleteAbort.
//! A coordinator that takes over a partition loads its log and resumes the
//! marker writing of every transaction it finds prepared. Its local log may end
//! with records that are not committed yet (and may still be truncated), so it
//! serves nothing from them: it first appends a barrier record and waits for that
//! to commit, answering CoordinatorLoadInProgress meanwhile (as KIP-848's
//! coordinator runtime waits for its high watermark). Open transactions past
//! `transaction.timeout.ms` are aborted, which bumps the producer's epoch.

pub mod protocol;
pub mod state;

use self::protocol::TxnMessage;
use self::state::{TxnMetadata, TxnPhase};
use super::runtime::{BarrierOutcome, CoordinatorRuntime};
use super::{decode_record, encode_record, partition_for, Coordinator, CoordinatorEffect, CoordinatorType, WriteToken};
use crate::config::{BrokerConfig, BrokerMutation};
use crate::protocol::{ClusterMetadata, Message};
use crate::error::ErrorCode;
use crate::record::SharedBatch;
use crate::time::{earliest, Instant};
use crate::types::{LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use crate::protocol::CONSUMER_OFFSETS_TOPIC;

/// How long a failed step (a marker, a write) waits before it is tried again.
/// A marker request always gets an answer: the leader's, or, from the broker's
/// `NetworkClient`, a NetworkException once its connection closed or it timed out
/// (Kafka's TransactionMarkerRequestCompletionHandler re-enqueues on a disconnect).
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Whom to answer once a write committed.
#[derive(Clone, Copy, Debug)]
enum Reply {
    InitProducerId { to: NodeId, correlation_id: u64 },
    AddPartitions { to: NodeId, correlation_id: u64 },
    AddOffsets { to: NodeId, correlation_id: u64 },
    EndTxn { to: NodeId, correlation_id: u64 },
}

struct PendingWrite {
    token: WriteToken,
    next: TxnMetadata,
    reply: Option<Reply>,
}

/// Markers still to be written for a prepared transaction.
#[derive(Default)]
struct Markers {
    remaining: BTreeSet<TopicPartition>,
    /// Partition -> correlation id of its marker request.
    in_flight: BTreeMap<TopicPartition, u64>,
}

struct Entry {
    meta: TxnMetadata,
    partition: u32,
    pending: Option<PendingWrite>,
    /// When the current transaction began (or was loaded), for its timeout.
    started: Instant,
    markers: Markers,
    /// A failed step (a write, a leaderless partition) is retried from here.
    retry_at: Option<Instant>,
}

pub struct TransactionCoordinator {
    config: BrokerConfig,
    metadata: Arc<ClusterMetadata>,
    /// The partitions of `__transaction_state` it leads, their loading and its write tokens.
    runtime: CoordinatorRuntime,
    entries: BTreeMap<String, Entry>,
    writes: BTreeMap<WriteToken, String>,
    markers_in_flight: BTreeMap<u64, (String, TopicPartition)>,
    next_correlation_id: u64,
    /// Per owned partition, the next producer id counter.
    next_producer_id: BTreeMap<u32, u64>,
}

/// Producer ids handed out by transaction coordinators: a high bit no
/// broker-assigned id has, the coordinator partition, and a counter kept in the log.
fn transactional_producer_id(partition: u32, counter: u64) -> ProducerId {
    ProducerId(1 << 62 | u64::from(partition) << 32 | counter)
}

impl TransactionCoordinator {
    pub fn new(config: BrokerConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            metadata: Arc::new(ClusterMetadata::default()),
            runtime: CoordinatorRuntime::default(),
            entries: BTreeMap::new(),
            writes: BTreeMap::new(),
            markers_in_flight: BTreeMap::new(),
            next_correlation_id: 0,
            next_producer_id: BTreeMap::new(),
        }
    }

    /// The broker's latest metadata, to find the leaders markers go to.
    pub fn update_metadata(&mut self, metadata: Arc<ClusterMetadata>) {
        self.metadata = metadata;
    }

    fn owner(&self, transactional_id: &str) -> Result<u32, ErrorCode> {
        let partition = partition_for(transactional_id, self.config.transaction_state_log_num_partitions);
        self.runtime.serves(partition).map(|()| partition)
    }

    fn reply(out: &mut Vec<CoordinatorEffect>, reply: Reply, result: Result<&TxnMetadata, ErrorCode>) {
        let (to, message) = match reply {
            Reply::InitProducerId { to, correlation_id } => {
                (to, TxnMessage::InitProducerIdResponse { correlation_id, result: result.map(|meta| (meta.producer_id, meta.producer_epoch)) })
            }
            Reply::AddPartitions { to, correlation_id } => (to, TxnMessage::AddPartitionsToTxnResponse { correlation_id, result: result.map(|_| ()) }),
            Reply::AddOffsets { to, correlation_id } => (to, TxnMessage::AddOffsetsToTxnResponse { correlation_id, result: result.map(|_| ()) }),
            Reply::EndTxn { to, correlation_id } => (to, TxnMessage::EndTxnResponse { correlation_id, result: result.map(|meta| meta.producer_epoch) }),
        };
        out.push(CoordinatorEffect::Send { to, message: Message::Txn(message) });
    }

    /// Writes `next` for `transactional_id`; it takes effect when committed.
    fn write(&mut self, transactional_id: &str, next: TxnMetadata, reply: Option<Reply>, out: &mut Vec<CoordinatorEffect>) {
        let token = self.runtime.next_token();
        let entry = self.entries.get_mut(transactional_id).expect("writes are for loaded entries");
        assert!(entry.pending.is_none(), "one write at a time per transactional id");
        out.push(CoordinatorEffect::Append { partition: entry.partition, records: vec![encode_record(transactional_id, &next)], token, producer: None });
        entry.pending = Some(PendingWrite { token, next, reply });
        self.writes.insert(token, transactional_id.to_string());
    }

    fn handle_init_producer_id(&mut self, now: Instant, reply: Reply, transactional_id: &str, timeout: Duration, out: &mut Vec<CoordinatorEffect>) {
        let partition = match self.owner(transactional_id) {
            Ok(partition) => partition,
            Err(error) => return Self::reply(out, reply, Err(error)),
        };
        let timeout_ms = timeout.as_millis() as u64;
        if !self.entries.contains_key(transactional_id) {
            let counter = self.next_producer_id.entry(partition).or_insert(1);
            let producer_id = transactional_producer_id(partition, *counter);
            *counter += 1;
            let meta = TxnMetadata::new(transactional_id, producer_id, timeout_ms);
            let entry = Entry { meta: meta.clone(), partition, pending: None, started: now, markers: Markers::default(), retry_at: None };
            self.entries.insert(transactional_id.to_string(), entry);
            // Written with epoch 0 before first use, as Kafka does.
            return self.write(transactional_id, meta, Some(reply), out);
        }
        let entry = &self.entries[transactional_id];
        if entry.pending.is_some() {
            return Self::reply(out, reply, Err(ErrorCode::ConcurrentTransactions));
        }
        let meta = entry.meta.clone();
        if meta.phase == TxnPhase::Ongoing {
            // KIP-98: the earlier producer left a transaction open; abort it (which
            // fences that producer) and let this one ask again.
            tracing::info!(transactional_id, "a new producer aborts the transaction its predecessor left open");
            if let Ok(next) = meta.abort() {
                self.write(transactional_id, next, None, out);
            }
            return Self::reply(out, reply, Err(ErrorCode::ConcurrentTransactions));
        }
        match meta.init_producer_id(timeout_ms) {
            Ok(next) => self.write(transactional_id, next, Some(reply), out),
            Err(error) => Self::reply(out, reply, Err(error)),
        }
    }

    /// Checks ownership and that no write is pending, then applies `transition`.
    fn transition(
        &mut self,
        reply: Reply,
        transactional_id: &str,
        out: &mut Vec<CoordinatorEffect>,
        transition: impl FnOnce(TxnMetadata) -> Result<Option<TxnMetadata>, ErrorCode>,
    ) {
        if let Err(error) = self.owner(transactional_id) {
            return Self::reply(out, reply, Err(error));
        }
        let Some(entry) = self.entries.get(transactional_id) else {
            return Self::reply(out, reply, Err(ErrorCode::InvalidProducerIdMapping));
        };
        if entry.pending.is_some() {
            return Self::reply(out, reply, Err(ErrorCode::ConcurrentTransactions));
        }
        let current = entry.meta.clone();
        match transition(current.clone()) {
            Ok(Some(next)) if next == current => Self::reply(out, reply, Ok(&current)),
            Ok(Some(next)) => self.write(transactional_id, next, Some(reply), out),
            Ok(None) => Self::reply(out, reply, Ok(&current)),
            Err(error) => Self::reply(out, reply, Err(error)),
        }
    }

    /// The epoch a request is judged by: its own, or, under the test-only
    /// `no-epoch-fencing` mutation, whatever epoch is current, so that a
    /// zombie's stale epoch passes for its successor's.
    fn unfenced_epoch(&self, transactional_id: &str, producer_epoch: u16) -> u16 {
        match self.entries.get(transactional_id) {
            Some(entry) if self.config.mutation == Some(BrokerMutation::NoEpochFencing) => entry.meta.producer_epoch,
            _ => producer_epoch,
        }
    }

    /// KIP-890 part 1: whether every one of `partitions` is in the ongoing
    /// transaction of this producer and epoch.
    fn verify(&self, transactional_id: &str, producer_id: ProducerId, producer_epoch: u16, partitions: &[TopicPartition]) -> Result<(), ErrorCode> {
        self.owner(transactional_id)?;
        let entry = self.entries.get(transactional_id).ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        if meta.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != producer_epoch && self.config.mutation != Some(BrokerMutation::NoEpochFencing) {
            return Err(ErrorCode::ProducerFenced);
        }
        if meta.phase != TxnPhase::Ongoing || !partitions.iter().all(|tp| meta.partitions.contains(tp)) {
            return Err(ErrorCode::InvalidTxnState);
        }
        Ok(())
    }

    fn handle_marker_response(&mut self, now: Instant, correlation_id: u64, partition: TopicPartition, result: Result<(), ErrorCode>, out: &mut Vec<CoordinatorEffect>) {
        let Some((transactional_id, expected)) = self.markers_in_flight.remove(&correlation_id) else { return };
        let Some(entry) = self.entries.get_mut(&transactional_id) else { return };
        if expected != partition || entry.markers.in_flight.get(&partition) != Some(&correlation_id) {
            return;
        }
        entry.markers.in_flight.remove(&partition);
        match result {
            // ProducerFenced: the partition already has a later epoch of this
            // producer, which it can only have after this marker was written.
            Ok(()) | Err(ErrorCode::ProducerFenced) => {
                entry.markers.remaining.remove(&partition);
            }
            Err(error) => {
                tracing::debug!(transactional_id, partition = %partition, ?error, "marker write failed; will retry");
                entry.retry_at = Some(now + RETRY_BACKOFF);
            }
        }
        self.advance(now, &transactional_id, out);
    }

    /// Moves a prepared transaction on: sends the markers due, or writes the
    /// completion once every marker is in.
    fn advance(&mut self, now: Instant, transactional_id: &str, out: &mut Vec<CoordinatorEffect>) {
        let Some(entry) = self.entries.get(transactional_id) else { return };
        if !entry.meta.phase.is_prepare() || entry.pending.is_some() || entry.retry_at.is_some_and(|at| at > now) || self.runtime.is_loading(entry.partition) {
            return;
        }
        if entry.markers.remaining.is_empty() {
            if let Ok(next) = entry.meta.clone().complete() {
                self.write(transactional_id, next, None, out);
            }
            return;
        }
        let coordinator_epoch = self.runtime.epoch(entry.partition).map_or(0, |epoch| epoch.0);
        let due: Vec<TopicPartition> = entry
            .markers
            .remaining
            .iter()
            .filter(|tp| !entry.markers.in_flight.contains_key(*tp))
            .cloned()
            .collect();
        let (producer_id, producer_epoch, commit) = (entry.meta.producer_id, entry.meta.marker_epoch(), entry.meta.phase == TxnPhase::PrepareCommit);
        let mut leaderless = false;
        for tp in due {
            let Some(leader) = self.metadata.partitions.get(&tp).and_then(|state| state.leader) else {
                leaderless = true;
                continue;
            };
            self.next_correlation_id += 1;
            let correlation_id = self.next_correlation_id;
            let message = TxnMessage::WriteTxnMarkersRequest { correlation_id, producer_id, producer_epoch, coordinator_epoch, commit, partition: tp.clone() };
            out.push(CoordinatorEffect::Send { to: leader, message: Message::Txn(message) });
            self.markers_in_flight.insert(correlation_id, (transactional_id.to_string(), tp.clone()));
            let entry = self.entries.get_mut(transactional_id).expect("looked up above");
            entry.markers.in_flight.insert(tp, correlation_id);
        }
        let entry = self.entries.get_mut(transactional_id).expect("looked up above");
        entry.retry_at = leaderless.then_some(now + RETRY_BACKOFF);
    }

    fn adopt(&mut self, now: Instant, transactional_id: &str, next: TxnMetadata) {
        let entry = self.entries.get_mut(transactional_id).expect("adopting a loaded entry");
        if next.phase == TxnPhase::Ongoing && entry.meta.phase != TxnPhase::Ongoing {
            entry.started = now;
        }
        if next.phase.is_prepare() && !entry.meta.phase.is_prepare() {
            entry.markers = Markers { remaining: next.partitions.clone(), in_flight: BTreeMap::new() };
        }
        entry.meta = next;
    }
}

impl Coordinator for TransactionCoordinator {
    fn coordinator_type(&self) -> CoordinatorType {
        CoordinatorType::Transaction
    }

    fn load(&mut self, now: Instant, partition: u32, leader_epoch: LeaderEpoch, batches: &[SharedBatch], out: &mut Vec<CoordinatorEffect>) {
        self.unload(partition);
        let mut states: BTreeMap<String, TxnMetadata> = BTreeMap::new();
        let mut counter = 1;
        for batch in batches {
            for (_, record) in batch.iter() {
                if let Some(meta) = decode_record::<TxnMetadata>(record) {
                    counter = counter.max((meta.producer_id.0 & 0xffff_ffff) + 1);
                    states.insert(meta.transactional_id.clone(), meta);
                }
            }
        }
        let counter_slot = self.next_producer_id.entry(partition).or_insert(1);
        *counter_slot = (*counter_slot).max(counter);
        for (transactional_id, meta) in states {
            let mut markers = Markers::default();
            if meta.phase.is_prepare() {
                markers.remaining = meta.partitions.clone();
            }
            let entry = Entry { meta, partition, pending: None, started: now, markers, retry_at: None };
            self.entries.insert(transactional_id, entry);
        }
        // Nothing is served, and no marker written, from a log that may not be
        // committed: the barrier's commit proves the loaded state is.
        self.runtime.load(partition, leader_epoch, out);
    }

    fn unload(&mut self, partition: u32) {
        self.runtime.unload(partition);
        let gone: Vec<String> = self.entries.iter().filter(|(_, entry)| entry.partition == partition).map(|(id, _)| id.clone()).collect();
        for transactional_id in &gone {
            self.entries.remove(transactional_id);
        }
        self.writes.retain(|_, id| !gone.contains(id));
        self.markers_in_flight.retain(|_, (id, _)| !gone.contains(id));
    }

    fn handle_request(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Vec<CoordinatorEffect>) {
        let Message::Txn(message) = message else { return };
        match message {
            TxnMessage::InitProducerIdRequest { correlation_id, transactional_id, transaction_timeout } => {
                self.handle_init_producer_id(now, Reply::InitProducerId { to: from, correlation_id }, &transactional_id, transaction_timeout, out)
            }
            TxnMessage::AddPartitionsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, partitions, verify_only: true } => {
                let result = self.verify(&transactional_id, producer_id, producer_epoch, &partitions);
                let message = TxnMessage::AddPartitionsToTxnResponse { correlation_id, result };
                out.push(CoordinatorEffect::Send { to: from, message: Message::Txn(message) });
            }
            TxnMessage::AddPartitionsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, partitions, verify_only: false } => {
                let producer_epoch = self.unfenced_epoch(&transactional_id, producer_epoch);
                let reply = Reply::AddPartitions { to: from, correlation_id };
                self.transition(reply, &transactional_id, out, |meta| meta.add_partitions(producer_id, producer_epoch, &partitions).map(Some))
            }
            TxnMessage::AddOffsetsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, group_id } => {
                // KIP-98: the group's offsets partition joins the transaction, so its
                // marker decides the offsets committed with TxnOffsetCommit.
                let offsets = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition_for(&group_id, self.config.offsets_topic_num_partitions));
                let producer_epoch = self.unfenced_epoch(&transactional_id, producer_epoch);
                let reply = Reply::AddOffsets { to: from, correlation_id };
                self.transition(reply, &transactional_id, out, |meta| meta.add_partitions(producer_id, producer_epoch, &[offsets]).map(Some))
            }
            TxnMessage::EndTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, commit } => {
                let producer_epoch = self.unfenced_epoch(&transactional_id, producer_epoch);
                let reply = Reply::EndTxn { to: from, correlation_id };
                self.transition(reply, &transactional_id, out, |meta| meta.end(producer_id, producer_epoch, commit))
            }
            TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result } => {
                self.handle_marker_response(now, correlation_id, partition, result, out)
            }
            _ => {}
        }
    }

    fn write_completed(&mut self, now: Instant, token: WriteToken, result: Result<Offset, ErrorCode>, out: &mut Vec<CoordinatorEffect>) {
        if let Some(outcome) = self.runtime.barrier_completed(now, token, &result) {
            let BarrierOutcome::Serving(partition) = outcome else { return };
            let prepared: Vec<String> =
                self.entries.iter().filter(|(_, entry)| entry.partition == partition && entry.meta.phase.is_prepare()).map(|(id, _)| id.clone()).collect();
            for transactional_id in prepared {
                tracing::info!(transactional_id, "coordinator resumes writing the markers of a prepared transaction");
                self.advance(now, &transactional_id, out);
            }
            // An open transaction's timeout runs from when the coordinator could serve it.
            for entry in self.entries.values_mut().filter(|entry| entry.partition == partition) {
                entry.started = now;
            }
            return;
        }
        let Some(transactional_id) = self.writes.remove(&token) else { return };
        let Some(entry) = self.entries.get_mut(&transactional_id) else { return };
        let Some(pending) = entry.pending.take_if(|pending| pending.token == token) else { return };
        match result {
            Ok(_) => {
                self.adopt(now, &transactional_id, pending.next);
                if let Some(reply) = pending.reply {
                    Self::reply(out, reply, Ok(&self.entries[&transactional_id].meta));
                }
                self.advance(now, &transactional_id, out);
            }
            Err(error) => {
                // The write may still be in the log (a timeout): the in-memory state
                // stays as it was, and a retry writes the same transition again.
                let error = match error {
                    ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                    other => other,
                };
                if let Some(reply) = pending.reply {
                    Self::reply(out, reply, Err(error));
                }
                entry.retry_at = Some(now + RETRY_BACKOFF);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<CoordinatorEffect>) {
        self.runtime.retry_barriers(now, out);
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        for transactional_id in ids {
            let entry = &self.entries[&transactional_id];
            if entry.pending.is_some() || self.runtime.is_loading(entry.partition) {
                continue;
            }
            if entry.retry_at.is_some_and(|at| at <= now) {
                self.entries.get_mut(&transactional_id).expect("listed").retry_at = None;
            }
            let entry = &self.entries[&transactional_id];
            let expired = now.saturating_since(entry.started) >= Duration::from_millis(entry.meta.timeout_ms);
            if entry.meta.phase == TxnPhase::Ongoing && expired && entry.retry_at.is_none() {
                tracing::info!(transactional_id, "coordinator aborts a transaction past transaction.timeout.ms");
                if let Ok(next) = entry.meta.clone().abort() {
                    self.write(&transactional_id, next, None, out);
                }
                continue;
            }
            self.advance(now, &transactional_id, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.runtime.next_deadline();
        for entry in self.entries.values() {
            if entry.pending.is_some() || self.runtime.is_loading(entry.partition) {
                continue;
            }
            deadline = earliest(deadline, entry.retry_at);
            if entry.meta.phase == TxnPhase::Ongoing {
                // The abort of a timed-out transaction waits for a failed step's retry too.
                let timeout_at = entry.started + Duration::from_millis(entry.meta.timeout_ms);
                deadline = earliest(deadline, Some(entry.retry_at.map_or(timeout_at, |retry_at| retry_at.max(timeout_at))));
            }
        }
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PartitionState;
    use crate::record::{Record, RecordBatch};
    use crate::types::PartitionEpoch;

    struct Harness {
        coordinator: TransactionCoordinator,
        /// Every record the coordinator appended, in order.
        log: Vec<Record>,
    }

    fn metadata() -> Arc<ClusterMetadata> {
        let state = |leader: u32| PartitionState { replicas: vec![NodeId(leader)], leader: Some(NodeId(leader)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(leader)], elr: Vec::new(), last_known_elr: Vec::new() };
        let partitions = [(TopicPartition::new("t", 0), state(2)), (TopicPartition::new("t", 1), state(3))].into_iter().collect();
        Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2), NodeId(3)], partitions })
    }

    fn coordinator() -> TransactionCoordinator {
        let config = BrokerConfig { transaction_state_log_num_partitions: 1, ..BrokerConfig::default() };
        let mut coordinator = TransactionCoordinator::new(config);
        coordinator.update_metadata(metadata());
        coordinator
    }

    impl Harness {
        /// Hands `message` to the coordinator, commits every append it asks for,
        /// and returns the messages it sent.
        fn request(&mut self, message: TxnMessage) -> Vec<(NodeId, TxnMessage)> {
            let mut effects = Vec::new();
            self.coordinator.handle_request(Instant::ZERO, NodeId(50), Message::Txn(message), &mut effects);
            self.settle(effects)
        }

        fn settle(&mut self, mut effects: Vec<CoordinatorEffect>) -> Vec<(NodeId, TxnMessage)> {
            let mut sent = Vec::new();
            while !effects.is_empty() {
                let mut next = Vec::new();
                for effect in effects {
                    match effect {
                        CoordinatorEffect::Send { to, message: Message::Txn(message) } => sent.push((to, message)),
                        CoordinatorEffect::Send { .. } => {}
                        CoordinatorEffect::Append { records, token, .. } => {
                            let offset = Offset(self.log.len() as u64);
                            self.log.extend(records);
                            self.coordinator.write_completed(Instant::ZERO, token, Ok(offset), &mut next);
                        }
                    }
                }
                effects = next;
            }
            sent
        }
    }

    fn markers(sent: &[(NodeId, TxnMessage)]) -> Vec<(NodeId, u64, u16, bool)> {
        sent.iter()
            .filter_map(|(to, message)| match message {
                TxnMessage::WriteTxnMarkersRequest { correlation_id, producer_epoch, commit, coordinator_epoch, .. } => {
                    assert_eq!(*coordinator_epoch, 4, "markers carry the coordinator epoch");
                    Some((*to, *correlation_id, *producer_epoch, *commit))
                }
                _ => None,
            })
            .collect()
    }

    /// KIP-98: a commit is answered once PrepareCommit is in the log, markers go
    /// to every partition's leader, and a coordinator that loads the log after a
    /// failover (the markers unanswered) writes them again.
    #[test]
    fn a_commit_writes_markers_and_a_successor_resumes_them() {
        let mut harness = Harness { coordinator: coordinator(), log: Vec::new() };
        let mut effects = Vec::new();
        harness.coordinator.load(Instant::ZERO, 0, LeaderEpoch(4), &[], &mut effects);
        harness.settle(effects);
        let id: Arc<str> = "tx".into();
        let sent = harness.request(TxnMessage::InitProducerIdRequest { correlation_id: 1, transactional_id: id.clone(), transaction_timeout: Duration::from_secs(10) });
        let Some((_, TxnMessage::InitProducerIdResponse { result: Ok((producer_id, 0)), .. })) = sent.first() else { panic!("{sent:?}") };
        let producer_id = *producer_id;
        let partitions = vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
        let sent = harness.request(TxnMessage::AddPartitionsToTxnRequest { correlation_id: 2, transactional_id: id.clone(), producer_id, producer_epoch: 0, partitions, verify_only: false });
        assert!(matches!(sent[..], [(_, TxnMessage::AddPartitionsToTxnResponse { result: Ok(()), .. })]));
        let sent = harness.request(TxnMessage::EndTxnRequest { correlation_id: 3, transactional_id: id.clone(), producer_id, producer_epoch: 0, commit: true });
        assert!(matches!(sent[0], (_, TxnMessage::EndTxnResponse { result: Ok(2), .. })), "the next transaction runs at epoch 2: {sent:?}");
        assert_eq!(markers(&sent).iter().map(|(to, _, epoch, commit)| (*to, *epoch, *commit)).collect::<Vec<_>>(), vec![(NodeId(2), 1, true), (NodeId(3), 1, true)]);
        // The old epoch is fenced.
        let sent = harness.request(TxnMessage::AddPartitionsToTxnRequest { correlation_id: 4, transactional_id: id.clone(), producer_id, producer_epoch: 0, partitions: vec![], verify_only: false });
        assert!(matches!(sent[..], [(_, TxnMessage::AddPartitionsToTxnResponse { result: Err(ErrorCode::ProducerFenced), .. })]));

        // Failover before the markers were answered: the successor resumes them.
        let batch: SharedBatch = Arc::new(RecordBatch::new(Offset(0), LeaderEpoch(4), None, harness.log.clone().into()));
        let mut successor = Harness { coordinator: coordinator(), log: harness.log.clone() };
        let mut effects = Vec::new();
        successor.coordinator.load(Instant::ZERO, 0, LeaderEpoch(4), &[batch], &mut effects);
        // Regression, txn-coordinator-failover seed 937: the loaded log may end in
        // records that are not committed and may be truncated, so nothing is
        // served and no marker written until a barrier write commits. (Serving
        // from an uncommitted AddPartitions let a later transaction's commit
        // markers commit an aborted one.)
        assert!(effects.iter().all(|effect| matches!(effect, CoordinatorEffect::Append { .. })), "only the barrier before it commits");
        let mut early = Vec::new();
        successor.coordinator.handle_request(Instant::ZERO, NodeId(50), Message::Txn(TxnMessage::EndTxnRequest { correlation_id: 9, transactional_id: id.clone(), producer_id, producer_epoch: 0, commit: true }), &mut early);
        assert!(matches!(&early[..], [CoordinatorEffect::Send { message: Message::Txn(TxnMessage::EndTxnResponse { result: Err(ErrorCode::CoordinatorLoadInProgress), .. }), .. }]));
        let sent = successor.settle(effects);
        let resumed = markers(&sent);
        assert_eq!(resumed.len(), 2, "{sent:?}");
        for (to, correlation_id, _, _) in resumed {
            let partition = if to == NodeId(2) { TopicPartition::new("t", 0) } else { TopicPartition::new("t", 1) };
            successor.request(TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result: Ok(()) });
        }
        let entry = &successor.coordinator.entries["tx"];
        assert_eq!(entry.meta.phase, TxnPhase::CompleteCommit);
    }

    /// KIP-98 zombie fencing: a new producer with the same transactional id finds
    /// an open transaction; the coordinator aborts it and answers
    /// ConcurrentTransactions, then gives the newcomer a higher epoch.
    #[test]
    fn a_new_producer_aborts_the_open_transaction_of_its_predecessor() {
        let mut harness = Harness { coordinator: coordinator(), log: Vec::new() };
        let mut effects = Vec::new();
        harness.coordinator.load(Instant::ZERO, 0, LeaderEpoch(4), &[], &mut effects);
        harness.settle(effects);
        let id: Arc<str> = "tx".into();
        let init = || TxnMessage::InitProducerIdRequest { correlation_id: 1, transactional_id: "tx".into(), transaction_timeout: Duration::from_secs(10) };
        harness.request(init());
        let producer_id = harness.coordinator.entries["tx"].meta.producer_id;
        harness.request(TxnMessage::AddPartitionsToTxnRequest { correlation_id: 2, transactional_id: id, producer_id, producer_epoch: 0, partitions: vec![TopicPartition::new("t", 0)], verify_only: false });
        let sent = harness.request(init());
        assert!(sent.iter().any(|(_, message)| matches!(message, TxnMessage::InitProducerIdResponse { result: Err(ErrorCode::ConcurrentTransactions), .. })));
        let aborts = markers(&sent);
        assert_eq!(aborts.iter().map(|(to, _, epoch, commit)| (*to, *epoch, *commit)).collect::<Vec<_>>(), vec![(NodeId(2), 1, false)]);
        harness.request(TxnMessage::WriteTxnMarkersResponse { correlation_id: aborts[0].1, partition: TopicPartition::new("t", 0), result: Ok(()) });
        let sent = harness.request(init());
        assert!(matches!(sent[..], [(_, TxnMessage::InitProducerIdResponse { result: Ok((_, 3)), .. })]), "{sent:?}");
    }
}
