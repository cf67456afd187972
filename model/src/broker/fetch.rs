//! Serving reads: Fetch from consumers and from followers (with KIP-320's
//! leader epoch checks and long polling in purgatory), ListOffsets and
//! OffsetsForLeaderEpoch (KIP-101, KIP-279).

use super::*;

impl Broker {
    /// When the first long-polling fetch gives up waiting.
    pub(super) fn delayed_fetches_deadline(&self) -> Option<Instant> {
        self.delayed_fetches.iter().map(|delayed| delayed.deadline).min()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_fetch(
        &mut self,
        now: Instant,
        client: NodeId,
        correlation_id: u64,
        replica_id: Option<NodeId>,
        max_wait: Duration,
        partitions: Vec<FetchPartition>,
        read_committed: bool,
        out: &mut Outbox<BrokerEvent>,
    ) {
        if let Some(follower) = replica_id {
            for request in &partitions {
                let Some(partition) = self.partitions.get_mut(&request.partition) else { continue };
                if check_leader(partition, request.current_leader_epoch).is_err() || request.fetch_offset > partition.log_end_offset() {
                    continue;
                }
                partition.record_follower_fetch(now, follower, request.fetch_offset);
                if partition.may_join_isr(follower) && partition.pending_isr().is_none() {
                    let mut new_isr = partition.isr.clone();
                    new_isr.push(follower);
                    tracing::info!(partition = %request.partition, follower = follower.0, "leader expands ISR");
                    self.propose_isr(now, &request.partition, new_isr, out);
                }
                self.advance_high_watermark(now, &request.partition, true, out);
            }
        }
        let delayed = DelayedFetch { client, correlation_id, replica_id, partitions, read_committed, deadline: now + max_wait };
        if max_wait.is_zero() || self.fetch_ready(&delayed) {
            self.respond_fetch(delayed, out);
        } else {
            self.delayed_fetches.push(delayed);
        }
    }

    /// A delayed fetch completes once any partition has data or an error to report.
    pub(super) fn fetch_ready(&self, fetch: &DelayedFetch) -> bool {
        fetch.partitions.iter().any(|request| match self.validate_leader(&request.partition, request.current_leader_epoch) {
            Err(_) => true,
            Ok(partition) => {
                let end = fetch_end(partition, fetch.replica_id, fetch.read_committed);
                // A read_committed position may stand past the last stable offset
                // (after a reset to the high watermark): it waits, as for no data.
                if fetch.read_committed { request.fetch_offset < end || request.fetch_offset > partition.log_end_offset() } else { request.fetch_offset != end }
            }
        })
    }

    pub(super) fn respond_fetch(&self, fetch: DelayedFetch, out: &mut Outbox<BrokerEvent>) {
        // The request's partitions are consumed: each key moves into the response.
        let partitions = fetch
            .partitions
            .into_iter()
            .map(|request| {
                let result = self.validate_leader(&request.partition, request.current_leader_epoch).and_then(|partition| {
                    let end = fetch_end(partition, fetch.replica_id, fetch.read_committed);
                    if request.fetch_offset > partition.log_end_offset() {
                        return Err(ErrorCode::OffsetOutOfRange);
                    }
                    let batches = partition.log.read(request.fetch_offset, end, FETCH_MAX_BATCHES);
                    // KIP-98: a read_committed fetch gets data below the last stable
                    // offset and the aborted transactions among it.
                    let aborted_transactions = if fetch.read_committed {
                        let until = batches.last().map_or(request.fetch_offset, |batch| batch.next_offset());
                        partition.log.transactions().aborted_between(request.fetch_offset, until)
                    } else {
                        Vec::new()
                    };
                    Ok(FetchedData {
                        high_watermark: partition.high_watermark,
                        log_end_offset: partition.log_end_offset(),
                        batches,
                        last_stable_offset: partition.log.transactions().last_stable_offset(partition.high_watermark),
                        aborted_transactions,
                    })
                });
                (request.partition, result)
            })
            .collect();
        out.send(fetch.client, Message::FetchResponse { correlation_id: fetch.correlation_id, partitions });
    }

    pub(super) fn complete_delayed_fetches(&mut self, now: Instant, tp: Option<&TopicPartition>, out: &mut Outbox<BrokerEvent>) {
        let mut index = 0;
        while index < self.delayed_fetches.len() {
            let fetch = &self.delayed_fetches[index];
            let touched = tp.is_none_or(|tp| fetch.partitions.iter().any(|request| same_partition(&request.partition, tp)));
            if touched && (fetch.deadline <= now || self.fetch_ready(fetch)) {
                let fetch = self.delayed_fetches.remove(index);
                self.respond_fetch(fetch, out);
            } else {
                index += 1;
            }
        }
    }

    /// KIP-320: requests name the leader epoch they expect; an older one is fenced,
    /// a newer one means this broker has not heard of it yet.
    pub(super) fn validate_leader(&self, tp: &TopicPartition, current_leader_epoch: LeaderEpoch) -> Result<&Partition, ErrorCode> {
        let partition = self.partitions.get(tp).ok_or(ErrorCode::NotLeaderOrFollower)?;
        check_leader(partition, current_leader_epoch)?;
        Ok(partition)
    }

    pub(super) fn list_offsets(&self, tp: &TopicPartition, spec: OffsetSpec, current_leader_epoch: LeaderEpoch) -> Result<(Offset, LeaderEpoch), ErrorCode> {
        let partition = self.validate_leader(tp, current_leader_epoch)?;
        let offset = match spec {
            OffsetSpec::Earliest => Offset(0),
            OffsetSpec::Latest => partition.high_watermark,
        };
        Ok((offset, partition.leader_epoch))
    }

    pub(super) fn offsets_for_leader_epoch(&self, tp: &TopicPartition, current_leader_epoch: LeaderEpoch, requested: LeaderEpoch) -> Result<EpochEndOffset, ErrorCode> {
        Ok(self.validate_leader(tp, current_leader_epoch)?.epoch_end_offset(requested))
    }
}

/// How many batches one fetch returns per partition (a stand-in for fetch.max.bytes).
pub(super) const FETCH_MAX_BATCHES: usize = 64;

pub(super) struct DelayedFetch {
    client: NodeId,
    correlation_id: u64,
    replica_id: Option<NodeId>,
    partitions: Vec<FetchPartition>,
    read_committed: bool,
    deadline: Instant,
}

/// KIP-320 on one replica: is it the leader at the epoch the request expects?
pub(super) fn check_leader(partition: &Partition, current_leader_epoch: LeaderEpoch) -> Result<(), ErrorCode> {
    if current_leader_epoch < partition.leader_epoch {
        return Err(ErrorCode::FencedLeaderEpoch);
    }
    if current_leader_epoch > partition.leader_epoch {
        return Err(ErrorCode::UnknownLeaderEpoch);
    }
    if !partition.is_leader() {
        return Err(ErrorCode::NotLeaderOrFollower);
    }
    Ok(())
}

/// Where a fetch's data ends: a follower reads to the log end, a consumer to the
/// high watermark, a read_committed consumer to the last stable offset (KIP-98).
pub(super) fn fetch_end(partition: &Partition, replica_id: Option<NodeId>, read_committed: bool) -> Offset {
    if replica_id.is_some() {
        partition.log_end_offset()
    } else if read_committed {
        partition.log.transactions().last_stable_offset(partition.high_watermark)
    } else {
        partition.high_watermark
    }
}
