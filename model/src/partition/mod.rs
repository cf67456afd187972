//! One replica of a partition on one broker: its log, high watermark, leader epoch,
//! ISR, and its role, leader or follower.
//!
//! The leader tracks each follower's log end offset and when it last caught up
//! (Kafka's `lastCaughtUpTimeMs`), shrinks and expands the ISR through the
//! controller (KIP-497), and advances the high watermark to the smallest log end
//! offset in the maximal ISR. A new follower finds where its log diverges from the
//! leader's by leader epoch (KIP-101, KIP-279) before it fetches.

use crate::log::Log;
use crate::protocol::EpochEndOffset;
use crate::record::{ProducerStamp, RecordBatch, SharedBatch};
use crate::storage::{Checkpoint, DiskOp};
use crate::time::Instant;
use crate::types::{LeaderEpoch, NodeId, Offset, PartitionEpoch, TopicPartition};
use std::sync::Arc;

/// What the leader knows of one follower.
#[derive(Clone, Debug)]
pub struct ReplicaProgress {
    pub log_end_offset: Option<Offset>,
    pub last_caught_up: Instant,
    last_fetch_time: Instant,
    leader_end_offset_at_last_fetch: Offset,
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    pub followers: Vec<(NodeId, ReplicaProgress)>,
    /// An AlterPartition in flight, with the ISR it asks for and when it was sent.
    pub pending_isr: Option<(Vec<NodeId>, Instant)>,
}

#[derive(Clone, Debug)]
pub struct FollowerState {
    pub leader: NodeId,
    /// False until the follower has truncated its log to where it agrees with this leader.
    pub truncated: bool,
}

#[derive(Clone, Debug)]
pub enum Role {
    /// No leader is known, or this broker was just restarted and has no orders yet.
    Offline,
    Leader(LeaderState),
    Follower(FollowerState),
}

#[derive(Clone, Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: Log,
    pub high_watermark: Offset,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub role: Role,
    /// Messages appended since the last flush.
    pub unflushed_messages: u64,
}

