//! Kafka's producer: partitioner, record accumulator with linger and batch size,
//! acks, retries with backoff, delivery timeout, max in flight per connection, and
//! idempotence (KIP-98: a producer id and per-partition sequence numbers, so a
//! retried batch is written once).
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
use crate::protocol::{ErrorCode, Message, Send};
use crate::record::{ProducerStamp, Record};
use crate::time::{earliest, Instant};
use crate::types::{NodeId, Offset, ProducerId, Sequence, TopicPartition};
use accumulator::{InFlight, InFlightRequests, PartitionCounts, PartitionQueues};
use batch::Batch;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Why a send failed, and whether it may be in the log all the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub error: String,
    pub maybe_written: bool,
}

#[derive(Clone, Debug)]
pub enum ProducerOutput {
    Send(Send),
    Completed { handle: u64, result: Result<(TopicPartition, Offset), SendError> },
    /// The current transaction ended (transactional producers only).
    TransactionCompleted { outcome: TransactionOutcome },
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
    unpartitioned: VecDeque<PendingRecord>,
    queues: PartitionQueues,
    /// No queued batch was made before this (None: nothing is queued), so batches
    /// need no expiry check until delivery.timeout.ms after it.
    oldest_queued: Option<Instant>,
    in_flight: InFlightRequests,
    next_batch_id: u64,
    partition_counts: PartitionCounts,
    round_robin: BTreeMap<Arc<str>, RoundRobin>,
    producer_id: Option<(ProducerId, u16)>,
    producer_id_request: Option<(u64, Instant)>,
    next_correlation_id: u64,
    bootstrap: Vec<NodeId>,
    /// Where round-robin starts, so producers do not all begin on partition 0.
    start: u32,
    /// Set when `transactional.id` is (KIP-98).
    transactions: Option<TransactionState>,
    /// The time of the last `handle_timeout` when its drain sent nothing, the
    /// producer has no transaction and nothing touched it since (every other
    /// public method that changes it clears this): a second call at that time
    /// that finds nothing new to expire or partition has nothing to drain either.
    settled_at: Option<Instant>,
}

impl Producer {
    pub fn new(config: ProducerConfig, bootstrap: Vec<NodeId>, start: u32) -> Producer {
        let metadata = MetadataTracker::new(bootstrap.clone(), start as usize, config.metadata_max_age);
        let transactions = config.transactional_id.as_ref().map(|id| TransactionState::new(id.as_str().into(), config.transaction_timeout));
        Producer {
            transactions,
            config,
            metadata,
            unpartitioned: VecDeque::new(),
            queues: PartitionQueues::default(),
            oldest_queued: None,
            in_flight: InFlightRequests::default(),
            next_batch_id: 0,
            partition_counts: PartitionCounts::default(),
            round_robin: BTreeMap::new(),
            producer_id: None,
            producer_id_request: None,
            next_correlation_id: 0,
            bootstrap,
            start,
            settled_at: None,
        }
    }

    /// Records accepted but not yet completed.
    pub fn pending_count(&self) -> usize {
        self.unpartitioned.len()
            + self.queues.values().flat_map(|queue| &queue.batches).map(|batch| batch.handles.len()).sum::<usize>()
            + self.in_flight.values().map(|flight| flight.batch.handles.len()).sum::<usize>()
    }

    /// Starts this producer's correlation ids at `base`, so an application that
    /// runs a consumer beside it on one address can tell their answers apart.
    pub fn set_correlation_base(&mut self, base: u64) {
        self.settled_at = None;
        self.next_correlation_id = self.next_correlation_id.max(base);
    }

    fn correlation(&mut self) -> u64 {
        self.next_correlation_id += 1;
        self.next_correlation_id
    }

