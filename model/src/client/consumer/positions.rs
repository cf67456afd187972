//! Where the consumer reads: positions reset by auto.offset.reset through
//! ListOffsets or set from the group's committed offsets (OffsetFetch), and
//! validated against a new leader (KIP-320's OffsetsForLeaderEpoch).

use super::*;

impl Consumer {
    /// Forgets every position and starts again from the group's committed offsets
    /// (OffsetFetch), as a transactional application does after an abort (KIP-98:
    /// the consumer must seek back to the last committed offsets). Fetches in
    /// flight are answered for old positions and dropped.
    pub fn rewind_to_committed(&mut self) {
        for assignment in self.assignments.values_mut() {
            *assignment = Assignment { awaiting_committed: self.group.is_some(), ..Assignment::default() };
        }
        self.fetch_offsets.clear();
    }

    pub fn positions(&self) -> BTreeMap<TopicPartition, Offset> {
        self.assignments.iter().filter_map(|(tp, assignment)| assignment.position.map(|position| (tp.clone(), position))).collect()
    }

    /// The assigned partitions that `pick` picks, in order. (A loop rather than a
    /// collected iterator chain: it runs several times on every poll and most
    /// often picks nothing.)
    pub(super) fn assigned_where(&self, mut pick: impl FnMut(&TopicPartition, &Assignment) -> bool) -> Vec<TopicPartition> {
        let mut picked = Vec::new();
        for (tp, assignment) in &self.assignments {
            if pick(tp, assignment) {
                picked.push(tp.clone());
            }
        }
        picked
    }

    /// The connection to `tp`'s leader, with the leader's epoch, once it is
    /// ready; an unknown leader asks for fresh metadata.
    fn ready_leader(&mut self, now: Instant, tp: &TopicPartition, out: &mut Outbox<ConsumerEvent>) -> Option<(Destination, LeaderEpoch)> {
        let Some((leader, current_leader_epoch)) = self.view.leader_of(tp) else {
            self.metadata.request_update();
            return None;
        };
        let destination = Destination::new(leader, Channel::Default);
        self.network.ready(now, destination, out).then_some((destination, current_leader_epoch))
    }

    pub(super) fn validate_positions(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let due = self.assigned_where(|tp, assignment| !assignment.validating && assignment.backoff_until.is_none() && self.view.needs_validation(tp, assignment));
        for tp in due {
            let Some((destination, current_leader_epoch)) = self.ready_leader(now, &tp, out) else { continue };
            let assignment = self.assignments.get_mut(&tp).expect("listed above");
            let epoch = assignment.position_epoch.expect("validation needs a position epoch");
            assignment.validating = true;
            assignment.validating_position = assignment.position;
            let partitions = vec![(tp.clone(), current_leader_epoch, epoch)];
            let message = |correlation_id| Message::OffsetsForLeaderEpochRequest { correlation_id, partitions };
            self.network.send(now, destination, self.config.request_timeout, ConsumerRequest::Validate(tp), message, out);
        }
    }

    pub(super) fn handle_validation(&mut self, now: Instant, tp: TopicPartition, partitions: Vec<(TopicPartition, Result<crate::protocol::EpochEndOffset, ErrorCode>)>, out: &mut Outbox<ConsumerEvent>) {
        if let Some(assignment) = self.assignments.get_mut(&tp) {
            assignment.validating = false;
        }
        for (tp, result) in partitions {
            let current = self.view.leader_epoch(&tp);
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
            // The position moved (a seek) while the answer was on its way:
            // it says nothing of the new one, which is validated afresh.
            if assignment.validating_position.take() != assignment.position {
                continue;
            }
            match result {
                Ok(answer) => {
                    assignment.validated_epoch = current;
                    let position = assignment.position.unwrap_or_default();
                    if answer.leader_epoch.is_some() && answer.end_offset < position {
                        tracing::info!(partition = %tp, from = position.0, to = answer.end_offset.0, "consumer detected log truncation");
                        assignment.position = Some(answer.end_offset);
                        assignment.position_epoch = answer.leader_epoch;
                        out.event(ConsumerEvent::Seek { partition: tp, offset: answer.end_offset, reason: "log truncation detected (KIP-320)" });
                    }
                }
                Err(_) => {
                    assignment.backoff_until = Some(now + self.config.retry_backoff);
                    self.metadata.request_update();
                }
            }
        }
    }

    pub(super) fn assign_from_metadata(&mut self) {
        if self.view.source.is_none() {
            return;
        }
        let mut known = false;
        for tp in self.view.partitions.keys().filter(|tp| self.topics.contains(&tp.topic)) {
            known = true;
            if !self.assignments.contains_key(tp) {
                self.assignments.insert(tp.clone(), Assignment::default());
            }
        }
        if !known {
            // The broker answered before it knew the topic: ask again.
            self.metadata.request_update();
        }
    }

    /// `tp` under the metadata's own key for it, when the metadata knows it. A
    /// group's assignment names topics as its leader member spelled them, in
    /// `Arc`s of its own; under the metadata's, the names match by pointer in
    /// every later lookup, here and at the brokers (see `partition_map`).
    pub(super) fn metadata_key(&self, tp: TopicPartition) -> TopicPartition {
        self.view.partitions.key_named(&tp.topic, tp.partition).cloned().unwrap_or(tp)
    }

