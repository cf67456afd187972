//! A broker: serves produce, fetch, list-offsets, metadata and offsets-for-leader-
//! epoch requests, runs replica fetchers for the partitions it follows, holds
//! delayed operations (purgatory) for acks=all produces and long-polling fetches,
//! and heartbeats to the controller, from which it learns leaders and ISRs.

use crate::config::{Acks, BrokerConfig};
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TransactionCoordinator;
use crate::coordinator::{find_coordinator, is_internal_topic, Coordinator, CoordinatorEffect, CoordinatorType, WriteToken};
use crate::log::Log;
use crate::partition::{Partition, Role};
use crate::protocol::{ClusterMetadata, EpochEndOffset, ErrorCode, FetchPartition, FetchedData, Message, OffsetSpec, PartitionState, Send};
use crate::coordinator::txn::protocol::TxnMessage;
use crate::record::{ControlMarker, ProducerStamp, Record, RecordBatch, SharedBatch};
use crate::storage::{Checkpoint, DiskOp, DurableState};
use crate::time::{earliest, Instant};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use crate::log::SequenceCheck;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

mod fetcher;
mod verification;

/// How many batches one fetch returns per partition (a stand-in for fetch.max.bytes).
const FETCH_MAX_BATCHES: usize = 64;
/// How long a replica fetcher or an AlterPartition waits for an answer before it
/// gives up and retries. Kafka's TCP connections would time out the same way.
const INTER_BROKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub enum BrokerOutput {
    Send(Send),
    Disk(DiskOp),
    /// This broker took leadership of a partition at an epoch, so the simulator
    /// can check that no epoch ever has two leaders.
    BecameLeader { partition: TopicPartition, leader_epoch: LeaderEpoch },
}

/// Who waits for a delayed produce: a client's request, or a coordinator's write.
#[derive(Clone, Copy, Debug)]
enum Waiter {
    Client { client: NodeId, correlation_id: u64 },
    Coordinator { kind: CoordinatorType, token: WriteToken },
    /// A transaction coordinator's WriteTxnMarkers (KIP-98).
    /// `producer_id` and `commit` tell the group coordinator, once a marker on
    /// `__consumer_offsets` committed, how its transactional offsets end.
    Marker { coordinator: NodeId, correlation_id: u64, producer_id: ProducerId, commit: bool },
}

/// How long a coordinator's write may wait for replication (Kafka's
/// `offsets.commit.timeout.ms`, whose default is 5 s).
const COORDINATOR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

struct DelayedProduce {
    waiter: Waiter,
    partition: TopicPartition,
    base_offset: Offset,
    required_offset: Offset,
    deadline: Instant,
}

struct DelayedFetch {
    client: NodeId,
    correlation_id: u64,
    replica_id: Option<NodeId>,
    partitions: Vec<FetchPartition>,
    read_committed: bool,
    deadline: Instant,
}

#[derive(Default)]
struct Fetcher {
    in_flight: Option<(u64, Instant)>,
    backoff_until: Instant,
}

pub struct Broker {
    id: NodeId,
    config: BrokerConfig,
    controller: NodeId,
    broker_epoch: Option<BrokerEpoch>,
    metadata: Arc<ClusterMetadata>,
    partitions: BTreeMap<TopicPartition, Partition>,
    next_correlation_id: u64,
    next_heartbeat: Instant,
    fetchers: BTreeMap<NodeId, Fetcher>,
    delayed_produces: Vec<DelayedProduce>,
    delayed_fetches: Vec<DelayedFetch>,
    next_isr_check: Instant,
    next_checkpoint: Instant,
    next_producer_id: u64,
    disk: Vec<DiskOp>,
    groups: GroupCoordinator,
    transactions: TransactionCoordinator,
    /// Coordinator writes that finished and whose coordinator has not heard yet.
    completed_writes: VecDeque<(CoordinatorType, WriteToken, Result<Offset, ErrorCode>)>,
    /// Transactional produces waiting for the coordinator's verification (KIP-890).
    verifications: BTreeMap<u64, verification::PendingVerification>,
}

