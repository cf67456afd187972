//! The coordinators a broker hosts (group, transaction) and the appends it makes
//! for transactions: commit/abort markers (WriteTxnMarkers) and offsets committed
//! inside a transaction. Coordinator writes go through the leader's log with
//! acks=all and are reported back once committed (see `coordinator`).

use crate::config::BrokerMutation;
use super::*;

impl Broker {
    /// KIP-98: the leader appends a transaction's commit or abort marker and
    /// answers the coordinator once it is committed (acks=all). A marker older
    /// than the producer epoch the partition has seen was superseded: refused.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_write_txn_markers(
        &mut self,
        now: Instant,
        coordinator: NodeId,
        correlation_id: u64,
        producer_id: ProducerId,
        producer_epoch: u16,
        marker: ControlMarker,
        tp: TopicPartition,
        out: &mut Outbox<BrokerEvent>,
    ) {
        let waiter = Waiter::Marker { coordinator, correlation_id, producer_id, commit: marker.commit };
        let appended = (|| {
            let partition = transactional_leader(&mut self.partitions, &self.config, &tp, producer_id, producer_epoch)?;
            let stamp = ProducerStamp { producer_id, producer_epoch, base_sequence: crate::types::Sequence(-1), transactional: true };
            let batch: SharedBatch = Arc::new(RecordBatch::control(partition.log_end_offset(), partition.leader_epoch, stamp, marker));
            let appended = (partition.tp.clone(), batch.base_offset, batch.next_offset());
            partition.append(batch, self.config.log_flush_interval_messages, &mut out.disk);
            Ok(appended)
        })();
        match appended {
            Err(error) => self.answer_waiter(waiter, tp, Err(error), out),
            Ok((local, base_offset, required_offset)) => {
                self.delayed_produces.push(DelayedProduce::new(waiter, local.clone(), base_offset, required_offset, now + COORDINATOR_WRITE_TIMEOUT));
                // after_append completes the delayed write if it is already replicated.
                self.after_append(now, &local, false, out);
            }
        }
    }

    /// KIP-98: TxnOffsetCommit's records go into the producer's transaction on the
    /// offsets partition, stamped with its id and epoch but no sequence (Kafka's
    /// NO_SEQUENCE: the group coordinator, not the producer, writes them). A
    /// producer epoch older than the partition has seen is fenced.
    pub(super) fn append_transactional_offsets(&mut self, tp: &TopicPartition, producer_id: ProducerId, producer_epoch: u16, records: Arc<[crate::record::Record]>, disk: &mut Vec<DiskOp>) -> Result<(TopicPartition, Offset, Offset), ErrorCode> {
        let partition = transactional_leader(&mut self.partitions, &self.config, tp, producer_id, producer_epoch)?;
        let stamp = ProducerStamp { producer_id, producer_epoch, base_sequence: crate::types::Sequence(-1), transactional: true };
        let base_offset = partition.log_end_offset();
        let batch: SharedBatch = Arc::new(RecordBatch::new(base_offset, partition.leader_epoch, Some(stamp), records));
        let required_offset = batch.next_offset();
        partition.append(batch, self.config.log_flush_interval_messages, disk);
        Ok((partition.tp.clone(), base_offset, required_offset))
    }

    pub(super) fn coordinator_mut(&mut self, kind: CoordinatorType) -> &mut dyn Coordinator {
        self.coordinator_deadline.set(None);
        match kind {
            CoordinatorType::Group => &mut self.groups,
            CoordinatorType::Transaction => &mut self.transactions,
        }
    }

    /// Runs one coordinator call and carries out what it asks: sends go out, appends
    /// go to the internal partition with acks=all and wait in purgatory.
    pub(super) fn run_coordinator(
        &mut self,
        now: Instant,
        kind: CoordinatorType,
        out: &mut Outbox<BrokerEvent>,
        call: impl FnOnce(&mut dyn Coordinator, Instant, &mut Vec<CoordinatorEffect>),
    ) {
        let mut effects = Vec::new();
        call(self.coordinator_mut(kind), now, &mut effects);
        for effect in effects {
            match effect {
                CoordinatorEffect::Send { to, message } if message.is_response() => out.send(to, message),
                CoordinatorEffect::Send { to, message } => self.send_for_coordinator(now, to, message, out),
                CoordinatorEffect::Append { partition, records, token, producer } => self.append_for_coordinator(now, kind, partition, records, token, producer, out),
            }
        }
    }

    /// A coordinator's request to another broker (WriteTxnMarkers) goes through
    /// the broker's `NetworkClient` on the markers' own channel, as Kafka's
    /// `TransactionMarkerChannelManager` has a client of its own. If its
    /// connection is not ready, the coordinator hears at once that it failed,
    /// and tries again after its backoff.
    fn send_for_coordinator(&mut self, now: Instant, to: NodeId, message: Message, out: &mut Outbox<BrokerEvent>) {
        let Message::Txn(TxnMessage::WriteTxnMarkersRequest { correlation_id, producer_id, producer_epoch, coordinator_epoch, commit, partition }) = message else {
            unreachable!("a coordinator sends no request but WriteTxnMarkers: {}", message.api())
        };
        let destination = Destination::new(to, Channel::TxnMarkers);
        if !self.network.ready(now, destination, out) {
            let failed = TxnMessage::WriteTxnMarkersResponse { correlation_id, partition, result: Err(ErrorCode::NetworkException) };
            self.coordinator_replies.push_back((self.id, Message::Txn(failed)));
            return;
        }
        let request = BrokerRequest::Marker { coordinator_correlation_id: correlation_id, partition: partition.clone() };
        let message = |correlation_id| Message::Txn(TxnMessage::WriteTxnMarkersRequest { correlation_id, producer_id, producer_epoch, coordinator_epoch, commit, partition });
        self.network.send(now, destination, self.config.request_timeout, request, message, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_for_coordinator(
        &mut self,
        now: Instant,
        kind: CoordinatorType,
        partition: u32,
        records: Vec<crate::record::Record>,
        token: WriteToken,
        producer: Option<(ProducerId, u16)>,
        out: &mut Outbox<BrokerEvent>,
    ) {
        let tp = match self.partitions.key_named(kind.topic(), partition) {
            Some(tp) => tp.clone(),
            None => TopicPartition::new(kind.topic(), partition),
        };
        let records = Arc::from(records);
        let appended = match producer {
            None => self.append_as_leader(&tp, Acks::All, None, records, &mut out.disk),
            Some((producer_id, producer_epoch)) => self.append_transactional_offsets(&tp, producer_id, producer_epoch, records, &mut out.disk),
        };
        match appended {
            Err(error) => self.completed_writes.push_back((kind, token, Err(error))),
            Ok((local, base_offset, required_offset)) => {
                let waiter = Waiter::Coordinator { kind, token };
                self.delayed_produces.push(DelayedProduce::new(waiter, local.clone(), base_offset, required_offset, now + COORDINATOR_WRITE_TIMEOUT));
                self.after_append(now, &local, false, out);
            }
        }
    }

    /// Tells coordinators how their writes ended; what they do in turn may finish
    /// more writes, so this runs until nothing is left.
    #[inline]
    pub(super) fn pump_coordinator_completions(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        if self.completed_writes.is_empty() && self.coordinator_replies.is_empty() {
            return;
        }
        self.pump_coordinator_completions_slow(now, out);
    }

    fn pump_coordinator_completions_slow(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        loop {
            if let Some((kind, token, result)) = self.completed_writes.pop_front() {
                self.run_coordinator(now, kind, out, move |coordinator, now, effects| coordinator.write_completed(now, token, result, effects));
            } else if let Some((from, message)) = self.coordinator_replies.pop_front() {
                self.run_coordinator(now, CoordinatorType::Transaction, out, move |coordinator, now, effects| coordinator.handle_request(now, from, message, effects));
            } else {
                return;
            }
        }
    }

    pub(super) fn load_coordinator(&mut self, now: Instant, tp: &TopicPartition, leader_epoch: LeaderEpoch, out: &mut Outbox<BrokerEvent>) {
        let Some(kind) = internal_coordinator(tp) else { return };
        let batches = self.partitions[tp].log.batches().to_vec();
        tracing::info!(partition = %tp, epoch = leader_epoch.0, "coordinator loads its partition");
        let partition = tp.partition;
        self.run_coordinator(now, kind, out, move |coordinator, now, effects| coordinator.load(now, partition, leader_epoch, &batches, effects));
    }

    pub(super) fn unload_coordinator(&mut self, tp: &TopicPartition) {
        if let Some(kind) = internal_coordinator(tp) {
            self.coordinator_mut(kind).unload(tp.partition);
        }
    }
}

/// Which coordinator lives on `tp`, if it is a partition of an internal topic.
pub(super) fn internal_coordinator(tp: &TopicPartition) -> Option<CoordinatorType> {
    if !is_internal_topic(&tp.topic) {
        return None;
    }
    [CoordinatorType::Group, CoordinatorType::Transaction].into_iter().find(|kind| kind.topic() == &*tp.topic)
}

/// The partition a transactional append by the coordinators (a marker, or offsets
/// committed in a transaction) may go to: this broker leads it, the ISR is large
/// enough for acks=all, and the producer's epoch is not older than one the
/// partition has seen (an older one was fenced).
fn transactional_leader<'a>(
    partitions: &'a mut PartitionMap<Partition>,
    config: &BrokerConfig,
    tp: &TopicPartition,
    producer_id: ProducerId,
    producer_epoch: u16,
) -> Result<&'a mut Partition, ErrorCode> {
    let partition = partitions.get_mut(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
    if !partition.is_leader() {
        return Err(ErrorCode::NotLeaderOrFollower);
    }
    if partition.isr.len() < config.min_insync_replicas {
        return Err(ErrorCode::NotEnoughReplicas);
    }
    let fencing = config.mutation != Some(BrokerMutation::NoEpochFencing);
    if fencing && partition.log.producer_epoch(producer_id).is_some_and(|epoch| epoch > producer_epoch) {
        return Err(ErrorCode::ProducerFenced);
    }
    Ok(partition)
}

/// How long a coordinator's write may wait for replication (Kafka's
/// `offsets.commit.timeout.ms`, whose default is 5 s).
pub(super) const COORDINATOR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
