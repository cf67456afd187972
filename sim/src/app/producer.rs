//! `FutureProducer` and `FutureRecord`, as the `rdkafka` crate has them, with
//! the transactional calls of its `Producer` trait (KIP-98).
//!
//! Where kafsim differs from rdkafka:
//! - the transactional calls are `async` (as in madsim-rdkafka): a simulated
//!   application cannot block its thread;
//! - `send`'s `queue_timeout` is not used: kafsim's producer never fills its queue;
//! - `FutureRecord::partition` (an explicit partition) is refused with
//!   `NotImplemented`: the partitioner always picks (murmur2 of the key, or
//!   round-robin for null keys);
//! - a fenced producer (`ProducerFenced`) is dead, as rdkafka's is after a
//!   fatal error: every later call fails, and the application must make a new one.

use super::config::{ClientConfig, FromClientConfig};
use super::consumer::ConsumerGroupMetadata;
use super::error::{KafkaError, KafkaResult, RDKafkaError, RDKafkaErrorCode};
use super::message::{OwnedHeaders, OwnedMessage, ToBytes, DERIVED_FROM_HEADER, VALUE_HEADER};
use super::node::Client;
use super::partitions::{Timeout, TopicPartitionList};
use super::producer_core::ProducerCore;
use super::session::AppSession;
use super::shared::Derived;
use crate::history::{PolledRecord, Value};
use bytes::Bytes;
use kafsim_model::client::producer::{Producer as ModelProducer, SendFailure, TransactionOutcome, TransactionPhase};
use kafsim_model::record::Record;
use std::sync::Arc;

/// What `send` gives back: the partition and offset the record got, or the
/// error and the record (rdkafka's `OwnedDeliveryResult`).
pub type OwnedDeliveryResult = Result<(i32, i64), (KafkaError, OwnedMessage)>;

/// rdkafka's `Producer` trait, whose transactional methods kafsim's
/// `FutureProducer` has as its own async methods; kept so that
/// `use rdkafka::producer::Producer` still compiles.
pub trait Producer {}

/// A record to send (rdkafka's `FutureRecord`).
#[derive(Debug)]
pub struct FutureRecord<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub payload: Option<&'a P>,
    pub key: Option<&'a K>,
    pub timestamp: Option<i64>,
    pub headers: Option<OwnedHeaders>,
}

