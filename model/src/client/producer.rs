//! Kafka's producer: partitioner, record accumulator with linger and batch size,
//! acks, retries with backoff, delivery timeout, max in flight per connection, and
//! idempotence (KIP-98: a producer id and per-partition sequence numbers, so a
//! retried batch is written once).
//!
//! Requests go through the producer's `NetworkClient`: a batch whose connection
//! closes, or whose request times out, is retried with the same sequence numbers
//! (Kafka's `Sender.handleProduceResponse`: NETWORK_EXCEPTION or REQUEST_TIMED_OUT,
//! both retriable), its outcome unknown until an answer comes.
//!
//! Without idempotence, a batch retried after a later batch succeeded lands after
//! it, as in Kafka: that is how `nonmonotonic-send` happens with
//! max.in.flight.requests.per.connection > 1.

mod accumulator;
mod batch;
mod transactional;

pub use transactional::{TransactionOutcome, TransactionPhase, TransactionState};

use super::metadata::MetadataTracker;
use super::partitioner::{partition_for_key, RoundRobin};
use crate::config::{Acks, ProducerConfig};
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient, RequestFailure};
use crate::node::{Node, Outbox};
use crate::protocol::Message;
use crate::error::ErrorCode;
use crate::record::{ProducerStamp, Record};
use crate::time::{earliest, Instant};
use crate::types::{NodeId, Offset, ProducerId, Sequence, TopicPartition};
use accumulator::{PartitionCounts, PartitionQueues};
use batch::Batch;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// Why a send failed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The broker's answer, or the network's (NetworkException, NetworkTimeout),
    /// once the batch could not be retried.
    Error(ErrorCode),
    /// `delivery.timeout.ms` passed before the batch was acknowledged.
    DeliveryTimeout { records: usize },
    /// The topic's metadata never came within `delivery.timeout.ms`.
    MetadataTimeout,
    /// acks=0: no acknowledgement ever comes.
    NoAcknowledgement,
    /// The transaction ended before the record was written.
    TransactionAborted,
    /// KIP-360: the producer took a new id while the batch's outcome was unknown,
    /// so it cannot be retried safely.
    UnresolvedSequence,
}

impl fmt::Display for SendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFailure::Error(error) => write!(f, "{error}"),
            SendFailure::DeliveryTimeout { records } => write!(f, "TimeoutException: expiring {records} record(s) after delivery.timeout.ms"),
            SendFailure::MetadataTimeout => write!(f, "TimeoutException: topic metadata not available"),
            SendFailure::NoAcknowledgement => write!(f, "acks=0: no acknowledgement"),
            SendFailure::TransactionAborted => write!(f, "transaction aborted before the record was written"),
            SendFailure::UnresolvedSequence => write!(f, "outcome unknown: the producer took a new id, so the batch cannot be retried safely"),
        }
    }
}

impl SendFailure {
    /// Whether the producer's epoch is over (KIP-98 zombie fencing, KIP-588).
    pub fn is_fenced(&self) -> bool {
        matches!(self, SendFailure::Error(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch))
    }
}

/// Why a send failed, and whether it may be in the log all the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub failure: SendFailure,
    pub maybe_written: bool,
}

/// What the producer reports to its application.
#[derive(Clone, Debug)]
pub enum ProducerEvent {
    Completed { handle: u64, result: Result<(TopicPartition, Offset), SendError> },
    /// The current transaction ended (transactional producers only).
    TransactionCompleted { outcome: TransactionOutcome },
}

/// What each request in the producer's `NetworkClient` was, for its answer or failure.
enum ProducerRequest {
    Metadata,
    InitProducerId,
    /// The batch rides with its request until the answer comes.
    Produce(Batch),
    Transaction(transactional::Request),
}

struct PendingRecord {
    handle: u64,
    topic: Arc<str>,
    record: Record,
    created: Instant,
}

