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
use crate::protocol::{ClusterMetadata, FetchPartition, Message, OffsetSpec};
use crate::error::ErrorCode;
use crate::record::Record;
use crate::time::{earliest, Instant};
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;

mod commits;
mod fetcher;
mod group;
mod positions;
#[cfg(test)]
mod tests;

pub use commits::CommitInFlight;
use positions::LeaderView;

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
    /// The position that validation is for: its answer speaks of that
    /// position only (Kafka's `maybeCompleteValidation` compares them).
    validating_position: Option<Offset>,
    /// A ListOffsets request for this partition is out.
    resetting: bool,
    backoff_until: Option<Instant>,
    /// A group member's new partition waits for its committed offset (OffsetFetch).
    awaiting_committed: bool,
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

    /// The application finishes its work on revoked partitions before the
    /// member rejoins (`GroupMember::hold_join_on_revoke`), and says so with
    /// `revocation_done`.
    pub fn hold_join_on_revoke(&mut self) {
        if let Some(group) = &mut self.group {
            group.hold_join_on_revoke();
        }
    }

    /// The application finished with the partitions it was told were revoked:
    /// the member rejoins now.
    pub fn revocation_done(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        if let Some(group) = self.group.as_mut().filter(|group| group.is_revoking()) {
            group.revocation_done();
            self.poll_group(now, out);
        }
    }

    /// Stops (or resumes) fetching every partition; positions are kept.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
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

