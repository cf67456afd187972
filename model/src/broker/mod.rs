//! A broker: serves produce, fetch, list-offsets, metadata and offsets-for-leader-
//! epoch requests, runs replica fetchers for the partitions it follows, holds
//! delayed operations (purgatory) for acks=all produces and long-polling fetches,
//! and heartbeats to the controller, from which it learns leaders and ISRs.
//!
//! What a broker asks of other brokers and of the controller (fetches,
//! AlterPartition, heartbeats, transaction markers, KIP-890 verifications) goes
//! through its `NetworkClient`, with Kafka's `request.timeout.ms`; every such
//! request ends in an answer or a failure the broker acts on.

use crate::config::{Acks, BrokerConfig};
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TransactionCoordinator;
use crate::coordinator::{find_coordinator, is_internal_topic, Coordinator, CoordinatorEffect, CoordinatorType, WriteToken};
use crate::log::Log;
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient, RequestFailure};
use crate::node::{Node, Outbox};
use crate::partition::{Partition, Role};
use crate::partition_map::{same_partition, PartitionMap};
use crate::protocol::{ClusterMetadata, EpochEndOffset, ErrorCode, FetchPartition, FetchedData, Message, OffsetSpec, PartitionState};
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
mod coordinators;
mod purgatory;
mod verification;

use purgatory::{DelayedProduce, DelayedProduces};

#[cfg(test)]
mod tests;


/// How many batches one fetch returns per partition (a stand-in for fetch.max.bytes).
const FETCH_MAX_BATCHES: usize = 64;
/// The first retry of a failed heartbeat; it doubles per failure up to the
/// session timeout (Kafka's `BrokerLifecycleManager`, whose jitter is 2%).
const HEARTBEAT_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What a broker reports besides its messages and disk writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    /// The broker became leader of `partition` at `leader_epoch`: the simulator
    /// checks that no epoch ever has two leaders.
    LeadershipTaken { partition: TopicPartition, leader_epoch: LeaderEpoch },
}

/// What each request in the broker's `NetworkClient` was.
#[derive(Clone, Debug)]
enum BrokerRequest {
    Heartbeat,
    AlterPartition(TopicPartition),
    /// A replica fetcher's Fetch or OffsetsForLeaderEpoch to `leader`.
    Fetcher { leader: NodeId },
    /// A transaction coordinator's WriteTxnMarkers, under the correlation id
    /// the coordinator gave it.
    Marker { coordinator_correlation_id: u64, partition: TopicPartition },
    /// KIP-890: a produce waits for this verification (`verifications`).
    Verification(u64),
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
    /// A request is out (the `NetworkClient` holds it and its timeout).
    in_flight: bool,
    /// Its leader's connection is not ready: its event wakes the broker.
    waiting_for_connection: bool,
    backoff_until: Instant,
}

/// The broker's heartbeats to the controller: one at a time, the next
/// `broker.heartbeat.interval.ms` after an answer, sooner after a failure.
struct Heartbeat {
    next_at: Instant,
    in_flight: bool,
    /// Due, but the controller's connection is not ready: its event wakes the broker.
    waiting_for_connection: bool,
    failures: u32,
}

pub struct Broker {
    id: NodeId,
    config: BrokerConfig,
    controller: NodeId,
    broker_epoch: Option<BrokerEpoch>,
    metadata: Arc<ClusterMetadata>,
    partitions: PartitionMap<Partition>,
    network: NetworkClient<BrokerRequest>,
    heartbeat: Heartbeat,
    /// One replica fetcher per leader followed, by leader id.
    fetchers: Vec<(NodeId, Fetcher)>,
    delayed_produces: DelayedProduces,
    /// A buffer for the writes one high watermark completes, kept to spare an
    /// allocation per completion.
    completed_produces: Vec<DelayedProduce>,
    delayed_fetches: Vec<DelayedFetch>,
    next_isr_check: Instant,
    next_checkpoint: Instant,
    next_producer_id: u64,
    groups: GroupCoordinator,
    transactions: TransactionCoordinator,
    /// Coordinator writes that finished and whose coordinator has not heard yet.
    completed_writes: VecDeque<(CoordinatorType, WriteToken, Result<Offset, ErrorCode>)>,
    /// Answers for a coordinator that the broker makes itself (a marker request
    /// that could not go out), delivered once the coordinator's call returned.
    coordinator_replies: VecDeque<(NodeId, Message)>,
    /// Transactional produces waiting for the coordinator's verification (KIP-890).
    verifications: BTreeMap<u64, verification::PendingVerification>,
    next_verification: u64,
    /// The coordinators' earliest deadline, remembered between calls of
    /// `next_deadline` (which the drive loop asks after every message) and
    /// forgotten whenever the broker hands either coordinator anything.
    coordinator_deadline: std::cell::Cell<Option<Option<Instant>>>,
}