    pub fn send(&mut self, now: Instant, handle: u64, topic: Arc<str>, key: Option<Bytes>, value: Bytes, out: &mut Vec<ProducerOutput>) {
        self.settled_at = None;
        self.unpartitioned.push_back(PendingRecord { handle, topic, record: Record { key, value }, created: now });
        self.handle_timeout(now, out);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.metadata.next_deadline();
        for queue in self.queues.values() {
            let Some(batch) = queue.batches.front() else { continue };
            deadline = earliest(deadline, Some(batch.created + self.config.delivery_timeout));
            if queue.blocked {
                continue;
            }
            let ready = if batch.is_closed() { batch.retry_at } else { batch.created + self.config.linger };
            deadline = earliest(deadline, Some(ready.max(batch.retry_at)));
        }
        if let Some(sent) = self.in_flight.oldest_sent() {
            deadline = earliest(deadline, Some(sent + self.config.request_timeout));
        }
        if let Some((_, sent)) = self.producer_id_request {
            deadline = earliest(deadline, Some(sent + self.config.request_timeout.min(std::time::Duration::from_secs(1))));
        }
        if let Some(record) = self.unpartitioned.front() {
            deadline = earliest(deadline, Some(record.created + self.config.delivery_timeout));
        }
        earliest(deadline, self.transaction_deadline())
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        let settled = self.settled_at.take() == Some(now);
        let mut changed = self.expire_requests(now, out);
        self.poll_metadata(now, out);
        changed |= self.partition_pending(now, out);
        changed |= self.expire_batches(now, out);
        if settled && !changed {
            // Nothing changed since the last pass at this time, which sent nothing:
            // the producer-id request, the drain (its blocked partitions included)
            // and a transaction (there is none) would do just what they did then.
            self.settled_at = Some(now);
            return;
        }
        self.init_producer_id(now, out);
        // Checked here, so a producer without transactions never calls in.
        if self.transactions.is_some() {
            self.poll_transaction(now, out);
        }
        let sent = self.drain(now, out);
        // The drain may have found partitions to add to the transaction.
        if self.transactions.is_some() {
            self.poll_transaction(now, out);
        }
        // A zero request timeout would let the producer-id request go again at once.
        if !sent && self.transactions.is_none() && !self.config.request_timeout.is_zero() {
            self.settled_at = Some(now);
        }
    }

    fn poll_metadata(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        let correlation_id = self.correlation();
        let mut sends = Vec::new();
        if self.metadata.poll(now, correlation_id, &mut sends) {
            out.extend(sends.into_iter().map(ProducerOutput::Send));
        }
    }