impl<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized> FutureRecord<'a, K, P> {
    pub fn to(topic: &'a str) -> FutureRecord<'a, K, P> {
        FutureRecord { topic, partition: None, payload: None, key: None, timestamp: None, headers: None }
    }

    pub fn payload(mut self, payload: &'a P) -> Self {
        self.payload = Some(payload);
        self
    }

    pub fn key(mut self, key: &'a K) -> Self {
        self.key = Some(key);
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    pub fn headers(mut self, headers: OwnedHeaders) -> Self {
        self.headers = Some(headers);
        self
    }

    fn to_owned_message(&self) -> OwnedMessage {
        OwnedMessage {
            key: self.key.map(|key| Bytes::copy_from_slice(key.to_bytes())),
            payload: self.payload.map(|payload| Bytes::copy_from_slice(payload.to_bytes())),
            topic: self.topic.into(),
            partition: self.partition.unwrap_or(-1),
            offset: -1,
            headers: self.headers.clone(),
            lineage: None,
        }
    }
}

/// A producer whose sends are futures (rdkafka's `FutureProducer`).
///
/// ```no_run
/// use kafsim::app::AppContext;
/// use kafsim::rdkafka::config::ClientConfig;
/// use kafsim::rdkafka::producer::{FutureProducer, FutureRecord};
/// use kafsim::rdkafka::util::Timeout;
///
/// async fn publish(ctx: AppContext) {
///     let producer: FutureProducer = ClientConfig::new()
///         .set("bootstrap.servers", ctx.bootstrap_servers())
///         .set("acks", "all")
///         .create()
///         .expect("a valid configuration");
///     match producer.send(FutureRecord::to("events").key("k").payload("v"), Timeout::Never).await {
///         Ok((partition, offset)) => println!("at {partition}@{offset}"),
///         Err((error, _message)) => println!("not sent: {error}"),
///     }
/// }
/// ```
pub struct FutureProducer {
    session: AppSession,
    index: usize,
}

impl Producer for FutureProducer {}

impl FromClientConfig for FutureProducer {
    fn from_config(config: &ClientConfig) -> KafkaResult<FutureProducer> {
        let (session, bootstrap, producer_config) = config.producer_config()?;
        let made = session.call(|node, now| {
            let (endpoint, name, kind_index) = node.next_client("producer").ok_or_else(|| KafkaError::ClientCreation(format!("an application instance makes at most {} clients per run of its process", super::node::MAX_CLIENTS)))?;
            let recorder = node.ctx.recorder(name);
            let (number, progress) = node.ctx.apps.producer_progress(node.number, kind_index, recorder.clone());
            let producer = ModelProducer::new(producer_config, bootstrap, node.number, crate::node::jitter_seed(endpoint, now));
            let registry = node.ctx.apps.registry.clone();
            node.clients.push(Client::Producer(Box::new(ProducerCore::new(producer, endpoint, recorder, number, progress, registry))));
            Ok(node.clients.len() - 1)
        })?;
        Ok(FutureProducer { session, index: made })
    }
}

/// The input a `kafsim.derived-from` header names (`AppContext::derived_from`).
pub(crate) fn parse_derived(text: &[u8]) -> Option<Derived> {
    let text = std::str::from_utf8(text).ok()?;
    let mut fields = text.split('\t');
    let group = fields.next()?;
    let topic = fields.next()?;
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    let value = Value::decode(fields.next()?.as_bytes())?;
    let group = (!group.is_empty()).then(|| Arc::from(group));
    Some(Derived { group, input: PolledRecord { partition: kafsim_model::TopicPartition::new(topic, partition), offset: kafsim_model::Offset(offset), value } })
}

fn fatal_fenced() -> KafkaError {
    KafkaError::Transaction(RDKafkaError::fatal(RDKafkaErrorCode::ProducerFenced, "a newer producer with the same transactional.id fenced this one"))
}

fn timed_out(what: &str) -> KafkaError {
    KafkaError::Transaction(RDKafkaError::retriable(RDKafkaErrorCode::OperationTimedOut, format!("{what} timed out")))
}

impl FutureProducer {
    /// Sends `record`; resolves once it is acknowledged or has failed for good.
    pub async fn send<K, P, T>(&self, record: FutureRecord<'_, K, P>, _queue_timeout: T) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        T: Into<Timeout>,
    {
        let message = record.to_owned_message();
        if record.partition.is_some() {
            return Err((KafkaError::MessageProduction(RDKafkaErrorCode::NotImplemented), message));
        }
        let headers = record.headers.clone().unwrap_or_default();
        let lineage = headers.value_of(DERIVED_FROM_HEADER).cloned();
        let derived = lineage.as_deref().and_then(parse_derived);
        let model_record = Record { key: message.key.clone(), value: message.payload.clone().unwrap_or_default(), headers: None };
        let topic: Arc<str> = record.topic.into();
        let started = self.session.call(|node, now| {
            if !node.ctx.scenario.topics.iter().any(|known| known.name == *topic) {
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument));
            }
            let core = node.producer(self.index);
            if core.fenced {
                return Err(fatal_fenced());
            }
            if core.is_transactional() && !core.in_transaction() {
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::State));
            }
            let stamp = |value: Value| {
                let mut extra = vec![(Arc::from(VALUE_HEADER), value.encode())];
                extra.extend(lineage.clone().map(|lineage| (Arc::from(DERIVED_FROM_HEADER), lineage)));
                headers.to_record_headers(extra)
            };
            Ok(core.send(now, topic.clone(), model_record, derived, stamp))
        });
        let handle = match started {
            Ok(handle) => handle,
            Err(error) => return Err((error, message)),
        };
        let result = self.session.wait(Timeout::Never, |node, _| node.producer(self.index).done.remove(&handle)).await.expect("no timeout");
        match result {
            Ok((partition, offset)) => Ok((partition.partition as i32, offset.0 as i64)),
            Err(error) => {
                let code = match &error.failure {
                    SendFailure::Error(code) => RDKafkaErrorCode::from_broker(*code),
                    SendFailure::DeliveryTimeout { .. } | SendFailure::MetadataTimeout => RDKafkaErrorCode::MessageTimedOut,
                    SendFailure::TransactionAborted => RDKafkaErrorCode::TransactionAborted,
                    SendFailure::NoAcknowledgement | SendFailure::UnresolvedSequence => RDKafkaErrorCode::Transport,
                };
                Err((KafkaError::MessageProduction(code), message))
            }
        }
    }

    /// KIP-98's initTransactions: waits for the producer id (bumping the
    /// epoch fences any older producer with this `transactional.id`).
    pub async fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let is_transactional = self.session.call(|node, _| node.producer(self.index).is_transactional());
        if !is_transactional {
            return Err(KafkaError::Transaction(RDKafkaError::state("init_transactions needs transactional.id")));
        }
        let ready = self.session.wait(timeout.into(), |node, _| {
            let core = node.producer(self.index);
            if core.fenced {
                return Some(Err(fatal_fenced()));
            }
            core.producer.is_ready_for_transaction().then_some(Ok(()))
        });
        ready.await.unwrap_or_else(|| Err(timed_out("init_transactions")))
    }

    pub fn begin_transaction(&self) -> KafkaResult<()> {
        self.session.call(|node, now| {
            let core = node.producer(self.index);
            if core.fenced {
                return Err(fatal_fenced());
            }
            core.begin_transaction(now).map_err(|error| KafkaError::Transaction(RDKafkaError::state(error)))
        })
    }

    /// KIP-98/KIP-447's sendOffsetsToTransaction: `offsets` (the next offset
    /// to read of each partition) commit with the transaction, fenced by the
    /// group generation in `metadata` (`StreamConsumer::group_metadata`, from
    /// a consumer of this same application instance).
    pub async fn send_offsets_to_transaction<T: Into<Timeout>>(&self, offsets: &TopicPartitionList, metadata: &ConsumerGroupMetadata, timeout: T) -> KafkaResult<()> {
        let offsets = offsets.absolute_offsets().map_err(|element| {
            KafkaError::Transaction(RDKafkaError::state(format!("offset of {}/{} must be absolute, not {:?}", element.topic(), element.partition(), element.offset())))
        })?;
        if !Arc::ptr_eq(&metadata.node, &self.session.node) {
            return Err(KafkaError::Transaction(RDKafkaError::state("the group metadata must come from a consumer of this application instance")));
        }
        let group = metadata.group.clone();
        self.session.call(|node, now| {
            let core = node.producer(self.index);
            if core.in_transaction() {
                core.add_offsets(now, group.clone());
            }
        });
        let timeout = timeout.into();
        let started = self.session.wait(timeout, |node, now| {
            let core = node.producer(self.index);
            if core.fenced {
                return Some(Err(fatal_fenced()));
            }
            if !core.in_transaction() {
                return Some(Err(KafkaError::Transaction(RDKafkaError::state("no transaction in progress"))));
            }
            if core.producer.transaction_doomed() {
                return Some(Err(KafkaError::Transaction(RDKafkaError::abortable(RDKafkaErrorCode::TransactionAborted, "the transaction failed and must be aborted"))));
            }
            if !core.producer.offsets_added(&group) {
                return None;
            }
            let identity = core.producer.transactional_identity()?;
            let consumer = node.consumer(metadata.consumer);
            consumer.start_txn_offset_commit(now, identity, (metadata.generation, metadata.member_id.clone()), offsets.clone()).map(Ok)
        });
        let id = started.await.unwrap_or_else(|| Err(timed_out("send_offsets_to_transaction")))?;
        let result = self.session.wait(timeout, |node, _| node.consumer(metadata.consumer).commit_results.remove(&id)).await;
        match result {
            None => Err(timed_out("send_offsets_to_transaction")),
            Some(Ok(())) => {
                self.session.call(|node, _| node.producer(self.index).offsets_in_transaction(group.clone(), offsets));
                Ok(())
            }
            Some(Err(code)) => Err(KafkaError::Transaction(RDKafkaError::abortable(RDKafkaErrorCode::from_broker(code), format!("TxnOffsetCommit failed: {code}")))),
        }
    }

    /// KIP-98's commitTransaction. An abortable error means the transaction
    /// was (or must be) aborted; a fatal one that the producer is done.
    pub async fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let state = self.session.call(|node, now| {
            let core = node.producer(self.index);
            if core.fenced {
                return Err(fatal_fenced());
            }
            if core.producer.transaction_doomed() {
                return Err(KafkaError::Transaction(RDKafkaError::abortable(RDKafkaErrorCode::TransactionAborted, "the transaction failed and must be aborted")));
            }
            match core.producer.transaction_phase() {
                Some(TransactionPhase::InTransaction) => core.commit(now),
                // A retry after a timeout: the commit is already under way.
                Some(TransactionPhase::Ending { commit: true }) => {}
                _ if core.outcome.is_some() => {}
                phase => return Err(KafkaError::Transaction(RDKafkaError::state(format!("no transaction to commit (phase {phase:?})")))),
            }
            Ok(())
        });
        state?;
        let outcome = self.session.wait(timeout.into(), |node, _| node.producer(self.index).outcome.take()).await;
        match outcome {
            None => Err(timed_out("commit_transaction")),
            Some(TransactionOutcome::Committed) => Ok(()),
            Some(TransactionOutcome::Aborted) => {
                // Kept for `abort_transaction`, which the application calls next.
                self.session.call(|node, _| node.producer(self.index).outcome = Some(TransactionOutcome::Aborted));
                Err(KafkaError::Transaction(RDKafkaError::abortable(RDKafkaErrorCode::TransactionAborted, "the transaction was aborted")))
            }
            Some(TransactionOutcome::Unknown(error)) => Err(KafkaError::Transaction(RDKafkaError::fatal(RDKafkaErrorCode::OperationTimedOut, format!("the transaction's outcome is unknown: {error}")))),
        }
    }

    /// KIP-98's abortTransaction.
    pub async fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let started = self.session.call(|node, now| {
            let core = node.producer(self.index);
            if core.fenced {
                return Err(fatal_fenced());
            }
            match core.producer.transaction_phase() {
                Some(TransactionPhase::InTransaction) => core.abort(now),
                Some(TransactionPhase::Ending { commit: false }) => {}
                Some(TransactionPhase::Ending { commit: true }) => return Err(KafkaError::Transaction(RDKafkaError::state("the transaction is committing"))),
                // Nothing open: it ended already (aborted on its own, or never begun).
                _ => {
                    core.outcome = Some(TransactionOutcome::Aborted);
                }
            }
            Ok(())
        });
        started?;
        let outcome = self.session.wait(timeout.into(), |node, _| node.producer(self.index).outcome.take()).await;
        match outcome {
            None => Err(timed_out("abort_transaction")),
            Some(TransactionOutcome::Unknown(error)) => Err(KafkaError::Transaction(RDKafkaError::fatal(RDKafkaErrorCode::OperationTimedOut, format!("the abort's outcome is unknown: {error}")))),
            Some(_) => Ok(()),
        }
    }
}
