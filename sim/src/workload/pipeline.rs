//! A consume-transform-produce pipeline member (DESIGN §4 `[[pipelines]]`): a
//! group consumer on `from` and a producer on `to`. Each input record becomes
//! one output record with the input's key and the input's value in a derivable
//! form (`Value::pipeline_output`), so checkers match every output to its input.
//!
//! The member works one batch at a time, fetching paused while a batch is out:
//! - at-least-once (`transactional = false`): send the outputs (acks=all,
//!   idempotent), wait for every acknowledgement, then commit the batch's offsets.
//!   A crash between the two makes the next owner produce the batch again:
//!   duplicates in the output, which `eos-violation` finds.
//! - exactly-once (`transactional = true`, KIP-98 + KIP-447): begin a
//!   transaction, send the outputs, add the group's offsets to the transaction
//!   (AddOffsetsToTxn), commit the offsets in it (TxnOffsetCommit with this
//!   member's generation and member id), then commit the transaction. Any error
//!   aborts it, and the consumer rewinds to the committed offsets, reading them
//!   with require_stable. Each member's `transactional.id` is
//!   `<group>-pipeline-<number>`, the same after a restart, so a restarted member
//!   fences its zombie.
//!
//! The history gets the polls, seeks, assignments and revocations of the
//! consumer; every output as a send; at-least-once commits (and the processing
//! they cover); and each transaction with its output values and outcome.

