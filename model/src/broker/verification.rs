//! KIP-890 part 1: before a producer's first transactional batch on a partition
//! is appended, the leader asks the transaction coordinator whether the
//! partition is in the producer's ongoing transaction (AddPartitionsToTxn with
//! `verify_only`). A batch for a partition the transaction does not hold, say one
//! that arrives after the transaction ended, is refused with InvalidTxnState
//! instead of opening a transaction no marker will ever close (a "hanging
//! transaction" that would hold the last stable offset back for good).

use super::{Broker, INTER_BROKER_REQUEST_TIMEOUT};
use crate::config::Acks;
use crate::coordinator::txn::protocol::TxnMessage;
use crate::coordinator::{find_coordinator, CoordinatorType};
use crate::protocol::{ErrorCode, Message, Send};
use crate::record::{ProducerStamp, Record};
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
use std::sync::Arc;
use std::time::Duration;

/// A produce parked until the coordinator answers.
pub(super) struct PendingVerification {
    client: NodeId,
    correlation_id: u64,
    acks: Acks,
    timeout: Duration,
    partition: TopicPartition,
    producer: ProducerStamp,
    records: Arc<[Record]>,
    sent: Instant,
}

impl Broker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_produce_request(
        &mut self,
        now: Instant,
        client: NodeId,
        correlation_id: u64,
        acks: Acks,
        timeout: Duration,
        tp: TopicPartition,
        producer: Option<ProducerStamp>,
        records: Arc<[Record]>,
        transactional_id: Option<Arc<str>>,
        out: &mut Vec<Send>,
    ) {
        let unverified = match (producer, &transactional_id) {
            (Some(stamp), Some(_)) if stamp.transactional => self
                .partitions
                .get(&tp)
                .is_some_and(|partition| partition.is_leader() && !partition.log.transactions().is_ongoing(stamp.producer_id)),
            _ => false,
        };
        let (Some(stamp), Some(transactional_id), true) = (producer, transactional_id, unverified) else {
            return self.handle_produce(now, client, correlation_id, acks, timeout, tp, producer, records, out);
        };
        let coordinator = match find_coordinator(&self.metadata, CoordinatorType::Transaction, &transactional_id) {
            Ok(coordinator) => coordinator,
            Err(error) => {
                return out.push(Send { to: client, message: Message::ProduceResponse { correlation_id, partition: tp, result: Err(error) } });
            }
        };
        self.next_correlation_id += 1;
        let verification = self.next_correlation_id;
        let request = TxnMessage::AddPartitionsToTxnRequest {
            correlation_id: verification,
            transactional_id,
            producer_id: stamp.producer_id,
            producer_epoch: stamp.producer_epoch,
            partitions: vec![tp.clone()],
            verify_only: true,
        };
        out.push(Send { to: coordinator, message: Message::Txn(request) });
        let pending = PendingVerification { client, correlation_id, acks, timeout, partition: tp, producer: stamp, records, sent: now };
        self.verifications.insert(verification, pending);
    }

    pub(super) fn handle_verification_response(&mut self, now: Instant, correlation_id: u64, result: Result<(), ErrorCode>, out: &mut Vec<Send>) {
        let Some(pending) = self.verifications.remove(&correlation_id) else { return };
        match result {
            Ok(()) => self.handle_produce(
                now,
                pending.client,
                pending.correlation_id,
                pending.acks,
                pending.timeout,
                pending.partition,
                Some(pending.producer),
                pending.records,
                out,
            ),
            Err(error) => {
                // Coordinator trouble is retriable; a refusal is InvalidTxnState or fencing.
                let error = match error {
                    ErrorCode::NotCoordinator | ErrorCode::CoordinatorLoadInProgress | ErrorCode::CoordinatorNotAvailable | ErrorCode::ConcurrentTransactions => {
                        ErrorCode::CoordinatorNotAvailable
                    }
                    ErrorCode::ProducerFenced => ErrorCode::ProducerFenced,
                    _ => ErrorCode::InvalidTxnState,
                };
                tracing::info!(partition = %pending.partition, ?error, "transactional produce refused by verification (KIP-890)");
                let message = Message::ProduceResponse { correlation_id: pending.correlation_id, partition: pending.partition, result: Err(error) };
                out.push(Send { to: pending.client, message });
            }
        }
    }

    pub(super) fn expire_verifications(&mut self, now: Instant, out: &mut Vec<Send>) {
        let expired: Vec<u64> =
            self.verifications.iter().filter(|(_, pending)| now.saturating_since(pending.sent) >= INTER_BROKER_REQUEST_TIMEOUT).map(|(id, _)| *id).collect();
        for id in expired {
            self.handle_verification_response(now, id, Err(ErrorCode::CoordinatorNotAvailable), out);
        }
    }

    pub(super) fn verification_deadline(&self) -> Option<Instant> {
        // `next_deadline` asks after every message; most runs never verify, and
        // the walk stays out of line so `next_deadline` stays short.
        if self.verifications.is_empty() {
            return None;
        }
        self.earliest_verification_deadline()
    }

    #[inline(never)]
    fn earliest_verification_deadline(&self) -> Option<Instant> {
        self.verifications.values().map(|pending| pending.sent + INTER_BROKER_REQUEST_TIMEOUT).min()
    }
}