impl Partition {
    pub fn new(tp: TopicPartition, log: Log, high_watermark: Offset) -> Partition {
        let high_watermark = high_watermark.min(log.log_end_offset());
        Partition {
            tp,
            log,
            high_watermark,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            replicas: Vec::new(),
            isr: Vec::new(),
            role: Role::Offline,
            unflushed_messages: 0,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    pub fn become_leader(&mut self, now: Instant, me: NodeId, leader_epoch: LeaderEpoch, out: &mut Vec<DiskOp>) {
        self.leader_epoch = leader_epoch;
        if self.log.assign_epoch_start(leader_epoch) {
            out.push(self.epoch_checkpoint());
        }
        // Kafka starts every follower's lag clock at the leader's election.
        let followers = self
            .replicas
            .iter()
            .filter(|replica| **replica != me)
            .map(|replica| {
                let progress = ReplicaProgress {
                    log_end_offset: None,
                    last_caught_up: now,
                    last_fetch_time: now,
                    leader_end_offset_at_last_fetch: Offset(0),
                };
                (*replica, progress)
            })
            .collect();
        self.role = Role::Leader(LeaderState { followers, pending_isr: None });
    }

    pub fn become_follower(&mut self, leader: NodeId, leader_epoch: LeaderEpoch, legacy_truncation: bool, out: &mut Vec<DiskOp>) {
        self.leader_epoch = leader_epoch;
        self.role = Role::Follower(FollowerState { leader, truncated: false });
        if legacy_truncation {
            // Before KIP-101 a follower cut its log at its high watermark, which can
            // keep records the new leader never had or drop ones it acknowledged.
            let high_watermark = self.high_watermark;
            self.truncate_to(high_watermark, out);
            self.role = Role::Follower(FollowerState { leader, truncated: true });
        }
    }

    pub fn become_offline(&mut self, leader_epoch: LeaderEpoch) {
        self.leader_epoch = leader_epoch;
        self.role = Role::Offline;
    }

    pub fn epoch_checkpoint(&self) -> DiskOp {
        DiskOp::Checkpoint(Checkpoint::LeaderEpochs { partition: self.tp.clone(), entries: self.log.epochs().entries().to_vec() })
    }

    pub fn truncate_to(&mut self, offset: Offset, out: &mut Vec<DiskOp>) {
        if offset >= self.log.log_end_offset() {
            return;
        }
        tracing::info!(partition = %self.tp, from = self.log.log_end_offset().0, to = offset.0, "truncate log");
        self.log.truncate_to(offset);
        self.high_watermark = self.high_watermark.min(offset);
        out.push(DiskOp::Truncate { partition: self.tp.clone(), offset });
        out.push(self.epoch_checkpoint());
    }

    /// KIP-279 on the follower, as Kafka's `getOffsetTruncationState`: cuts the
    /// log where the leader's answer to OffsetsForLeaderEpoch shows it diverges,
    /// and marks the follower truncated once the divergence is found (else it
    /// asks again about the epoch before).
    pub fn truncate_to_leader_answer(&mut self, answer: EpochEndOffset, out: &mut Vec<DiskOp>) {
        let local_end = self.log.log_end_offset();
        let (target, done) = match answer.leader_epoch {
            // The leader knows no epoch this old: fall back to the high watermark.
            None => (self.high_watermark, true),
            Some(leader_epoch) => match self.log.epochs().end_offset_for(leader_epoch, local_end) {
                None => (answer.end_offset, true),
                // We never had the leader's epoch: cut back to where our older
                // epoch ended and ask again about the epoch before.
                Some((follower_epoch, follower_end)) if follower_epoch != leader_epoch => (follower_end, false),
                Some((_, follower_end)) => (answer.end_offset.min(follower_end), true),
            },
        };
        self.truncate_to(target, out);
        if let Role::Follower(state) = &mut self.role {
            state.truncated = done;
        }
    }

    /// The leader's answer to OffsetsForLeaderEpoch for `requested` (KIP-279).
    pub fn epoch_end_offset(&self, requested: LeaderEpoch) -> EpochEndOffset {
        match self.log.epochs().end_offset_for(requested, self.log_end_offset()) {
            Some((epoch, end_offset)) => EpochEndOffset { leader_epoch: Some(epoch), end_offset },
            None => EpochEndOffset { leader_epoch: None, end_offset: Offset(0) },
        }
    }

    /// A follower takes what its leader's fetch returned: the batches that
    /// continue its log (the part of one it already has is cut off), and the
    /// leader's high watermark, as far as its own log reaches.
    pub fn append_fetched(&mut self, batches: Vec<SharedBatch>, leader_high_watermark: Offset, flush_interval: u64, out: &mut Vec<DiskOp>) {
        for batch in batches {
            let end = self.log.log_end_offset();
            if batch.next_offset() <= end {
                continue;
            }
            let batch = if batch.base_offset < end { Arc::new(slice_from(&batch, end)) } else { batch };
            if batch.base_offset != end {
                break;
            }
            self.append(batch, flush_interval, out);
        }
        self.high_watermark = leader_high_watermark.min(self.log.log_end_offset());
    }

    /// Appends a batch and asks for a flush when `flush_interval` messages are unflushed.
    pub fn append(&mut self, batch: SharedBatch, flush_interval: u64, out: &mut Vec<DiskOp>) {
        let epochs_before = self.log.latest_epoch();
        let count = batch.records.len() as u64;
        self.log.append(batch.clone());
        if self.log.latest_epoch() != epochs_before {
            out.push(self.epoch_checkpoint());
        }
        out.push(DiskOp::Append { partition: self.tp.clone(), batch });
        self.unflushed_messages += count;
        if self.unflushed_messages >= flush_interval {
            self.unflushed_messages = 0;
            out.push(DiskOp::Flush { partition: self.tp.clone() });
        }
    }

    /// Records a follower's fetch at `fetch_offset` (its log end offset), Kafka's
    /// `updateFollowerFetchState`: caught up if it reached the leader's log end, or
    /// the log end the leader had at its previous fetch.
    pub fn record_follower_fetch(&mut self, now: Instant, follower: NodeId, fetch_offset: Offset) {
        let leader_end = self.log.log_end_offset();
        let Role::Leader(state) = &mut self.role else { return };
        let Some((_, progress)) = state.followers.iter_mut().find(|(replica, _)| *replica == follower) else { return };
        if fetch_offset >= leader_end {
            progress.last_caught_up = now;
        } else if fetch_offset >= progress.leader_end_offset_at_last_fetch {
            progress.last_caught_up = progress.last_caught_up.max(progress.last_fetch_time);
        }
        progress.leader_end_offset_at_last_fetch = leader_end;
        progress.last_fetch_time = now;
        progress.log_end_offset = Some(fetch_offset);
    }

    /// KIP-497's maximal ISR: the committed ISR together with any replica a pending
    /// expansion adds, so the high watermark never counts on fewer replicas than
    /// might already be in the ISR.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut isr = self.isr.clone();
        if let Role::Leader(LeaderState { pending_isr: Some((pending, _)), .. }) = &self.role {
            for replica in pending {
                if !isr.contains(replica) {
                    isr.push(*replica);
                }
            }
        }
        isr
    }

    /// Moves the leader's high watermark to the smallest log end offset in the
    /// maximal ISR; returns whether it moved. It never moves backwards.
    pub fn maybe_advance_high_watermark(&mut self, me: NodeId) -> bool {
        let Role::Leader(state) = &self.role else { return false };
        let mut smallest = self.log.log_end_offset();
        // The maximal ISR's members, some perhaps twice: a minimum does not mind,
        // and this runs on every follower fetch, so it builds no list.
        let pending = state.pending_isr.as_ref().map_or(&[][..], |(pending, _)| &pending[..]);
        for &replica in self.isr.iter().chain(pending) {
            if replica == me {
                continue;
            }
            let end = state
                .followers
                .iter()
                .find(|(follower, _)| *follower == replica)
                .and_then(|(_, progress)| progress.log_end_offset)
                .unwrap_or(Offset(0));
            smallest = smallest.min(end);
        }
        if smallest > self.high_watermark {
            self.high_watermark = smallest;
            return true;
        }
        false
    }

    /// ISR members whose lag exceeded `replica.lag.time.max.ms`.
    pub fn out_of_sync_replicas(&self, now: Instant, me: NodeId, lag_max: std::time::Duration) -> Vec<NodeId> {
        let Role::Leader(state) = &self.role else { return Vec::new() };
        state
            .followers
            .iter()
            .filter(|(replica, progress)| *replica != me && self.isr.contains(replica) && now.saturating_since(progress.last_caught_up) > lag_max)
            .map(|(replica, _)| *replica)
            .collect()
    }

    /// A follower may rejoin the ISR once it reached the high watermark and the
    /// start of the current leader epoch (Kafka's `isFollowerInSync` plus KIP-101).
    pub fn may_join_isr(&self, follower: NodeId) -> bool {
        let Role::Leader(state) = &self.role else { return false };
        if self.isr.contains(&follower) {
            return false;
        }
        let epoch_start = self.log.epochs().entries().last().map(|entry| entry.start_offset).unwrap_or_default();
        state
            .followers
            .iter()
            .find(|(replica, _)| *replica == follower)
            .and_then(|(_, progress)| progress.log_end_offset)
            .is_some_and(|end| end >= self.high_watermark && end >= epoch_start)
    }

    pub fn pending_isr(&self) -> Option<&(Vec<NodeId>, Instant)> {
        match &self.role {
            Role::Leader(state) => state.pending_isr.as_ref(),
            _ => None,
        }
    }

    pub fn set_pending_isr(&mut self, pending: Option<(Vec<NodeId>, Instant)>) {
        if let Role::Leader(state) = &mut self.role {
            state.pending_isr = pending;
        }
    }
}

/// The records of `batch` from `from` on, as a batch of their own.
fn slice_from(batch: &RecordBatch, from: Offset) -> RecordBatch {
    let skip = (from.0 - batch.base_offset.0) as usize;
    let producer = batch.producer.map(|stamp| ProducerStamp { base_sequence: crate::types::Sequence(stamp.base_sequence.0 + skip as i32), ..stamp });
    batch.sliced(from, producer, batch.records[skip..].into())
}

#[cfg(test)]
mod replication_props;

#[cfg(test)]
mod tests;
