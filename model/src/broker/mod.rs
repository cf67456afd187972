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
use crate::coordinator::{find_coordinator, is_internal_topic, Coordinator, CoordinatorEffect, WriteToken};
use crate::protocol::CoordinatorType;
use crate::log::Log;
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient, RequestFailure};
use crate::node::{Node, Outbox};
use crate::partition::{Partition, Role};
use crate::partition_map::{same_partition, PartitionMap};
use crate::protocol::{ClusterMetadata, EpochEndOffset, FetchPartition, FetchedData, Message, OffsetSpec, PartitionState};
use crate::error::ErrorCode;
use crate::coordinator::txn::protocol::TxnMessage;
use crate::record::{ControlMarker, ProducerStamp, Record, RecordBatch, SharedBatch};
use crate::storage::{Checkpoint, DiskOp, DurableState};
use crate::time::{earliest, Instant};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use crate::log::SequenceCheck;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

mod coordinators;
mod fetch;
mod fetcher;
mod isr;
mod lifecycle;
mod metadata_log;
mod produce;
mod purgatory;
mod verification;

use fetch::DelayedFetch;
use lifecycle::Heartbeat;
use produce::Waiter;

use purgatory::{DelayedProduce, DelayedProduces};

#[cfg(test)]
mod tests;


/// What a broker reports besides its messages and disk writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    /// The broker became leader of `partition` at `leader_epoch`, with this
    /// high watermark: the simulator checks that no epoch ever has two leaders,
    /// and that the leader's high watermark never goes below it in the epoch.
    LeadershipTaken { partition: TopicPartition, leader_epoch: LeaderEpoch, high_watermark: Offset },
    /// The high watermark of this broker's replica of `partition` moved (up,
    /// or down with a truncation): the simulator checks the replicas agree
    /// below it, and that it stays within the log.
    HighWatermarkMoved { partition: TopicPartition },
    /// The broker applied committed metadata log entries from `offset` on,
    /// one digest each (`metadata-divergence`, `metadata-regression`).
    MetadataApplied { offset: u64, digests: Vec<u64> },
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

#[derive(Default)]
struct Fetcher {
    /// A request is out (the `NetworkClient` holds it and its timeout).
    in_flight: bool,
    /// Its leader's connection is not ready: its event wakes the broker.
    waiting_for_connection: bool,
    backoff_until: Instant,
}

/// What a broker needs to replicate the metadata log: the quorum's voters
/// and timing, and the cluster as bootstrapped (the log's starting point).
pub struct QuorumSetup {
    pub config: crate::quorum::QuorumConfig,
    pub bootstrap: crate::controller::ControllerSnapshot,
}

pub struct Broker {
    id: NodeId,
    config: BrokerConfig,
    /// The metadata log as this broker replicates it, and through it the active controller.
    metadata_log: metadata_log::MetadataLog,
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
    pub fn recover(now: Instant, id: NodeId, quorum: QuorumSetup, config: BrokerConfig, durable: &DurableState, jitter_seed: u64, out: &mut Outbox<BrokerEvent>) -> Broker {
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
            metadata_log: metadata_log::MetadataLog::new(now, id, quorum.config, quorum.bootstrap, config.network, jitter_seed),
            config,
            broker_epoch: None,
            metadata: Arc::new(ClusterMetadata::default()),
            partitions,
            heartbeat: Heartbeat::due_at(now),
            fetchers: Vec::new(),
            delayed_produces: DelayedProduces::default(),
            completed_produces: Vec::new(),
            delayed_fetches: Vec::new(),
            next_producer_id: 0,
        }
    }

    /// The group coordinator of this broker (KIP-848's "classic" one).
    pub fn group_coordinator(&self) -> &GroupCoordinator {
        &self.groups
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
                BrokerRequest::Heartbeat => self.heartbeat.failed(now, self.config.broker_session_timeout),
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
            (BrokerRequest::Heartbeat, Message::BrokerHeartbeatResponse { broker_epoch, error, .. }) => self.handle_heartbeat_response(now, broker_epoch, error, out),
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
            _ => {}
        }
    }

    // ----- metadata and roles -----

    // ----- produce -----

    // ----- fetch (serving) -----

}

impl Node for Broker {
    type Event = BrokerEvent;

    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<BrokerEvent>) {
        if let Message::Quorum(message) = message {
            // The quorum pairs its own requests and responses.
            let applied = self.metadata_log.handle_message(now, from, *message, out);
            self.metadata_applied(now, applied, out);
        } else if message.is_response() {
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
        if destination.channel == Channel::Quorum {
            self.metadata_log.handle_connection(now, destination, event, out);
            return self.poll(now, out);
        }
        let failed = self.network.handle_connection(now, destination, event);
        self.connection_changed(destination);
        self.handle_failures(now, failed, out);
        self.retry_alter_partitions(now, out);
        self.poll(now, out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        let failed = self.network.poll_timeouts(now, out);
        self.handle_failures(now, failed, out);
        let applied = self.metadata_log.handle_timeout(now, out);
        self.metadata_applied(now, applied, out);
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
        deadline = earliest(deadline, self.heartbeat.deadline());
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
        deadline = earliest(deadline, self.metadata_log.next_deadline());
        deadline = earliest(deadline, self.delayed_produces.next_deadline());
        deadline = earliest(deadline, self.delayed_fetches_deadline());
        for (_, fetcher) in &self.fetchers {
            if !fetcher.in_flight && !fetcher.waiting_for_connection {
                deadline = earliest(deadline, Some(fetcher.backoff_until));
            }
        }
        deadline
    }
}
