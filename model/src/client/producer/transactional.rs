//! The transactional producer (KIP-98): `transactional.id`, init_transactions,
//! begin, send, commit and abort, as Kafka's TransactionManager does them.
//!
//! The producer finds its transaction coordinator (FindCoordinator by
//! transactional id), gets its producer id and epoch there (InitProducerId, which
//! fences earlier producers with the same id), adds each partition to the
//! transaction before its first batch goes out (AddPartitionsToTxn), and ends the
//! transaction with EndTxn once every batch has been answered. A send that fails
//! makes the transaction abortable: a commit then aborts instead. The EndTxn
//! answer carries the epoch of the next transaction (KIP-890 part 2); sequences
//! start again from 0 under it. After any fatal answer (fenced, invalid state)
//! the producer initialises again, as a restarted application would.
//!
//! `send_offsets_to_transaction` adds a group's offsets partition to the
//! transaction (AddOffsetsToTxn); committing the offsets themselves
//! (TxnOffsetCommit to the group coordinator) is for the group coordinator's side.

use super::{Producer, ProducerEvent, ProducerRequest, SendError, SendFailure};
use crate::coordinator::txn::protocol::TxnMessage;
use crate::protocol::CoordinatorType;
use crate::net::{Channel, Destination};
use crate::node::Outbox;
use crate::protocol::Message;
use crate::error::ErrorCode;
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How a transaction ended, as far as the producer can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionOutcome {
    Committed,
    Aborted,
    /// The commit was asked for but its answer never came or was an error.
    Unknown(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionPhase {
    /// No producer id yet (or it must be renewed): InitProducerId is under way.
    Initializing,
    Ready,
    InTransaction,
    /// EndTxn is wanted: `commit` says which; sent once every batch is answered.
    Ending { commit: bool },
}

/// The transactional request in flight, if any: one at a time, as Kafka's
/// TransactionManager sends them.
#[derive(Clone, Debug)]
pub(super) enum Request {
    FindCoordinator,
    InitProducerId,
    AddPartitions(Vec<TopicPartition>),
    AddOffsets(Arc<str>),
    EndTxn { commit: bool },
}

impl Request {
    pub(super) fn api(&self) -> &'static str {
        match self {
            Request::FindCoordinator => "FindCoordinator",
            Request::InitProducerId => "InitProducerId",
            Request::AddPartitions(_) => "AddPartitionsToTxn",
            Request::AddOffsets(_) => "AddOffsetsToTxn",
            Request::EndTxn { .. } => "EndTxn",
        }
    }
}

pub struct TransactionState {
    pub(super) transactional_id: Arc<str>,
    timeout: Duration,
    pub(super) phase: TransactionPhase,
    coordinator: Option<NodeId>,
    /// A request is out; the producer's `NetworkClient` holds which.
    in_flight: bool,
    /// A request is due, but its broker's connection is not ready: the
    /// connection's event (or the `NetworkClient`'s deadline) wakes the producer.
    waiting_for_connection: bool,
    retry_at: Instant,
    /// Partitions the coordinator has in the transaction.
    pub(super) partitions: BTreeSet<TopicPartition>,
    /// Partitions with records waiting to be added.
    pub(super) wanted: BTreeSet<TopicPartition>,
    groups: BTreeSet<Arc<str>>,
    groups_added: BTreeSet<Arc<str>>,
    /// Set when a send of this transaction failed: it can only abort.
    pub(super) abortable: Option<String>,
    /// EndTxn(commit) went out in this transaction: an error after it leaves the outcome unknown.
    commit_sent: bool,
    /// The producer must take a new epoch once this transaction is over.
    reinit: bool,
    /// A coordinator or a partition leader answered ProducerFenced or
    /// InvalidProducerEpoch: a newer producer took this transactional id.
    fenced: bool,
}

impl TransactionState {
    pub fn new(transactional_id: Arc<str>, timeout: Duration) -> TransactionState {
        TransactionState {
            transactional_id,
            timeout,
            phase: TransactionPhase::Initializing,
            coordinator: None,
            in_flight: false,
            waiting_for_connection: false,
            retry_at: Instant::ZERO,
            partitions: BTreeSet::new(),
            wanted: BTreeSet::new(),
            groups: BTreeSet::new(),
            groups_added: BTreeSet::new(),
            abortable: None,
            commit_sent: false,
            reinit: false,
            fenced: false,
        }
    }

    /// Whether `tp` may be sent to now: in a transaction, only once added.
    pub(super) fn allows(&mut self, tp: &TopicPartition) -> bool {
        match self.phase {
            TransactionPhase::InTransaction | TransactionPhase::Ending { .. } if self.partitions.contains(tp) => true,
            TransactionPhase::InTransaction | TransactionPhase::Ending { commit: true } => {
                if !self.wanted.contains(tp) {
                    self.wanted.insert(tp.clone());
                }
                false
            }
            _ => false,
        }
    }
}

impl Producer {
    pub fn transaction_phase(&self) -> Option<TransactionPhase> {
        self.transactions.as_ref().map(|txn| txn.phase)
    }

    /// Whether `begin_transaction` would succeed now.
    pub fn is_ready_for_transaction(&self) -> bool {
        self.transaction_phase() == Some(TransactionPhase::Ready) && self.producer_id.is_some()
    }

    pub fn begin_transaction(&mut self) -> Result<(), String> {
        if !self.is_ready_for_transaction() {
            return Err(format!("cannot begin a transaction in phase {:?}", self.transaction_phase()));
        }
        let txn = self.transactions.as_mut().expect("checked above");
        txn.phase = TransactionPhase::InTransaction;
        txn.partitions.clear();
        txn.wanted.clear();
        txn.groups.clear();
        txn.groups_added.clear();
        txn.abortable = None;
        txn.commit_sent = false;
        Ok(())
    }

    pub fn commit_transaction(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        self.end_transaction(now, true, out);
    }

    pub fn abort_transaction(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        self.end_transaction(now, false, out);
    }

    /// KIP-98's sendOffsetsToTransaction, the transaction side: the group's
    /// offsets partition joins the transaction before it ends.
    pub fn send_offsets_to_transaction(&mut self, group_id: Arc<str>) {
        if let Some(txn) = self.transactions.as_mut() {
            if txn.phase == TransactionPhase::InTransaction {
                txn.groups.insert(group_id);
            }
        }
    }

    /// Whether the coordinator added `group_id`'s offsets partition to the
    /// current transaction (AddOffsetsToTxn answered): TxnOffsetCommit may go (KIP-98).
    pub fn offsets_added(&self, group_id: &str) -> bool {
        self.transactions.as_ref().is_some_and(|txn| txn.phase == TransactionPhase::InTransaction && txn.groups_added.iter().any(|group| &**group == group_id))
    }

    /// Whether the current transaction can only abort (Kafka's
    /// `TransactionManager.hasAbortableError`, or a fatal error such as
    /// ProducerFenced): a failed send, AddPartitionsToTxn or AddOffsetsToTxn.
    /// The application must abort it; a commit would abort anyway.
    pub fn transaction_doomed(&self) -> bool {
        self.transactions.as_ref().is_some_and(|txn| txn.phase == TransactionPhase::InTransaction && txn.abortable.is_some())
    }

    /// Whether this producer was fenced (Kafka's ProducerFencedException): a
    /// newer instance with its transactional id took over. Kafka's application
    /// must close the producer; this one re-initialises, as a restarted
    /// application would, unless its process stops first. Cleared by the next
    /// InitProducerId.
    pub fn was_fenced(&self) -> bool {
        self.transactions.as_ref().is_some_and(|txn| txn.fenced)
    }

    /// The transactional id, producer id and epoch a TxnOffsetCommit carries.
    pub fn transactional_identity(&self) -> Option<(Arc<str>, crate::types::ProducerId, u16)> {
        let txn = self.transactions.as_ref()?;
        let (producer_id, producer_epoch) = self.producer_id?;
        Some((txn.transactional_id.clone(), producer_id, producer_epoch))
    }

    fn end_transaction(&mut self, now: Instant, commit: bool, out: &mut Outbox<ProducerEvent>) {
        let Some(txn) = self.transactions.as_mut() else { return };
        if txn.phase != TransactionPhase::InTransaction {
            return;
        }
        txn.phase = TransactionPhase::Ending { commit };
        if !commit {
            // Records not yet sent are dropped; what is in flight is waited for.
            self.fail_queued_batches(out);
        }
        self.poll(now, out);
    }

    /// Fails every record still queued, never sent.
    fn fail_queued_batches(&mut self, out: &mut Outbox<ProducerEvent>) {
        for pending in std::mem::take(&mut self.unpartitioned) {
            let error = SendError { failure: SendFailure::TransactionAborted, maybe_written: false };
            out.event(ProducerEvent::Completed { handle: pending.handle, result: Err(error) });
        }
        let queued: Vec<super::Batch> = self.queues.values_mut().flat_map(|queue| queue.batches.drain(..)).collect();
        for batch in queued {
            self.fail(batch, SendFailure::TransactionAborted, out);
        }
    }

    /// A send of the current transaction failed: only an abort can follow.
    pub(super) fn transaction_send_failed(&mut self, failure: &SendFailure) {
        if let Some(txn) = self.transactions.as_mut() {
            if matches!(txn.phase, TransactionPhase::InTransaction | TransactionPhase::Ending { .. }) && txn.abortable.is_none() {
                txn.abortable = Some(failure.to_string());
            }
            // A stale epoch needs a new one; anything else the abort's bump renews.
            txn.reinit |= failure.is_fenced();
            txn.fenced |= failure.is_fenced();
        }
    }

    /// When a retry is due; a request in flight has its deadline in the `NetworkClient`.
    pub(super) fn transaction_deadline(&self) -> Option<Instant> {
        let txn = self.transactions.as_ref()?;
        (!txn.in_flight && !txn.waiting_for_connection && txn.retry_at > Instant::ZERO).then_some(txn.retry_at)
    }

    /// Drives the transaction: the next request to the coordinator, if any is due.
    pub(super) fn poll_transaction(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        let Some(txn) = self.transactions.as_mut() else { return };
        txn.waiting_for_connection = false;
        if now < txn.retry_at || txn.in_flight {
            return;
        }
        // The retry, if one was due, is this pass.
        txn.retry_at = Instant::ZERO;
        let Some(request) = self.next_transaction_request(out) else { return };
        let txn = self.transactions.as_mut().expect("transactional");
        // Sender.maybeSendAndPollTransactionalRequest: a coordinator it cannot
        // connect to is looked up again.
        if txn.coordinator.is_some_and(|coordinator| self.network.is_unavailable(now, Destination::new(coordinator, Channel::Default))) {
            txn.coordinator = None;
        }
        let txn = self.transactions.as_ref().expect("transactional");
        // Kafka's TransactionManager finds its coordinator first; FindCoordinator
        // goes to the least loaded broker, the rest to the coordinator (on the
        // broker's ordinary connection, shared with produce requests).
        let (to, request) = match (request, txn.coordinator) {
            (Request::FindCoordinator, _) | (_, None) => match self.network.least_loaded_node(now, &self.bootstrap, self.start as usize, Channel::Default) {
                Some(node) => (node, Request::FindCoordinator),
                None => {
                    self.network.want_any(&self.bootstrap, Channel::Default);
                    self.transactions.as_mut().expect("transactional").waiting_for_connection = true;
                    return;
                }
            },
            (request, Some(coordinator)) => (coordinator, request),
        };
        let destination = Destination::new(to, Channel::Default);
        if !self.network.ready(now, destination, out) {
            self.transactions.as_mut().expect("transactional").waiting_for_connection = true;
            return;
        }
        let transactional_id = txn.transactional_id.clone();
        let transaction_timeout = txn.timeout;
        let (producer_id, producer_epoch) = self.producer_id.unwrap_or((crate::types::ProducerId(0), 0));
        let message = |request: &Request, correlation_id| match request {
            Request::FindCoordinator => Message::FindCoordinatorRequest { correlation_id, key_type: CoordinatorType::Transaction, key: transactional_id },
            Request::InitProducerId => Message::Txn(TxnMessage::InitProducerIdRequest { correlation_id, transactional_id, transaction_timeout }),
            Request::AddPartitions(partitions) => {
                let partitions = partitions.clone();
                Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, partitions, verify_only: false })
            }
            Request::AddOffsets(group_id) => {
                Message::Txn(TxnMessage::AddOffsetsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, group_id: group_id.clone() })
            }
            Request::EndTxn { commit } => Message::Txn(TxnMessage::EndTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, commit: *commit }),
        };
        let txn = self.transactions.as_mut().expect("transactional");
        if matches!(request, Request::EndTxn { commit: true }) {
            txn.commit_sent = true;
        }
        txn.in_flight = true;
        let timeout = self.config.request_timeout;
        let built = |correlation_id| message(&request, correlation_id);
        let tag = ProducerRequest::Transaction(request.clone());
        self.network.send(now, destination, timeout, tag, built, out);
    }

    /// What the transaction needs from the coordinator next, or None.
    fn next_transaction_request(&mut self, out: &mut Outbox<ProducerEvent>) -> Option<Request> {
        let idle = !self.produce_in_flight();
        let txn = self.transactions.as_mut()?;
        match txn.phase {
            TransactionPhase::Initializing => Some(Request::InitProducerId),
            TransactionPhase::Ready => None,
            TransactionPhase::InTransaction | TransactionPhase::Ending { commit: true } if txn.abortable.is_none() => {
                let wanted: Vec<TopicPartition> = txn.wanted.difference(&txn.partitions).cloned().collect();
                if !wanted.is_empty() {
                    return Some(Request::AddPartitions(wanted));
                }
                if let Some(group) = txn.groups.difference(&txn.groups_added).next() {
                    return Some(Request::AddOffsets(group.clone()));
                }
                if txn.phase == TransactionPhase::InTransaction {
                    return None;
                }
                let flushed = idle && self.unpartitioned.is_empty() && self.queues.values().all(|queue| queue.batches.is_empty());
                if flushed {
                    self.finish_or_end(true, out)
                } else {
                    None
                }
            }
            TransactionPhase::InTransaction => {
                // An abortable error: as Kafka's Sender does (abortUndrainedBatches),
                // batches not yet sent fail now rather than wait out
                // delivery.timeout.ms for a transaction that can only abort.
                self.fail_queued_batches(out);
                None
            }
            TransactionPhase::Ending { commit } => {
                if commit {
                    // KIP-98: a transaction with a failed send cannot commit.
                    txn.phase = TransactionPhase::Ending { commit: false };
                }
                // Aborting: nothing more is sent, retries included; what is in
                // flight is waited for.
                self.fail_queued_batches(out);
                if idle {
                    self.finish_or_end(false, out)
                } else {
                    None
                }
            }
        }
    }

    /// Once every batch is answered: EndTxn, or, when nothing was added, the
    /// transaction ends here (Kafka sends no EndTxn for an empty transaction).
    fn finish_or_end(&mut self, commit: bool, out: &mut Outbox<ProducerEvent>) -> Option<Request> {
        let txn = self.transactions.as_mut().expect("transactional");
        if txn.partitions.is_empty() && txn.groups_added.is_empty() {
            let outcome = if commit { TransactionOutcome::Committed } else { TransactionOutcome::Aborted };
            self.transaction_ended(outcome, None, out);
            return None;
        }
        Some(Request::EndTxn { commit })
    }

    fn transaction_ended(&mut self, outcome: TransactionOutcome, next_epoch: Option<u16>, out: &mut Outbox<ProducerEvent>) {
        let txn = self.transactions.as_mut().expect("transactional");
        let reinit = txn.reinit || next_epoch.is_none() && !txn.partitions.is_empty();
        txn.partitions.clear();
        txn.wanted.clear();
        txn.groups.clear();
        txn.groups_added.clear();
        txn.abortable = None;
        txn.commit_sent = false;
        txn.reinit = false;
        txn.phase = if reinit { TransactionPhase::Initializing } else { TransactionPhase::Ready };
        if let (Some(epoch), Some((producer_id, _))) = (next_epoch, self.producer_id) {
            // KIP-890 part 2: the next transaction runs under the bumped epoch.
            self.producer_id = Some((producer_id, epoch));
            self.reset_sequences();
        }
        if reinit {
            self.producer_id = None;
        }
        out.event(ProducerEvent::TransactionCompleted { outcome });
    }

    pub(super) fn transaction_request_failed(&mut self, now: Instant, request: Request, error: ErrorCode, out: &mut Outbox<ProducerEvent>) {
        // Kafka retries CONCURRENT_TRANSACTIONS (the last transaction's markers
        // are still being written) after 20 ms rather than retry.backoff.ms (KAFKA-5477).
        let backoff = if error == ErrorCode::ConcurrentTransactions { Duration::from_millis(20).min(self.config.retry_backoff) } else { self.config.retry_backoff };
        let txn = self.transactions.as_mut().expect("transactional");
        txn.in_flight = false;
        txn.retry_at = now + backoff;
        // TxnRequestHandler.onComplete: a disconnect (or a timeout, which closes
        // the connection) looks the coordinator up again before the retry.
        if matches!(error, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::NetworkTimeout | ErrorCode::NetworkException | ErrorCode::NotLeaderOrFollower) {
            txn.coordinator = None;
        }
        if error.is_retriable() {
            return;
        }
        tracing::info!(?request, ?error, "transactional request failed for good");
        txn.fenced |= matches!(error, ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch);
        match request {
            Request::FindCoordinator | Request::InitProducerId => {}
            Request::AddPartitions(_) | Request::AddOffsets(_) => {
                txn.abortable = Some(format!("{error}"));
                txn.reinit = true;
            }
            Request::EndTxn { commit } => {
                // Fenced or refused: this producer's epoch is over. An abort cannot
                // have become a commit (no commit was asked for), but a commit asked
                // for may or may not have been decided.
                // Fenced means the coordinator bumped the epoch, which aborts an open
                // transaction; any other refusal (InvalidTxnState) says the
                // coordinator does not know the transaction as ours to abort.
                let fenced = matches!(error, ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch);
                let outcome =
                    if commit || txn.commit_sent || !fenced { TransactionOutcome::Unknown(format!("EndTxn: {error}")) } else { TransactionOutcome::Aborted };
                txn.reinit = true;
                self.transaction_ended(outcome, None, out);
            }
        }
    }

    /// The answer to the transactional request in flight.
    pub(super) fn handle_transaction_response(&mut self, now: Instant, request: Request, message: Message, out: &mut Outbox<ProducerEvent>) {
        let txn = self.transactions.as_mut().expect("only a transactional producer sends transactional requests");
        txn.in_flight = false;
        let result = match (&message, &request) {
            (Message::FindCoordinatorResponse { result, .. }, Request::FindCoordinator) => result.map(|coordinator| txn.coordinator = Some(coordinator)),
            (Message::Txn(TxnMessage::InitProducerIdResponse { result, .. }), Request::InitProducerId) => result.map(|id| {
                self.producer_id = Some(id);
                txn.fenced = false;
                for queue in self.queues.values_mut() {
                    queue.next_sequence = 0;
                }
                txn.phase = TransactionPhase::Ready;
            }),
            (Message::Txn(TxnMessage::AddPartitionsToTxnResponse { result, .. }), Request::AddPartitions(partitions)) => {
                result.map(|()| txn.partitions.extend(partitions.iter().cloned()))
            }
            (Message::Txn(TxnMessage::AddOffsetsToTxnResponse { result, .. }), Request::AddOffsets(group)) => result.map(|()| {
                txn.groups_added.insert(group.clone());
            }),
            (Message::Txn(TxnMessage::EndTxnResponse { result, .. }), Request::EndTxn { commit }) => match result {
                Ok(epoch) => {
                    let outcome = if *commit { TransactionOutcome::Committed } else { TransactionOutcome::Aborted };
                    self.transaction_ended(outcome, Some(*epoch), out);
                    Ok(())
                }
                Err(error) => Err(*error),
            },
            _ => unreachable!("a {} answer to a {} request", message.api(), request.api()),
        };
        match result {
            Ok(()) => {
                if let Some(txn) = self.transactions.as_mut() {
                    txn.retry_at = Instant::ZERO;
                }
            }
            Err(error) => self.transaction_request_failed(now, request, error, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{connect_all, single_partition_metadata};
    use crate::config::{Properties, PropertyValue, ProducerConfig};
    use crate::node::Node;
    use crate::types::{Offset, ProducerId};
    use bytes::Bytes;

    fn producer() -> Producer {
        let mut properties = Properties::new();
        properties.insert("linger.ms".into(), PropertyValue::Int(0));
        properties.insert("transactional.id".into(), PropertyValue::Text("tx-1".into()));
        Producer::new(ProducerConfig::from_properties(&properties).unwrap(), vec![NodeId(1)], 0, 1)
    }

    /// Plays the broker and the coordinator (both node 1) for every request in
    /// `out`: metadata, FindCoordinator, InitProducerId, AddPartitions, EndTxn,
    /// and produce, answered by `produce`. Returns the events seen.
    fn answer(producer: &mut Producer, out: &mut Outbox<ProducerEvent>, produce: &dyn Fn(u64) -> Result<Offset, ErrorCode>) -> Vec<ProducerEvent> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            connect_all(producer, Instant::ZERO, out);
            let requests: Vec<Message> = out.sends.drain(..).map(|send| send.message).collect();
            seen.append(&mut out.events);
            if requests.is_empty() {
                break;
            }
            for request in requests {
                let response = match request {
                    Message::MetadataRequest { correlation_id } => Message::MetadataResponse { correlation_id, metadata: single_partition_metadata() },
                    Message::FindCoordinatorRequest { correlation_id, .. } => Message::FindCoordinatorResponse { correlation_id, result: Ok(NodeId(1)) },
                    Message::Txn(TxnMessage::InitProducerIdRequest { correlation_id, .. }) => {
                        Message::Txn(TxnMessage::InitProducerIdResponse { correlation_id, result: Ok((ProducerId(9), 0)) })
                    }
                    Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, .. }) => Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id, result: Ok(()) }),
                    Message::Txn(TxnMessage::EndTxnRequest { correlation_id, producer_epoch, .. }) => {
                        Message::Txn(TxnMessage::EndTxnResponse { correlation_id, result: Ok(producer_epoch + 2) })
                    }
                    Message::ProduceRequest { correlation_id, partition, producer: stamp, .. } => {
                        assert!(stamp.is_some_and(|stamp| stamp.transactional), "transactional batches say so");
                        Message::ProduceResponse { correlation_id, partition, result: produce(correlation_id) }
                    }
                    other => panic!("unexpected request {other:?}"),
                };
                producer.handle_message(Instant::ZERO, NodeId(1), response, out);
            }
        }
        seen.append(&mut out.events);
        seen
    }

    fn outcomes(events: &[ProducerEvent]) -> Vec<TransactionOutcome> {
        events.iter().filter_map(|event| if let ProducerEvent::TransactionCompleted { outcome } = event { Some(outcome.clone()) } else { None }).collect()
    }

    #[test]
    fn a_transaction_adds_its_partition_sends_and_commits_under_the_next_epoch() {
        let mut producer = producer();
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        assert!(producer.is_ready_for_transaction());
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        producer.commit_transaction(Instant::ZERO, &mut out);
        let seen = answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        assert_eq!(outcomes(&seen), vec![TransactionOutcome::Committed]);
        assert_eq!(producer.producer_id, Some((ProducerId(9), 2)), "KIP-890: the next transaction runs under the bumped epoch");
        assert!(producer.is_ready_for_transaction());
    }

    #[test]
    fn a_failed_send_turns_a_commit_into_an_abort() {
        let mut producer = producer();
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        producer.commit_transaction(Instant::ZERO, &mut out);
        let seen = answer(&mut producer, &mut out, &|_| Err(ErrorCode::InvalidTxnState));
        assert!(seen.iter().any(|event| matches!(event, ProducerEvent::Completed { handle: 1, result: Err(_) })));
        assert_eq!(outcomes(&seen), vec![TransactionOutcome::Aborted]);
    }

    /// A transaction of one record with no commit asked for yet still adds its
    /// partition at once (found reviewing: the add waited for the next wake).
    #[test]
    fn a_single_send_adds_its_partition_without_waiting_for_the_commit() {
        let mut producer = producer();
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        assert!(out.sends.iter().any(|send| matches!(send.message, Message::Txn(TxnMessage::AddPartitionsToTxnRequest { .. }))));
    }

    /// The coordinator aborted the transaction while its application stalled
    /// past transaction.timeout.ms, and bumped the epoch: the next
    /// AddPartitionsToTxn is fenced. The transaction can only abort, so the
    /// records waiting for that partition fail at the next retry (Kafka's
    /// Sender.abortUndrainedBatches) instead of waiting out delivery.timeout.ms
    /// (a pipeline member's partition stood still 110 s, pipeline-member-stall).
    #[test]
    fn a_fenced_add_partitions_fails_the_queued_records_at_once() {
        let mut producer = producer();
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        let stalled = Instant::from_micros(20_000_000);
        producer.send(stalled, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        let add = out
            .sends
            .iter()
            .find_map(|send| match &send.message {
                Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, .. }) => Some(*correlation_id),
                _ => None,
            })
            .expect("the partition is added before its first batch");
        out.sends.clear();
        let fenced = Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: add, result: Err(ErrorCode::ProducerFenced) });
        producer.handle_message(stalled, NodeId(1), fenced, &mut out);
        let second_later = stalled + Duration::from_secs(1);
        while let Some(now) = producer.next_deadline().filter(|deadline| *deadline <= second_later) {
            producer.handle_timeout(now, &mut out);
        }
        let failures: Vec<&SendFailure> = out
            .events
            .iter()
            .filter_map(|event| match event {
                ProducerEvent::Completed { handle: 1, result: Err(error) } => Some(&error.failure),
                _ => None,
            })
            .collect();
        assert_eq!(failures, vec![&SendFailure::TransactionAborted], "the queued record fails within a second of the fencing, not after delivery.timeout.ms");
        assert!(!out.sends.iter().any(|send| matches!(send.message, Message::ProduceRequest { .. })), "nothing of the doomed transaction is written");
    }

    /// TxnRequestHandler.onComplete: a disconnect from the coordinator looks it
    /// up again (FindCoordinator) before the request is retried.
    #[test]
    fn a_coordinator_disconnect_finds_the_coordinator_again() {
        let mut producer = producer();
        let mut out = Outbox::new(NodeId(2001));
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        assert!(out.sends.iter().any(|send| matches!(send.message, Message::Txn(TxnMessage::AddPartitionsToTxnRequest { .. }))));
        out.sends.clear();
        let closed = crate::net::ConnectionEvent::Closed(crate::net::CloseReason::Reset);
        producer.handle_connection(Instant::ZERO, Destination::new(NodeId(1), Channel::Default), closed, &mut out);
        while out.sends.is_empty() {
            let now = producer.next_deadline().expect("a retry is due");
            producer.handle_timeout(now, &mut out);
            connect_all(&mut producer, now, &mut out);
        }
        assert!(matches!(out.sends[0].message, Message::FindCoordinatorRequest { key_type: CoordinatorType::Transaction, .. } | Message::MetadataRequest { .. }));
        assert!(out.sends.iter().any(|send| matches!(send.message, Message::FindCoordinatorRequest { .. })), "{:?}", out.sends);
    }
}