pub struct Producer {
    config: ProducerConfig,
    metadata: MetadataTracker,
    network: NetworkClient<ProducerRequest>,
    unpartitioned: VecDeque<PendingRecord>,
    queues: PartitionQueues,
    /// No queued batch was made before this (None: nothing is queued), so batches
    /// need no expiry check until delivery.timeout.ms after it.
    oldest_queued: Option<Instant>,
    next_batch_id: u64,
    partition_counts: PartitionCounts,
    round_robin: BTreeMap<Arc<str>, RoundRobin>,
    producer_id: Option<(ProducerId, u16)>,
    /// An idempotent producer's InitProducerId is out, or may go again from then.
    producer_id_request: ProducerIdRequest,
    bootstrap: Vec<NodeId>,
    /// Where round-robin starts, so producers do not all begin on partition 0.
    start: u32,
    /// Set when `transactional.id` is (KIP-98).
    transactions: Option<TransactionState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProducerIdRequest {
    Idle { retry_at: Instant },
    /// Due, but no broker's connection is ready: its event wakes the producer.
    WaitingForConnection,
    InFlight,
}

impl Producer {
    /// `jitter_seed` feeds the reconnect backoff's jitter (the model draws no randomness itself).
    pub fn new(config: ProducerConfig, bootstrap: Vec<NodeId>, start: u32, jitter_seed: u64) -> Producer {
        let metadata = MetadataTracker::new(bootstrap.clone(), start as usize, config.metadata_max_age, config.retry_backoff, config.request_timeout);
        let transactions = config.transactional_id.as_ref().map(|id| TransactionState::new(id.as_str().into(), config.transaction_timeout));
        Producer {
            network: NetworkClient::new(config.network, jitter_seed),
            transactions,
            config,
            metadata,
            unpartitioned: VecDeque::new(),
            queues: PartitionQueues::default(),
            oldest_queued: None,
            next_batch_id: 0,
            partition_counts: PartitionCounts::default(),
            round_robin: BTreeMap::new(),
            producer_id: None,
            producer_id_request: ProducerIdRequest::Idle { retry_at: Instant::ZERO },
            bootstrap,
            start,
        }
    }

    /// Records accepted but not yet completed.
    pub fn pending_count(&self) -> usize {
        let in_flight: usize = self.network.in_flight_tags().map(|request| if let ProducerRequest::Produce(batch) = request { batch.handles.len() } else { 0 }).sum();
        self.unpartitioned.len() + self.queues.values().flat_map(|queue| &queue.batches).map(|batch| batch.handles.len()).sum::<usize>() + in_flight
    }

    fn produce_in_flight(&self) -> bool {
        self.network.in_flight_tags().any(|request| matches!(request, ProducerRequest::Produce(_)))
    }

    pub fn send(&mut self, now: Instant, handle: u64, topic: Arc<str>, key: Option<Bytes>, value: Bytes, out: &mut Outbox<ProducerEvent>) {
        self.send_record(now, handle, topic, Record { key, value, headers: None }, out);
    }

    /// `send` of a whole record, headers included.
    pub fn send_record(&mut self, now: Instant, handle: u64, topic: Arc<str>, record: Record, out: &mut Outbox<ProducerEvent>) {
        self.unpartitioned.push_back(PendingRecord { handle, topic, record, created: now });
        self.poll(now, out);
    }

    /// Everything time or an answer may have made due: metadata, partitioning,
    /// expiry, the producer id, the transaction, and sending what is ready.
    fn poll(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        self.metadata.poll(now, &mut self.network, || ProducerRequest::Metadata, out);
        self.partition_pending(now, out);
        self.expire_batches(now, out);
        self.init_producer_id(now, out);
        if self.transactions.is_some() {
            self.poll_transaction(now, out);
        }
        self.drain(now, out);
        // The drain may have found partitions to add to the transaction.
        if self.transactions.is_some() {
            self.poll_transaction(now, out);
        }
    }

