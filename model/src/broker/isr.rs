//! Replication state: the roles the controller's metadata gives, the high
//! watermark, and the in-sync replica set the leader shrinks and expands
//! through AlterPartition (KIP-497).

use super::*;
use crate::config::BrokerMutation;

impl Broker {
    pub(super) fn apply_partition_state(&mut self, now: Instant, tp: &TopicPartition, state: &PartitionState, out: &mut Outbox<BrokerEvent>) {
        let me = self.id;
        let mut loads = Vec::new();
        let partition = self.partitions.get_or_insert_with(tp, || Partition::new(tp.clone(), Log::default(), Offset(0)));
        let fresh = matches!(partition.role, Role::Offline) && state.leader_epoch >= partition.leader_epoch;
        if state.leader_epoch > partition.leader_epoch || (fresh && state.leader.is_some()) {
            partition.replicas = state.replicas.clone();
            partition.isr = state.isr.clone();
            partition.partition_epoch = state.partition_epoch;
            match state.leader {
                Some(leader) if leader == me => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, "become leader");
                    partition.become_leader(now, me, state.leader_epoch, &mut out.disk);
                    out.event(BrokerEvent::LeadershipTaken { partition: tp.clone(), leader_epoch: state.leader_epoch, high_watermark: partition.high_watermark });
                    loads.push(state.leader_epoch);
                }
                Some(leader) => {
                    tracing::info!(partition = %tp, epoch = state.leader_epoch.0, leader = leader.0, "become follower");
                    partition.become_follower(leader, state.leader_epoch, self.config.legacy_high_watermark_truncation, &mut out.disk);
                    fetcher::add_fetcher(&mut self.fetchers, leader);
                }
                None => partition.become_offline(state.leader_epoch),
            }
            if !partition.is_leader() {
                self.fail_delayed_produces(tp, ErrorCode::NotLeaderOrFollower, out);
                // The coordinator hears its writes failed while it still knows whom to tell.
                self.pump_coordinator_completions(now, out);
                self.unload_coordinator(tp);
            }
        } else if state.leader_epoch == partition.leader_epoch && state.partition_epoch > partition.partition_epoch {
            partition.isr = state.isr.clone();
            partition.partition_epoch = state.partition_epoch;
            partition.set_pending_isr(None);
        } else {
            return;
        }
        for leader_epoch in loads {
            self.load_coordinator(now, tp, leader_epoch, out);
        }
        self.after_high_watermark_change(now, tp, out);
    }

    pub(super) fn handle_alter_partition_response(&mut self, now: Instant, tp: TopicPartition, result: Result<Box<PartitionState>, ErrorCode>, out: &mut Outbox<BrokerEvent>) {
        let Some(partition) = self.partitions.get_mut(&tp) else { return };
        match result {
            Ok(state) if state.leader_epoch == partition.leader_epoch && state.partition_epoch > partition.partition_epoch => {
                partition.isr = state.isr;
                partition.partition_epoch = state.partition_epoch;
                partition.set_pending_isr(None);
                self.after_high_watermark_change(now, &tp, out);
            }
            Ok(_) => {}
            // Refused before anything changed: back to the committed ISR.
            Err(ErrorCode::IneligibleReplica | ErrorCode::UnknownTopicOrPartition) => partition.set_pending_isr(None),
            // KIP-497: a stale epoch means the controller's state moved on, perhaps by
            // this very change applied on an earlier try whose answer was lost. Keep
            // counting on the maximal ISR until the metadata says what happened.
            Err(_) => {}
        }
    }

    /// KIP-497: an AlterPartition that got no answer (its connection closed, or
    /// it timed out) is sent again, and the leader keeps the maximal ISR
    /// meanwhile; giving up and falling back to the smaller ISR could acknowledge
    /// writes the new ISR member never got.
    pub(super) fn retry_alter_partitions(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        if self.broker_epoch.is_none() || !self.partitions.values().any(|partition| partition.pending_isr().is_some()) {
            return;
        }
        let pending: Vec<TopicPartition> = self.partitions.iter().filter(|(_, partition)| partition.pending_isr().is_some()).map(|(tp, _)| tp.clone()).collect();
        for tp in pending {
            let in_flight = self.network.in_flight_tags().any(|request| matches!(request, BrokerRequest::AlterPartition(asked) if *asked == tp));
            if !in_flight {
                self.send_alter_partition(now, &tp, out);
            }
        }
    }

    pub(super) fn propose_isr(&mut self, now: Instant, tp: &TopicPartition, new_isr: Vec<NodeId>, out: &mut Outbox<BrokerEvent>) {
        if self.broker_epoch.is_none() {
            return;
        }
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        if partition.pending_isr().is_none() {
            partition.set_pending_isr(Some((new_isr, now)));
            self.send_alter_partition(now, tp, out);
        }
    }

    /// Asks the controller for `tp`'s pending ISR (KIP-497), once the controller's
    /// connection is ready; `retry_alter_partitions` asks again until it answers.
    pub(super) fn send_alter_partition(&mut self, now: Instant, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        let (Some(broker_epoch), Some(partition)) = (self.broker_epoch, self.partitions.get(tp)) else { return };
        let Some((new_isr, _)) = partition.pending_isr().cloned() else { return };
        let Some(controller) = self.metadata_log.controller() else { return };
        let controller = Destination::new(controller, Channel::Default);
        if !self.network.ready(now, controller, out) {
            return;
        }
        let (broker, partition_name, leader_epoch, partition_epoch) = (self.id, partition.tp.clone(), partition.leader_epoch, partition.partition_epoch);
        let message = |correlation_id| Message::AlterPartitionRequest { correlation_id, broker, broker_epoch, partition: partition_name, leader_epoch, partition_epoch, new_isr };
        self.network.send(now, controller, self.config.request_timeout, BrokerRequest::AlterPartition(tp.clone()), message, out);
    }

    pub(super) fn shrink_isrs(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        let mut proposals = Vec::new();
        for (tp, partition) in &self.partitions {
            if partition.pending_isr().is_some() {
                continue;
            }
            let lagging = partition.out_of_sync_replicas(now, self.id, self.config.replica_lag_time_max);
            if !lagging.is_empty() {
                let new_isr: Vec<NodeId> = partition.isr.iter().copied().filter(|replica| !lagging.contains(replica)).collect();
                tracing::info!(partition = %tp, ?lagging, "leader shrinks ISR");
                proposals.push((tp.clone(), new_isr));
            }
        }
        for (tp, new_isr) in proposals {
            self.propose_isr(now, &tp, new_isr, out);
        }
    }

    /// After an append to `tp`; `waiters_checked` as for `advance_high_watermark`.
    pub(super) fn after_append(&mut self, now: Instant, tp: &TopicPartition, waiters_checked: bool, out: &mut Outbox<BrokerEvent>) {
        self.advance_high_watermark(now, tp, waiters_checked, out);
        self.complete_delayed_fetches(now, Some(tp), out);
    }

    pub(super) fn after_high_watermark_change(&mut self, now: Instant, tp: &TopicPartition, out: &mut Outbox<BrokerEvent>) {
        self.advance_high_watermark(now, tp, false, out);
    }

    /// Moves the leader's high watermark of `tp` if it can, and completes the
    /// writes and fetches that waited for it. `waiters_checked`: the caller knows
    /// every write waiting on `tp` was checked against the current mark already
    /// (each is checked when it arrives and whenever the mark moves, and none
    /// arrived since), so unless the mark moves there is nothing to complete and
    /// the purgatory is not asked; a follower's fetch and a client's produce,
    /// the commonest callers, know this.
    pub(super) fn advance_high_watermark(&mut self, now: Instant, tp: &TopicPartition, waiters_checked: bool, out: &mut Outbox<BrokerEvent>) {
        let me = self.id;
        let Some(partition) = self.partitions.get_mut(tp) else { return };
        let before = partition.high_watermark;
        // KIP-966: with ELR on, the high watermark stops while the ISR is below
        // min ISR, so the replicas that left it for the ELR still hold everything
        // below the mark and may be elected cleanly (Kafka's `isUnderMinIsr` in
        // `maybeIncrementLeaderHW`).
        let under_min_isr = self.config.eligible_leader_replicas_version >= 1 && partition.isr.len() < self.config.min_insync_replicas;
        let advanced = !under_min_isr && partition.maybe_advance_high_watermark(me);
        if self.config.mutation == Some(BrokerMutation::LeaderHighWatermarkRegress) && !advanced {
            let lowest = partition.isr.iter().filter(|replica| **replica != me).filter_map(|replica| match &partition.role {
                Role::Leader(state) => state.followers.iter().find(|(follower, _)| follower == replica).map(|(_, progress)| progress.log_end_offset.unwrap_or_default()),
                _ => None,
            }).min();
            if let Some(lowest) = lowest.filter(|lowest| *lowest < partition.high_watermark) {
                partition.high_watermark = lowest;
                out.event(BrokerEvent::HighWatermarkMoved { partition: tp.clone() });
            }
        }
        let high_watermark = partition.high_watermark;
        let enough = partition.isr.len() >= self.config.min_insync_replicas;
        if advanced {
            assert!(high_watermark > before, "the high watermark never moves backwards on a leader");
            out.event(BrokerEvent::HighWatermarkMoved { partition: tp.clone() });
        } else if waiters_checked {
            #[cfg(test)]
            assert!(!self.delayed_produces.may_complete(tp, high_watermark), "a write the unmoved high watermark completes was already answered");
            return;
        }
        self.complete_replicated(tp, high_watermark, enough, out);
        if advanced {
            self.complete_delayed_fetches(now, Some(tp), out);
        }
    }
}
