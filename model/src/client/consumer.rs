//! Kafka's consumer with manual assignment: positions per partition, reset by
//! auto.offset.reset through ListOffsets, fetches to each partition's leader
//! carrying the leader epoch (KIP-320), and records handed out as they arrive.
//! When a partition's leader epoch changes, the position is validated against
//! the new leader (KIP-320's OffsetsForLeaderEpoch): if the log was truncated
//! below it, the consumer moves back to where the logs diverge.
//!
//! Without a group the consumer assigns itself every partition of its topics.
//! With a group (`subscribe`) a `GroupMember` (client/group_member.rs) holds its
//! membership: partitions come and go with rebalances, each new partition starts
//! from the group's committed offset (OffsetFetch) or, with none committed, from
//! auto.offset.reset; commits are fenced by the member's generation.

use super::group_member::{GroupMember, MemberEvent, MemberRequest};
use super::isolation::ReadIsolation;
use super::metadata::MetadataTracker;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::coordinator::group::protocol::{Generation, GroupMessage, MemberId};
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient, RequestFailure};
use crate::node::{Node, Outbox};
use crate::partition_map::PartitionMap;
use crate::protocol::{ClusterMetadata, ErrorCode, FetchPartition, Message, OffsetSpec};
use crate::record::Record;
use crate::time::{earliest, Instant};
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the consumer reports to its application.
#[derive(Clone, Debug)]
pub enum ConsumerEvent {
    /// Records from one fetch, in offset order per partition.
    Records(Vec<(TopicPartition, Offset, Record)>),
    /// The position moved without reading.
    Seek { partition: TopicPartition, offset: Offset, reason: &'static str },
    /// A partition's position is out of range and auto.offset.reset is "none".
    Error { partition: TopicPartition, error: ErrorCode },
    /// The group gave this consumer `partitions` (all it owns) in `generation`.
    Assigned { generation: Generation, partitions: Vec<TopicPartition> },
    /// The consumer gave up `partitions` it owned in `generation`.
    Revoked { generation: Generation, partitions: Vec<TopicPartition>, reason: &'static str },
    /// An OffsetCommit finished (`auto`: an auto-commit rather than the application's).
    CommitCompleted { generation: Generation, offsets: Vec<(TopicPartition, Offset)>, result: Result<(), ErrorCode>, auto: bool },
}

/// An OffsetCommit (or TxnOffsetCommit) in flight, as its tag remembers it.
#[derive(Debug)]
pub struct CommitInFlight {
    generation: Generation,
    offsets: Vec<(TopicPartition, Offset)>,
    auto: bool,
}

/// What each request in the consumer's `NetworkClient` was.
#[derive(Debug)]
pub enum ConsumerRequest {
    Metadata,
    Fetch { node: NodeId },
    ListOffsets(TopicPartition),
    Validate(TopicPartition),
    OffsetFetch,
    Commit(CommitInFlight),
    Member(MemberRequest),
}

impl From<MemberRequest> for ConsumerRequest {
    fn from(request: MemberRequest) -> Self {
        ConsumerRequest::Member(request)
    }
}

#[derive(Default)]
struct Assignment {
    position: Option<Offset>,
    /// The leader epoch of the last record consumed (KIP-320).
    position_epoch: Option<LeaderEpoch>,
    /// The leader epoch the position was last known good under.
    validated_epoch: Option<LeaderEpoch>,
    /// An OffsetsForLeaderEpoch validation is out.
    validating: bool,
    /// A ListOffsets request for this partition is out.
    resetting: bool,
    backoff_until: Option<Instant>,
    /// A group member's new partition waits for its committed offset (OffsetFetch).
    awaiting_committed: bool,
}

/// What the consumer reads of its metadata on every poll, indexed once per
/// metadata response instead of looked up in the metadata's `BTreeMap` (whose
/// search compares topic names byte by byte) for every partition every time.
#[derive(Default)]
struct LeaderView {
    /// The metadata this view was built from.
    source: Option<Arc<ClusterMetadata>>,
    /// Per partition in the metadata: its leader, if any, and its leader epoch.
    partitions: PartitionMap<(Option<NodeId>, LeaderEpoch)>,
    /// Whether the metadata knows every subscribed topic.
    topics_known: bool,
}

impl LeaderView {
    fn build(metadata: &Arc<ClusterMetadata>, topics: &[Arc<str>]) -> LeaderView {
        let partitions: PartitionMap<(Option<NodeId>, LeaderEpoch)> =
            metadata.partitions.iter().map(|(tp, state)| (tp.clone(), (state.leader, state.leader_epoch))).collect();
        let topics_known = topics.iter().all(|topic| metadata.partition_count(topic) > 0);
        LeaderView { source: Some(metadata.clone()), partitions, topics_known }
    }

    fn leader_epoch(&self, tp: &TopicPartition) -> Option<LeaderEpoch> {
        self.partitions.get(tp).map(|(_, leader_epoch)| *leader_epoch)
    }

    fn leader_of(&self, tp: &TopicPartition) -> Option<(NodeId, LeaderEpoch)> {
        let (leader, leader_epoch) = *self.partitions.get(tp)?;
        Some((leader?, leader_epoch))
    }

    /// A position consumed under an older leader epoch than the partition now has
    /// must be checked before fetching on: the new leader's log may end earlier.
    fn needs_validation(&self, tp: &TopicPartition, assignment: &Assignment) -> bool {
        // The assignment's own fields first: they usually settle it without a lookup.
        let Some(validated) = assignment.validated_epoch else { return false };
        if assignment.position.is_none() || assignment.position_epoch.is_none() {
            return false;
        }
        self.leader_epoch(tp).is_some_and(|current| validated < current)
    }
}

pub struct Consumer {
    config: ConsumerConfig,
    topics: Vec<Arc<str>>,
    metadata: MetadataTracker,
    network: NetworkClient<ConsumerRequest>,
    /// Built from `metadata.current()` whenever that changes.
    view: LeaderView,
    assignments: PartitionMap<Assignment>,
    /// The brokers with a fetch in flight: one at a time per broker, as Kafka's
    /// fetcher keeps one per node (`nodesWithPendingFetchRequests`).
    fetching: Vec<NodeId>,
    /// `send_fetches`' grouping by leader, empty between polls: kept to spare
    /// an allocation on every poll.
    fetch_plan: Vec<(NodeId, Vec<FetchPartition>)>,
    /// Group membership, when the consumer subscribed with a group.
    group: Option<GroupMember>,
    /// Per partition, the offset its fetch in flight asked from (group mode: a
    /// response for an older position, from before a rebalance, is dropped).
    fetch_offsets: PartitionMap<Offset>,
    offset_fetch_in_flight: bool,
    /// KIP-447: after UnstableOffsetCommit, OffsetFetch is asked again from here.
    offset_fetch_retry_at: Option<Instant>,
    committing: bool,
    next_auto_commit: Option<Instant>,
    /// The application paused fetching (KafkaConsumer#pause on every partition):
    /// a consume-transform-produce loop holds its next poll until its batch is done.
    paused: bool,
}

impl Consumer {
    /// `jitter_seed` feeds the reconnect backoff's jitter (the model draws no randomness itself).
    pub fn new(config: ConsumerConfig, topics: Vec<Arc<str>>, bootstrap: Vec<NodeId>, first_broker: usize, jitter_seed: u64) -> Consumer {
        let metadata = MetadataTracker::new(bootstrap, first_broker, config.metadata_max_age, config.retry_backoff, config.request_timeout);
        Consumer {
            network: NetworkClient::new(config.network, jitter_seed),
            config,
            topics,
            metadata,
            view: LeaderView::default(),
            assignments: PartitionMap::new(),
            fetching: Vec::new(),
            fetch_plan: Vec::new(),
            group: None,
            fetch_offsets: PartitionMap::new(),
            offset_fetch_in_flight: false,
            offset_fetch_retry_at: None,
            committing: false,
            next_auto_commit: None,
            paused: false,
        }
    }

    /// A consumer in group `group_id`, subscribed to `topics`.
    pub fn subscribe(config: ConsumerConfig, topics: Vec<Arc<str>>, group_id: Arc<str>, bootstrap: Vec<NodeId>, first_broker: usize, jitter_seed: u64) -> Consumer {
        let member = GroupMember::new(&config, group_id, topics.clone(), bootstrap.clone(), first_broker);
        let mut consumer = Consumer::new(config, topics, bootstrap, first_broker, jitter_seed);
        consumer.group = Some(member);
        consumer
    }

    pub fn group(&self) -> Option<&GroupMember> {
        self.group.as_ref()
    }

    /// Whether a commit can go out now: the member is in a stable generation,
    /// its coordinator's connection is ready, and no other commit is in flight
    /// (commits are synchronous, as `commitSync`).
    pub fn can_commit(&self) -> bool {
        !self.committing
            && self.group.as_ref().is_some_and(|group| group.is_stable() && group.coordinator_destination().is_some_and(|destination| self.network.is_ready(destination)))
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

    fn send_commit(&mut self, now: Instant, offsets: Vec<(TopicPartition, Offset)>, auto: bool, out: &mut Outbox<ConsumerEvent>) -> bool {
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

    /// Stops (or resumes) fetching every partition; positions are kept.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

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

    /// Everything time or an answer may have made due.
    fn poll(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        for assignment in self.assignments.values_mut() {
            if assignment.backoff_until.is_some_and(|until| until <= now) {
                assignment.backoff_until = None;
            }
        }
        self.metadata.poll(now, &mut self.network, || ConsumerRequest::Metadata, out);
        if self.group.is_some() {
            self.poll_group(now, out);
        } else {
            self.assign_from_metadata();
        }
        self.reset_positions(now, out);
        self.validate_positions(now, out);
        self.send_fetches(now, out);
    }

    /// The assigned partitions that `pick` picks, in order. (A loop rather than a
    /// collected iterator chain: it runs several times on every poll and most
    /// often picks nothing.)
    fn assigned_where(&self, mut pick: impl FnMut(&TopicPartition, &Assignment) -> bool) -> Vec<TopicPartition> {
        let mut picked = Vec::new();
        for (tp, assignment) in &self.assignments {
            if pick(tp, assignment) {
                picked.push(tp.clone());
            }
        }
        picked
    }

    fn validate_positions(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let due = self.assigned_where(|tp, assignment| !assignment.validating && assignment.backoff_until.is_none() && self.view.needs_validation(tp, assignment));
        for tp in due {
            let Some((leader, current_leader_epoch)) = self.view.leader_of(&tp) else {
                self.metadata.request_update();
                continue;
            };
            let destination = Destination::new(leader, Channel::Default);
            if !self.network.ready(now, destination, out) {
                continue;
            }
            let assignment = self.assignments.get_mut(&tp).expect("listed above");
            let epoch = assignment.position_epoch.expect("validation needs a position epoch");
            assignment.validating = true;
            let partitions = vec![(tp.clone(), current_leader_epoch, epoch)];
            let message = |correlation_id| Message::OffsetsForLeaderEpochRequest { correlation_id, partitions };
            self.network.send(now, destination, self.config.request_timeout, ConsumerRequest::Validate(tp), message, out);
        }
    }

    fn handle_validation(&mut self, now: Instant, tp: TopicPartition, partitions: Vec<(TopicPartition, Result<crate::protocol::EpochEndOffset, ErrorCode>)>, out: &mut Outbox<ConsumerEvent>) {
        if let Some(assignment) = self.assignments.get_mut(&tp) {
            assignment.validating = false;
        }
        for (tp, result) in partitions {
            let current = self.view.leader_epoch(&tp);
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
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

    fn assign_from_metadata(&mut self) {
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
    fn metadata_key(&self, tp: TopicPartition) -> TopicPartition {
        self.view.partitions.key_named(&tp.topic, tp.partition).cloned().unwrap_or(tp)
    }

    fn reset_positions(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => return,
        };
        let needing = self.assigned_where(|_, assignment| assignment.position.is_none() && !assignment.awaiting_committed && !assignment.resetting && assignment.backoff_until.is_none());
        for tp in needing {
            let Some((leader, current_leader_epoch)) = self.view.leader_of(&tp) else {
                self.metadata.request_update();
                continue;
            };
            let destination = Destination::new(leader, Channel::Default);
            if !self.network.ready(now, destination, out) {
                continue;
            }
            if let Some(assignment) = self.assignments.get_mut(&tp) {
                assignment.resetting = true;
            }
            let partition = tp.clone();
            let message = |correlation_id| Message::ListOffsetsRequest { correlation_id, partition, spec, current_leader_epoch };
            self.network.send(now, destination, self.config.request_timeout, ConsumerRequest::ListOffsets(tp), message, out);
        }
    }

    fn send_fetches(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        if self.paused {
            return;
        }
        // Per leader in id order, the partitions to fetch from it, planned in
        // `fetch_plan` (the fields are borrowed apart so it needs no moving out).
        let plan = &mut self.fetch_plan;
        let mut leaderless = false;
        for (tp, assignment) in &self.assignments {
            let Some(position) = assignment.position else { continue };
            if assignment.backoff_until.is_some() || assignment.validating || self.view.needs_validation(tp, assignment) {
                continue;
            }
            let Some((leader, current_leader_epoch)) = self.view.leader_of(tp) else {
                leaderless = true;
                continue;
            };
            if self.fetching.contains(&leader) {
                continue;
            }
            let index = match plan.binary_search_by_key(&leader, |(leader, _)| *leader) {
                Ok(index) => index,
                Err(index) => {
                    plan.insert(index, (leader, Vec::new()));
                    index
                }
            };
            plan[index].1.push(FetchPartition { partition: tp.clone(), fetch_offset: position, current_leader_epoch });
        }
        if leaderless {
            // Kafka's consumer asks for fresh metadata while a partition has no leader.
            self.metadata.request_update();
        }
        let timeout = self.config.request_timeout;
        for (leader, partitions) in std::mem::take(&mut self.fetch_plan) {
            // Kafka's fetcher skips nodes it is not connected to, connecting to them.
            let destination = Destination::new(leader, Channel::Default);
            if !self.network.ready(now, destination, out) {
                continue;
            }
            self.fetching.push(leader);
            if self.group.is_some() {
                for fetch in &partitions {
                    self.fetch_offsets.insert(fetch.partition.clone(), fetch.fetch_offset);
                }
            }
            let (max_wait, read_committed) = (self.config.fetch_max_wait, self.config.read_committed);
            let message = |correlation_id| Message::FetchRequest { correlation_id, replica_id: None, max_wait, partitions, read_committed };
            self.network.send(now, destination, timeout, ConsumerRequest::Fetch { node: leader }, message, out);
        }
    }

    fn handle_response(&mut self, now: Instant, request: ConsumerRequest, message: Message, out: &mut Outbox<ConsumerEvent>) {
        match (request, message) {
            (ConsumerRequest::Metadata, Message::MetadataResponse { metadata, .. }) => {
                self.metadata.handle_response(now, metadata);
                self.refresh_view();
            }
            (ConsumerRequest::ListOffsets(tp), Message::ListOffsetsResponse { partition, result, .. }) => {
                let Some(assignment) = self.assignments.get_mut(&tp) else { return };
                assignment.resetting = false;
                match result {
                    Ok((offset, leader_epoch)) => {
                        assignment.position = Some(offset);
                        assignment.position_epoch = None;
                        assignment.validated_epoch = Some(leader_epoch);
                        out.event(ConsumerEvent::Seek { partition, offset, reason: "auto.offset.reset" });
                    }
                    Err(_) => {
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                        self.metadata.request_update();
                    }
                }
            }
            (ConsumerRequest::Validate(tp), Message::OffsetsForLeaderEpochResponse { partitions, .. }) => self.handle_validation(now, tp, partitions, out),
            (ConsumerRequest::Member(MemberRequest::FindCoordinator), Message::FindCoordinatorResponse { result, .. }) => {
                if let Some(group) = &mut self.group {
                    group.handle_find_coordinator(now, result);
                }
            }
            (ConsumerRequest::Fetch { node }, Message::FetchResponse { partitions, .. }) => {
                self.fetching.retain(|fetching| *fetching != node);
                self.handle_fetch_response(now, partitions, out);
            }
            (request, Message::Group(message)) => self.handle_group_response(now, request, *message, out),
            (request, message) => unreachable!("a {} answer to {request:?}", message.api()),
        }
    }

    /// A request got no answer: its connection closed or it timed out.
    fn handle_failures(&mut self, now: Instant, failed: Vec<(ConsumerRequest, RequestFailure)>, out: &mut Outbox<ConsumerEvent>) {
        for (request, failure) in failed {
            match request {
                ConsumerRequest::Metadata => self.metadata.handle_failure(now),
                // FetchSessionHandler.handleError: the next fetch starts afresh,
                // once the node's reconnect backoff allows.
                ConsumerRequest::Fetch { node } => self.fetching.retain(|fetching| *fetching != node),
                ConsumerRequest::ListOffsets(tp) | ConsumerRequest::Validate(tp) => {
                    if let Some(assignment) = self.assignments.get_mut(&tp) {
                        assignment.resetting = false;
                        assignment.validating = false;
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                    }
                }
                // CoordinatorResponseHandler.onFailure: a disconnect marks the coordinator unknown.
                ConsumerRequest::OffsetFetch => {
                    self.offset_fetch_in_flight = false;
                    self.lose_coordinator(now);
                }
                ConsumerRequest::Commit(commit) => {
                    self.committing = false;
                    let error = failure.error_code();
                    out.event(ConsumerEvent::CommitCompleted { generation: commit.generation, offsets: commit.offsets, result: Err(error), auto: commit.auto });
                    self.lose_coordinator(now);
                }
                ConsumerRequest::Member(request) => {
                    if let Some(group) = &mut self.group {
                        group.handle_failure(now, request, failure);
                    }
                }
            }
        }
    }

    // ----- group mode -----

    /// Rebuilds the leader view if the metadata changed.
    fn refresh_view(&mut self) {
        let Some(current) = self.metadata.current() else { return };
        if self.view.source.as_ref().is_none_or(|source| !Arc::ptr_eq(source, current)) {
            self.view = LeaderView::build(current, &self.topics);
        }
    }

    /// Whether metadata knows every subscribed topic, so a leader can assign them.
    fn topics_known(&self) -> bool {
        self.view.source.is_some() && self.view.topics_known
    }

    fn poll_group(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
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

    fn lose_coordinator(&mut self, now: Instant) {
        if let Some(group) = &mut self.group {
            group.coordinator_lost(now);
        }
    }

    /// Most polls bring no event: the check, always inlined (the callers are
    /// large enough that a plain hint is not taken), spares them a call.
    #[inline(always)]
    fn apply_member_events(&mut self, now: Instant, events: Vec<MemberEvent>, out: &mut Outbox<ConsumerEvent>) {
        if !events.is_empty() {
            self.apply_member_events_slow(now, events, out);
        }
    }

    fn apply_member_events_slow(&mut self, now: Instant, events: Vec<MemberEvent>, out: &mut Outbox<ConsumerEvent>) {
        for event in events {
            match event {
                MemberEvent::Revoked { generation, partitions, reason } => {
                    for partition in &partitions {
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

    /// New partitions start from the group's committed offsets (OffsetFetch).
    fn fetch_committed_offsets(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
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

    /// `enable.auto.commit`: every `auto.commit.interval.ms` the consumed positions are committed.
    fn maybe_auto_commit(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let due = self.next_auto_commit.is_some_and(|at| at <= now);
        if !(self.config.enable_auto_commit && due && self.can_commit()) {
            return;
        }
        self.next_auto_commit = Some(now + self.config.auto_commit_interval);
        let offsets = self.committable_offsets();
        self.send_commit(now, offsets, true, out);
    }

    fn handle_group_response(&mut self, now: Instant, request: ConsumerRequest, message: GroupMessage, out: &mut Outbox<ConsumerEvent>) {
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

    fn apply_committed_offsets(&mut self, offsets: Vec<(TopicPartition, Option<Offset>)>, out: &mut Outbox<ConsumerEvent>) {
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

    fn handle_fetch_response(&mut self, now: Instant, partitions: Vec<(TopicPartition, Result<crate::protocol::FetchedData, ErrorCode>)>, out: &mut Outbox<ConsumerEvent>) {
        let mut records = Vec::new();
        let max_records = self.config.max_poll_records;
        for (tp, result) in partitions {
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
            let Some(position) = assignment.position else { continue };
            if self.group.is_some() && self.fetch_offsets.remove(&tp) != Some(position) {
                // Fetched for an earlier ownership of this partition.
                continue;
            }
            match result {
                Ok(data) => {
                    let mut next = position;
                    // KIP-98: read_committed reads below the last stable offset only.
                    let end = if self.config.read_committed { data.last_stable_offset.min(data.high_watermark) } else { data.high_watermark };
                    let mut isolation = ReadIsolation::new(self.config.read_committed, &data.aborted_transactions);
                    for batch in &data.batches {
                        let skipped = isolation.skips(batch);
                        if !skipped {
                            records.reserve(batch.records.len().min(max_records.saturating_sub(records.len())));
                        }
                        for (offset, record) in batch.iter() {
                            if offset < next || offset >= end || records.len() >= max_records {
                                continue;
                            }
                            if !skipped {
                                records.push((tp.clone(), offset, record.clone()));
                            }
                            next = offset.next();
                            assignment.position_epoch = Some(batch.partition_leader_epoch);
                        }
                    }
                    assignment.position = Some(next);
                }
                Err(ErrorCode::OffsetOutOfRange) => {
                    if self.config.auto_offset_reset == OffsetReset::None {
                        out.event(ConsumerEvent::Error { partition: tp.clone(), error: ErrorCode::OffsetOutOfRange });
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                    } else {
                        assignment.position = None;
                    }
                }
                Err(error) => {
                    tracing::info!(partition = %tp, %error, "consumer fetch failed");
                    assignment.backoff_until = Some(now + self.config.retry_backoff);
                    self.metadata.request_update();
                }
            }
        }
        if !records.is_empty() {
            out.event(ConsumerEvent::Records(records));
        }
    }
}

impl Node for Consumer {
    type Event = ConsumerEvent;

    fn handle_message(&mut self, now: Instant, _from: NodeId, message: Message, out: &mut Outbox<ConsumerEvent>) {
        // A response to a request no longer in flight (its connection closed) is
        // one Kafka would never have read.
        if let Some(request) = message.correlation_id().and_then(|correlation_id| self.network.take(correlation_id)) {
            self.handle_response(now, request, message, out);
        }
        self.poll(now, out);
    }

    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<ConsumerEvent>) {
        let failed = self.network.handle_connection(now, destination, event);
        if matches!(event, ConnectionEvent::Closed(_)) {
            // NetworkClient.processDisconnection: the disconnect may come of stale metadata.
            self.metadata.request_update();
        }
        self.handle_failures(now, failed, out);
        self.poll(now, out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        let failed = self.network.poll_timeouts(now, out);
        if !failed.is_empty() {
            self.metadata.request_update();
        }
        self.handle_failures(now, failed, out);
        self.poll(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = earliest(self.metadata.next_deadline(), self.network.next_deadline());
        for assignment in self.assignments.values() {
            deadline = earliest(deadline, assignment.backoff_until);
        }
        if let Some(group) = &self.group {
            deadline = earliest(deadline, group.next_deadline());
            deadline = earliest(deadline, self.offset_fetch_retry_at);
            // An auto-commit that cannot go yet waits for what will let it
            // (a rebalance's end, the coordinator's connection, a commit's answer).
            if self.config.enable_auto_commit && self.can_commit() {
                deadline = earliest(deadline, self.next_auto_commit);
            }
        }
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::connect_all;
    use crate::config::Properties;
    use crate::protocol::{ClusterMetadata, EpochEndOffset, FetchedData, PartitionState};
    use crate::record::RecordBatch;
    use crate::types::PartitionEpoch;
    use bytes::Bytes;

    fn metadata(version: u64, leader_epoch: u32) -> Arc<ClusterMetadata> {
        let state = PartitionState {
            replicas: vec![NodeId(1)],
            leader: Some(NodeId(1)),
            leader_epoch: LeaderEpoch(leader_epoch),
            partition_epoch: PartitionEpoch(0),
            isr: vec![NodeId(1)],
        };
        Arc::new(ClusterMetadata { version, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() })
    }

    /// The correlation id of the first request of kind `want` among `out`'s sends.
    fn correlation_of(out: &Outbox<ConsumerEvent>, want: &str) -> u64 {
        out.sends
            .iter()
            .find_map(|send| match &send.message {
                Message::MetadataRequest { correlation_id } if want == "metadata" => Some(*correlation_id),
                Message::ListOffsetsRequest { correlation_id, .. } if want == "list" => Some(*correlation_id),
                Message::FetchRequest { correlation_id, .. } if want == "fetch" => Some(*correlation_id),
                Message::OffsetsForLeaderEpochRequest { correlation_id, .. } if want == "validate" => Some(*correlation_id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {want} request among {:?}", out.sends))
    }

    /// KIP-320: after a leader change, a consumer whose position is past the new
    /// leader's log end for its epoch moves back to where the logs diverge.
    #[test]
    fn a_truncated_log_under_a_new_leader_moves_the_position_back() {
        let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").unwrap();
        let mut consumer = Consumer::new(config, vec!["t".into()], vec![NodeId(1)], 0, 1);
        let mut out = Outbox::new(NodeId(3001));
        let tp = TopicPartition::new("t", 0);
        let from = NodeId(1);
        consumer.handle_timeout(Instant::ZERO, &mut out);
        connect_all(&mut consumer, Instant::ZERO, &mut out);
        let id = correlation_of(&out, "metadata");
        out.sends.clear();
        consumer.handle_message(Instant::ZERO, from, Message::MetadataResponse { correlation_id: id, metadata: metadata(1, 0) }, &mut out);
        let id = correlation_of(&out, "list");
        out.sends.clear();
        consumer.handle_message(Instant::ZERO, from, Message::ListOffsetsResponse { correlation_id: id, partition: tp.clone(), result: Ok((Offset(0), LeaderEpoch(0))) }, &mut out);
        let id = correlation_of(&out, "fetch");
        out.sends.clear();
        let records = (0..5).map(|index| Record { key: None, value: Bytes::from(format!("v{index}")) }).collect();
        let batch = Arc::new(RecordBatch::new(Offset(0), LeaderEpoch(0), None, records));
        let data = FetchedData { high_watermark: Offset(5), log_end_offset: Offset(5), batches: vec![batch], last_stable_offset: Offset(5), aborted_transactions: Vec::new() };
        consumer.handle_message(Instant::ZERO, from, Message::FetchResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(data))] }, &mut out);
        assert_eq!(consumer.positions()[&tp], Offset(5));
        // A new leader at epoch 1: the next metadata refresh reveals it.
        consumer.metadata.request_update();
        out.sends.clear();
        let later = Instant::from_micros(1_000_000);
        consumer.handle_timeout(later, &mut out);
        let id = correlation_of(&out, "metadata");
        out.sends.clear();
        consumer.handle_message(later, from, Message::MetadataResponse { correlation_id: id, metadata: metadata(2, 1) }, &mut out);
        let id = correlation_of(&out, "validate");
        assert!(!out.sends.iter().any(|send| matches!(send.message, Message::FetchRequest { .. })), "no fetch before the position is validated");
        out.sends.clear();
        let answer = EpochEndOffset { leader_epoch: Some(LeaderEpoch(0)), end_offset: Offset(3) };
        consumer.handle_message(later, from, Message::OffsetsForLeaderEpochResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(answer))] }, &mut out);
        assert_eq!(consumer.positions()[&tp], Offset(3));
        assert!(out.events.iter().any(|event| matches!(event, ConsumerEvent::Seek { offset: Offset(3), .. })));
    }
}