    /// Answers and failures of the requests in flight.
    fn handle_failures(&mut self, now: Instant, failed: Vec<(ProducerRequest, RequestFailure)>, out: &mut Outbox<ProducerEvent>) {
        for (request, failure) in failed {
            match request {
                ProducerRequest::Metadata => self.metadata.handle_failure(now),
                ProducerRequest::InitProducerId => self.producer_id_request = ProducerIdRequest::Idle { retry_at: now + self.config.retry_backoff },
                ProducerRequest::Produce(batch) => self.complete(now, batch, Err((failure.error_code(), true)), out),
                ProducerRequest::Transaction(request) => self.transaction_request_failed(now, request, failure.error_code(), out),
            }
        }
    }

    /// Kafka's partitioner: murmur2 of the key modulo the partition count, or
    /// round-robin for null keys; records wait until metadata names the partitions.
    fn partition_pending(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        while let Some(pending) = self.unpartitioned.front() {
            let count = self.partition_counts.get(&self.metadata, &pending.topic);
            if count == 0 {
                // Kafka's send() waits for the topic's metadata, asking for it again.
                self.metadata.request_update();
                if now.saturating_since(pending.created) >= self.config.delivery_timeout {
                    let pending = self.unpartitioned.pop_front().expect("front exists");
                    let error = SendError { failure: SendFailure::MetadataTimeout, maybe_written: false };
                    out.event(ProducerEvent::Completed { handle: pending.handle, result: Err(error) });
                    continue;
                }
                return;
            }
            let PendingRecord { handle, topic, record, created } = self.unpartitioned.pop_front().expect("front exists");
            let index = match &record.key {
                Some(key) => partition_for_key(key, count),
                None => {
                    let start = self.start;
                    self.round_robin.entry(topic.clone()).or_insert_with(|| RoundRobin::new(start)).next_partition(count)
                }
            };
            let partition = TopicPartition { topic, partition: index };
            self.append(partition, handle, record, created);
        }
    }

    /// Adds a record to its partition's open batch, or to a new batch when the
    /// last one was sent or is full.
    fn append(&mut self, partition: TopicPartition, handle: u64, record: Record, created: Instant) {
        let size = record.size_bytes();
        let (partition, queue) = self.queues.entry(partition);
        if let Some(batch) = queue.batches.back_mut() {
            if !batch.is_closed() && batch.size_bytes + size <= self.config.batch_size {
                batch.push(handle, record, size);
                return;
            }
        }
        self.next_batch_id += 1;
        queue.batches.push_back(Batch::open(self.next_batch_id, partition.clone(), handle, record, created, size));
        self.oldest_queued = earliest(self.oldest_queued, Some(created));
    }

    fn init_producer_id(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        // A transactional producer gets its id from its coordinator (`transactional`).
        if !self.config.enable_idempotence || self.producer_id.is_some() || self.bootstrap.is_empty() || self.transactions.is_some() {
            return;
        }
        let retry_at = match self.producer_id_request {
            ProducerIdRequest::Idle { retry_at } => retry_at,
            ProducerIdRequest::WaitingForConnection => now,
            ProducerIdRequest::InFlight => return,
        };
        // KIP-360: a new id only once nothing is in flight under the old one.
        if now < retry_at || self.produce_in_flight() {
            return;
        }
        let Some(node) = self.network.least_loaded_node(now, &self.bootstrap, self.start as usize, Channel::Default) else {
            self.network.want_any(&self.bootstrap, Channel::Default);
            self.producer_id_request = ProducerIdRequest::WaitingForConnection;
            return;
        };
        let destination = Destination::new(node, Channel::Default);
        if !self.network.ready(now, destination, out) {
            self.producer_id_request = ProducerIdRequest::WaitingForConnection;
            return;
        }
        self.producer_id_request = ProducerIdRequest::InFlight;
        let timeout = self.config.request_timeout;
        self.network.send(now, destination, timeout, ProducerRequest::InitProducerId, |correlation_id| Message::InitProducerIdRequest { correlation_id }, out);
    }