    pub(super) fn reset_positions(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => return,
        };
        let needing = self.assigned_where(|_, assignment| assignment.position.is_none() && !assignment.awaiting_committed && !assignment.resetting && assignment.backoff_until.is_none());
        for tp in needing {
            let Some((destination, current_leader_epoch)) = self.ready_leader(now, &tp, out) else { continue };
            if let Some(assignment) = self.assignments.get_mut(&tp) {
                assignment.resetting = true;
            }
            let partition = tp.clone();
            let message = |correlation_id| Message::ListOffsetsRequest { correlation_id, partition, spec, current_leader_epoch };
            self.network.send(now, destination, self.config.request_timeout, ConsumerRequest::ListOffsets(tp), message, out);
        }
    }

    /// New partitions start from the group's committed offsets (OffsetFetch).
    pub(super) fn fetch_committed_offsets(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        if self.offset_fetch_in_flight || self.offset_fetch_retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.offset_fetch_retry_at = None;
        let partitions = self.assigned_where(|_, assignment| assignment.awaiting_committed);
        let Some(group) = &self.group else { return };
        let Some(coordinator) = group.coordinator_destination() else { return };
        if partitions.is_empty() || !self.network.ready(now, coordinator, out) {
            return;
        }
        let group_id = group.group_id.clone();
        self.offset_fetch_in_flight = true;
        // KIP-447: a read_committed consumer asks for stable offsets only.
        let require_stable = self.config.read_committed;
        let message = |correlation_id| Message::group(GroupMessage::OffsetFetchRequest { correlation_id, group_id, partitions, require_stable });
        self.network.send(now, coordinator, self.config.request_timeout, ConsumerRequest::OffsetFetch, message, out);
    }

    pub(super) fn apply_committed_offsets(&mut self, offsets: Vec<(TopicPartition, Option<Offset>)>, out: &mut Outbox<ConsumerEvent>) {
        for (partition, offset) in offsets {
            let Some(assignment) = self.assignments.get_mut(&partition) else { continue };
            if !assignment.awaiting_committed {
                continue;
            }
            assignment.awaiting_committed = false;
            match offset {
                Some(offset) => {
                    assignment.position = Some(offset);
                    assignment.position_epoch = None;
                    out.event(ConsumerEvent::Seek { partition, offset, reason: "committed offset" });
                }
                None if self.config.auto_offset_reset == OffsetReset::None => {
                    // Kafka's NoOffsetForPartitionException: the partition stays unread.
                    out.event(ConsumerEvent::Error { partition, error: ErrorCode::OffsetOutOfRange });
                }
                None => {}
            }
        }
    }
}

/// What the consumer reads of its metadata on every poll, indexed once per
/// metadata response instead of looked up in the metadata's `BTreeMap` (whose
/// search compares topic names byte by byte) for every partition every time.
#[derive(Default)]
pub(super) struct LeaderView {
    /// The metadata this view was built from.
    source: Option<Arc<ClusterMetadata>>,
    /// Per partition in the metadata: its leader, if any, and its leader epoch.
    partitions: PartitionMap<(Option<NodeId>, LeaderEpoch)>,
    /// Whether the metadata knows every subscribed topic.
    topics_known: bool,
}

impl LeaderView {
    pub(super) fn build(metadata: &Arc<ClusterMetadata>, topics: &[Arc<str>]) -> LeaderView {
        let partitions: PartitionMap<(Option<NodeId>, LeaderEpoch)> =
            metadata.partitions.iter().map(|(tp, state)| (tp.clone(), (state.leader, state.leader_epoch))).collect();
        let topics_known = topics.iter().all(|topic| metadata.partition_count(topic) > 0);
        LeaderView { source: Some(metadata.clone()), partitions, topics_known }
    }

    pub(super) fn leader_epoch(&self, tp: &TopicPartition) -> Option<LeaderEpoch> {
        self.partitions.get(tp).map(|(_, leader_epoch)| *leader_epoch)
    }

    pub(super) fn leader_of(&self, tp: &TopicPartition) -> Option<(NodeId, LeaderEpoch)> {
        let (leader, leader_epoch) = *self.partitions.get(tp)?;
        Some((leader?, leader_epoch))
    }

    /// A position consumed under an older leader epoch than the partition now has
    /// must be checked before fetching on: the new leader's log may end earlier.
    pub(super) fn needs_validation(&self, tp: &TopicPartition, assignment: &Assignment) -> bool {
        // The assignment's own fields first: they usually settle it without a lookup.
        let Some(validated) = assignment.validated_epoch else { return false };
        if assignment.position.is_none() || assignment.position_epoch.is_none() {
            return false;
        }
        self.leader_epoch(tp).is_some_and(|current| validated < current)
    }
}

impl Consumer {
    /// Rebuilds the leader view if the metadata changed.
    pub(super) fn refresh_view(&mut self) {
        let Some(current) = self.metadata.current() else { return };
        if self.view.source.as_ref().is_none_or(|source| !Arc::ptr_eq(source, current)) {
            self.view = LeaderView::build(current, &self.topics);
        }
    }

    /// Whether metadata knows every subscribed topic, so a leader can assign them.
    pub(super) fn topics_known(&self) -> bool {
        self.view.source.is_some() && self.view.topics_known
    }
}
