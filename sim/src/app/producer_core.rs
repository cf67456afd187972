//! The model producer behind a `FutureProducer`, and what it records: every
//! send as invoke, then ok, fail or info; every transaction from
//! `begin_transaction` to its outcome; and, for a record made from an input
//! (`AppContext::derived_from`), that input's processing once the output is
//! in for sure (acknowledged, or its transaction committed).

use super::shared::{AppRegistry, Derived, ProducerProgress};
use crate::history::{OpBody, OpType, PolledRecord, Value};
use crate::node::Wire;
use crate::recorder::Recorder;
use kafsim_model::client::producer::{Producer, ProducerEvent, SendError, TransactionOutcome, TransactionPhase};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::record::Record;
use kafsim_model::{Instant, NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A group's offsets, committed in a transaction (TxnOffsetCommit).
type GroupOffsets = (Arc<str>, Vec<(TopicPartition, Offset)>);

/// The current transaction's inputs and offsets, for when it commits.
#[derive(Default)]
struct OpenTransaction {
    inputs: Vec<(Arc<str>, PolledRecord)>,
    offsets: Vec<GroupOffsets>,
}

pub(crate) struct ProducerCore {
    pub(crate) producer: Producer,
    out: Outbox<ProducerEvent>,
    recorder: Recorder,
    /// The producer number of the values this client writes.
    number: u32,
    progress: Arc<Mutex<ProducerProgress>>,
    registry: Arc<Mutex<AppRegistry>>,
    /// Sends completed, until their caller takes the result.
    pub(crate) done: BTreeMap<u64, Result<(TopicPartition, Offset), SendError>>,
    /// Sends made from an input, outside a transaction: the input is processed once the send is acknowledged.
    derived: BTreeMap<u64, Derived>,
    transaction: OpenTransaction,
    /// The outcome of the last transaction, until `commit_transaction` or `abort_transaction` takes it.
    pub(crate) outcome: Option<TransactionOutcome>,
    /// The producer was fenced (KIP-98): it is dead, as rdkafka's is after a
    /// fatal error. Left running, the model would take the id back and fence
    /// the instance that fenced it.
    pub(crate) fenced: bool,
}

impl ProducerCore {
    pub(crate) fn new(producer: Producer, endpoint: NodeId, recorder: Recorder, number: u32, progress: Arc<Mutex<ProducerProgress>>, registry: Arc<Mutex<AppRegistry>>) -> ProducerCore {
        ProducerCore {
            producer,
            out: Outbox::new(endpoint),
            recorder,
            number,
            progress,
            registry,
            done: BTreeMap::new(),
            derived: BTreeMap::new(),
            transaction: OpenTransaction::default(),
            outcome: None,
            fenced: false,
        }
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.producer.transaction_phase().is_some()
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.producer.transaction_phase() == Some(TransactionPhase::InTransaction)
    }

    /// Sends `record` to `topic`: its value is `derived`'s input's output value,
    /// or this producer's next own. Returns the send's handle and its value.
    pub(crate) fn send(&mut self, now: Instant, topic: Arc<str>, mut record: Record, derived: Option<Derived>, extra_headers: impl FnOnce(Value) -> kafsim_model::record::RecordHeaders) -> u64 {
        let (handle, value) = {
            let mut progress = self.progress.lock().expect("progress lock");
            let handle = progress.next_sequence;
            progress.next_sequence += 1;
            let value = derived.as_ref().map_or(Value { producer: self.number, sequence: handle }, |derived| derived.input.value.pipeline_output());
            progress.pending.insert(handle, value);
            if let Some((_, values)) = progress.open_transaction.as_mut().filter(|_| self.in_transaction()) {
                values.push(value);
            }
            (handle, value)
        };
        record.headers = Some(extra_headers(value));
        if let Some(derived) = derived {
            if let Some(group) = derived.group.clone() {
                self.registry.lock().expect("registry lock").pipeline(&group, &derived.input.partition.topic, &topic);
                if self.in_transaction() {
                    self.transaction.inputs.push((group, derived.input.clone()));
                } else {
                    self.derived.insert(handle, derived);
                }
            }
        }
        self.recorder.record(now, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
        self.producer.send_record(now, handle, topic, record, &mut self.out);
        handle
    }

    /// KIP-98's beginTransaction; records the transaction's start.
    pub(crate) fn begin_transaction(&mut self, now: Instant) -> Result<(), String> {
        self.producer.begin_transaction()?;
        self.outcome = None;
        self.transaction = OpenTransaction::default();
        let number = {
            let mut progress = self.progress.lock().expect("progress lock");
            let number = progress.next_transaction;
            progress.next_transaction += 1;
            progress.open_transaction = Some((number, Vec::new()));
            number
        };
        // The values are not known yet: the completion names them (`check::transactions`).
        self.recorder.record(now, OpType::Invoke, OpBody::Txn { number, values: Vec::new(), error: None });
        Ok(())
    }

    /// KIP-98's sendOffsetsToTransaction, the transaction side (AddOffsetsToTxn).
    pub(crate) fn add_offsets(&mut self, now: Instant, group: Arc<str>) {
        self.producer.send_offsets_to_transaction(group);
        self.producer.handle_timeout(now, &mut self.out);
    }

    pub(crate) fn commit(&mut self, now: Instant) {
        self.producer.commit_transaction(now, &mut self.out);
    }

    pub(crate) fn abort(&mut self, now: Instant) {
        self.producer.abort_transaction(now, &mut self.out);
    }

    /// Offsets of `group` committed in the current transaction (TxnOffsetCommit answered).
    pub(crate) fn offsets_in_transaction(&mut self, group: Arc<str>, offsets: Vec<(TopicPartition, Offset)>) {
        self.transaction.offsets.push((group, offsets));
    }

    pub(crate) fn handle_message(&mut self, now: Instant, from: NodeId, message: Message) {
        if !self.fenced {
            self.producer.handle_message(now, from, message, &mut self.out);
        }
    }

    pub(crate) fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent) {
        if !self.fenced {
            self.producer.handle_connection(now, destination, event, &mut self.out);
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if !self.fenced {
            self.producer.handle_timeout(now, &mut self.out);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.fenced {
            return None;
        }
        self.producer.next_deadline()
    }

    pub(crate) fn settle(&mut self, now: Instant, wire: &mut Wire) -> bool {
        let events = std::mem::take(&mut self.out.events);
        let progressed = !events.is_empty() || !self.out.sends.is_empty() || !self.out.connections.is_empty();
        for event in events {
            match event {
                ProducerEvent::Completed { handle, result } => self.completed(now, handle, result),
                ProducerEvent::TransactionCompleted { outcome } => self.transaction_completed(now, outcome),
            }
        }
        if self.producer.was_fenced() && !self.fenced {
            self.fenced = true;
            self.out.sends.clear();
            self.out.connections.clear();
            // The dead producer answers nothing more: its sends end here, outcome unknown.
            let pending: Vec<u64> = self.progress.lock().expect("progress lock").pending.keys().copied().collect();
            for handle in pending {
                let error = SendError { failure: kafsim_model::client::producer::SendFailure::Error(kafsim_model::error::ErrorCode::ProducerFenced), maybe_written: true };
                self.completed(now, handle, Err(error));
            }
        }
        wire.sends.append(&mut self.out.sends);
        wire.connections.append(&mut self.out.connections);
        progressed
    }

    fn completed(&mut self, now: Instant, handle: u64, result: Result<(TopicPartition, Offset), SendError>) {
        let Some(value) = self.progress.lock().expect("progress lock").pending.remove(&handle) else { return };
        let derived = self.derived.remove(&handle);
        let (kind, body) = match &result {
            Ok((partition, offset)) => (OpType::Ok, OpBody::Send { value, partition: Some(partition.clone()), offset: Some(*offset), error: None }),
            Err(error) => {
                let kind = if error.maybe_written { OpType::Info } else { OpType::Fail };
                (kind, OpBody::Send { value, partition: None, offset: None, error: Some(error.failure.to_string()) })
            }
        };
        self.recorder.record(now, kind, body);
        if let (Ok(_), Some(Derived { group: Some(group), input })) = (&result, derived) {
            self.recorder.record(now, OpType::Ok, OpBody::Process { group, records: vec![input] });
        }
        self.done.insert(handle, result);
    }

    fn transaction_completed(&mut self, now: Instant, outcome: TransactionOutcome) {
        let open = self.progress.lock().expect("progress lock").open_transaction.take();
        let transaction = std::mem::take(&mut self.transaction);
        if let Some((number, values)) = open {
            let (kind, error) = match &outcome {
                TransactionOutcome::Committed => (OpType::Ok, None),
                TransactionOutcome::Aborted => (OpType::Fail, Some("aborted".to_string())),
                TransactionOutcome::Unknown(error) => (OpType::Info, Some(error.clone())),
            };
            self.recorder.record(now, kind, OpBody::Txn { number, values, error });
        }
        if outcome == TransactionOutcome::Committed {
            let mut by_group: BTreeMap<Arc<str>, Vec<PolledRecord>> = BTreeMap::new();
            for (group, input) in transaction.inputs {
                by_group.entry(group).or_default().push(input);
            }
            for (group, records) in by_group {
                self.recorder.record(now, OpType::Ok, OpBody::Process { group, records });
            }
            let mut registry = self.registry.lock().expect("registry lock");
            for (group, offsets) in &transaction.offsets {
                registry.committed(group, offsets);
            }
        }
        self.outcome = Some(outcome);
    }
}