    /// Sends every batch that is ready, in queue order, within the in-flight limit.
    fn drain(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        if self.config.enable_idempotence && self.producer_id.is_none() {
            for queue in self.queues.values_mut() {
                queue.blocked = true;
            }
            return;
        }
        let Producer { config, metadata, queues, network, producer_id, transactions, .. } = self;
        let limit = config.max_in_flight_requests_per_connection;
        for (tp, queue) in queues.iter_mut() {
            queue.blocked = false;
            loop {
                let Some(leader) = queue.leader(metadata, tp) else {
                    metadata.request_update();
                    queue.blocked = true;
                    break;
                };
                if queue.batches.is_empty() && transactions.is_none() {
                    // Nothing to send, and `blocked` only counts while a batch
                    // waits; only a transaction hears of an empty partition.
                    break;
                }
                let destination = Destination::new(leader, Channel::Default);
                if network.in_flight_to(destination) >= limit || queue.window_full(limit) || !transactions.as_mut().is_none_or(|txn| txn.allows(tp)) {
                    queue.blocked = true;
                    break;
                }
                let Some(batch) = queue.batches.front() else { break };
                let full = batch.size_bytes >= config.batch_size;
                let lingered = now >= batch.created + config.linger;
                if now < batch.retry_at || !(batch.is_closed() || full || lingered) {
                    break;
                }
                // Kafka's Sender drains only to ready nodes, connecting to the others.
                if !network.ready(now, destination, out) {
                    queue.blocked = true;
                    break;
                }
                let mut batch = queue.batches.pop_front().expect("front exists");
                let records = batch.close();
                batch.attempts += 1;
                let producer = stamp(*producer_id, transactions.is_some(), &mut queue.next_sequence, &mut batch);
                let transactional_id = transactions.as_ref().map(|txn| txn.transactional_id.clone());
                let request = |correlation_id| Message::ProduceRequest {
                    correlation_id,
                    acks: config.acks,
                    timeout: config.request_timeout,
                    partition: tp.clone(),
                    producer,
                    records,
                    transactional_id,
                };
                if config.acks == Acks::None {
                    // Fire and forget: the send counts as done, at offset unknown.
                    network.send_one_way(destination, request(0), out);
                    for handle in batch.handles.iter() {
                        let error = SendError { failure: SendFailure::NoAcknowledgement, maybe_written: true };
                        out.event(ProducerEvent::Completed { handle, result: Err(error) });
                    }
                } else {
                    if !queue.window.iter().any(|(id, _)| *id == batch.id) {
                        queue.window.push_back((batch.id, false));
                    }
                    network.send(now, destination, config.request_timeout, ProducerRequest::Produce(batch), request, out);
                }
            }
        }
    }

    /// Sequences start again from 0 under a new producer id or epoch.
    fn reset_sequences(&mut self) {
        for queue in self.queues.values_mut() {
            queue.next_sequence = 0;
        }
    }

    fn handle_response(&mut self, now: Instant, request: ProducerRequest, message: Message, out: &mut Outbox<ProducerEvent>) {
        match (request, message) {
            (ProducerRequest::Metadata, Message::MetadataResponse { metadata, .. }) => self.metadata.handle_response(now, metadata),
            (ProducerRequest::InitProducerId, Message::InitProducerIdResponse { result, .. }) => match result {
                Ok(id) => {
                    self.producer_id_request = ProducerIdRequest::Idle { retry_at: Instant::ZERO };
                    self.producer_id = Some(id);
                    self.reset_sequences();
                    self.fail_unresolved_batches(out);
                    for batch in self.queues.values_mut().flat_map(|queue| &mut queue.batches) {
                        batch.base_sequence = None;
                    }
                }
                Err(_) => self.producer_id_request = ProducerIdRequest::Idle { retry_at: now + self.config.retry_backoff },
            },
            (ProducerRequest::Produce(batch), Message::ProduceResponse { partition, result, .. }) => {
                debug_assert_eq!(batch.partition, partition);
                // The batch's partition shares the queue's topic `Arc`, so the
                // queue is found without comparing the topic's bytes.
                let oldest = self.queues.get(&batch.partition).and_then(|queue| queue.window.front()).map(|(id, _)| *id) == Some(batch.id);
                if oldest && result == Err(ErrorCode::OutOfOrderSequenceNumber) && self.producer_id.is_some() && self.transactions.is_none() {
                    // KIP-360: the oldest outstanding batch is out of order, so the
                    // broker lost this producer's state (a truncated log): take a
                    // new producer id and number the batches afresh.
                    tracing::info!(partition = %partition, "producer resets its sequence numbers after OutOfOrderSequence");
                    self.producer_id = None;
                }
                self.complete(now, batch, result.map_err(|error| (error, error.maybe_written())), out);
            }
            (ProducerRequest::Transaction(request), message) => self.handle_transaction_response(now, request, message, out),
            (request, message) => unreachable!("a {} answer to a {} request", message.api(), request.api()),
        }
    }

