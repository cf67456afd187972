//! The consumer's side of its `GroupMember`: polling it, losing and finding
//! the coordinator, and applying what rebalances assign and revoke.

use super::*;
use crate::config::ConsumerMutation;

impl Consumer {
    pub(super) fn poll_group(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        if !self.topics_known() {
            self.metadata.request_update();
        }
        let mut events = Vec::new();
        if self.topics_known() || self.group.as_ref().is_some_and(|group| group.is_stable()) {
            let group = self.group.as_mut().expect("group mode");
            group.poll(now, &mut self.network, out, &mut events);
        }
        self.apply_member_events(now, events, out);
        self.fetch_committed_offsets(now, out);
        self.maybe_auto_commit(now, out);
    }

    pub(super) fn lose_coordinator(&mut self, now: Instant) {
        if let Some(group) = &mut self.group {
            group.coordinator_lost(now);
        }
    }

    /// Most polls bring no event: the check, always inlined (the callers are
    /// large enough that a plain hint is not taken), spares them a call.
    #[inline(always)]
    pub(super) fn apply_member_events(&mut self, now: Instant, events: Vec<MemberEvent>, out: &mut Outbox<ConsumerEvent>) {
        if !events.is_empty() {
            self.apply_member_events_slow(now, events, out);
        }
    }

    pub(super) fn apply_member_events_slow(&mut self, now: Instant, events: Vec<MemberEvent>, out: &mut Outbox<ConsumerEvent>) {
        for event in events {
            match event {
                MemberEvent::Revoked { generation, partitions, reason } => {
                    for partition in partitions.iter().filter(|_| self.config.mutation != Some(ConsumerMutation::FetchRevoked)) {
                        self.assignments.remove(partition);
                        self.fetch_offsets.remove(partition);
                    }
                    out.event(ConsumerEvent::Revoked { generation, partitions, reason });
                }
                MemberEvent::Assigned { generation, partitions, added } => {
                    for partition in added {
                        let partition = self.metadata_key(partition);
                        self.assignments.insert(partition, Assignment { awaiting_committed: true, ..Assignment::default() });
                    }
                    if self.config.enable_auto_commit {
                        self.next_auto_commit = Some(now + self.config.auto_commit_interval);
                    }
                    out.event(ConsumerEvent::Assigned { generation, partitions });
                }
            }
        }
    }

    pub(super) fn handle_group_response(&mut self, now: Instant, request: ConsumerRequest, message: GroupMessage, out: &mut Outbox<ConsumerEvent>) {
        match (request, message) {
            (ConsumerRequest::OffsetFetch, GroupMessage::OffsetFetchResponse { result, .. }) => {
                self.offset_fetch_in_flight = false;
                match result {
                    Ok(offsets) => self.apply_committed_offsets(offsets, out),
                    // KIP-447: a transaction's offsets are pending; the next
                    // poll asks again (awaiting_committed stays set).
                    Err(ErrorCode::UnstableOffsetCommit) => self.offset_fetch_retry_at = Some(now + self.config.retry_backoff),
                    Err(_) => self.lose_coordinator(now),
                }
            }
            (ConsumerRequest::Commit(commit), GroupMessage::OffsetCommitResponse { result, .. } | GroupMessage::TxnOffsetCommitResponse { result, .. }) => {
                self.committing = false;
                if self.config.mutation == Some(ConsumerMutation::RewindAfterCommit) && result.is_ok() && !commit.auto {
                    for (tp, _) in &commit.offsets {
                        if let Some(assignment) = self.assignments.get_mut(tp) {
                            assignment.position = Some(Offset(0));
                        }
                    }
                }
                out.event(ConsumerEvent::CommitCompleted { generation: commit.generation, offsets: commit.offsets, result, auto: commit.auto });
                if let Err(error) = result {
                    let mut events = Vec::new();
                    // A refusal from an older generation says nothing of the current one.
                    if let Some(group) = self.group.as_mut().filter(|group| group.generation() == commit.generation) {
                        group.handle_commit_error(now, error, &mut events);
                    }
                    self.apply_member_events(now, events, out);
                }
            }
            (ConsumerRequest::Member(_), message) => {
                let correlation_id = message.correlation_id();
                let mut events = Vec::new();
                let metadata = self.metadata.current().cloned();
                if let Some(group) = &mut self.group {
                    group.handle_response(now, correlation_id, message, metadata.as_ref(), &mut self.network, out, &mut events);
                }
                self.apply_member_events(now, events, out);
            }
            (request, message) => unreachable!("a {} answer to {request:?}", message.api()),
        }
    }
}
