//! Committing positions: OffsetCommit fenced by the member's generation,
//! TxnOffsetCommit inside a transaction (KIP-447), and auto-commit.

use super::*;

impl Consumer {
    /// Whether a commit can go out now: the member is in a stable generation
    /// (or still in it, finishing with revoked partitions before it rejoins),
    /// its coordinator's connection is ready, and no other commit is in flight
    /// (commits are synchronous, as `commitSync`).
    pub fn can_commit(&self) -> bool {
        !self.committing
            && self.group.as_ref().is_some_and(|group| {
                (group.is_stable() || group.is_revoking()) && group.coordinator_destination().is_some_and(|destination| self.network.is_ready(destination))
            })
    }

    /// The positions of owned partitions that have one: what a commit would commit.
    pub fn committable_offsets(&self) -> Vec<(TopicPartition, Offset)> {
        self.assignments.iter().filter_map(|(tp, assignment)| assignment.position.map(|position| (tp.clone(), position))).collect()
    }

    /// Sends OffsetCommit for `offsets` in the current generation; the outcome
    /// comes back as `ConsumerEvent::CommitCompleted`. False if it cannot go out.
    pub fn commit(&mut self, now: Instant, offsets: Vec<(TopicPartition, Offset)>, out: &mut Outbox<ConsumerEvent>) -> bool {
        self.send_commit(now, offsets, false, out)
    }

    pub(super) fn send_commit(&mut self, now: Instant, offsets: Vec<(TopicPartition, Offset)>, auto: bool, out: &mut Outbox<ConsumerEvent>) -> bool {
        if !self.can_commit() || offsets.is_empty() {
            return false;
        }
        let group = self.group.as_ref().expect("can_commit checked the group");
        let (Some(coordinator), Some(member_id)) = (group.coordinator_destination(), group.member_id().cloned()) else { return false };
        let generation = group.generation();
        let group_id = group.group_id.clone();
        let request = ConsumerRequest::Commit(CommitInFlight { generation, offsets: offsets.clone(), auto });
        let message = |correlation_id| Message::group(GroupMessage::OffsetCommitRequest { correlation_id, group_id, generation, member_id: Some(member_id), offsets });
        self.network.send(now, coordinator, self.config.request_timeout, request, message, out);
        self.committing = true;
        true
    }

    /// KIP-98's sendOffsetsToTransaction, the group side: TxnOffsetCommit to the
    /// group coordinator under the producer's id and epoch, carrying this member's
    /// generation and member id (KIP-447) so a zombie of an older generation is
    /// fenced. Kafka's producer sends it with the consumer's group metadata; here
    /// the consumer, which knows the coordinator, sends it for the producer. The
    /// outcome comes back as `CommitCompleted`. False if it cannot go out.
    ///
    /// `group_metadata` is the generation and member id of the poll that read the
    /// offsets' records (Kafka's `consumer.groupMetadata()` taken then): after a
    /// rebalance they are stale, and the coordinator refuses the commit.
    pub fn txn_offset_commit(
        &mut self,
        now: Instant,
        producer: (Arc<str>, crate::types::ProducerId, u16),
        group_metadata: (Generation, MemberId),
        offsets: Vec<(TopicPartition, Offset)>,
        out: &mut Outbox<ConsumerEvent>,
    ) -> bool {
        if !self.can_commit() || offsets.is_empty() {
            return false;
        }
        let group = self.group.as_ref().expect("can_commit checked the group");
        let Some(coordinator) = group.coordinator_destination() else { return false };
        let group_id = group.group_id.clone();
        let (generation, member_id) = group_metadata;
        let (transactional_id, producer_id, producer_epoch) = producer;
        let request = ConsumerRequest::Commit(CommitInFlight { generation, offsets: offsets.clone(), auto: false });
        let message = |correlation_id| {
            Message::group(GroupMessage::TxnOffsetCommitRequest { correlation_id, group_id, transactional_id, producer_id, producer_epoch, generation, member_id, offsets })
        };
        self.network.send(now, coordinator, self.config.request_timeout, request, message, out);
        self.committing = true;
        true
    }

    /// `enable.auto.commit`: every `auto.commit.interval.ms` the consumed positions are committed.
    pub(super) fn maybe_auto_commit(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let due = self.next_auto_commit.is_some_and(|at| at <= now);
        if !(self.config.enable_auto_commit && due && self.can_commit()) {
            return;
        }
        self.next_auto_commit = Some(now + self.config.auto_commit_interval);
        let offsets = self.committable_offsets();
        self.send_commit(now, offsets, true, out);
    }
}

/// An OffsetCommit (or TxnOffsetCommit) in flight, as its tag remembers it.
#[derive(Debug)]
pub struct CommitInFlight {
    pub(super) generation: Generation,
    pub(super) offsets: Vec<(TopicPartition, Offset)>,
    pub(super) auto: bool,
}