    /// Kafka's partitioner: murmur2 of the key modulo the partition count, or
    /// round-robin for null keys; records wait until metadata names the partitions.
    /// Whether it took any record off the queue.
    fn partition_pending(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) -> bool {
        let mut changed = false;
        while let Some(pending) = self.unpartitioned.front() {
            let count = self.partition_counts.get(&self.metadata, &pending.topic);
            if count == 0 {
                // Kafka's send() waits for the topic's metadata, asking for it again.
                self.metadata.request_update();
                if now.saturating_since(pending.created) >= self.config.delivery_timeout {
                    let pending = self.unpartitioned.pop_front().expect("front exists");
                    let error = SendError { error: "TimeoutException: topic metadata not available".into(), maybe_written: false };
                    out.push(ProducerOutput::Completed { handle: pending.handle, result: Err(error) });
                    changed = true;
                    continue;
                }
                return changed;
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
            changed = true;
        }
        changed
    }

    /// Adds a record to its partition's open batch, or to a new batch when the
    /// last one was sent or is full.
    fn append(&mut self, partition: TopicPartition, handle: u64, record: Record, created: Instant) {
        let size = record.value.len() + record.key.as_ref().map_or(0, |key| key.len()) + 16;
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

    fn init_producer_id(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        // A transactional producer gets its id from its coordinator (`transactional`).
        if !self.config.enable_idempotence || self.producer_id.is_some() || self.bootstrap.is_empty() || self.transactions.is_some() {
            return;
        }
        if let Some((_, sent)) = self.producer_id_request {
            if now.saturating_since(sent) < self.config.request_timeout.min(std::time::Duration::from_secs(1)) {
                return;
            }
        }
        // KIP-360: a new id only once nothing is in flight under the old one.
        if !self.in_flight.is_empty() {
            return;
        }
        let correlation_id = self.correlation();
        let to = self.bootstrap[(correlation_id as usize + self.start as usize) % self.bootstrap.len()];
        self.producer_id_request = Some((correlation_id, now));
        out.push(ProducerOutput::Send(Send { to, message: Message::InitProducerIdRequest { correlation_id } }));
    }

    /// Sends every batch that is ready, in queue order, within the in-flight
    /// limit; says whether it sent any.
    fn drain(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) -> bool {
        if self.config.enable_idempotence && self.producer_id.is_none() {
            for queue in self.queues.values_mut() {
                queue.blocked = true;
            }
            return false;
        }
        let mut sent = false;
        let Producer { config, metadata, queues, in_flight, producer_id, next_correlation_id, transactions, .. } = self;
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
                if in_flight.count_to(leader) >= limit || queue.window_full(limit) || !transactions.as_mut().is_none_or(|txn| txn.allows(tp)) {
                    queue.blocked = true;
                    break;
                }
                let Some(batch) = queue.batches.front() else { break };
                let full = batch.size_bytes >= config.batch_size;
                let lingered = now >= batch.created + config.linger;
                if now < batch.retry_at || !(batch.is_closed() || full || lingered) {
                    break;
                }
                let mut batch = queue.batches.pop_front().expect("front exists");
                sent = true;
                let records = batch.close();
                batch.attempts += 1;
                let producer = stamp(*producer_id, transactions.is_some(), &mut queue.next_sequence, &mut batch);
                *next_correlation_id += 1;
                let correlation_id = *next_correlation_id;
                let message = Message::ProduceRequest {
                    correlation_id,
                    acks: config.acks,
                    timeout: config.request_timeout,
                    partition: tp.clone(),
                    producer,
                    records,
                    transactional_id: transactions.as_ref().map(|txn| txn.transactional_id.clone()),
                };
                out.push(ProducerOutput::Send(Send { to: leader, message }));
                if config.acks == Acks::None {
                    // Fire and forget: the send counts as done, at offset unknown.
                    for handle in batch.handles.iter() {
                        let error = SendError { error: "acks=0: no acknowledgement".into(), maybe_written: true };
                        out.push(ProducerOutput::Completed { handle, result: Err(error) });
                    }
                } else {
                    if !queue.window.iter().any(|(id, _)| *id == batch.id) {
                        queue.window.push_back((batch.id, false));
                    }
                    in_flight.insert(correlation_id, InFlight { to: leader, batch, sent: now });
                }
            }
        }
        sent
    }

    /// Sequences start again from 0 under a new producer id or epoch.
    fn reset_sequences(&mut self) {
        for queue in self.queues.values_mut() {
            queue.next_sequence = 0;
        }
    }