    /// Marks a batch completed (acknowledged or failed for good) and slides its
    /// partition's window.
    fn completed(&mut self, partition: &TopicPartition, batch_id: u64) {
        if let Some(queue) = self.queues.get_mut(partition) {
            queue.completed(batch_id);
        }
    }

    fn complete(&mut self, now: Instant, mut batch: Batch, result: Result<Offset, (ErrorCode, bool)>, out: &mut Outbox<ProducerEvent>) {
        let (error, maybe_written) = match result {
            Ok(base) => {
                self.completed(&batch.partition, batch.id);
                for (index, handle) in batch.handles.iter().enumerate() {
                    let offset = Offset(base.0 + index as u64);
                    out.event(ProducerEvent::Completed { handle, result: Ok((batch.partition.clone(), offset)) });
                }
                return;
            }
            Err(failure) => failure,
        };
        batch.maybe_written |= maybe_written;
        if matches!(error, ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch | ErrorCode::UnknownTopicOrPartition | ErrorCode::NetworkException) {
            self.metadata.request_update();
        }
        let expired = now.saturating_since(batch.created) >= self.config.delivery_timeout;
        if error.is_retriable() && batch.attempts <= self.config.retries && !expired {
            batch.retry_at = now + self.config.retry_backoff;
            self.requeue(batch);
            return;
        }
        let failure = if expired && error.is_retriable() { SendFailure::DeliveryTimeout { records: batch.handles.len() } } else { SendFailure::Error(error) };
        self.fail(batch, failure, out);
    }

    /// A retried batch goes back to the front of its queue, as Kafka's
    /// `reenqueue` does; an idempotent one goes back in the order its batches were
    /// made (their sequence order, whichever producer id numbers them next), so
    /// the broker sees sequences without gaps.
    fn requeue(&mut self, batch: Batch) {
        let idempotent = self.config.enable_idempotence;
        self.oldest_queued = earliest(self.oldest_queued, Some(batch.created));
        let queue = self.queues.get_mut(&batch.partition).expect("a batch's partition keeps its queue");
        let position = if idempotent { queue.batches.iter().position(|queued| queued.id > batch.id).unwrap_or(queue.batches.len()) } else { 0 };
        queue.batches.insert(position, batch);
    }

    fn fail(&mut self, batch: Batch, failure: SendFailure, out: &mut Outbox<ProducerEvent>) {
        self.completed(&batch.partition, batch.id);
        if self.transactions.is_some() {
            // In a transaction a failed send makes the transaction abortable; the
            // abort bumps the epoch, which renews the sequences (KIP-98, KIP-890).
            self.transaction_send_failed(&failure);
        } else if batch.maybe_written && self.config.enable_idempotence && batch.stamped_with == self.producer_id {
            // KIP-360: after an unknown outcome the sequence space is suspect; start anew.
            self.producer_id = None;
        }
        for handle in batch.handles.iter() {
            let error = SendError { failure: failure.clone(), maybe_written: batch.maybe_written };
            out.event(ProducerEvent::Completed { handle, result: Err(error) });
        }
    }