impl Broker {
    /// Rebuilds a broker from what survived on its disk. Every partition comes back
    /// offline: roles come only from the controller, after the broker registers anew.
    /// Recovery only writes to disk (cutting torn tails, rewriting epoch checkpoints).
    pub fn recover(now: Instant, id: NodeId, controller: NodeId, config: BrokerConfig, durable: &DurableState, jitter_seed: u64, out: &mut Outbox<BrokerEvent>) -> Broker {
        let high_watermarks = durable.high_watermarks();
        let mut partitions = PartitionMap::new();
        for (tp, batches) in &durable.logs {
            let (log, cut) = Log::recover(batches);
            if let Some(offset) = cut {
                tracing::info!(partition = %tp, offset = offset.0, "recovery cut a torn or missing log tail");
                out.disk.push(DiskOp::Truncate { partition: tp.clone(), offset });
            }
            let high_watermark = high_watermarks.get(tp).copied().unwrap_or_default();
            let partition = Partition::new(tp.clone(), log, high_watermark);
            out.disk.push(partition.epoch_checkpoint());
            partitions.insert(tp.clone(), partition);
        }
        Broker {
            id,
            groups: GroupCoordinator::new(config.clone()),
            transactions: TransactionCoordinator::new(config.clone()),
            completed_writes: VecDeque::new(),
            coordinator_replies: VecDeque::new(),
            verifications: BTreeMap::new(),
            next_verification: 0,
            coordinator_deadline: std::cell::Cell::new(None),
            next_isr_check: now + config.replica_lag_time_max / 2,
            next_checkpoint: now + config.high_watermark_checkpoint_interval,
            network: NetworkClient::new(config.network, jitter_seed),
            config,
            controller,
            broker_epoch: None,
            metadata: Arc::new(ClusterMetadata::default()),
            partitions,
            heartbeat: Heartbeat { next_at: now, in_flight: false, waiting_for_connection: false, failures: 0 },
            fetchers: Vec::new(),
            delayed_produces: DelayedProduces::default(),
            completed_produces: Vec::new(),
            delayed_fetches: Vec::new(),
            next_producer_id: 0,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn partitions(&self) -> &PartitionMap<Partition> {
        &self.partitions
    }

    pub fn metadata(&self) -> &Arc<ClusterMetadata> {
        &self.metadata
    }

    // Out of line: `next_deadline`, run after every message, stays short.
    #[inline(never)]
    fn coordinators_next_deadline(&self) -> Option<Instant> {
        earliest(self.groups.next_deadline(), self.transactions.next_deadline())
    }

    /// Sends a heartbeat (or, after a restart, a registration) when one is due.
    fn maybe_heartbeat(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        self.heartbeat.waiting_for_connection = false;
        if self.heartbeat.in_flight || now < self.heartbeat.next_at {
            return;
        }
        let controller = Destination::new(self.controller, Channel::Heartbeat);
        if !self.network.ready(now, controller, out) {
            self.heartbeat.waiting_for_connection = true;
            return;
        }
        self.heartbeat.in_flight = true;
        let (broker, broker_epoch, metadata_version) = (self.id, self.broker_epoch, self.metadata.version);
        // The heartbeat channel's requests time out after half a session (KAFKA-14392).
        let timeout = self.config.broker_session_timeout / 2;
        let message = |correlation_id| Message::BrokerHeartbeat { correlation_id, broker, broker_epoch, metadata_version };
        self.network.send(now, controller, timeout, BrokerRequest::Heartbeat, message, out);
    }

    /// Everything time or an answer may have made due, besides the coordinators.
    fn poll(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        self.maybe_heartbeat(now, out);
        self.pump_coordinator_completions(now, out);
        self.send_fetches(now, out);
    }

    fn handle_failures(&mut self, now: Instant, failed: Vec<(BrokerRequest, RequestFailure)>, out: &mut Outbox<BrokerEvent>) {
        for (request, failure) in failed {
            tracing::debug!(?request, ?failure, "inter-broker request failed");
            match request {
                BrokerRequest::Heartbeat => {
                    self.heartbeat.in_flight = false;
                    let backoff = HEARTBEAT_RETRY_BACKOFF.saturating_mul(1 << self.heartbeat.failures.min(16)).min(self.config.broker_session_timeout);
                    self.heartbeat.failures += 1;
                    self.heartbeat.next_at = now + backoff;
                }
                // Sent again while the ISR change is pending (KIP-497): now if the
                // controller's connection is ready, else once it is.
                BrokerRequest::AlterPartition(tp) => self.send_alter_partition(now, &tp, out),
                // AbstractFetcherThread: every partition of the fetcher waits replica.fetch.backoff.ms.
                BrokerRequest::Fetcher { leader } => {
                    if let Some(fetcher) = fetcher::fetcher_mut(&mut self.fetchers, leader) {
                        fetcher.in_flight = false;
                        fetcher.backoff_until = now + self.config.replica_fetch_backoff;
                    }
                }
                BrokerRequest::Marker { coordinator_correlation_id, partition } => {
                    let message = TxnMessage::WriteTxnMarkersResponse { correlation_id: coordinator_correlation_id, partition, result: Err(failure.error_code()) };
                    self.coordinator_replies.push_back((self.id, Message::Txn(message)));
                }
                BrokerRequest::Verification(id) => self.handle_verification_response(now, id, Err(failure.error_code()), out),
            }
        }
    }

    fn handle_response(&mut self, now: Instant, from: NodeId, request: BrokerRequest, message: Message, out: &mut Outbox<BrokerEvent>) {
        match (request, message) {
            (BrokerRequest::Heartbeat, Message::BrokerHeartbeatResponse { broker_epoch, metadata, error, .. }) => {
                self.heartbeat = Heartbeat { next_at: now + self.config.broker_heartbeat_interval, in_flight: false, waiting_for_connection: false, failures: 0 };
                if error == Some(ErrorCode::StaleBrokerEpoch) {
                    self.broker_epoch = None;
                    return;
                }
                self.broker_epoch = Some(broker_epoch);
                if let Some(metadata) = metadata {
                    self.apply_metadata(now, metadata, out);
                }
            }
            (BrokerRequest::AlterPartition(_), Message::AlterPartitionResponse { partition, result, .. }) => self.handle_alter_partition_response(now, partition, result, out),
            (BrokerRequest::Fetcher { leader }, Message::FetchResponse { partitions, .. }) => self.handle_fetch_response(now, leader, partitions, out),
            (BrokerRequest::Fetcher { leader }, Message::OffsetsForLeaderEpochResponse { partitions, .. }) => {
                self.handle_offsets_for_leader_epoch_response(now, leader, partitions, out)
            }
            (BrokerRequest::Marker { coordinator_correlation_id, .. }, Message::Txn(TxnMessage::WriteTxnMarkersResponse { partition, result, .. })) => {
                let message = TxnMessage::WriteTxnMarkersResponse { correlation_id: coordinator_correlation_id, partition, result };
                self.coordinator_replies.push_back((from, Message::Txn(message)));
            }
            (BrokerRequest::Verification(id), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { result, .. })) => self.handle_verification_response(now, id, result, out),
            (request, message) => unreachable!("a {} answer to {request:?}", message.api()),
        }
    }

    fn handle_request(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<BrokerEvent>) {
        match message {
            Message::MetadataRequest { correlation_id } => out.send(from, Message::MetadataResponse { correlation_id, metadata: self.metadata.clone() }),
            Message::ProduceRequest { correlation_id, acks, timeout, partition, producer, records, transactional_id } => {
                self.handle_produce_request(now, from, correlation_id, acks, timeout, partition, producer, records, transactional_id, out)
            }
            Message::FetchRequest { correlation_id, replica_id, max_wait, partitions, read_committed } => {
                self.handle_fetch(now, from, correlation_id, replica_id, max_wait, partitions, read_committed, out)
            }
            Message::ListOffsetsRequest { correlation_id, partition, spec, current_leader_epoch } => {
                let result = self.list_offsets(&partition, spec, current_leader_epoch);
                out.send(from, Message::ListOffsetsResponse { correlation_id, partition, result })
            }
            Message::OffsetsForLeaderEpochRequest { correlation_id, partitions } => {
                let partitions = partitions
                    .into_iter()
                    .map(|(tp, current, requested)| {
                        let result = self.offsets_for_leader_epoch(&tp, current, requested);
                        (tp, result)
                    })
                    .collect();
                out.send(from, Message::OffsetsForLeaderEpochResponse { correlation_id, partitions })
            }
            Message::FindCoordinatorRequest { correlation_id, key_type, key } => {
                let result = find_coordinator(&self.metadata, key_type, &key);
                out.send(from, Message::FindCoordinatorResponse { correlation_id, result })
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
                out.send(from, Message::InitProducerIdResponse { correlation_id, result })
            }
            // Until it has registered, a restarted broker takes no orders.
            Message::UpdateMetadata { metadata } if self.broker_epoch.is_some() => self.apply_metadata(now, metadata, out),
            _ => {}
        }
    }

    // ----- metadata and roles -----

    fn apply_metadata(&mut self, now: Instant, metadata: Arc<ClusterMetadata>, out: &mut Outbox<BrokerEvent>) {
        if metadata.version <= self.metadata.version {
            return;
        }
        self.metadata = metadata.clone();
        self.coordinator_deadline.set(None);
        self.transactions.update_metadata(metadata.clone());
        for (tp, state) in &metadata.partitions {
            if !state.replicas.contains(&self.id) {
                continue;
            }
            self.apply_partition_state(now, tp, state, out);
        }
    }

    fn apply_partition_state(&mut self, now: Instant, tp: &TopicPartition, state: &PartitionState, out: &mut Outbox<BrokerEvent>) {
        let me = self.id;
        let mut loads = Vec::new();
        let partition = self.partitions.get_or_insert_with(tp, || Partition::new(tp.clone(), Log::default(), Offset(0)));
        let fresh = matches!(partition.role, Role::Offline) && state.leader_epoch >= partition.leader_epoch;
        if state.leader_epoch > partition.leader_epoch || (fresh && state.leader.is_some()) {
            partition.replicas = state.replicas.clone();
            partition.isr = state.isr.clone();
            partition.partition_epoch = state.partition_epoch;
            match state.leader {
                Some(leader) if leader == me => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, "become leader");
                    partition.become_leader(now, me, state.leader_epoch, &mut out.disk);
                    out.event(BrokerEvent::LeadershipTaken { partition: tp.clone(), leader_epoch: state.leader_epoch });
                    loads.push(state.leader_epoch);
                }
                Some(leader) => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, leader = leader.0, "become follower");
                    partition.become_follower(leader, state.leader_epoch, self.config.legacy_high_watermark_truncation, &mut out.disk);
                    fetcher::add_fetcher(&mut self.fetchers, leader);
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
        for leader_epoch in loads {
            self.load_coordinator(now, tp, leader_epoch, out);
        }
        self.after_high_watermark_change(now, tp, out);
    }

