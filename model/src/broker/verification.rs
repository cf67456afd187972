//! KIP-890 part 1: before a producer's first transactional batch on a partition
//! is appended, the leader asks the transaction coordinator whether the
//! partition is in the producer's ongoing transaction (AddPartitionsToTxn with
//! `verify_only`). A batch for a partition the transaction does not hold, say one
//! that arrives after the transaction ended, is refused with InvalidTxnState
//! instead of opening a transaction no marker will ever close (a "hanging
//! transaction" that would hold the last stable offset back for good).

use super::{Broker, BrokerEvent, BrokerRequest};
use crate::config::Acks;
use crate::coordinator::txn::protocol::TxnMessage;
use crate::coordinator::find_coordinator;
use crate::protocol::CoordinatorType;
use crate::net::{Channel, Destination};
use crate::node::Outbox;
use crate::protocol::Message;
use crate::error::ErrorCode;
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
        out: &mut Outbox<BrokerEvent>,
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
            Err(error) => return out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Err(error) }),
        };
        // Kafka's AddPartitionsToTxnManager: the verification goes to the
        // coordinator over the broker's connection; the producer retries if it cannot.
        let destination = Destination::new(coordinator, Channel::Default);
        if !self.network.ready(now, destination, out) {
            return out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Err(ErrorCode::NetworkException) });
        }
        self.next_verification += 1;
        let verification = self.next_verification;
        let (producer_id, producer_epoch, partitions) = (stamp.producer_id, stamp.producer_epoch, vec![tp.clone()]);
        let request = |correlation_id| {
            Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, transactional_id, producer_id, producer_epoch, partitions, verify_only: true })
        };
        self.network.send(now, destination, self.config.request_timeout, BrokerRequest::Verification(verification), request, out);
        let pending = PendingVerification { client, correlation_id, acks, timeout, partition: tp, producer: stamp, records };
        self.verifications.insert(verification, pending);
    }

    pub(super) fn handle_verification_response(&mut self, now: Instant, verification: u64, result: Result<(), ErrorCode>, out: &mut Outbox<BrokerEvent>) {
        let Some(pending) = self.verifications.remove(&verification) else { return };
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
                    ErrorCode::NetworkException | ErrorCode::NetworkTimeout => ErrorCode::NetworkException,
                    ErrorCode::ProducerFenced => ErrorCode::ProducerFenced,
                    _ => ErrorCode::InvalidTxnState,
                };
                tracing::info!(partition = %pending.partition, ?error, "transactional produce refused by verification (KIP-890)");
                let message = Message::ProduceResponse { correlation_id: pending.correlation_id, partition: pending.partition, result: Err(error) };
                out.send(pending.client, message);
            }
        }
    }
}