    pub fn handle_message(&mut self, now: Instant, message: Message, out: &mut Vec<ProducerOutput>) {
        self.settled_at = None;
        if self.handle_transaction_message(now, &message, out) {
            self.handle_timeout(now, out);
            return;
        }
        match message {
            Message::MetadataResponse { correlation_id, metadata } => {
                self.metadata.handle_response(now, correlation_id, metadata);
            }
            Message::InitProducerIdResponse { correlation_id, result } if self.producer_id_request.map(|(id, _)| id) == Some(correlation_id) => {
                self.producer_id_request = None;
                if let Ok(id) = result {
                    self.producer_id = Some(id);
                    self.reset_sequences();
                    self.fail_unresolved_batches(out);
                    for batch in self.queues.values_mut().flat_map(|queue| &mut queue.batches) {
                        batch.base_sequence = None;
                    }
                }
            }
            Message::ProduceResponse { correlation_id, partition, result } => {
                if let Some(flight) = self.in_flight.remove(correlation_id) {
                    debug_assert_eq!(flight.batch.partition, partition);
                    // The batch's partition shares the queue's topic `Arc`, so the
                    // queue is found without comparing the topic's bytes.
                    let oldest = self.queues.get(&flight.batch.partition).and_then(|queue| queue.window.front()).map(|(id, _)| *id) == Some(flight.batch.id);
                    if oldest && result == Err(ErrorCode::OutOfOrderSequenceNumber) && self.producer_id.is_some() && self.transactions.is_none() {
                        // KIP-360: the oldest outstanding batch is out of order, so the
                        // broker lost this producer's state (a truncated log): take a
                        // new producer id and number the batches afresh.
                        tracing::info!(partition = %partition, "producer resets its sequence numbers after OutOfOrderSequence");
                        self.producer_id = None;
                    }
                    self.complete(now, flight.batch, result.map_err(|error| (error, error.maybe_written())), out);
                }
            }
            _ => {}
        }
        self.handle_timeout(now, out);
    }

    /// Whether any request timed out.
    fn expire_requests(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) -> bool {
        let mut changed = false;
        while let Some(flight) = self.in_flight.pop_expired(now, self.config.request_timeout) {
            self.complete(now, flight.batch, Err((ErrorCode::NetworkTimeout, true)), out);
            changed = true;
        }
        changed
    }

    /// Marks a batch completed (acknowledged or failed for good) and slides its
    /// partition's window.
    fn completed(&mut self, partition: &TopicPartition, batch_id: u64) {
        if let Some(queue) = self.queues.get_mut(partition) {
            queue.completed(batch_id);
        }
    }

