//! Serving writes: Produce as leader (idempotence and transactions checked
//! by the log, KIP-98 and KIP-890), acks=all writes waiting in purgatory for
//! the high watermark, and how each waiter is answered.

use crate::config::BrokerMutation;
use super::*;

impl Broker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_produce(
        &mut self,
        now: Instant,
        client: NodeId,
        correlation_id: u64,
        acks: Acks,
        timeout: Duration,
        tp: TopicPartition,
        producer: Option<ProducerStamp>,
        records: Arc<[Record]>,
        out: &mut Outbox<BrokerEvent>,
    ) {
        let result = self.append_as_leader(&tp, acks, producer, records, &mut out.disk);
        let (local, base_offset, required_offset) = match result {
            Ok(appended) => appended,
            Err(error) => {
                if acks != Acks::None {
                    out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Err(error) });
                }
                return;
            }
        };
        // The write is not waiting yet: it is checked below, once it is.
        self.after_append(now, &local, true, out);
        match acks {
            Acks::None => {}
            Acks::Leader => out.send(client, Message::ProduceResponse { correlation_id, partition: tp, result: Ok(base_offset) }),
            Acks::All => {
                let waiter = Waiter::Client { client, correlation_id };
                self.delayed_produces.push(DelayedProduce::new(waiter, local.clone(), base_offset, required_offset, now + timeout));
                self.complete_delayed_produces(&local, out);
            }
        }
    }

    /// Appends on the leader; returns the partition under this broker's own name
    /// for it (whose topic `Arc` later lookups match by pointer), the batch's base
    /// offset and the offset the high watermark must pass for acks=all.
    pub(super) fn append_as_leader(&mut self, tp: &TopicPartition, acks: Acks, producer: Option<ProducerStamp>, records: Arc<[Record]>, disk: &mut Vec<DiskOp>) -> Result<(TopicPartition, Offset, Offset), ErrorCode> {
        let partition = self.partitions.get_mut(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if acks == Acks::All && partition.isr.len() < self.config.min_insync_replicas {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        if let Some(stamp) = producer {
            match partition.log.check_sequence(stamp, records.len()) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(base) => return Ok((partition.tp.clone(), base, Offset(base.0 + records.len() as u64))),
                SequenceCheck::OutOfOrder => return Err(ErrorCode::OutOfOrderSequenceNumber),
                SequenceCheck::ProducerFenced if self.config.mutation == Some(BrokerMutation::NoEpochFencing) => {}
                SequenceCheck::ProducerFenced => return Err(ErrorCode::ProducerFenced),
            }
        }
        let base_offset = partition.log_end_offset();
        let batch: SharedBatch = Arc::new(RecordBatch::new(base_offset, partition.leader_epoch, producer, records));
        let required_offset = batch.next_offset();
        partition.append(batch, self.config.log_flush_interval_messages, disk);
        Ok((partition.tp.clone(), base_offset, required_offset))
    }

    pub(super) fn complete_delayed_produces(&mut self, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        let Some(partition) = self.partitions.get(tp) else { return };
        let high_watermark = partition.high_watermark;
        let enough = partition.isr.len() >= self.config.min_insync_replicas;
        self.complete_replicated(tp, high_watermark, enough, out);
    }

    /// Answers the writes waiting on `tp` that `high_watermark` reached; `enough`:
    /// whether the partition's ISR still has min.insync.replicas members.
    pub(super) fn complete_replicated(&mut self, tp: &TopicPartition, high_watermark: Offset, enough: bool, out: &mut Outbox<BrokerEvent>) {
        if !self.delayed_produces.may_complete(tp, high_watermark) {
            return;
        }
        let mut done = std::mem::take(&mut self.completed_produces);
        self.delayed_produces.take_replicated(tp, high_watermark, &mut done);
        for delayed in done.drain(..) {
            // Kafka's checkEnoughReplicasReachOffset: replicated, but the ISR
            // shrank below min.insync.replicas meanwhile.
            let result = if enough { Ok(delayed.base_offset) } else { Err(ErrorCode::NotEnoughReplicasAfterAppend) };
            self.answer_waiter(delayed.waiter, delayed.partition, result, out);
        }
        self.completed_produces = done;
    }

    pub(super) fn fail_delayed_produces(&mut self, tp: &TopicPartition, error: ErrorCode, out: &mut Outbox<BrokerEvent>) {
        let mut done = Vec::new();
        self.delayed_produces.take_all(tp, &mut done);
        for delayed in done {
            self.answer_waiter(delayed.waiter, delayed.partition, Err(error), out);
        }
    }

    pub(super) fn expire_delayed(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        for delayed in self.delayed_produces.take_expired(now) {
            self.answer_waiter(delayed.waiter, delayed.partition, Err(ErrorCode::RequestTimedOut), out);
        }
        self.complete_delayed_fetches(now, None, out);
    }

    pub(super) fn answer_waiter(&mut self, waiter: Waiter, partition: TopicPartition, result: Result<Offset, ErrorCode>, out: &mut Outbox<BrokerEvent>) {
        match waiter {
            Waiter::Client { client, correlation_id } => {
                out.send(client, Message::ProduceResponse { correlation_id, partition, result })
            }
            Waiter::Coordinator { kind, token } => self.completed_writes.push_back((kind, token, result)),
            Waiter::Marker { coordinator, correlation_id, producer_id, commit } => {
                // KIP-98/KIP-447: the marker is on the group's offsets partition:
                // its pending transactional offsets are now committed or dropped.
                if marker_ends_group_offsets(&partition, &result) {
                    self.coordinator_deadline.set(None);
                    self.groups.complete_transaction(partition.partition, producer_id, commit);
                }
                let message = TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result: result.map(|_| ()) };
                out.send(coordinator, Message::Txn(message))
            }
        }
    }
}

/// Whether a marker write's answer ends the transactional offsets the group
/// coordinator holds for its producer: only a marker written, and only on
/// `__consumer_offsets` (a data partition's index names no group partition).
fn marker_ends_group_offsets(partition: &TopicPartition, result: &Result<Offset, ErrorCode>) -> bool {
    result.is_ok() && &*partition.topic == crate::protocol::CONSUMER_OFFSETS_TOPIC
}

/// Who waits for a delayed produce: a client's request, or a coordinator's write.
#[derive(Clone, Copy, Debug)]
pub(super) enum Waiter {
    Client { client: NodeId, correlation_id: u64 },
    Coordinator { kind: CoordinatorType, token: WriteToken },
    /// A transaction coordinator's WriteTxnMarkers (KIP-98).
    /// `producer_id` and `commit` tell the group coordinator, once a marker on
    /// `__consumer_offsets` committed, how its transactional offsets end.
    Marker { coordinator: NodeId, correlation_id: u64, producer_id: ProducerId, commit: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_marker_written_on_the_offsets_topic_ends_group_offsets() {
        let offsets = TopicPartition::new(crate::protocol::CONSUMER_OFFSETS_TOPIC, 0);
        let data = TopicPartition::new("t", 0);
        assert!(marker_ends_group_offsets(&offsets, &Ok(Offset(3))));
        assert!(!marker_ends_group_offsets(&offsets, &Err(ErrorCode::NotLeaderOrFollower)), "a failed marker leaves them pending");
        assert!(!marker_ends_group_offsets(&data, &Ok(Offset(3))), "a data partition's marker is not the group's");
    }
}