use crate::invariants::Invariants;
use crate::recorder::Recorder;
use crate::history::{OpBody, OpType, PolledRecord, Value};
use crate::scenario::PipelineSpec;
use bytes::Bytes;
use kafsim_model::client::consumer::{Consumer, ConsumerEvent};
use kafsim_model::client::producer::{Producer, ProducerEvent, TransactionOutcome};
use kafsim_model::coordinator::group::protocol::{Generation, MemberId};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::error::ErrorCode;
use kafsim_model::{Instant, NodeId, Offset, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// What outlives a member's restarts: its send counter, the sends in flight and
/// the open transaction, which become `info` when the process dies.
#[derive(Debug, Default)]
pub struct PipelineProgress {
    next_handle: u64,
    pending: BTreeMap<u64, Value>,
    next_transaction: u64,
    open_transaction: Option<(u64, Vec<Value>)>,
}

/// What a process that ends (crashed, or exited) left in flight: its outcome
/// is unknown, so it is recorded as `info`.
fn abandon(now: Instant, recorder: &Recorder, progress: &Mutex<PipelineProgress>, reason: &str) {
    let mut state = progress.lock().expect("progress lock");
    for (_, value) in std::mem::take(&mut state.pending) {
        recorder.record(now, OpType::Info, OpBody::Send { value, partition: None, offset: None, error: Some(reason.into()) });
    }
    if let Some((number, values)) = state.open_transaction.take() {
        recorder.record(now, OpType::Info, OpBody::Txn { number, values, error: Some(reason.into()) });
    }
}

/// One polled input record.
#[derive(Clone, Debug)]
struct Input {
    partition: TopicPartition,
    offset: Offset,
    key: Option<Bytes>,
    value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Outputs sent, acknowledgements awaited.
    Producing,
    /// at-least-once: the offsets commit is wanted or in flight.
    Committing { sent: bool },
    /// exactly-once: TxnOffsetCommit wanted (after AddOffsetsToTxn) or in flight.
    CommittingOffsets { sent: bool },
    /// exactly-once: EndTxn asked for; the outcome is awaited.
    Ending,
}

struct Batch {
    /// The consumer's generation and member id when the batch was polled
    /// (`consumer.groupMetadata()`): TxnOffsetCommit carries them (KIP-447).
    group_metadata: Option<(Generation, MemberId)>,
    inputs: Vec<Input>,
    handles: BTreeSet<u64>,
    failed: Option<String>,
    step: Step,
}

pub struct PipelineWorkload {
    recorder: Recorder,
    invariants: Arc<Invariants>,
    group: Arc<str>,
    to: Arc<str>,
    transactional: bool,
    pub consumer: Consumer,
    pub producer: Producer,
    progress: Arc<Mutex<PipelineProgress>>,
    pub consumer_out: Outbox<ConsumerEvent>,
    pub producer_out: Outbox<ProducerEvent>,
    /// Polled, not yet in a batch.
    queued: Vec<Input>,
    batch: Option<Batch>,
    /// Partitions an eager rebalance revoked while a batch read from them was
    /// open: the batch still commits their offsets before the member rejoins.
    revoking: Vec<TopicPartition>,
}

impl PipelineWorkload {
    /// A new incarnation of member `number` of `spec`, whose consumer and
    /// producer are the given clients: what the last incarnation left in flight
    /// becomes `info` (its outcome is unknown), then the member's start is recorded.
    pub fn start(now: Instant, recorder: Recorder, invariants: Arc<Invariants>, spec: &PipelineSpec, (consumer, producer): (Consumer, Producer), progress: Arc<Mutex<PipelineProgress>>, endpoints: (NodeId, NodeId)) -> PipelineWorkload {
        abandon(now, &recorder, &progress, "pipeline process crashed");
        recorder.record(now, OpType::Invoke, OpBody::ClientStart);
        let (consumer_endpoint, producer_endpoint) = endpoints;
        // Kafka Streams commits (or aborts) the open transaction of its revoked
        // tasks in onPartitionsRevoked, before the member rejoins. The
        // at-least-once member is a plain poll-produce-commit loop with no
        // rebalance listener: it rejoins at once, and its batch is read again.
        let mut consumer = consumer;
        if spec.transactional {
            consumer.hold_join_on_revoke();
        }
        PipelineWorkload {
            recorder,
            invariants,
            group: spec.group.as_str().into(),
            to: spec.to.as_str().into(),
            transactional: spec.transactional,
            consumer,
            producer,
            progress,
            consumer_out: Outbox::new(consumer_endpoint),
            producer_out: Outbox::new(producer_endpoint),
            queued: Vec::new(),
            batch: None,
            revoking: Vec::new(),
        }
    }

    /// The process stops for good (a zombie fenced by its successor): what it
    /// left in flight becomes `info`, as a crash's would.
    pub fn exit(&mut self, now: Instant) {
        abandon(now, &self.recorder, &self.progress, "fenced by its successor: the process exited");
        self.batch = None;
        self.queued.clear();
        self.revoking.clear();
    }

    /// Nothing polled is left unprocessed, and no send or transaction is pending.
    pub fn settled(&self) -> bool {
        self.batch.is_none() && self.queued.is_empty() && self.progress.lock().expect("progress lock").pending.is_empty()
    }

    pub fn is_stable(&self) -> bool {
        self.consumer.group().is_some_and(|member| member.is_stable())
    }

    fn record(&self, now: Instant, kind: OpType, body: OpBody) {
        self.recorder.record(now, kind, body);
    }

    /// Carries out what the clients reported and moves the batch on, then
    /// hands the clients' sends and connections to `wire`.
    pub fn step(&mut self, now: Instant, wire: &mut Outbox<()>) {
        // Bounded: each round either carries out events or moves the batch on.
        for _ in 0..256 {
            let progressed = self.advance(now);
            if !progressed && self.consumer_out.events.is_empty() && self.producer_out.events.is_empty() {
                break;
            }
            for event in std::mem::take(&mut self.consumer_out.events) {
                self.handle_consumer_event(now, event);
            }
            for event in std::mem::take(&mut self.producer_out.events) {
                self.handle_producer_event(now, event);
            }
        }
        self.consumer.set_paused(self.batch.is_some());
        // Each client's sends and connections leave from its own endpoint.
        for out in [&mut self.consumer_out.sends, &mut self.producer_out.sends] {
            wire.sends.append(out);
        }
        wire.connections.append(&mut self.consumer_out.connections);
        wire.connections.append(&mut self.producer_out.connections);
    }

    fn handle_consumer_event(&mut self, now: Instant, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Records(records) => {
                let inputs: Vec<Input> = records
                    .into_iter()
                    .filter_map(|(partition, offset, record)| Value::decode(&record.value).map(|value| Input { partition, offset, key: record.key.clone(), value }))
                    .collect();
                let polled = inputs.iter().map(|input| PolledRecord { partition: input.partition.clone(), offset: input.offset, value: input.value }).collect();
                self.record(now, OpType::Ok, OpBody::Poll { records: polled });
                self.queued.extend(inputs);
            }
            ConsumerEvent::Seek { partition, offset, reason } => {
                self.queued.retain(|input| input.partition != partition);
                self.record(now, OpType::Ok, OpBody::Seek { partition, offset, reason: reason.to_string() });
            }
            ConsumerEvent::Error { partition, error } => {
                let reason = format!("{error}: position lost, auto.offset.reset=none");
                self.record(now, OpType::Fail, OpBody::Seek { partition, offset: Offset(0), reason });
            }
            ConsumerEvent::Assigned { generation, partitions } => {
                self.record(now, OpType::Ok, OpBody::Assign { group: self.group.clone(), generation: generation.0, partitions });
            }
            ConsumerEvent::Revoked { generation, partitions, reason } => {
                self.queued.retain(|input| !partitions.contains(&input.partition));
                if self.consumer.group().is_some_and(|member| member.is_revoking()) {
                    self.revoking.extend(partitions.iter().cloned());
                }
                self.record(now, OpType::Ok, OpBody::Revoke { group: self.group.clone(), generation: generation.0, partitions, reason: reason.to_string() });
            }
            ConsumerEvent::CommitCompleted { generation, offsets, result, auto } => self.commit_completed(now, generation.0, offsets, result, auto),
        }
    }

    fn handle_producer_event(&mut self, now: Instant, event: ProducerEvent) {
        match event {
            ProducerEvent::Completed { handle, result } => {
                let Some(value) = self.progress.lock().expect("progress lock").pending.remove(&handle) else { return };
                let (kind, body) = match result {
                    Ok((partition, offset)) => (OpType::Ok, OpBody::Send { value, partition: Some(partition), offset: Some(offset), error: None }),
                    Err(error) => {
                        let kind = if error.maybe_written { OpType::Info } else { OpType::Fail };
                        if let Some(batch) = self.batch.as_mut().filter(|batch| batch.handles.contains(&handle)) {
                            batch.failed.get_or_insert_with(|| error.failure.to_string());
                        }
                        (kind, OpBody::Send { value, partition: None, offset: None, error: Some(error.failure.to_string()) })
                    }
                };
                if let Some(batch) = &mut self.batch {
                    batch.handles.remove(&handle);
                }
                self.record(now, kind, body);
            }
            ProducerEvent::TransactionCompleted { outcome } => {
                let open = self.progress.lock().expect("progress lock").open_transaction.take();
                if let Some((number, values)) = open {
                    let (kind, error) = match &outcome {
                        TransactionOutcome::Committed => (OpType::Ok, None),
                        TransactionOutcome::Aborted => (OpType::Fail, Some("aborted".to_string())),
                        TransactionOutcome::Unknown(error) => (OpType::Info, Some(error.clone())),
                    };
                    self.record(now, kind, OpBody::Txn { number, values, error });
                }
                if self.batch.is_some() {
                    self.batch = None;
                    if outcome != TransactionOutcome::Committed {
                        // KIP-98: after an abort the application seeks back to the
                        // committed offsets, which it reads with require_stable (KIP-447).
                        self.rewind(now);
                    }
                }
            }
        }
    }

    fn rewind(&mut self, now: Instant) {
        self.queued.clear();
        self.consumer.rewind_to_committed();
        self.record(now, OpType::Info, OpBody::ClientStart);
    }

    /// Moves the batch on: starts one, or takes its next step once the last is
    /// done. True if anything changed.
    fn advance(&mut self, now: Instant) -> bool {
        if self.batch.is_none() && !self.revoking.is_empty() && !self.consumer.group().is_some_and(|member| member.is_revoking()) {
            self.revoking.clear();
        }
        if self.batch.is_none() && self.consumer.group().is_some_and(|member| member.is_revoking()) {
            // The batch of the revoked partitions is over (committed, aborted
            // or given up): the member rejoins.
            self.revoking.clear();
            self.consumer.revocation_done(now, &mut self.consumer_out);
            return true;
        }
        let before = self.batch.as_ref().map(|batch| batch.step);
        let started = self.batch.is_some();
        self.advance_once(now);
        started != self.batch.is_some() || before != self.batch.as_ref().map(|batch| batch.step)
    }

    fn advance_once(&mut self, now: Instant) {
        let Some(batch) = &self.batch else {
            return self.start_batch(now);
        };
        let step = batch.step;
        let produced = batch.handles.is_empty();
        let failed = batch.failed.clone();
        match (step, self.transactional) {
            (Step::Producing, _) if !produced => {}
            (Step::Producing, false) if failed.is_some() => {
                // Not every output is in: read the batch again from the committed offsets.
                self.batch = None;
                self.rewind(now);
            }
            (Step::Producing, false) => {
                let records = batch.inputs.iter().map(|input| PolledRecord { partition: input.partition.clone(), offset: input.offset, value: input.value }).collect();
                self.record(now, OpType::Ok, OpBody::Process { group: self.group.clone(), records });
                self.set_step(Step::Committing { sent: false });
            }
            (Step::Committing { sent: false }, false) => self.commit_offsets(now),
            (Step::Producing, true) if failed.is_some() => self.abort(now),
            // AddOffsetsToTxn (or AddPartitionsToTxn) failed for good, fenced
            // say: the offsets can never join the transaction, which can only
            // abort. Kafka's sendOffsetsToTransaction would throw here.
            (Step::Producing | Step::CommittingOffsets { sent: false }, true) if self.producer.transaction_doomed() => self.abort(now),
            (Step::Producing, true) => self.set_step(Step::CommittingOffsets { sent: false }),
            (Step::CommittingOffsets { sent: false }, true) => self.commit_offsets_in_transaction(now),
            _ => {}
        }
    }

    fn set_step(&mut self, step: Step) {
        if let Some(batch) = &mut self.batch {
            batch.step = step;
        }
    }

    fn start_batch(&mut self, now: Instant) {
        if self.queued.is_empty() || !self.is_stable() {
            return;
        }
        if self.transactional && !self.producer.is_ready_for_transaction() {
            return;
        }
        let group_metadata = self.consumer.group().and_then(|member| Some((member.generation(), member.member_id()?.clone())));
        let inputs = std::mem::take(&mut self.queued);
        let outputs: Vec<Value> = inputs.iter().map(|input| input.value.pipeline_output()).collect();
        if self.transactional {
            self.producer.begin_transaction().expect("ready for a transaction");
            let number = {
                let mut progress = self.progress.lock().expect("progress lock");
                let number = progress.next_transaction;
                progress.next_transaction += 1;
                progress.open_transaction = Some((number, outputs.clone()));
                number
            };
            self.record(now, OpType::Invoke, OpBody::Txn { number, values: outputs.clone(), error: None });
        }
        let mut handles = BTreeSet::new();
        for (input, value) in inputs.iter().zip(&outputs) {
            let handle = {
                let mut progress = self.progress.lock().expect("progress lock");
                let handle = progress.next_handle;
                progress.next_handle += 1;
                progress.pending.insert(handle, *value);
                handle
            };
            handles.insert(handle);
            self.record(now, OpType::Invoke, OpBody::Send { value: *value, partition: None, offset: None, error: None });
            self.producer.send(now, handle, self.to.clone(), input.key.clone(), value.encode(), &mut self.producer_out);
        }
        if self.transactional {
            self.producer.send_offsets_to_transaction(self.group.clone());
            self.producer.handle_timeout(now, &mut self.producer_out);
        }
        self.batch = Some(Batch { group_metadata, inputs, handles, failed: None, step: Step::Producing });
    }

    /// The next offset to read of each owned partition in the batch.
    fn batch_offsets(&self) -> Vec<(TopicPartition, Offset)> {
        let mut owned: Vec<TopicPartition> = self.consumer.group().map(|member| member.owned().to_vec()).unwrap_or_default();
        owned.extend(self.revoking.iter().cloned());
        let mut offsets: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
        for input in self.batch.iter().flat_map(|batch| &batch.inputs) {
            let next = offsets.entry(input.partition.clone()).or_insert(input.offset.next());
            *next = (*next).max(input.offset.next());
        }
        offsets.into_iter().filter(|(partition, _)| owned.contains(partition)).collect()
    }

    /// at-least-once: every output acknowledged, the offsets are committed.
    fn commit_offsets(&mut self, now: Instant) {
        if !self.consumer.can_commit() {
            return;
        }
        let offsets = self.batch_offsets();
        if offsets.is_empty() {
            // Every partition of the batch was revoked: its next owner reads it again.
            self.batch = None;
            return;
        }
        let generation = self.consumer.group().map_or(-1, |member| member.generation().0);
        if self.consumer.commit(now, offsets.clone(), &mut self.consumer_out) {
            self.record(now, OpType::Invoke, OpBody::Commit { group: self.group.clone(), generation, offsets, error: None });
            self.set_step(Step::Committing { sent: true });
        }
    }

    /// exactly-once: once AddOffsetsToTxn was answered, TxnOffsetCommit (KIP-447).
    fn commit_offsets_in_transaction(&mut self, now: Instant) {
        if !self.producer.offsets_added(&self.group) || !self.consumer.can_commit() {
            return;
        }
        let Some(identity) = self.producer.transactional_identity() else { return };
        let Some(group_metadata) = self.batch.as_ref().and_then(|batch| batch.group_metadata.clone()) else { return self.abort(now) };
        let offsets = self.batch_offsets();
        if offsets.is_empty() {
            return self.abort(now);
        }
        if self.consumer.txn_offset_commit(now, identity, group_metadata, offsets, &mut self.consumer_out) {
            self.set_step(Step::CommittingOffsets { sent: true });
        }
    }

    fn abort(&mut self, now: Instant) {
        self.set_step(Step::Ending);
        self.producer.abort_transaction(now, &mut self.producer_out);
    }

    fn commit_completed(&mut self, now: Instant, generation: i32, offsets: Vec<(TopicPartition, Offset)>, result: Result<(), ErrorCode>, auto: bool) {
        if auto {
            return;
        }
        let step = self.batch.as_ref().map(|batch| batch.step);
        match step {
            Some(Step::Committing { sent: true }) => {
                let (kind, error) = super::commit_outcome(result);
                if kind == OpType::Ok {
                    self.invariants.offsets_committed(&self.group, generation, &offsets);
                }
                self.record(now, kind, OpBody::Commit { group: self.group.clone(), generation, offsets, error });
                // A failed commit leaves the batch to be read again by whoever owns
                // its partitions next: at least once.
                self.batch = None;
            }
            Some(Step::CommittingOffsets { sent: true }) => match result {
                Ok(()) => {
                    self.set_step(Step::Ending);
                    self.producer.commit_transaction(now, &mut self.producer_out);
                }
                Err(_) => self.abort(now),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