    /// KIP-360: under a new producer id the broker cannot recognise a retry, so a
    /// batch that may already be in the log is failed to the application (its
    /// outcome unknown) instead of being sent again as a duplicate.
    fn fail_unresolved_batches(&mut self, out: &mut Outbox<ProducerEvent>) {
        let mut unresolved = Vec::new();
        for queue in self.queues.values_mut() {
            let (maybe_written, rest): (VecDeque<Batch>, VecDeque<Batch>) =
                queue.batches.drain(..).partition(|batch| batch.maybe_written && batch.stamped_with.is_some());
            queue.batches = rest;
            unresolved.extend(maybe_written);
        }
        for batch in unresolved {
            self.fail(batch, SendFailure::UnresolvedSequence, out);
        }
    }

    fn expire_batches(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        let timeout = self.config.delivery_timeout;
        if self.oldest_queued.is_none_or(|oldest| now.saturating_since(oldest) < timeout) {
            return;
        }
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.batches.front().is_some_and(|batch| now.saturating_since(batch.created) >= timeout) {
                expired.push(queue.batches.pop_front().expect("front exists"));
            }
        }
        self.oldest_queued = self.queues.values().flat_map(|queue| &queue.batches).map(|batch| batch.created).min();
        for batch in expired {
            let records = batch.handles.len();
            self.fail(batch, SendFailure::DeliveryTimeout { records }, out);
        }
    }
}

impl ProducerRequest {
    fn api(&self) -> &'static str {
        match self {
            ProducerRequest::Metadata => "Metadata",
            ProducerRequest::InitProducerId => "InitProducerId",
            ProducerRequest::Produce(_) => "Produce",
            ProducerRequest::Transaction(request) => request.api(),
        }
    }
}

impl Node for Producer {
    type Event = ProducerEvent;

