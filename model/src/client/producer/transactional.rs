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

use super::{Producer, ProducerOutput};
use crate::coordinator::txn::protocol::TxnMessage;
use crate::coordinator::CoordinatorType;
use crate::protocol::{ErrorCode, Message, Send};
use crate::time::{earliest, Instant};
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

#[derive(Clone, Debug)]
enum Request {
    FindCoordinator,
    InitProducerId,
    AddPartitions(Vec<TopicPartition>),
    AddOffsets(Arc<str>),
    EndTxn { commit: bool },
}

pub struct TransactionState {
    pub(super) transactional_id: Arc<str>,
    timeout: Duration,
    pub(super) phase: TransactionPhase,
    coordinator: Option<NodeId>,
    in_flight: Option<(u64, Instant, Request)>,
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
}

impl TransactionState {
    pub fn new(transactional_id: Arc<str>, timeout: Duration) -> TransactionState {
        TransactionState {
            transactional_id,
            timeout,
            phase: TransactionPhase::Initializing,
            coordinator: None,
            in_flight: None,
            retry_at: Instant::ZERO,
            partitions: BTreeSet::new(),
            wanted: BTreeSet::new(),
            groups: BTreeSet::new(),
            groups_added: BTreeSet::new(),
            abortable: None,
            commit_sent: false,
            reinit: false,
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
        self.settled_at = None;
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

    pub fn commit_transaction(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        self.end_transaction(now, true, out);
    }

    pub fn abort_transaction(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        self.end_transaction(now, false, out);
    }

    /// KIP-98's sendOffsetsToTransaction, the transaction side: the group's
    /// offsets partition joins the transaction before it ends.
    pub fn send_offsets_to_transaction(&mut self, group_id: Arc<str>) {
        self.settled_at = None;
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

    /// The transactional id, producer id and epoch a TxnOffsetCommit carries.
    pub fn transactional_identity(&self) -> Option<(Arc<str>, crate::types::ProducerId, u16)> {
        let txn = self.transactions.as_ref()?;
        let (producer_id, producer_epoch) = self.producer_id?;
        Some((txn.transactional_id.clone(), producer_id, producer_epoch))
    }

    fn end_transaction(&mut self, now: Instant, commit: bool, out: &mut Vec<ProducerOutput>) {
        self.settled_at = None;
        let Some(txn) = self.transactions.as_mut() else { return };
        if txn.phase != TransactionPhase::InTransaction {
            return;
        }
        txn.phase = TransactionPhase::Ending { commit };
        if !commit {
            // Records not yet sent are dropped; what is in flight is waited for.
            self.fail_queued_batches("transaction aborted before the record was sent", out);
        }
        self.handle_timeout(now, out);
    }

    /// Fails every record still queued, never sent.
    fn fail_queued_batches(&mut self, reason: &str, out: &mut Vec<ProducerOutput>) {
        for pending in std::mem::take(&mut self.unpartitioned) {
            let error = super::SendError { error: reason.to_string(), maybe_written: false };
            out.push(ProducerOutput::Completed { handle: pending.handle, result: Err(error) });
        }
        let queued: Vec<super::Batch> = self.queues.values_mut().flat_map(|queue| queue.batches.drain(..)).collect();
        for batch in queued {
            self.fail(batch, reason.to_string(), out);
        }
    }

    /// A send of the current transaction failed: only an abort can follow.
    pub(super) fn transaction_send_failed(&mut self, error: &str, fenced: bool) {
        if let Some(txn) = self.transactions.as_mut() {
            if matches!(txn.phase, TransactionPhase::InTransaction | TransactionPhase::Ending { .. }) && txn.abortable.is_none() {
                txn.abortable = Some(error.to_string());
            }
            // A stale epoch needs a new one; anything else the abort's bump renews.
            txn.reinit |= fenced;
        }
    }

    pub(super) fn transaction_deadline(&self) -> Option<Instant> {
        let txn = self.transactions.as_ref()?;
        let mut deadline = None;
        if let Some((_, sent, _)) = &txn.in_flight {
            deadline = earliest(deadline, Some(*sent + self.config.request_timeout));
        } else if txn.retry_at > Instant::ZERO {
            deadline = earliest(deadline, Some(txn.retry_at));
        }
        deadline
    }

    /// Drives the transaction: the next request to the coordinator, if any is due.
    pub(super) fn poll_transaction(&mut self, now: Instant, out: &mut Vec<ProducerOutput>) {
        let request_timeout = self.config.request_timeout;
        let Some(txn) = self.transactions.as_mut() else { return };
        if let Some((_, sent, request)) = &txn.in_flight {
            if now.saturating_since(*sent) < request_timeout {
                return;
            }
            let request = request.clone();
            txn.in_flight = None;
            self.transaction_request_failed(now, request, ErrorCode::NetworkTimeout, out);
        }
        let Some(txn) = self.transactions.as_mut() else { return };
        if now < txn.retry_at || txn.in_flight.is_some() {
            return;
        }
        let Some(request) = self.next_transaction_request(out) else { return };
        let txn = self.transactions.as_mut().expect("transactional");
        let coordinator = match (&request, txn.coordinator) {
            (Request::FindCoordinator, _) | (_, None) => None,
            (_, Some(coordinator)) => Some(coordinator),
        };
        let request = if coordinator.is_none() { Request::FindCoordinator } else { request };
        self.next_correlation_id += 1;
        let correlation_id = self.next_correlation_id;
        let txn = self.transactions.as_ref().expect("transactional");
        let transactional_id = txn.transactional_id.clone();
        let (producer_id, producer_epoch) = self.producer_id.unwrap_or((crate::types::ProducerId(0), 0));
        let (to, message) = match &request {
            Request::FindCoordinator => {
                let to = self.bootstrap[(correlation_id as usize + self.start as usize) % self.bootstrap.len()];
                (to, Message::FindCoordinatorRequest { correlation_id, key_type: CoordinatorType::Transaction, key: transactional_id })
            }
            Request::InitProducerId => {
                let message = TxnMessage::InitProducerIdRequest { correlation_id, transactional_id, transaction_timeout: txn.timeout };
                (coordinator.expect("found"), Message::Txn(message))
            }
            Request::AddPartitions(partitions) => {
                let partitions = partitions.clone();
                let message = TxnMessage::AddPartitionsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, partitions, verify_only: false };
                (coordinator.expect("found"), Message::Txn(message))
            }
            Request::AddOffsets(group_id) => {
                let message = TxnMessage::AddOffsetsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, group_id: group_id.clone() };
                (coordinator.expect("found"), Message::Txn(message))
            }
            Request::EndTxn { commit } => {
                let message = TxnMessage::EndTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, commit: *commit };
                (coordinator.expect("found"), Message::Txn(message))
            }
        };
        let txn = self.transactions.as_mut().expect("transactional");
        if matches!(request, Request::EndTxn { commit: true }) {
            txn.commit_sent = true;
        }
        txn.in_flight = Some((correlation_id, now, request));
        out.push(ProducerOutput::Send(Send { to, message }));
    }