    fn complete(&mut self, now: Instant, mut batch: Batch, result: Result<Offset, (ErrorCode, bool)>, out: &mut Vec<ProducerOutput>) {
        let (error, maybe_written) = match result {
            Ok(base) => {
                self.completed(&batch.partition, batch.id);
                for (index, handle) in batch.handles.iter().enumerate() {
                    let offset = Offset(base.0 + index as u64);
                    out.push(ProducerOutput::Completed { handle, result: Ok((batch.partition.clone(), offset)) });
                }
                return;
            }
            Err(failure) => failure,
        };
        batch.maybe_written |= maybe_written;
        if matches!(error, ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch | ErrorCode::UnknownTopicOrPartition | ErrorCode::NetworkTimeout) {
            self.metadata.request_update();
        }
        let expired = now.saturating_since(batch.created) >= self.config.delivery_timeout;
        if error.is_retriable() && batch.attempts <= self.config.retries && !expired {
            batch.retry_at = now + self.config.retry_backoff;
            self.requeue(batch);
            return;
        }
        self.fail(batch, format!("{error}"), out);
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

    fn fail(&mut self, batch: Batch, error: String, out: &mut Vec<ProducerOutput>) {
        self.completed(&batch.partition, batch.id);
        if self.transactions.is_some() {
            // In a transaction a failed send makes the transaction abortable; the
            // abort bumps the epoch, which renews the sequences (KIP-98, KIP-890).
            let fenced = error.contains("ProducerFenced") || error.contains("InvalidProducerEpoch");
            self.transaction_send_failed(&error, fenced);
        } else if batch.maybe_written && self.config.enable_idempotence && batch.stamped_with == self.producer_id {
            // KIP-360: after an unknown outcome the sequence space is suspect; start anew.
            self.producer_id = None;
        }
        for handle in batch.handles.iter() {
            let error = SendError { error: error.clone(), maybe_written: batch.maybe_written };
            out.push(ProducerOutput::Completed { handle, result: Err(error) });
        }
    }

    /// KIP-360: under a new producer id the broker cannot recognise a retry, so a
    /// batch that may already be in the log is failed to the application (its
    /// outcome unknown) instead of being sent again as a duplicate.
    fn fail_unresolved_batches(&mut self, out: &mut Vec<ProducerOutput>) {
        let mut unresolved = Vec::new();
        for queue in self.queues.values_mut() {
            let (maybe_written, rest): (VecDeque<Batch>, VecDeque<Batch>) =
                queue.batches.drain(..).partition(|batch| batch.maybe_written && batch.stamped_with.is_some());
            queue.batches = rest;
            unresolved.extend(maybe_written);
        }
        for batch in unresolved {
            self.fail(batch, "outcome unknown: the producer took a new id, so the batch cannot be retried safely".into(), out);
        }
    }

    /// Whether any batch expired.
    fn expire_batches(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) -> bool {
        let timeout = self.config.delivery_timeout;
        if self.oldest_queued.is_none_or(|oldest| now.saturating_since(oldest) < timeout) {
            return false;
        }
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.batches.front().is_some_and(|batch| now.saturating_since(batch.created) >= timeout) {
                expired.push(queue.batches.pop_front().expect("front exists"));
            }
        }
        self.oldest_queued = self.queues.values().flat_map(|queue| &queue.batches).map(|batch| batch.created).min();
        let changed = !expired.is_empty();
        for batch in expired {
            let error = format!("TimeoutException: expiring {} record(s) after delivery.timeout.ms", batch.handles.len());
            self.fail(batch, error, out);
        }
        changed
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
    use crate::config::{Properties, PropertyValue};
    use crate::protocol::{ClusterMetadata, PartitionState};
    use crate::types::{LeaderEpoch, PartitionEpoch};

    fn producer() -> Producer {
        let mut properties = Properties::new();
        properties.insert("linger.ms".into(), PropertyValue::Int(0));
        properties.insert("batch.size".into(), PropertyValue::Int(1));
        Producer::new(ProducerConfig::from_properties(&properties).unwrap(), vec![NodeId(1)], 0)
    }

    fn produce_requests(out: &[ProducerOutput]) -> Vec<(u64, Option<ProducerStamp>, Bytes)> {
        out.iter()
            .filter_map(|output| match output {
                ProducerOutput::Send(Send { message: Message::ProduceRequest { correlation_id, producer, records, .. }, .. }) => {
                    Some((*correlation_id, *producer, records[0].value.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Answers the metadata and producer-id requests in `out`.
    fn answer_setup(producer: &mut Producer, now: Instant, out: &mut Vec<ProducerOutput>, producer_id: u64) {
        let requests: Vec<Message> = out.iter().filter_map(|output| if let ProducerOutput::Send(send) = output { Some(send.message.clone()) } else { None }).collect();
        for request in requests {
            match request {
                Message::MetadataRequest { correlation_id } => {
                    let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
                    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() });
                    producer.handle_message(now, Message::MetadataResponse { correlation_id, metadata }, out);
                }
                Message::InitProducerIdRequest { correlation_id } => {
                    producer.handle_message(now, Message::InitProducerIdResponse { correlation_id, result: Ok((ProducerId(producer_id), 0)) }, out);
                }
                _ => {}
            }
        }
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
        let mut producer = producer();
        let mut out = Vec::new();
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer_setup(&mut producer, Instant::ZERO, &mut out, 7);
        answer_setup(&mut producer, Instant::ZERO, &mut out, 7);
        out.clear();
        for handle in 0..4 {
            producer.send(Instant::ZERO, handle, "t".into(), None, Bytes::from(format!("v{handle}")), &mut out);
        }
        let sent = produce_requests(&out);
        assert_eq!(sent.len(), 4);
        out.clear();
        // v0, the oldest, is out of order: the broker lost this producer's state.
        // Then v1's answer says it may be in the log, and v2, v3 are out of order.
        let later = Instant::from_micros(1_000_000);
        let answers = [ErrorCode::OutOfOrderSequenceNumber, ErrorCode::RequestTimedOut, ErrorCode::OutOfOrderSequenceNumber, ErrorCode::OutOfOrderSequenceNumber];
        for ((correlation_id, _, _), error) in sent.iter().zip(answers) {
            let response = Message::ProduceResponse { correlation_id: *correlation_id, partition: TopicPartition::new("t", 0), result: Err(error) };
            producer.handle_message(later, response, &mut out);
        }
        out.clear();
        let retry = Instant::from_micros(2_000_000);
        producer.handle_timeout(retry, &mut out);
        answer_setup(&mut producer, retry, &mut out, 8);
        let failed_unknown: Vec<u64> = out
            .iter()
            .filter_map(|output| match output {
                ProducerOutput::Completed { handle, result: Err(error) } if error.maybe_written => Some(*handle),
                _ => None,
            })
            .collect();
        assert_eq!(failed_unknown, vec![1], "the batch that may be in the log is failed with its outcome unknown, not resent");
        let resent: Vec<(i32, Bytes)> = produce_requests(&out).into_iter().map(|(_, stamp, value)| (stamp.unwrap().base_sequence.0, value)).collect();
        let values: Vec<&[u8]> = resent.iter().map(|(_, value)| &value[..]).collect();
        assert_eq!(values, vec![&b"v0"[..], b"v2", b"v3"], "resent in the order they were made");
        assert_eq!(resent.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}

/// The shortcuts of `handle_timeout` (the settled pass) change nothing: two
/// producers fed the same calls, one of which never takes the shortcut, give the
/// same outputs and deadlines, over retries, timeouts, leader changes and new
/// producer ids.
#[cfg(test)]
mod settled_tests {
    use super::*;
    use crate::config::{Properties, PropertyValue};
    use crate::protocol::{ClusterMetadata, PartitionState};
    use crate::types::{LeaderEpoch, PartitionEpoch};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Send { key: Option<u8>, after_ms: u16 },
        Wake { after_ms: u16 },
        WakeAgain,
        Answer { pick: usize, outcome: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (proptest::option::of(0u8..6), 0u16..30).prop_map(|(key, after_ms)| Step::Send { key, after_ms }),
            2 => (0u16..1500).prop_map(|after_ms| Step::Wake { after_ms }),
            2 => Just(Step::WakeAgain),
            3 => (any::<usize>(), 0u8..8).prop_map(|(pick, outcome)| Step::Answer { pick, outcome }),
        ]
    }

    fn producer(idempotent: bool) -> Producer {
        let mut properties = Properties::new();
        let settings = [("linger.ms", 5), ("batch.size", 40), ("max.in.flight.requests.per.connection", 2), ("request.timeout.ms", 1000), ("delivery.timeout.ms", 4000)];
        for (key, value) in settings {
            properties.insert(key.into(), PropertyValue::Int(value));
        }
        if !idempotent {
            properties.insert("acks".into(), PropertyValue::Text("1".into()));
        }
        Producer::new(ProducerConfig::from_properties(&properties).unwrap(), vec![NodeId(1), NodeId(2)], 0)
    }

    /// The answer to `request`; `outcome` picks success, an error, or leaders.
    fn answer(request: &Message, outcome: u8, version: u64) -> Option<Message> {
        Some(match request {
            Message::MetadataRequest { correlation_id } => {
                let partitions = (0..3)
                    .map(|index| {
                        let leader = match (u32::from(outcome) + index) % 4 {
                            0 => None,
                            number => Some(NodeId(1 + number % 2)),
                        };
                        let state = PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader, leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![] };
                        (TopicPartition::new("t", index), state)
                    })
                    .collect();
                Message::MetadataResponse { correlation_id: *correlation_id, metadata: Arc::new(ClusterMetadata { version, brokers: vec![NodeId(1), NodeId(2)], partitions }) }
            }
            Message::InitProducerIdRequest { correlation_id } => {
                Message::InitProducerIdResponse { correlation_id: *correlation_id, result: Ok((ProducerId(version), 0)) }
            }
            Message::ProduceRequest { correlation_id, partition, .. } => {
                let result = match outcome {
                    0..=3 => Ok(Offset(version)),
                    4 => Err(ErrorCode::NotLeaderOrFollower),
                    5 => Err(ErrorCode::RequestTimedOut),
                    6 => Err(ErrorCode::OutOfOrderSequenceNumber),
                    _ => Err(ErrorCode::NotEnoughReplicas),
                };
                Message::ProduceResponse { correlation_id: *correlation_id, partition: partition.clone(), result }
            }
            _ => return None,
        })
    }

    proptest! {
        #[test]
        fn the_settled_pass_changes_nothing(steps in proptest::collection::vec(step(), 1..120), idempotent in any::<bool>()) {
            let (mut fast, mut full) = (producer(idempotent), producer(idempotent));
            let topic: Arc<str> = "t".into();
            let mut now = Instant::ZERO;
            let mut requests: Vec<Message> = Vec::new();
            for (number, step) in steps.into_iter().enumerate() {
                let (mut fast_out, mut full_out) = (Vec::new(), Vec::new());
                full.settled_at = None;
                match step {
                    Step::Send { key, after_ms } => {
                        now = now + std::time::Duration::from_millis(after_ms.into());
                        let key = key.map(|key| Bytes::from(vec![key]));
                        let value = Bytes::from(format!("v{number}"));
                        fast.send(now, number as u64, topic.clone(), key.clone(), value.clone(), &mut fast_out);
                        full.send(now, number as u64, topic.clone(), key, value, &mut full_out);
                    }
                    Step::Wake { after_ms } => {
                        now = now + std::time::Duration::from_millis(after_ms.into());
                        fast.handle_timeout(now, &mut fast_out);
                        full.handle_timeout(now, &mut full_out);
                    }
                    Step::WakeAgain => {
                        fast.handle_timeout(now, &mut fast_out);
                        full.handle_timeout(now, &mut full_out);
                    }
                    Step::Answer { pick, outcome } => {
                        if requests.is_empty() {
                            continue;
                        }
                        let request = requests.remove(pick % requests.len());
                        if let Some(response) = answer(&request, outcome, number as u64) {
                            fast.handle_message(now, response.clone(), &mut fast_out);
                            full.handle_message(now, response, &mut full_out);
                        }
                    }
                }
                prop_assert_eq!(format!("{fast_out:?}"), format!("{full_out:?}"));
                prop_assert_eq!(fast.next_deadline(), full.next_deadline());
                prop_assert_eq!(fast.pending_count(), full.pending_count());
                requests.extend(fast_out.into_iter().filter_map(|output| match output {
                    ProducerOutput::Send(send) => Some(send.message),
                    _ => None,
                }));
            }
        }
    }

    /// A second wake at the same time after a pass that sent nothing takes the
    /// shortcut, and still uses a correlation id as the full pass would.
    #[test]
    fn a_repeated_wake_is_settled_and_still_counts_its_correlation_id() {
        let mut producer = producer(true);
        let mut out = Vec::new();
        producer.handle_timeout(Instant::ZERO, &mut out);
        let correlation_id = producer.next_correlation_id;
        out.clear();
        producer.handle_timeout(Instant::ZERO, &mut out);
        assert!(out.is_empty());
        assert_eq!(producer.settled_at, Some(Instant::ZERO));
        assert_eq!(producer.next_correlation_id, correlation_id + 1);
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"v"), &mut out);
        assert_eq!(producer.settled_at, Some(Instant::ZERO), "the send's own pass settles again: nothing could be sent");
    }
}