    fn handle_message(&mut self, now: Instant, _from: NodeId, message: Message, out: &mut Outbox<ProducerEvent>) {
        // A response to a request no longer in flight (its connection closed) is
        // one Kafka would never have read.
        if let Some(request) = message.correlation_id().and_then(|correlation_id| self.network.take(correlation_id)) {
            self.handle_response(now, request, message, out);
        }
        self.poll(now, out);
    }

    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<ProducerEvent>) {
        let failed = self.network.handle_connection(now, destination, event);
        if matches!(event, ConnectionEvent::Closed(_)) {
            // NetworkClient.processDisconnection: the disconnect may come of stale metadata.
            self.metadata.request_update();
        }
        self.handle_failures(now, failed, out);
        self.poll(now, out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        let failed = self.network.poll_timeouts(now, out);
        if !failed.is_empty() {
            self.metadata.request_update();
        }
        self.handle_failures(now, failed, out);
        self.poll(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = earliest(self.metadata.next_deadline(), self.network.next_deadline());
        for queue in self.queues.values() {
            let Some(batch) = queue.batches.front() else { continue };
            deadline = earliest(deadline, Some(batch.created + self.config.delivery_timeout));
            if queue.blocked {
                continue;
            }
            let ready = if batch.is_closed() { batch.retry_at } else { batch.created + self.config.linger };
            deadline = earliest(deadline, Some(ready.max(batch.retry_at)));
        }
        if let ProducerIdRequest::Idle { retry_at } = self.producer_id_request {
            // KIP-360: with batches in flight under the old id, their answers wake it.
            if self.config.enable_idempotence && self.producer_id.is_none() && self.transactions.is_none() && !self.produce_in_flight() {
                deadline = earliest(deadline, Some(retry_at));
            }
        }
        if let Some(record) = self.unpartitioned.front() {
            deadline = earliest(deadline, Some(record.created + self.config.delivery_timeout));
        }
        earliest(deadline, self.transaction_deadline())
    }
}

/// Numbers a batch for `producer_id`, unless it already is (a retry keeps its
/// sequence numbers, KIP-98).
fn stamp(producer_id: Option<(ProducerId, u16)>, transactional: bool, next_sequence: &mut i32, batch: &mut Batch) -> Option<ProducerStamp> {
    let (id, epoch) = producer_id?;
    if batch.stamped_with != producer_id {
        // Sequences belong to one producer id and epoch; under a new one the
        // batch is numbered afresh.
        batch.base_sequence = None;
        batch.stamped_with = producer_id;
    }
    let record_count = batch.record_count() as i32;
    let base_sequence = *batch.base_sequence.get_or_insert_with(|| {
        let base = Sequence(*next_sequence);
        *next_sequence += record_count;
        base
    });
    Some(ProducerStamp { producer_id: id, producer_epoch: epoch, base_sequence, transactional })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{connect_all, single_partition_metadata};
    use crate::config::{Properties, PropertyValue};
    use crate::net::CloseReason;

    fn producer(properties: &[(&str, i64)]) -> Producer {
        let mut config = Properties::new();
        config.insert("linger.ms".into(), PropertyValue::Int(0));
        config.insert("batch.size".into(), PropertyValue::Int(1));
        for (key, value) in properties {
            config.insert(key.to_string(), PropertyValue::Int(*value));
        }
        Producer::new(ProducerConfig::from_properties(&config).unwrap(), vec![NodeId(1)], 0, 1)
    }

    fn produce_requests(out: &Outbox<ProducerEvent>) -> Vec<(u64, Option<ProducerStamp>, Bytes)> {
        out.sends
            .iter()
            .filter_map(|send| match &send.message {
                Message::ProduceRequest { correlation_id, producer, records, .. } => Some((*correlation_id, *producer, records[0].value.clone())),
                _ => None,
            })
            .collect()
    }

    /// Establishes the connections asked for and answers the metadata and
    /// producer-id requests in `out`, until none is left.
    fn answer_setup(producer: &mut Producer, now: Instant, out: &mut Outbox<ProducerEvent>, producer_id: u64) {
        for _ in 0..4 {
            connect_all(producer, now, out);
            let requests: Vec<Message> = out.sends.drain(..).map(|send| send.message).collect();
            for request in requests {
                match request {
                    Message::MetadataRequest { correlation_id } => {
                        producer.handle_message(now, NodeId(1), Message::MetadataResponse { correlation_id, metadata: single_partition_metadata() }, out);
                    }
                    Message::InitProducerIdRequest { correlation_id } => {
                        producer.handle_message(now, NodeId(1), Message::InitProducerIdResponse { correlation_id, result: Ok((ProducerId(producer_id), 0)) }, out);
                    }
                    other => out.send(NodeId(1), other),
                }
            }
        }
    }

    fn completions(out: &Outbox<ProducerEvent>) -> Vec<(u64, bool, bool)> {
        out.events
            .iter()
            .filter_map(|event| match event {
                ProducerEvent::Completed { handle, result } => Some((*handle, result.is_ok(), result.as_ref().err().is_some_and(|error| error.maybe_written))),
                _ => None,
            })
            .collect()
    }

    /// KIP-360: when the oldest batch is out of order the producer takes a new id.
    /// Batches answered after that go back in the order they were made, so the
    /// new sequence numbers follow send order; and a batch that may already be in
    /// the log is failed with its outcome unknown, never sent again under the new
    /// id (where the broker could not tell it from a new write). Found by
    /// safe-acks-all seeds 1163 (nonmonotonic-send) and 1505 (duplicate) under an
    /// earlier nemesis generator.
    #[test]
    fn a_new_producer_id_keeps_send_order_and_does_not_resend_unresolved_batches() {
        let mut producer = producer(&[]);
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer_setup(&mut producer, Instant::ZERO, &mut out, 7);
        for handle in 0..4 {
            producer.send(Instant::ZERO, handle, "t".into(), None, Bytes::from(format!("v{handle}")), &mut out);
        }
        let sent = produce_requests(&out);
        assert_eq!(sent.len(), 4);
        out.sends.clear();
        // v0, the oldest, is out of order: the broker lost this producer's state.
        // Then v1's answer says it may be in the log, and v2, v3 are out of order.
        let later = Instant::from_micros(1_000_000);
        let answers = [ErrorCode::OutOfOrderSequenceNumber, ErrorCode::RequestTimedOut, ErrorCode::OutOfOrderSequenceNumber, ErrorCode::OutOfOrderSequenceNumber];
        for ((correlation_id, _, _), error) in sent.iter().zip(answers) {
            let response = Message::ProduceResponse { correlation_id: *correlation_id, partition: TopicPartition::new("t", 0), result: Err(error) };
            producer.handle_message(later, NodeId(1), response, &mut out);
        }
        // Once nothing is in flight under the old id, the producer asks for a new one.
        assert!(out.sends.iter().all(|send| matches!(send.message, Message::InitProducerIdRequest { .. })), "{:?}", out.sends);
        out.events.clear();
        let retry = Instant::from_micros(2_000_000);
        answer_setup(&mut producer, retry, &mut out, 8);
        producer.handle_timeout(retry, &mut out);
        let failed_unknown: Vec<u64> = completions(&out).into_iter().filter(|(_, ok, maybe_written)| !ok && *maybe_written).map(|(handle, _, _)| handle).collect();
        assert_eq!(failed_unknown, vec![1], "the batch that may be in the log is failed with its outcome unknown, not resent");
        let resent: Vec<(i32, Bytes)> = produce_requests(&out).into_iter().map(|(_, stamp, value)| (stamp.unwrap().base_sequence.0, value)).collect();
        let values: Vec<&[u8]> = resent.iter().map(|(_, value)| &value[..]).collect();
        assert_eq!(values, vec![&b"v0"[..], b"v2", b"v3"], "resent in the order they were made");
        assert_eq!(resent.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    /// Kafka's Sender on a disconnect: every batch in flight on the connection
    /// fails with NETWORK_EXCEPTION, which is retriable, so each goes again with
    /// its sequence numbers once the producer reconnects; none is reported.
    #[test]
    fn a_reset_connection_resends_its_batches_with_their_sequences() {
        let mut producer = producer(&[]);
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer_setup(&mut producer, Instant::ZERO, &mut out, 7);
        for handle in 0..3 {
            producer.send(Instant::ZERO, handle, "t".into(), None, Bytes::from(format!("v{handle}")), &mut out);
        }
        let first: Vec<i32> = produce_requests(&out).iter().map(|(_, stamp, _)| stamp.unwrap().base_sequence.0).collect();
        out.sends.clear();
        let reset = Instant::from_micros(10_000);
        producer.handle_connection(reset, Destination::new(NodeId(1), Channel::Default), ConnectionEvent::Closed(CloseReason::Reset), &mut out);
        assert!(completions(&out).is_empty(), "nothing is reported: the batches are retried");
        let mut now = reset;
        while produce_requests(&out).len() < 3 {
            now = producer.next_deadline().expect("the producer waits for its backoff");
            producer.handle_timeout(now, &mut out);
            connect_all(&mut producer, now, &mut out);
        }
        let again: Vec<i32> = produce_requests(&out).iter().map(|(_, stamp, _)| stamp.unwrap().base_sequence.0).collect();
        assert_eq!(again, first, "retried under the same producer id with the same sequence numbers");
        assert!(now.saturating_since(reset) < std::time::Duration::from_secs(1), "within the reconnect and retry backoffs");
    }

    /// A broker that stops answering: the request times out after
    /// request.timeout.ms, the connection closes, and the batch is retried.
    #[test]
    fn a_request_timeout_closes_the_connection_and_retries_the_batch() {
        let mut producer = producer(&[("request.timeout.ms", 2_000)]);
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer_setup(&mut producer, Instant::ZERO, &mut out, 7);
        producer.send(Instant::ZERO, 0, "t".into(), None, Bytes::from_static(b"v0"), &mut out);
        assert_eq!(produce_requests(&out).len(), 1);
        out.sends.clear();
        let deadline = producer.next_deadline().expect("the request's timeout");
        assert_eq!(deadline, Instant::from_micros(2_000_000));
        producer.handle_timeout(deadline, &mut out);
        assert!(out.connections.iter().any(|(_, command)| matches!(command, crate::net::ConnectionCommand::Disconnect(_, crate::net::DisconnectReason::RequestTimedOut))));
        assert!(completions(&out).is_empty());
    }
}