    /// What the transaction needs from the coordinator next, or None.
    fn next_transaction_request(&mut self, out: &mut Vec<ProducerOutput>) -> Option<Request> {
        let idle = self.in_flight.is_empty();
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
                self.fail_queued_batches("transaction aborted before the record was written", out);
                None
            }
            TransactionPhase::Ending { commit } => {
                if commit {
                    // KIP-98: a transaction with a failed send cannot commit.
                    txn.phase = TransactionPhase::Ending { commit: false };
                }
                // Aborting: nothing more is sent, retries included; what is in
                // flight is waited for.
                self.fail_queued_batches("transaction aborted before the record was written", out);
                if self.in_flight.is_empty() {
                    self.finish_or_end(false, out)
                } else {
                    None
                }
            }
        }
    }

    /// Once every batch is answered: EndTxn, or, when nothing was added, the
    /// transaction ends here (Kafka sends no EndTxn for an empty transaction).
    fn finish_or_end(&mut self, commit: bool, out: &mut Vec<ProducerOutput>) -> Option<Request> {
        let txn = self.transactions.as_mut().expect("transactional");
        if txn.partitions.is_empty() && txn.groups_added.is_empty() {
            let outcome = if commit { TransactionOutcome::Committed } else { TransactionOutcome::Aborted };
            self.transaction_ended(outcome, None, out);
            return None;
        }
        Some(Request::EndTxn { commit })
    }

    fn transaction_ended(&mut self, outcome: TransactionOutcome, next_epoch: Option<u16>, out: &mut Vec<ProducerOutput>) {
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
        out.push(ProducerOutput::TransactionCompleted { outcome });
    }

    fn transaction_request_failed(&mut self, now: Instant, request: Request, error: ErrorCode, out: &mut Vec<ProducerOutput>) {
        // Kafka retries CONCURRENT_TRANSACTIONS (the last transaction's markers
        // are still being written) after 20 ms rather than retry.backoff.ms (KAFKA-5477).
        let backoff = if error == ErrorCode::ConcurrentTransactions { Duration::from_millis(20).min(self.config.retry_backoff) } else { self.config.retry_backoff };
        let txn = self.transactions.as_mut().expect("transactional");
        txn.retry_at = now + backoff;
        if matches!(error, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::NetworkTimeout | ErrorCode::NotLeaderOrFollower) {
            txn.coordinator = None;
        }
        if error.is_retriable() {
            return;
        }
        tracing::info!(?request, ?error, "transactional request failed for good");
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

    /// Answers to the transactional requests; true when the message was one.
    pub(super) fn handle_transaction_message(&mut self, now: Instant, message: &Message, out: &mut Vec<ProducerOutput>) -> bool {
        let Some(txn) = self.transactions.as_mut() else { return false };
        let correlation_id = match message {
            Message::FindCoordinatorResponse { correlation_id, .. } => *correlation_id,
            Message::Txn(
                TxnMessage::InitProducerIdResponse { correlation_id, .. }
                | TxnMessage::AddPartitionsToTxnResponse { correlation_id, .. }
                | TxnMessage::AddOffsetsToTxnResponse { correlation_id, .. }
                | TxnMessage::EndTxnResponse { correlation_id, .. },
            ) => *correlation_id,
            _ => return false,
        };
        let Some((expected, _, request)) = txn.in_flight.clone() else { return true };
        if expected != correlation_id {
            return true;
        }
        txn.in_flight = None;
        let result = match (message, &request) {
            (Message::FindCoordinatorResponse { result, .. }, Request::FindCoordinator) => result.map(|coordinator| txn.coordinator = Some(coordinator)),
            (Message::Txn(TxnMessage::InitProducerIdResponse { result, .. }), Request::InitProducerId) => result.map(|id| {
                self.producer_id = Some(id);
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
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                if let Some(txn) = self.transactions.as_mut() {
                    txn.retry_at = Instant::ZERO;
                }
            }
            Err(error) => self.transaction_request_failed(now, request, error, out),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Properties, PropertyValue, ProducerConfig};
    use crate::protocol::{ClusterMetadata, PartitionState};
    use crate::types::{LeaderEpoch, Offset, PartitionEpoch, ProducerId};
    use bytes::Bytes;

    fn producer() -> Producer {
        let mut properties = Properties::new();
        properties.insert("linger.ms".into(), PropertyValue::Int(0));
        properties.insert("transactional.id".into(), PropertyValue::Text("tx-1".into()));
        Producer::new(ProducerConfig::from_properties(&properties).unwrap(), vec![NodeId(1)], 0)
    }

    /// Plays the broker and the coordinator (both node 1) for every request in
    /// `out`: metadata, FindCoordinator, InitProducerId, AddPartitions, EndTxn,
    /// and produce, answered by `produce`.
    fn answer(producer: &mut Producer, out: &mut Vec<ProducerOutput>, produce: &dyn Fn(u64) -> Result<Offset, ErrorCode>) -> Vec<ProducerOutput> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let requests: Vec<Message> = out.iter().filter_map(|output| if let ProducerOutput::Send(send) = output { Some(send.message.clone()) } else { None }).collect();
            seen.extend(out.drain(..).filter(|output| !matches!(output, ProducerOutput::Send(_))));
            if requests.is_empty() {
                break;
            }
            for request in requests {
                let response = match request {
                    Message::MetadataRequest { correlation_id } => {
                        let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
                        let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() });
                        Message::MetadataResponse { correlation_id, metadata }
                    }
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
                producer.handle_message(Instant::ZERO, response, out);
            }
        }
        seen
    }

    fn outcomes(outputs: &[ProducerOutput]) -> Vec<TransactionOutcome> {
        outputs.iter().filter_map(|output| if let ProducerOutput::TransactionCompleted { outcome } = output { Some(outcome.clone()) } else { None }).collect()
    }

    #[test]
    fn a_transaction_adds_its_partition_sends_and_commits_under_the_next_epoch() {
        let mut producer = producer();
        let mut out = Vec::new();
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
        let mut out = Vec::new();
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        producer.commit_transaction(Instant::ZERO, &mut out);
        let seen = answer(&mut producer, &mut out, &|_| Err(ErrorCode::InvalidTxnState));
        assert!(seen.iter().any(|output| matches!(output, ProducerOutput::Completed { handle: 1, result: Err(_) })));
        assert_eq!(outcomes(&seen), vec![TransactionOutcome::Aborted]);
    }

    /// A transaction of one record with no commit asked for yet still adds its
    /// partition at once (found reviewing: the add waited for the next wake).
    #[test]
    fn a_single_send_adds_its_partition_without_waiting_for_the_commit() {
        let mut producer = producer();
        let mut out = Vec::new();
        producer.handle_timeout(Instant::ZERO, &mut out);
        answer(&mut producer, &mut out, &|_| Ok(Offset(0)));
        producer.begin_transaction().unwrap();
        producer.send(Instant::ZERO, 1, "t".into(), None, Bytes::from_static(b"a"), &mut out);
        assert!(out.iter().any(|output| matches!(output, ProducerOutput::Send(Send { message: Message::Txn(TxnMessage::AddPartitionsToTxnRequest { .. }), .. }))));
    }
}