    fn handle_alter_partition_response(&mut self, now: Instant, tp: TopicPartition, result: Result<PartitionState, ErrorCode>, out: &mut Outbox<BrokerEvent>) {
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

    /// KIP-497: an AlterPartition that got no answer (its connection closed, or
    /// it timed out) is sent again, and the leader keeps the maximal ISR
    /// meanwhile; giving up and falling back to the smaller ISR could acknowledge
    /// writes the new ISR member never got.
    fn retry_alter_partitions(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        if self.broker_epoch.is_none() || !self.partitions.values().any(|partition| partition.pending_isr().is_some()) {
            return;
        }
        let pending: Vec<TopicPartition> = self.partitions.iter().filter(|(_, partition)| partition.pending_isr().is_some()).map(|(tp, _)| tp.clone()).collect();
        for tp in pending {
            let in_flight = self.network.in_flight_tags().any(|request| matches!(request, BrokerRequest::AlterPartition(asked) if *asked == tp));
            if !in_flight {
                self.send_alter_partition(now, &tp, out);
            }
        }
    }

    fn propose_isr(&mut self, now: Instant, tp: &TopicPartition, new_isr: Vec<NodeId>, out: &mut Outbox<BrokerEvent>) {
        if self.broker_epoch.is_none() {
            return;
        }
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        if partition.pending_isr().is_none() {
            partition.set_pending_isr(Some((new_isr, now)));
            self.send_alter_partition(now, tp, out);
        }
    }

    /// Asks the controller for `tp`'s pending ISR (KIP-497), once the controller's
    /// connection is ready; `retry_alter_partitions` asks again until it answers.
    fn send_alter_partition(&mut self, now: Instant, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        let (Some(broker_epoch), Some(partition)) = (self.broker_epoch, self.partitions.get(tp)) else { return };
        let Some((new_isr, _)) = partition.pending_isr().cloned() else { return };
        let controller = Destination::new(self.controller, Channel::Default);
        if !self.network.ready(now, controller, out) {
            return;
        }
        let (broker, partition_name, leader_epoch, partition_epoch) = (self.id, partition.tp.clone(), partition.leader_epoch, partition.partition_epoch);
        let message = |correlation_id| Message::AlterPartitionRequest { correlation_id, broker, broker_epoch, partition: partition_name, leader_epoch, partition_epoch, new_isr };
        self.network.send(now, controller, self.config.request_timeout, BrokerRequest::AlterPartition(tp.clone()), message, out);
    }

    fn shrink_isrs(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
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
        records: Arc<[Record]>,
        out: &mut Outbox<BrokerEvent>,
    ) {
        let result = self.append_as_leader(&tp, acks, producer, records, &mut out.disk);
        let (local, base_offset, required_offset) = match result {
            Ok(appended) => appended,
            Err(error) => {
                if acks != Acks::None {
                    out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Err(error) });
                }
                return;
            }
        };
        // The write is not waiting yet: it is checked below, once it is.
        self.after_append(now, &local, true, out);
        match acks {
            Acks::None => {}
            Acks::Leader => out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Ok(base_offset) }),
            Acks::All => {
                let waiter = Waiter::Client { client, correlation_id };
                self.delayed_produces.push(DelayedProduce::new(waiter, local.clone(), base_offset, required_offset, now + timeout));
                self.complete_delayed_produces(&local, out);
            }
        }
    }

    /// Appends on the leader; returns the partition under this broker's own name
    /// for it (whose topic `Arc` later lookups match by pointer), the batch's base
    /// offset and the offset the high watermark must pass for acks=all.
    fn append_as_leader(&mut self, tp: &TopicPartition, acks: Acks, producer: Option<ProducerStamp>, records: Arc<[Record]>, disk: &mut Vec<DiskOp>) -> Result<(TopicPartition, Offset, Offset), ErrorCode> {
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
                SequenceCheck::Duplicate(base) => return Ok((partition.tp.clone(), base, Offset(base.0 + records.len() as u64))),
                SequenceCheck::OutOfOrder => return Err(ErrorCode::OutOfOrderSequenceNumber),
                SequenceCheck::ProducerFenced => return Err(ErrorCode::ProducerFenced),
            }
        }
        let base_offset = partition.log_end_offset();
        let batch: SharedBatch = Arc::new(RecordBatch::new(base_offset, partition.leader_epoch, producer, records));
        let required_offset = batch.next_offset();
        partition.append(batch, self.config.log_flush_interval_messages, disk);
        Ok((partition.tp.clone(), base_offset, required_offset))
    }

    /// After an append to `tp`; `waiters_checked` as for `advance_high_watermark`.
    fn after_append(&mut self, now: Instant, tp: &TopicPartition, waiters_checked: bool, out: &mut Outbox<BrokerEvent>) {
        self.advance_high_watermark(now, tp, waiters_checked, out);
        self.complete_delayed_fetches(now, Some(tp), out);
    }

    fn after_high_watermark_change(&mut self, now: Instant, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        self.advance_high_watermark(now, tp, false, out);
    }

    /// Moves the leader's high watermark of `tp` if it can, and completes the
    /// writes and fetches that waited for it. `waiters_checked`: the caller knows
    /// every write waiting on `tp` was checked against the current mark already
    /// (each is checked when it arrives and whenever the mark moves, and none
    /// arrived since), so unless the mark moves there is nothing to complete and
    /// the purgatory is not asked; a follower's fetch and a client's produce,
    /// the commonest callers, know this.
    fn advance_high_watermark(&mut self, now: Instant, tp: &TopicPartition, waiters_checked: bool, out: &mut Outbox<BrokerEvent>) {
        let me = self.id;
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        let before = partition.high_watermark;
        let advanced = partition.maybe_advance_high_watermark(me);
        let high_watermark = partition.high_watermark;
        let enough = partition.isr.len() >= self.config.min_insync_replicas;
        if advanced {
            assert!(high_watermark > before, "the high watermark never moves backwards on a leader");
        } else if waiters_checked {
            #[cfg(test)]
            assert!(!self.delayed_produces.may_complete(tp, high_watermark), "a write the unmoved high watermark completes was already answered");
            return;
        }
        self.complete_replicated(tp, high_watermark, enough, out);
        if advanced {
            self.complete_delayed_fetches(now, Some(tp), out);
        }
    }

    fn complete_delayed_produces(&mut self, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        let Some(partition) = self.partitions.get(tp) else { return };
        let high_watermark = partition.high_watermark;
        let enough = partition.isr.len() >= self.config.min_insync_replicas;
        self.complete_replicated(tp, high_watermark, enough, out);
    }

    /// Answers the writes waiting on `tp` that `high_watermark` reached; `enough`:
    /// whether the partition's ISR still has min.insync.replicas members.
    fn complete_replicated(&mut self, tp: &TopicPartition, high_watermark: Offset, enough: bool, out: &mut Outbox<BrokerEvent>) {
        if !self.delayed_produces.may_complete(tp, high_watermark) {
            return;
        }
        let mut done = std::mem::take(&mut self.completed_produces);
        self.delayed_produces.take_replicated(tp, high_watermark, &mut done);
        for delayed in done.drain(..) {
            // Kafka's checkEnoughReplicasReachOffset: replicated, but the ISR
            // shrank below min.insync.replicas meanwhile.
            let result = if enough { Ok(delayed.base_offset) } else { Err(ErrorCode::NotEnoughReplicasAfterAppend) };
            self.answer_waiter(delayed.waiter, delayed.partition, result, out);
        }
        self.completed_produces = done;
    }

    fn fail_delayed_produces(&mut self, tp: &TopicPartition, error: ErrorCode, out: &mut Outbox<BrokerEvent>) {
        let mut done = Vec::new();
        self.delayed_produces.take_all(tp, &mut done);
        for delayed in done {
            self.answer_waiter(delayed.waiter, delayed.partition, Err(error), out);
        }
    }

    fn expire_delayed(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        for delayed in self.delayed_produces.take_expired(now) {
            self.answer_waiter(delayed.waiter, delayed.partition, Err(ErrorCode::RequestTimedOut), out);
        }
        self.complete_delayed_fetches(now, None, out);
    }

    fn answer_waiter(&mut self, waiter: Waiter, partition: TopicPartition, result: Result<Offset, ErrorCode>, out: &mut Outbox<BrokerEvent>) {
        match waiter {
            Waiter::Client { client, correlation_id } => {
                out.send(client, Message::ProduceResponse { correlation_id, partition, result })
            }
            Waiter::Coordinator { kind, token } => self.completed_writes.push_back((kind, token, result)),
            Waiter::Marker { coordinator, correlation_id, producer_id, commit } => {
                // KIP-98/KIP-447: the marker is on the group's offsets partition:
                // its pending transactional offsets are now committed or dropped.
                if result.is_ok() && &*partition.topic == crate::coordinator::CONSUMER_OFFSETS_TOPIC {
                    self.coordinator_deadline.set(None);
                    self.groups.complete_transaction(partition.partition, producer_id, commit);
                }
                let message = TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result: result.map(|_| ()) };
                out.send(coordinator, Message::Txn(message))
            }
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
        out: &mut Outbox<BrokerEvent>,
    ) {
        if let Some(follower) = replica_id {
            for request in &partitions {
                let Some(partition) = self.partitions.get_mut(&request.partition) else { continue };
                if check_leader(partition, request.current_leader_epoch).is_err() || request.fetch_offset > partition.log_end_offset() {
                    continue;
                }
                partition.record_follower_fetch(now, follower, request.fetch_offset);
                if partition.may_join_isr(follower) && partition.pending_isr().is_none() {
                    let mut new_isr = partition.isr.clone();
                    new_isr.push(follower);
                    tracing::info!(partition = %request.partition, follower = follower.0, "leader expands ISR");
                    self.propose_isr(now, &request.partition, new_isr, out);
                }
                self.advance_high_watermark(now, &request.partition, true, out);
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

    fn respond_fetch(&self, fetch: DelayedFetch, out: &mut Outbox<BrokerEvent>) {
        // The request's partitions are consumed: each key moves into the response.
        let partitions = fetch
            .partitions
            .into_iter()
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
                (request.partition, result)
            })
            .collect();
        out.send(fetch.client, Message::FetchResponse { correlation_id: fetch.correlation_id, partitions });
    }

    fn complete_delayed_fetches(&mut self, now: Instant, tp: Option<&TopicPartition>, out: &mut Outbox<BrokerEvent>) {
        let mut index = 0;
        while index < self.delayed_fetches.len() {
            let fetch = &self.delayed_fetches[index];
            let touched = tp.is_none_or(|tp| fetch.partitions.iter().any(|request| same_partition(&request.partition, tp)));
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
        check_leader(partition, current_leader_epoch)?;
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

/// KIP-320 on one replica: is it the leader at the epoch the request expects?
fn check_leader(partition: &Partition, current_leader_epoch: LeaderEpoch) -> Result<(), ErrorCode> {
    if current_leader_epoch < partition.leader_epoch {
        return Err(ErrorCode::FencedLeaderEpoch);
    }
    if current_leader_epoch > partition.leader_epoch {
        return Err(ErrorCode::UnknownLeaderEpoch);
    }
    if !partition.is_leader() {
        return Err(ErrorCode::NotLeaderOrFollower);
    }
    Ok(())
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

impl Node for Broker {
    type Event = BrokerEvent;

    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<BrokerEvent>) {
        if message.is_response() {
            // A response to a request no longer in flight (its connection closed)
            // is one Kafka would never have read.
            if let Some(request) = message.correlation_id().and_then(|correlation_id| self.network.take(correlation_id)) {
                self.handle_response(now, from, request, message, out);
            }
        } else {
            self.handle_request(now, from, message, out);
        }
        self.poll(now, out);
    }

    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<BrokerEvent>) {
        let failed = self.network.handle_connection(now, destination, event);
        self.connection_changed(destination);
        self.handle_failures(now, failed, out);
        self.retry_alter_partitions(now, out);
        self.poll(now, out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        let failed = self.network.poll_timeouts(now, out);
        self.handle_failures(now, failed, out);
        // A connection's backoff may have ended: fetchers waiting on one look again.
        for (_, fetcher) in &mut self.fetchers {
            fetcher.waiting_for_connection = false;
        }
        if now >= self.next_isr_check {
            self.next_isr_check = now + self.config.replica_lag_time_max / 2;
            self.shrink_isrs(now, out);
        }
        if now >= self.next_checkpoint {
            self.next_checkpoint = now + self.config.high_watermark_checkpoint_interval;
            let marks = self.partitions.iter().map(|(tp, partition)| (tp.clone(), partition.high_watermark)).collect();
            out.disk.push(DiskOp::Checkpoint(Checkpoint::HighWatermarks(marks)));
        }
        self.expire_delayed(now, out);
        for kind in [CoordinatorType::Group, CoordinatorType::Transaction] {
            self.run_coordinator(now, kind, out, |coordinator, now, effects| coordinator.handle_timeout(now, effects));
        }
        self.retry_alter_partitions(now, out);
        self.poll(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = Some(self.next_isr_check.min(self.next_checkpoint));
        if !self.heartbeat.in_flight && !self.heartbeat.waiting_for_connection {
            deadline = earliest(deadline, Some(self.heartbeat.next_at));
        }
        let coordinators = match self.coordinator_deadline.get() {
            Some(cached) => cached,
            None => {
                let computed = self.coordinators_next_deadline();
                self.coordinator_deadline.set(Some(computed));
                computed
            }
        };
        #[cfg(test)]
        assert_eq!(coordinators, self.coordinators_next_deadline(), "the cached coordinator deadline is current");
        deadline = earliest(deadline, coordinators);
        deadline = earliest(deadline, self.network.next_deadline());
        deadline = earliest(deadline, self.delayed_produces.next_deadline());
        for delayed in &self.delayed_fetches {
            deadline = earliest(deadline, Some(delayed.deadline));
        }
        for (_, fetcher) in &self.fetchers {
            if !fetcher.in_flight && !fetcher.waiting_for_connection {
                deadline = earliest(deadline, Some(fetcher.backoff_until));
            }
        }
        deadline
    }
}