impl Broker {
    /// Rebuilds a broker from what survived on its disk. Every partition comes back
    /// offline: roles come only from the controller, after the broker registers anew.
    pub fn recover(now: Instant, id: NodeId, controller: NodeId, config: BrokerConfig, durable: &DurableState) -> (Broker, Vec<BrokerOutput>) {
        let high_watermarks = durable.high_watermarks();
        let mut partitions = BTreeMap::new();
        let mut out = Vec::new();
        for (tp, batches) in &durable.logs {
            let (log, cut) = Log::recover(batches);
            if let Some(offset) = cut {
                tracing::info!(partition = %tp, offset = offset.0, "recovery cut a torn or missing log tail");
                out.push(BrokerOutput::Disk(DiskOp::Truncate { partition: tp.clone(), offset }));
            }
            let high_watermark = high_watermarks.get(tp).copied().unwrap_or_default();
            let partition = Partition::new(tp.clone(), log, high_watermark);
            out.push(BrokerOutput::Disk(partition.epoch_checkpoint()));
            partitions.insert(tp.clone(), partition);
        }
        let broker = Broker {
            id,
            groups: GroupCoordinator::new(config.clone()),
            transactions: TransactionCoordinator::new(config.clone()),
            completed_writes: VecDeque::new(),
            verifications: BTreeMap::new(),
            next_isr_check: now + config.replica_lag_time_max / 2,
            next_checkpoint: now + config.high_watermark_checkpoint_interval,
            config,
            controller,
            broker_epoch: None,
            metadata: Arc::new(ClusterMetadata::default()),
            partitions,
            next_correlation_id: 1,
            next_heartbeat: now,
            fetchers: BTreeMap::new(),
            delayed_produces: Vec::new(),
            delayed_fetches: Vec::new(),
            next_producer_id: 0,
            disk: Vec::new(),
        };
        (broker, out)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn partitions(&self) -> &BTreeMap<TopicPartition, Partition> {
        &self.partitions
    }

    pub fn metadata(&self) -> &Arc<ClusterMetadata> {
        &self.metadata
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = Some(self.next_heartbeat.min(self.next_isr_check).min(self.next_checkpoint));
        deadline = earliest(deadline, self.groups.next_deadline());
        deadline = earliest(deadline, self.transactions.next_deadline());
        deadline = earliest(deadline, self.verification_deadline());
        for delayed in &self.delayed_produces {
            deadline = earliest(deadline, Some(delayed.deadline));
        }
        for delayed in &self.delayed_fetches {
            deadline = earliest(deadline, Some(delayed.deadline));
        }
        for partition in self.partitions.values() {
            if let Some((_, sent)) = partition.pending_isr() {
                deadline = earliest(deadline, Some(*sent + INTER_BROKER_REQUEST_TIMEOUT));
            }
        }
        for fetcher in self.fetchers.values() {
            let next = match fetcher.in_flight {
                Some((_, sent)) => sent + self.config.replica_fetch_wait_max + INTER_BROKER_REQUEST_TIMEOUT,
                None => fetcher.backoff_until,
            };
            deadline = earliest(deadline, Some(next));
        }
        deadline
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<BrokerOutput>) {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.broker_heartbeat_interval;
            let message = Message::BrokerHeartbeat { broker: self.id, broker_epoch: self.broker_epoch, metadata_version: self.metadata.version };
            out.push(BrokerOutput::Send(Send { to: self.controller, message }));
        }
        if now >= self.next_isr_check {
            self.next_isr_check = now + self.config.replica_lag_time_max / 2;
            self.shrink_isrs(now, out);
        }
        if now >= self.next_checkpoint {
            self.next_checkpoint = now + self.config.high_watermark_checkpoint_interval;
            let marks = self.partitions.iter().map(|(tp, partition)| (tp.clone(), partition.high_watermark)).collect();
            out.push(BrokerOutput::Disk(DiskOp::Checkpoint(Checkpoint::HighWatermarks(marks))));
        }
        for fetcher in self.fetchers.values_mut() {
            if let Some((_, sent)) = fetcher.in_flight {
                if now.saturating_since(sent) >= self.config.replica_fetch_wait_max + INTER_BROKER_REQUEST_TIMEOUT {
                    fetcher.in_flight = None;
                    fetcher.backoff_until = now + self.config.replica_fetch_backoff;
                }
            }
        }
        self.retry_alter_partitions(now, out);
        self.expire_delayed(now, out);
        self.expire_verifications(now, out);
        for kind in [CoordinatorType::Group, CoordinatorType::Transaction] {
            self.run_coordinator(now, kind, out, |coordinator, now, effects| coordinator.handle_timeout(now, effects));
        }
        self.send_fetches(now, out);
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Vec<BrokerOutput>) {
        match message {
            Message::MetadataRequest { correlation_id } => {
                self.reply(out, from, Message::MetadataResponse { correlation_id, metadata: self.metadata.clone() })
            }
            Message::ProduceRequest { correlation_id, acks, timeout, partition, producer, records, transactional_id } => {
                self.handle_produce_request(now, from, correlation_id, acks, timeout, partition, producer, records, transactional_id, out)
            }
            Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id, result }) => self.handle_verification_response(now, correlation_id, result, out),
            Message::FetchRequest { correlation_id, replica_id, max_wait, partitions, read_committed } => {
                self.handle_fetch(now, from, correlation_id, replica_id, max_wait, partitions, read_committed, out)
            }
            Message::FetchResponse { correlation_id, partitions } => self.handle_fetch_response(now, from, correlation_id, partitions, out),
            Message::ListOffsetsRequest { correlation_id, partition, spec, current_leader_epoch } => {
                let result = self.list_offsets(&partition, spec, current_leader_epoch);
                self.reply(out, from, Message::ListOffsetsResponse { correlation_id, partition, result })
            }
            Message::OffsetsForLeaderEpochRequest { correlation_id, partitions } => {
                let partitions = partitions
                    .into_iter()
                    .map(|(tp, current, requested)| {
                        let result = self.offsets_for_leader_epoch(&tp, current, requested);
                        (tp, result)
                    })
                    .collect();
                self.reply(out, from, Message::OffsetsForLeaderEpochResponse { correlation_id, partitions })
            }
            Message::OffsetsForLeaderEpochResponse { correlation_id, partitions } => {
                self.handle_offsets_for_leader_epoch_response(now, from, correlation_id, partitions, out)
            }
            Message::FindCoordinatorRequest { correlation_id, key_type, key } => {
                let result = find_coordinator(&self.metadata, key_type, &key);
                self.reply(out, from, Message::FindCoordinatorResponse { correlation_id, result })
            }
            Message::Txn(TxnMessage::WriteTxnMarkersRequest { correlation_id, producer_id, producer_epoch, coordinator_epoch, commit, partition }) => {
                let marker = ControlMarker { commit, coordinator_epoch };
                self.handle_write_txn_markers(now, from, correlation_id, producer_id, producer_epoch, marker, partition, out)
            }
            message if message.coordinator().is_some() => {
                let kind = message.coordinator().expect("matched on it");
                self.run_coordinator(now, kind, out, move |coordinator, now, effects| coordinator.handle_request(now, from, message, effects));
            }
            Message::InitProducerIdRequest { correlation_id } => {
                let result = match self.broker_epoch {
                    // Producer ids must never repeat: the broker epoch is unique per
                    // registration, so (epoch, counter) is unique cluster-wide.
                    Some(epoch) => {
                        self.next_producer_id += 1;
                        Ok((ProducerId(epoch.0 << 20 | self.next_producer_id), 0))
                    }
                    None => Err(ErrorCode::NotLeaderOrFollower),
                };
                self.reply(out, from, Message::InitProducerIdResponse { correlation_id, result })
            }
            Message::BrokerHeartbeatResponse { broker_epoch, metadata, error } => {
                if error == Some(ErrorCode::StaleBrokerEpoch) {
                    self.broker_epoch = None;
                    return;
                }
                self.broker_epoch = Some(broker_epoch);
                if let Some(metadata) = metadata {
                    self.apply_metadata(now, metadata, out);
                }
            }
            // Until it has registered, a restarted broker takes no orders.
            Message::UpdateMetadata { metadata } if self.broker_epoch.is_some() => self.apply_metadata(now, metadata, out),
            Message::AlterPartitionResponse { partition, result } => self.handle_alter_partition_response(now, partition, result, out),
            _ => {}
        }
        self.pump_coordinator_completions(now, out);
        self.send_fetches(now, out);
    }

    fn reply(&self, out: &mut Vec<BrokerOutput>, to: NodeId, message: Message) {
        out.push(BrokerOutput::Send(Send { to, message }));
    }

    fn flush_disk(&mut self, out: &mut Vec<BrokerOutput>) {
        out.extend(self.disk.drain(..).map(BrokerOutput::Disk));
    }

    // ----- metadata and roles -----

    fn apply_metadata(&mut self, now: Instant, metadata: Arc<ClusterMetadata>, out: &mut Vec<BrokerOutput>) {
        if metadata.version <= self.metadata.version {
            return;
        }
        self.metadata = metadata.clone();
        self.transactions.update_metadata(metadata.clone());
        for (tp, state) in &metadata.partitions {
            if !state.replicas.contains(&self.id) {
                continue;
            }
            self.apply_partition_state(now, tp, state, out);
        }
    }

    fn apply_partition_state(&mut self, now: Instant, tp: &TopicPartition, state: &PartitionState, out: &mut Vec<BrokerOutput>) {
        let me = self.id;
        let mut loads = Vec::new();
        let partition = self.partitions.entry(tp.clone()).or_insert_with(|| Partition::new(tp.clone(), Log::default(), Offset(0)));
        let fresh = matches!(partition.role, Role::Offline) && state.leader_epoch >= partition.leader_epoch;
        if state.leader_epoch > partition.leader_epoch || (fresh && state.leader.is_some()) {
            partition.replicas = state.replicas.clone();
            partition.isr = state.isr.clone();
            partition.partition_epoch = state.partition_epoch;
            match state.leader {
                Some(leader) if leader == me => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, "become leader");
                    partition.become_leader(now, me, state.leader_epoch, &mut self.disk);
                    out.push(BrokerOutput::BecameLeader { partition: tp.clone(), leader_epoch: state.leader_epoch });
                    loads.push(state.leader_epoch);
                }
                Some(leader) => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, leader = leader.0, "become follower");
                    partition.become_follower(leader, state.leader_epoch, self.config.legacy_high_watermark_truncation, &mut self.disk);
                    self.fetchers.entry(leader).or_default();
                }
                None => partition.become_offline(state.leader_epoch),
            }
            if !partition.is_leader() {
                self.fail_delayed_produces(tp, ErrorCode::NotLeaderOrFollower, out);
                // The coordinator hears its writes failed while it still knows whom to tell.
                self.pump_coordinator_completions(now, out);
                self.unload_coordinator(tp);
            }
        } else if state.leader_epoch == partition.leader_epoch && state.partition_epoch > partition.partition_epoch {
            partition.isr = state.isr.clone();
            partition.partition_epoch = state.partition_epoch;
            partition.set_pending_isr(None);
        } else {
            return;
        }
        self.flush_disk(out);
        for leader_epoch in loads {
            self.load_coordinator(now, tp, leader_epoch, out);
        }
        self.after_high_watermark_change(now, tp, out);
    }

    fn handle_alter_partition_response(&mut self, now: Instant, tp: TopicPartition, result: Result<PartitionState, ErrorCode>, out: &mut Vec<BrokerOutput>) {
        let Some(partition) = self.partitions.get_mut(&tp) else { return };
        match result {
            Ok(state) if state.leader_epoch == partition.leader_epoch && state.partition_epoch > partition.partition_epoch => {
                partition.isr = state.isr;
                partition.partition_epoch = state.partition_epoch;
                partition.set_pending_isr(None);
                self.after_high_watermark_change(now, &tp, out);
            }
            Ok(_) => {}
            // Refused before anything changed: back to the committed ISR.
            Err(ErrorCode::IneligibleReplica | ErrorCode::UnknownTopicOrPartition) => partition.set_pending_isr(None),
            // KIP-497: a stale epoch means the controller's state moved on, perhaps by
            // this very change applied on an earlier try whose answer was lost. Keep
            // counting on the maximal ISR until the metadata says what happened.
            Err(_) => {}
        }
    }

    /// KIP-497: an AlterPartition whose answer did not come is sent again, and the
    /// leader keeps the maximal ISR meanwhile; giving up and falling back to the
    /// smaller ISR could acknowledge writes the new ISR member never got.
    fn retry_alter_partitions(&mut self, now: Instant, out: &mut Vec<BrokerOutput>) {
        let Some(broker_epoch) = self.broker_epoch else { return };
        for partition in self.partitions.values_mut() {
            let Some((new_isr, sent)) = partition.pending_isr().cloned() else { continue };
            if now.saturating_since(sent) >= INTER_BROKER_REQUEST_TIMEOUT {
                out.push(alter_partition(self.id, broker_epoch, self.controller, partition, new_isr, now));
            }
        }
    }

    fn propose_isr(&mut self, now: Instant, tp: &TopicPartition, new_isr: Vec<NodeId>, out: &mut Vec<BrokerOutput>) {
        let Some(broker_epoch) = self.broker_epoch else { return };
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        if partition.pending_isr().is_none() {
            out.push(alter_partition(self.id, broker_epoch, self.controller, partition, new_isr, now));
        }
    }

    fn shrink_isrs(&mut self, now: Instant, out: &mut Vec<BrokerOutput>) {
        let mut proposals = Vec::new();
        for (tp, partition) in &self.partitions {
            if partition.pending_isr().is_some() {
                continue;
            }
            let lagging = partition.out_of_sync_replicas(now, self.id, self.config.replica_lag_time_max);
            if !lagging.is_empty() {
                let new_isr: Vec<NodeId> = partition.isr.iter().copied().filter(|replica| !lagging.contains(replica)).collect();
                tracing::info!(partition = %tp, ?lagging, "leader shrinks ISR");
                proposals.push((tp.clone(), new_isr));
            }
        }
        for (tp, new_isr) in proposals {
            self.propose_isr(now, &tp, new_isr, out);
        }
    }

    // ----- produce -----

    #[allow(clippy::too_many_arguments)]
    fn handle_produce(
        &mut self,
        now: Instant,
        client: NodeId,
        correlation_id: u64,
        acks: Acks,
        timeout: Duration,
        tp: TopicPartition,
        producer: Option<ProducerStamp>,
        records: Vec<Record>,
        out: &mut Vec<BrokerOutput>,
    ) {
        let result = self.append_as_leader(&tp, acks, producer, records);
        let (base_offset, required_offset) = match result {
            Ok(range) => range,
            Err(error) => {
                if acks != Acks::None {
                    self.reply(out, client, Message::ProduceResponse { correlation_id, partition: tp, result: Err(error) });
                }
                return;
            }
        };
        self.flush_disk(out);
        self.after_append(now, &tp, out);
        match acks {
            Acks::None => {}
            Acks::Leader => self.reply(out, client, Message::ProduceResponse { correlation_id, partition: tp, result: Ok(base_offset) }),
            Acks::All => {
                let waiter = Waiter::Client { client, correlation_id };
                self.delayed_produces.push(DelayedProduce { waiter, partition: tp.clone(), base_offset, required_offset, deadline: now + timeout });
                self.complete_delayed_produces(&tp, out);
            }
        }
    }

    /// KIP-98: the leader appends a transaction's commit or abort marker and
    /// answers the coordinator once it is committed (acks=all). A marker older
    /// than the producer epoch the partition has seen was superseded: refused.
    #[allow(clippy::too_many_arguments)]
    fn handle_write_txn_markers(
        &mut self,
        now: Instant,
        coordinator: NodeId,
        correlation_id: u64,
        producer_id: ProducerId,
        producer_epoch: u16,
        marker: ControlMarker,
        tp: TopicPartition,
        out: &mut Vec<BrokerOutput>,
    ) {
        let waiter = Waiter::Marker { coordinator, correlation_id, producer_id, commit: marker.commit };
        let appended = (|| {
            let partition = self.partitions.get_mut(&tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
            if !partition.is_leader() {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if partition.isr.len() < self.config.min_insync_replicas {
                return Err(ErrorCode::NotEnoughReplicas);
            }
            if partition.log.producer_epoch(producer_id).is_some_and(|epoch| epoch > producer_epoch) {
                return Err(ErrorCode::ProducerFenced);
            }
            let stamp = ProducerStamp { producer_id, producer_epoch, base_sequence: crate::types::Sequence(-1), transactional: true };
            let batch: SharedBatch = Arc::new(RecordBatch::control(partition.log_end_offset(), partition.leader_epoch, stamp, marker));
            let range = (batch.base_offset, batch.next_offset());
            partition.append(batch, self.config.log_flush_interval_messages, &mut self.disk);
            Ok(range)
        })();
        match appended {
            Err(error) => self.answer_waiter(waiter, tp, Err(error), out),
            Ok((base_offset, required_offset)) => {
                self.flush_disk(out);
                self.delayed_produces.push(DelayedProduce { waiter, partition: tp.clone(), base_offset, required_offset, deadline: now + COORDINATOR_WRITE_TIMEOUT });
                self.after_append(now, &tp, out);
                self.complete_delayed_produces(&tp, out);
            }
        }
    }

    /// KIP-98: TxnOffsetCommit's records go into the producer's transaction on the
    /// offsets partition, stamped with its id and epoch but no sequence (Kafka's
    /// NO_SEQUENCE: the group coordinator, not the producer, writes them). A
    /// producer epoch older than the partition has seen is fenced.
    fn append_transactional_offsets(&mut self, tp: &TopicPartition, producer_id: ProducerId, producer_epoch: u16, records: Vec<crate::record::Record>) -> Result<(Offset, Offset), ErrorCode> {
        let partition = self.partitions.get_mut(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if partition.isr.len() < self.config.min_insync_replicas {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        if partition.log.producer_epoch(producer_id).is_some_and(|epoch| epoch > producer_epoch) {
            return Err(ErrorCode::ProducerFenced);
        }
        let stamp = ProducerStamp { producer_id, producer_epoch, base_sequence: crate::types::Sequence(-1), transactional: true };
        let base_offset = partition.log_end_offset();
        let batch: SharedBatch = Arc::new(RecordBatch::new(base_offset, partition.leader_epoch, Some(stamp), records));
        let required_offset = batch.next_offset();
        partition.append(batch, self.config.log_flush_interval_messages, &mut self.disk);
        Ok((base_offset, required_offset))
    }

    /// Appends on the leader; returns the batch's base offset and the offset the
    /// high watermark must pass for acks=all.
    fn append_as_leader(&mut self, tp: &TopicPartition, acks: Acks, producer: Option<ProducerStamp>, records: Vec<Record>) -> Result<(Offset, Offset), ErrorCode> {
        let partition = self.partitions.get_mut(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if acks == Acks::All && partition.isr.len() < self.config.min_insync_replicas {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        if let Some(stamp) = producer {
            match partition.log.check_sequence(stamp, records.len()) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(base) => return Ok((base, Offset(base.0 + records.len() as u64))),
                SequenceCheck::OutOfOrder => return Err(ErrorCode::OutOfOrderSequenceNumber),
                SequenceCheck::ProducerFenced => return Err(ErrorCode::ProducerFenced),
            }
        }
        let base_offset = partition.log_end_offset();
        let batch: SharedBatch = Arc::new(RecordBatch::new(base_offset, partition.leader_epoch, producer, records));
        let required_offset = batch.next_offset();
        partition.append(batch, self.config.log_flush_interval_messages, &mut self.disk);
        Ok((base_offset, required_offset))
    }

    fn after_append(&mut self, now: Instant, tp: &TopicPartition, out: &mut Vec<BrokerOutput>) {
        self.after_high_watermark_change(now, tp, out);
        self.complete_delayed_fetches(now, Some(tp), out);
    }

    fn after_high_watermark_change(&mut self, now: Instant, tp: &TopicPartition, out: &mut Vec<BrokerOutput>) {
        let me = self.id;
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        let before = partition.high_watermark;
        if partition.maybe_advance_high_watermark(me) {
            assert!(partition.high_watermark > before, "the high watermark never moves backwards on a leader");
            self.complete_delayed_produces(tp, out);
            self.complete_delayed_fetches(now, Some(tp), out);
        } else {
            self.complete_delayed_produces(tp, out);
        }
    }

    fn complete_delayed_produces(&mut self, tp: &TopicPartition, out: &mut Vec<BrokerOutput>) {
        let Some(partition) = self.partitions.get(tp) else { return };
        let high_watermark = partition.high_watermark;
        let enough = partition.isr.len() >= self.config.min_insync_replicas;
        let mut index = 0;
        while index < self.delayed_produces.len() {
            let delayed = &self.delayed_produces[index];
            if &delayed.partition == tp && high_watermark >= delayed.required_offset {
                let delayed = self.delayed_produces.remove(index);
                // Kafka's checkEnoughReplicasReachOffset: replicated, but the ISR
                // shrank below min.insync.replicas meanwhile.
                let result = if enough { Ok(delayed.base_offset) } else { Err(ErrorCode::NotEnoughReplicasAfterAppend) };
                self.answer_waiter(delayed.waiter, tp.clone(), result, out);
            } else {
                index += 1;
            }
        }
    }

    fn fail_delayed_produces(&mut self, tp: &TopicPartition, error: ErrorCode, out: &mut Vec<BrokerOutput>) {
        let mut index = 0;
        while index < self.delayed_produces.len() {
            if &self.delayed_produces[index].partition == tp {
                let delayed = self.delayed_produces.remove(index);
                self.answer_waiter(delayed.waiter, tp.clone(), Err(error), out);
            } else {
                index += 1;
            }
        }
    }

    fn expire_delayed(&mut self, now: Instant, out: &mut Vec<BrokerOutput>) {
        let mut index = 0;
        while index < self.delayed_produces.len() {
            if self.delayed_produces[index].deadline <= now {
                let delayed = self.delayed_produces.remove(index);
                self.answer_waiter(delayed.waiter, delayed.partition, Err(ErrorCode::RequestTimedOut), out);
            } else {
                index += 1;
            }
        }
        self.complete_delayed_fetches(now, None, out);
    }

    fn answer_waiter(&mut self, waiter: Waiter, partition: TopicPartition, result: Result<Offset, ErrorCode>, out: &mut Vec<BrokerOutput>) {
        match waiter {
            Waiter::Client { client, correlation_id } => {
                out.push(BrokerOutput::Send(Send { to: client, message: Message::ProduceResponse { correlation_id, partition, result } }))
            }
            Waiter::Coordinator { kind, token } => self.completed_writes.push_back((kind, token, result)),
            Waiter::Marker { coordinator, correlation_id, producer_id, commit } => {
                // KIP-98/KIP-447: the marker is on the group's offsets partition:
                // its pending transactional offsets are now committed or dropped.
                if result.is_ok() && &*partition.topic == crate::coordinator::CONSUMER_OFFSETS_TOPIC {
                    self.groups.complete_transaction(partition.partition, producer_id, commit);
                }
                let message = TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result: result.map(|_| ()) };
                out.push(BrokerOutput::Send(Send { to: coordinator, message: Message::Txn(message) }))
            }
        }
    }

    // ----- coordinators -----

    fn coordinator_mut(&mut self, kind: CoordinatorType) -> &mut dyn Coordinator {
        match kind {
            CoordinatorType::Group => &mut self.groups,
            CoordinatorType::Transaction => &mut self.transactions,
        }
    }

    /// Runs one coordinator call and carries out what it asks: sends go out, appends
    /// go to the internal partition with acks=all and wait in purgatory.
    fn run_coordinator(
        &mut self,
        now: Instant,
        kind: CoordinatorType,
        out: &mut Vec<BrokerOutput>,
        call: impl FnOnce(&mut dyn Coordinator, Instant, &mut Vec<CoordinatorEffect>),
    ) {
        let mut effects = Vec::new();
        call(self.coordinator_mut(kind), now, &mut effects);
        for effect in effects {
            match effect {
                CoordinatorEffect::Send(send) => out.push(BrokerOutput::Send(send)),
                CoordinatorEffect::Append { partition, records, token, producer } => self.append_for_coordinator(now, kind, partition, records, token, producer, out),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn append_for_coordinator(
        &mut self,
        now: Instant,
        kind: CoordinatorType,
        partition: u32,
        records: Vec<crate::record::Record>,
        token: WriteToken,
        producer: Option<(ProducerId, u16)>,
        out: &mut Vec<BrokerOutput>,
    ) {
        let tp = TopicPartition::new(kind.topic(), partition);
        let appended = match producer {
            None => self.append_as_leader(&tp, Acks::All, None, records),
            Some((producer_id, producer_epoch)) => self.append_transactional_offsets(&tp, producer_id, producer_epoch, records),
        };
        match appended {
            Err(error) => self.completed_writes.push_back((kind, token, Err(error))),
            Ok((base_offset, required_offset)) => {
                self.flush_disk(out);
                let waiter = Waiter::Coordinator { kind, token };
                self.delayed_produces.push(DelayedProduce { waiter, partition: tp.clone(), base_offset, required_offset, deadline: now + COORDINATOR_WRITE_TIMEOUT });
                self.after_append(now, &tp, out);
            }
        }
    }

    /// Tells coordinators how their writes ended; what they do in turn may finish
    /// more writes, so this runs until nothing is left.
    fn pump_coordinator_completions(&mut self, now: Instant, out: &mut Vec<BrokerOutput>) {
        while let Some((kind, token, result)) = self.completed_writes.pop_front() {
            self.run_coordinator(now, kind, out, move |coordinator, now, effects| coordinator.write_completed(now, token, result, effects));
        }
    }

    fn load_coordinator(&mut self, now: Instant, tp: &TopicPartition, leader_epoch: LeaderEpoch, out: &mut Vec<BrokerOutput>) {
        let Some(kind) = internal_coordinator(tp) else { return };
        let batches = self.partitions[tp].log.batches().to_vec();
        tracing::info!(partition = %tp, epoch = leader_epoch.0, "coordinator loads its partition");
        let partition = tp.partition;
        self.run_coordinator(now, kind, out, move |coordinator, now, effects| coordinator.load(now, partition, leader_epoch, &batches, effects));
    }

    fn unload_coordinator(&mut self, tp: &TopicPartition) {
        if let Some(kind) = internal_coordinator(tp) {
            self.coordinator_mut(kind).unload(tp.partition);
        }
    }

    // ----- fetch (serving) -----

    #[allow(clippy::too_many_arguments)]
    fn handle_fetch(
        &mut self,
        now: Instant,
        client: NodeId,
        correlation_id: u64,
        replica_id: Option<NodeId>,
        max_wait: Duration,
        partitions: Vec<FetchPartition>,
        read_committed: bool,
        out: &mut Vec<BrokerOutput>,
    ) {
        if let Some(follower) = replica_id {
            for request in &partitions {
                let valid = self.validate_leader(&request.partition, request.current_leader_epoch).is_ok();
                let Some(partition) = self.partitions.get_mut(&request.partition) else { continue };
                if !valid || request.fetch_offset > partition.log_end_offset() {
                    continue;
                }
                partition.record_follower_fetch(now, follower, request.fetch_offset);
                if partition.may_join_isr(follower) && partition.pending_isr().is_none() {
                    let mut new_isr = partition.isr.clone();
                    new_isr.push(follower);
                    tracing::info!(partition = %request.partition, follower = follower.0, "leader expands ISR");
                    let tp = request.partition.clone();
                    self.propose_isr(now, &tp, new_isr, out);
                }
                let tp = request.partition.clone();
                self.after_high_watermark_change(now, &tp, out);
            }
        }
        let delayed = DelayedFetch { client, correlation_id, replica_id, partitions, read_committed, deadline: now + max_wait };
        if max_wait.is_zero() || self.fetch_ready(&delayed) {
            self.respond_fetch(delayed, out);
        } else {
            self.delayed_fetches.push(delayed);
        }
    }

    /// A delayed fetch completes once any partition has data or an error to report.
    fn fetch_ready(&self, fetch: &DelayedFetch) -> bool {
        fetch.partitions.iter().any(|request| match self.validate_leader(&request.partition, request.current_leader_epoch) {
            Err(_) => true,
            Ok(partition) => {
                let end = fetch_end(partition, fetch.replica_id, fetch.read_committed);
                // A read_committed position may stand past the last stable offset
                // (after a reset to the high watermark): it waits, as for no data.
                if fetch.read_committed { request.fetch_offset < end || request.fetch_offset > partition.log_end_offset() } else { request.fetch_offset != end }
            }
        })
    }

    fn respond_fetch(&self, fetch: DelayedFetch, out: &mut Vec<BrokerOutput>) {
        let partitions = fetch
            .partitions
            .iter()
            .map(|request| {
                let result = self.validate_leader(&request.partition, request.current_leader_epoch).and_then(|partition| {
                    let end = fetch_end(partition, fetch.replica_id, fetch.read_committed);
                    if request.fetch_offset > partition.log_end_offset() {
                        return Err(ErrorCode::OffsetOutOfRange);
                    }
                    let batches = partition.log.read(request.fetch_offset, end, FETCH_MAX_BATCHES);
                    // KIP-98: a read_committed fetch gets data below the last stable
                    // offset and the aborted transactions among it.
                    let aborted_transactions = if fetch.read_committed {
                        let until = batches.last().map_or(request.fetch_offset, |batch| batch.next_offset());
                        partition.log.transactions().aborted_between(request.fetch_offset, until)
                    } else {
                        Vec::new()
                    };
                    Ok(FetchedData {
                        high_watermark: partition.high_watermark,
                        log_end_offset: partition.log_end_offset(),
                        batches,
                        last_stable_offset: partition.log.transactions().last_stable_offset(partition.high_watermark),
                        aborted_transactions,
                    })
                });
                (request.partition.clone(), result)
            })
            .collect();
        out.push(BrokerOutput::Send(Send { to: fetch.client, message: Message::FetchResponse { correlation_id: fetch.correlation_id, partitions } }));
    }

    fn complete_delayed_fetches(&mut self, now: Instant, tp: Option<&TopicPartition>, out: &mut Vec<BrokerOutput>) {
        let mut index = 0;
        while index < self.delayed_fetches.len() {
            let fetch = &self.delayed_fetches[index];
            let touched = tp.is_none_or(|tp| fetch.partitions.iter().any(|request| &request.partition == tp));
            if touched && (fetch.deadline <= now || self.fetch_ready(fetch)) {
                let fetch = self.delayed_fetches.remove(index);
                self.respond_fetch(fetch, out);
            } else {
                index += 1;
            }
        }
    }

    /// KIP-320: requests name the leader epoch they expect; an older one is fenced,
    /// a newer one means this broker has not heard of it yet.
    fn validate_leader(&self, tp: &TopicPartition, current_leader_epoch: LeaderEpoch) -> Result<&Partition, ErrorCode> {
        let partition = self.partitions.get(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        if current_leader_epoch < partition.leader_epoch {
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if current_leader_epoch > partition.leader_epoch {
            return Err(ErrorCode::UnknownLeaderEpoch);
        }
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(partition)
    }

    fn list_offsets(&self, tp: &TopicPartition, spec: OffsetSpec, current_leader_epoch: LeaderEpoch) -> Result<(Offset, LeaderEpoch), ErrorCode> {
        let partition = self.validate_leader(tp, current_leader_epoch)?;
        let offset = match spec {
            OffsetSpec::Earliest => Offset(0),
            OffsetSpec::Latest => partition.high_watermark,
        };
        Ok((offset, partition.leader_epoch))
    }

    fn offsets_for_leader_epoch(&self, tp: &TopicPartition, current_leader_epoch: LeaderEpoch, requested: LeaderEpoch) -> Result<EpochEndOffset, ErrorCode> {
        let partition = self.validate_leader(tp, current_leader_epoch)?;
        let answer = partition.log.epochs().end_offset_for(requested, partition.log_end_offset());
        Ok(match answer {
            Some((epoch, end_offset)) => EpochEndOffset { leader_epoch: Some(epoch), end_offset },
            None => EpochEndOffset { leader_epoch: None, end_offset: Offset(0) },
        })
    }

}

/// Where a fetch's data ends: a follower reads to the log end, a consumer to the
/// high watermark, a read_committed consumer to the last stable offset (KIP-98).
fn fetch_end(partition: &Partition, replica_id: Option<NodeId>, read_committed: bool) -> Offset {
    if replica_id.is_some() {
        partition.log_end_offset()
    } else if read_committed {
        partition.log.transactions().last_stable_offset(partition.high_watermark)
    } else {
        partition.high_watermark
    }
}

/// Which coordinator lives on `tp`, if it is a partition of an internal topic.
fn internal_coordinator(tp: &TopicPartition) -> Option<CoordinatorType> {
    if !is_internal_topic(&tp.topic) {
        return None;
    }
    [CoordinatorType::Group, CoordinatorType::Transaction].into_iter().find(|kind| kind.topic() == &*tp.topic)
}

/// Marks `new_isr` pending on the partition and asks the controller for it (KIP-497).
fn alter_partition(broker: NodeId, broker_epoch: BrokerEpoch, controller: NodeId, partition: &mut Partition, new_isr: Vec<NodeId>, now: Instant) -> BrokerOutput {
    partition.set_pending_isr(Some((new_isr.clone(), now)));
    let message = Message::AlterPartitionRequest {
        broker,
        broker_epoch,
        partition: partition.tp.clone(),
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        new_isr,
    };
    BrokerOutput::Send(Send { to: controller, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PartitionState;
    use crate::types::PartitionEpoch;
    use bytes::Bytes;

    fn sends(out: &[BrokerOutput]) -> Vec<&Message> {
        out.iter().filter_map(|output| if let BrokerOutput::Send(send) = output { Some(&send.message) } else { None }).collect()
    }

    /// KIP-497: an ISR expansion whose answer is lost may still have been
    /// committed, so the leader keeps counting the new member (the maximal ISR)
    /// and asks again; it must not fall back to the smaller ISR and acknowledge a
    /// write the new member does not have. Found by safe-acks-all seed 1349 (under
    /// an earlier nemesis generator), which lost acknowledged writes this way.
    #[test]
    fn an_unanswered_isr_expansion_is_retried_and_still_counted() {
        let tp = TopicPartition::new("t", 0);
        let (mut broker, _) = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
        let state = PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
        let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions: [(tp.clone(), state)].into_iter().collect() });
        let mut out = Vec::new();
        broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
        assert!(broker.partitions()[&tp].is_leader());
        // The follower catches up (an empty log) and is proposed for the ISR.
        out.clear();
        let fetch = FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) };
        broker.handle_message(Instant::ZERO, NodeId(2), Message::FetchRequest { correlation_id: 1, replica_id: Some(NodeId(2)), max_wait: Duration::ZERO, partitions: vec![fetch], read_committed: false }, &mut out);
        assert!(sends(&out).iter().any(|message| matches!(message, Message::AlterPartitionRequest { new_isr, .. } if new_isr.len() == 2)));
        // acks=all waits for the follower, whatever the controller said.
        out.clear();
        let records = vec![Record { key: None, value: Bytes::from_static(b"v") }];
        broker.handle_message(Instant::ZERO, NodeId(50), Message::ProduceRequest { correlation_id: 2, acks: Acks::All, timeout: Duration::from_secs(30), partition: tp.clone(), producer: None, records, transactional_id: None }, &mut out);
        out.clear();
        broker.handle_timeout(Instant::ZERO + INTER_BROKER_REQUEST_TIMEOUT + Duration::from_millis(1), &mut out);
        let messages = sends(&out);
        assert!(messages.iter().any(|message| matches!(message, Message::AlterPartitionRequest { .. })), "the expansion is asked for again");
        assert!(!messages.iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(_), .. })), "no acknowledgement without the new member");
        assert_eq!(broker.partitions()[&tp].high_watermark, Offset(0));
    }

    /// KIP-98 on the leader: an open transaction holds the last stable offset
    /// back, its abort marker releases it and lists it as aborted for
    /// read_committed fetches, and a late batch of the aborted epoch is fenced.
    #[test]
    fn read_committed_fetch_stops_at_the_last_stable_offset_and_lists_aborts() {
        let tp = TopicPartition::new("t", 0);
        let (mut broker, _) = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
        let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
        let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(tp.clone(), state)].into_iter().collect() });
        let mut out = Vec::new();
        broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
        let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
        let produce = |correlation_id, producer, value: &'static [u8]| Message::ProduceRequest {
            correlation_id,
            acks: Acks::All,
            timeout: Duration::from_secs(30),
            partition: tp.clone(),
            producer,
            records: vec![Record { key: None, value: Bytes::from_static(value) }],
            transactional_id: None,
        };
        broker.handle_message(Instant::ZERO, NodeId(50), produce(1, Some(stamp), b"in-txn"), &mut out);
        broker.handle_message(Instant::ZERO, NodeId(51), produce(2, None, b"plain"), &mut out);
        let fetch = |correlation_id| Message::FetchRequest {
            correlation_id,
            replica_id: None,
            max_wait: Duration::ZERO,
            partitions: vec![FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) }],
            read_committed: true,
        };
        let fetched = |out: &[BrokerOutput], wanted: u64| -> FetchedData {
            sends(out)
                .into_iter()
                .find_map(|message| match message {
                    Message::FetchResponse { correlation_id, partitions } if *correlation_id == wanted => partitions[0].1.clone().ok(),
                    _ => None,
                })
                .expect("a fetch response")
        };
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(60), fetch(3), &mut out);
        let data = fetched(&out, 3);
        assert_eq!((data.high_watermark, data.last_stable_offset), (Offset(2), Offset(0)));
        assert!(data.batches.is_empty(), "nothing below the last stable offset yet");
        out.clear();
        let marker = TxnMessage::WriteTxnMarkersRequest { correlation_id: 4, producer_id: ProducerId(7), producer_epoch: 1, coordinator_epoch: 0, commit: false, partition: tp.clone() };
        broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(marker), &mut out);
        assert!(sends(&out).iter().any(|message| matches!(message, Message::Txn(TxnMessage::WriteTxnMarkersResponse { result: Ok(()), .. }))));
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(60), fetch(5), &mut out);
        let data = fetched(&out, 5);
        assert_eq!((data.last_stable_offset, data.batches.len()), (Offset(3), 3));
        let aborted = crate::txn_index::AbortedTransaction { producer_id: ProducerId(7), first_offset: Offset(0), last_offset: Offset(2) };
        assert_eq!(data.aborted_transactions, vec![aborted]);
        out.clear();
        let late = ProducerStamp { base_sequence: crate::types::Sequence(1), ..stamp };
        broker.handle_message(Instant::ZERO, NodeId(50), produce(6, Some(late), b"late"), &mut out);
        assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Err(ErrorCode::ProducerFenced), .. })));
    }


    /// KIP-890 part 1: a producer's first transactional batch on a partition is
    /// appended only once its coordinator confirms the partition is in the
    /// ongoing transaction; refused, it is answered InvalidTxnState and not written.
    #[test]
    fn a_transactional_produce_is_verified_with_the_coordinator() {
        let tp = TopicPartition::new("t", 0);
        let state_of = |leader: u32| PartitionState { replicas: vec![NodeId(leader)], leader: Some(NodeId(leader)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(leader)] };
        let partitions = [(tp.clone(), state_of(1)), (TopicPartition::new(crate::coordinator::TRANSACTION_STATE_TOPIC, 0), state_of(2))].into_iter().collect();
        let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions });
        let (mut broker, _) = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
        let mut out = Vec::new();
        broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
        let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
        let produce = |correlation_id| Message::ProduceRequest {
            correlation_id,
            acks: Acks::Leader,
            timeout: Duration::from_secs(30),
            partition: tp.clone(),
            producer: Some(stamp),
            records: vec![Record { key: None, value: Bytes::from_static(b"v") }],
            transactional_id: Some("tx".into()),
        };
        let verification = |out: &[BrokerOutput]| {
            sends(out)
                .into_iter()
                .find_map(|message| match message {
                    Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, verify_only: true, .. }) => Some(*correlation_id),
                    _ => None,
                })
                .expect("the leader asks the coordinator")
        };
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(50), produce(1), &mut out);
        let asked = verification(&out);
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Err(ErrorCode::InvalidTxnState) }), &mut out);
        assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Err(ErrorCode::InvalidTxnState), .. })));
        assert_eq!(broker.partitions()[&tp].log_end_offset(), Offset(0), "a refused batch is not written");
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(50), produce(2), &mut out);
        let asked = verification(&out);
        out.clear();
        broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Ok(()) }), &mut out);
        assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(Offset(0)), .. })));
        assert!(broker.partitions()[&tp].log.transactions().is_ongoing(ProducerId(7)));
    }

}
