//! The consumer's side of group membership (Kafka's `ConsumerCoordinator` over
//! the classic protocol): find the coordinator, join, sync, heartbeat, rejoin.
//!
//! Phases, as a member moves through them:
//! - `Unjoined`: needs to (re)join once the coordinator is known. Under the eager
//!   protocol every owned partition is revoked before joining; under the
//!   cooperative protocol (KIP-429) the member keeps them and reports them in
//!   its subscription.
//! - `Joining`: JoinGroup is out (the coordinator parks it until the rebalance completes).
//! - `AwaitingSync`: SyncGroup is out (the leader's carries the assignment its assignor computed).
//! - `Stable`: heartbeats every `heartbeat.interval.ms`.
//!
//! A member that hears nothing from its coordinator for `session.timeout.ms`
//! knows the coordinator has expired it and proactively gives up its partitions
//! ("partitions lost", KIP-429's `onPartitionsLost`), so a cut-off or stalled
//! consumer stops processing what another member may own by now.

use crate::config::ConsumerConfig;
use crate::client::assignor::{rebalance_protocol, Assignor, RebalanceProtocol};
use crate::coordinator::group::protocol::{Generation, GroupMessage, JoinResult, MemberId, Subscription};
use crate::protocol::CoordinatorType;
use crate::net::{Channel, Destination, NetworkClient, RequestFailure};
use crate::node::Outbox;
use crate::protocol::{ClusterMetadata, Message};
use crate::error::ErrorCode;
use crate::time::{earliest, Instant};
use crate::types::{NodeId, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Unjoined,
    /// JoinGroup is out; its correlation id tells its answer from a stale one.
    Joining { correlation_id: u64 },
    AwaitingSync { correlation_id: u64 },
    Stable { next_heartbeat: Instant, heartbeat_in_flight: Option<u64> },
    /// Eager: everything was revoked, and the application finishes its work
    /// on it (Kafka's `onPartitionsRevoked`, run in `onJoinPrepare` before the
    /// JoinGroup goes out) until `revocation_done` or `until`.
    Revoking { until: Instant },
}

/// The member's requests, as its client's `NetworkClient` tags them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    FindCoordinator,
    JoinGroup,
    SyncGroup,
    Heartbeat,
}

/// What membership changed, for the consumer to apply to its fetch positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// `partitions` is everything owned in `generation`; `added` what is new.
    Assigned { generation: Generation, partitions: Vec<TopicPartition>, added: Vec<TopicPartition> },
    Revoked { generation: Generation, partitions: Vec<TopicPartition>, reason: &'static str },
}

pub struct GroupMember {
    pub group_id: Arc<str>,
    topics: Vec<Arc<str>>,
    bootstrap: Vec<NodeId>,
    next_broker: usize,
    coordinator: Option<NodeId>,
    finding: bool,
    /// A request is due, but its connection is not ready: the connection's
    /// event (or the `NetworkClient`'s deadline) wakes the member.
    waiting_for_connection: bool,
    retry_at: Option<Instant>,
    member_id: Option<MemberId>,
    generation: Generation,
    phase: Phase,
    owned: Vec<TopicPartition>,
    /// The last time the coordinator showed it still counts this member in.
    last_contact: Instant,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    rebalance_timeout: Duration,
    request_timeout: Duration,
    retry_backoff: Duration,
    assignors: Vec<Assignor>,
    /// The injected bug of `ConsumerConfig::overlapping_assignment`.
    overlapping_assignment: bool,
    /// Whether the application's rebalance listener finishes work on revoked
    /// partitions before the member rejoins (`hold_join_on_revoke`).
    hold_join_on_revoke: bool,
}

impl GroupMember {
    pub fn new(config: &ConsumerConfig, group_id: Arc<str>, topics: Vec<Arc<str>>, bootstrap: Vec<NodeId>, first_broker: usize) -> GroupMember {
        GroupMember {
            group_id,
            topics,
            bootstrap,
            next_broker: first_broker,
            coordinator: None,
            finding: false,
            waiting_for_connection: false,
            retry_at: None,
            member_id: None,
            generation: Generation::NONE,
            phase: Phase::Unjoined,
            owned: Vec::new(),
            last_contact: Instant::ZERO,
            session_timeout: config.session_timeout,
            heartbeat_interval: config.heartbeat_interval,
            rebalance_timeout: config.max_poll_interval,
            request_timeout: config.request_timeout,
            retry_backoff: config.retry_backoff,
            assignors: config.assignors.clone(),
            overlapping_assignment: config.overlapping_assignment,
            hold_join_on_revoke: false,
        }
    }

    /// The application commits (or aborts) what it did with its partitions in
    /// its `onPartitionsRevoked`, as Kafka Streams does, before the member
    /// rejoins: an eager revocation holds the JoinGroup until
    /// `revocation_done`, or at most the rebalance timeout (after which the
    /// coordinator would have dropped the member from the rebalance anyway).
    pub fn hold_join_on_revoke(&mut self) {
        self.hold_join_on_revoke = true;
    }

    /// The application finished with the revoked partitions: the member joins.
    pub fn revocation_done(&mut self) {
        if matches!(self.phase, Phase::Revoking { .. }) {
            self.phase = Phase::Unjoined;
        }
    }

    /// Whether the member waits for its application to finish with the
    /// partitions it gave up; it is still in its generation, so it may commit.
    pub fn is_revoking(&self) -> bool {
        matches!(self.phase, Phase::Revoking { .. })
    }

    pub fn protocol(&self) -> RebalanceProtocol {
        rebalance_protocol(&self.assignors)
    }

    pub fn coordinator(&self) -> Option<NodeId> {
        self.coordinator
    }

    /// The connection to the coordinator: a channel of its own, as Kafka's
    /// `AbstractCoordinator` keeps (node id `Integer.MAX_VALUE - id`).
    pub fn coordinator_destination(&self) -> Option<Destination> {
        self.coordinator.map(|node| Destination::new(node, Channel::GroupCoordinator))
    }

    pub fn is_stable(&self) -> bool {
        matches!(self.phase, Phase::Stable { .. })
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn member_id(&self) -> Option<&MemberId> {
        self.member_id.as_ref()
    }

    pub fn owned(&self) -> &[TopicPartition] {
        &self.owned
    }

    /// Kafka's `markCoordinatorUnknown`: the coordinator did not answer, its
    /// connection closed, or it said it is not the coordinator. Find it again.
    pub fn coordinator_lost(&mut self, now: Instant) {
        if self.coordinator.take().is_some() {
            tracing::info!(group = &*self.group_id, "consumer lost its coordinator");
        }
        self.retry_at = Some(now + self.retry_backoff);
        match self.phase {
            Phase::Joining { .. } | Phase::AwaitingSync { .. } => self.phase = Phase::Unjoined,
            Phase::Stable { next_heartbeat, .. } => self.phase = Phase::Stable { next_heartbeat, heartbeat_in_flight: None },
            Phase::Unjoined | Phase::Revoking { .. } => {}
        }
    }

    /// JoinGroup waits for the rebalance: Kafka gives it the rebalance timeout
    /// plus five seconds (`AbstractCoordinator.JOIN_GROUP_TIMEOUT_LAPSE`).
    fn join_timeout(&self) -> Duration {
        self.request_timeout.max(self.rebalance_timeout + Duration::from_secs(5))
    }

    /// When the member next has something to do; its requests' timeouts are
    /// its client's `NetworkClient`'s.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.retry_at;
        // A heartbeat goes only to a known coordinator over a ready connection;
        // until then, finding it (or the connection's event) wakes the member.
        if let (Phase::Stable { next_heartbeat, heartbeat_in_flight: None }, Some(_), false) = (self.phase, self.coordinator, self.waiting_for_connection) {
            deadline = earliest(deadline, Some(next_heartbeat));
        }
        if let Phase::Revoking { until } = self.phase {
            deadline = earliest(deadline, Some(until));
        }
        if self.session_matters() {
            deadline = earliest(deadline, Some(self.last_contact + self.session_timeout));
        }
        deadline
    }

    /// Whether the session clock runs: the member owns something or is in a
    /// generation, and is not parked in JoinGroup (where the coordinator keeps it alive).
    fn session_matters(&self) -> bool {
        (!self.owned.is_empty() || self.is_stable() || matches!(self.phase, Phase::AwaitingSync { .. })) && !matches!(self.phase, Phase::Joining { .. })
    }

    fn session_expired(&self, now: Instant) -> bool {
        self.session_matters() && now.saturating_since(self.last_contact) >= self.session_timeout
    }

    /// Gives up every owned partition and the member id: the coordinator has
    /// (or soon will have) expired this member.
    fn lose_partitions(&mut self, reason: &'static str, events: &mut Vec<MemberEvent>) {
        let partitions = std::mem::take(&mut self.owned);
        if !partitions.is_empty() {
            events.push(MemberEvent::Revoked { generation: self.generation, partitions, reason });
        }
        self.member_id = None;
        self.generation = Generation::NONE;
        self.phase = Phase::Unjoined;
    }

    /// Drives membership: the session clock, coordinator discovery, joining, heartbeats.
    pub fn poll<T: From<MemberRequest>, E>(&mut self, now: Instant, network: &mut NetworkClient<T>, out: &mut Outbox<E>, events: &mut Vec<MemberEvent>) {
        self.waiting_for_connection = false;
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
        // Kafka's HeartbeatThread: a session that timed out without a heartbeat
        // response only marks the coordinator unknown. The member keeps its
        // partitions and generation (fetching, processing and committing on)
        // until a coordinator answers UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION:
        // a member that stalled past its session wakes as a zombie, and only
        // the coordinator's generation fencing stops its commits. The session
        // clock starts again with the coordinator's rediscovery
        // (`heartbeat.resetSessionTimeout`). librdkafka instead gives the
        // assignment up at once; the Java client is the one modelled.
        if self.session_expired(now) {
            tracing::info!(group = &*self.group_id, "consumer's session timed out without a heartbeat response: coordinator marked unknown");
            self.coordinator_lost(now);
            self.last_contact = now;
        }
        // AbstractCoordinator.checkAndGetCoordinator: a coordinator whose
        // connection failed and is backing off is looked up again.
        if self.coordinator_destination().is_some_and(|coordinator| network.is_unavailable(now, coordinator)) {
            self.coordinator_lost(now);
        }
        if let Phase::Revoking { until } = self.phase {
            if until > now {
                return;
            }
            tracing::info!(group = &*self.group_id, "the application did not finish with its revoked partitions within the rebalance timeout");
            self.phase = Phase::Unjoined;
        }
        if self.retry_at.is_some() {
            return;
        }
        let Some(coordinator) = self.coordinator_destination() else {
            if !self.finding && !self.bootstrap.is_empty() {
                // AbstractCoordinator.lookupCoordinator: FindCoordinator to the least loaded node.
                let Some(node) = network.least_loaded_node(now, &self.bootstrap, self.next_broker, Channel::Default) else {
                    network.want_any(&self.bootstrap, Channel::Default);
                    self.waiting_for_connection = true;
                    return;
                };
                let destination = Destination::new(node, Channel::Default);
                if !network.ready(now, destination, out) {
                    self.waiting_for_connection = true;
                    return;
                }
                self.next_broker += 1;
                self.finding = true;
                let key = self.group_id.clone();
                let message = |correlation_id| Message::FindCoordinatorRequest { correlation_id, key_type: CoordinatorType::Group, key };
                network.send(now, destination, self.request_timeout, MemberRequest::FindCoordinator.into(), message, out);
            }
            return;
        };
        match self.phase {
            Phase::Unjoined => {
                if !network.ready(now, coordinator, out) {
                    self.waiting_for_connection = true;
                    return;
                }
                if self.protocol() == RebalanceProtocol::Eager && !self.owned.is_empty() {
                    // Eager: everything is revoked before joining.
                    let partitions = std::mem::take(&mut self.owned);
                    events.push(MemberEvent::Revoked { generation: self.generation, partitions, reason: "rebalance (eager)" });
                    if self.hold_join_on_revoke {
                        self.phase = Phase::Revoking { until: now + self.rebalance_timeout };
                        return;
                    }
                }
                let subscription = Subscription { topics: self.topics.clone(), owned_partitions: self.owned.clone(), generation: self.generation };
                let (group_id, member_id) = (self.group_id.clone(), self.member_id.clone());
                let (session_timeout, rebalance_timeout) = (self.session_timeout, self.rebalance_timeout);
                let protocols = self.assignors.iter().map(|assignor| Arc::from(assignor.name())).collect();
                let message = |correlation_id| {
                    Message::group(GroupMessage::JoinGroupRequest { correlation_id, group_id, member_id, session_timeout, rebalance_timeout, protocols, subscription })
                };
                let correlation_id = network.send(now, coordinator, self.join_timeout(), MemberRequest::JoinGroup.into(), message, out);
                self.phase = Phase::Joining { correlation_id };
            }
            Phase::Stable { next_heartbeat, heartbeat_in_flight: None } if next_heartbeat <= now => {
                let Some(member_id) = self.member_id.clone() else { return };
                if !network.ready(now, coordinator, out) {
                    self.waiting_for_connection = true;
                    return;
                }
                let (group_id, generation) = (self.group_id.clone(), self.generation);
                let message = |correlation_id| Message::group(GroupMessage::HeartbeatRequest { correlation_id, group_id, generation, member_id });
                let correlation_id = network.send(now, coordinator, self.request_timeout, MemberRequest::Heartbeat.into(), message, out);
                self.phase = Phase::Stable { next_heartbeat: now + self.heartbeat_interval, heartbeat_in_flight: Some(correlation_id) };
            }
            _ => {}
        }
    }

    pub fn handle_find_coordinator(&mut self, now: Instant, result: Result<NodeId, ErrorCode>) {
        self.finding = false;
        match result {
            Ok(node) => {
                tracing::info!(group = &*self.group_id, coordinator = node.0, "consumer found its coordinator");
                self.coordinator = Some(node);
            }
            Err(_) => self.retry_at = Some(now + self.retry_backoff),
        }
    }

    /// A request of this member got no answer: `CoordinatorResponseHandler.onFailure`
    /// marks the coordinator unknown on a disconnect (a timeout closes the
    /// connection too); a failed lookup is retried after the backoff.
    pub fn handle_failure(&mut self, now: Instant, request: MemberRequest, failure: RequestFailure) {
        tracing::info!(group = &*self.group_id, ?request, ?failure, "consumer group request failed");
        match request {
            MemberRequest::FindCoordinator => {
                self.finding = false;
                self.retry_at = Some(now + self.retry_backoff);
            }
            MemberRequest::JoinGroup | MemberRequest::SyncGroup | MemberRequest::Heartbeat => self.coordinator_lost(now),
        }
    }

    /// Handles the answer to one of this member's requests (`correlation_id`).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_response<T: From<MemberRequest>, E>(
        &mut self,
        now: Instant,
        correlation_id: u64,
        message: GroupMessage,
        metadata: Option<&Arc<ClusterMetadata>>,
        network: &mut NetworkClient<T>,
        out: &mut Outbox<E>,
        events: &mut Vec<MemberEvent>,
    ) {
        match message {
            GroupMessage::JoinGroupResponse { result, .. } => {
                if self.phase != (Phase::Joining { correlation_id }) {
                    return;
                }
                match result {
                    Ok(result) => self.handle_joined(now, result, metadata, network, out),
                    Err(error) => self.handle_group_error(now, error, events),
                }
            }
            GroupMessage::SyncGroupResponse { result, .. } => {
                if self.phase != (Phase::AwaitingSync { correlation_id }) {
                    return;
                }
                match result {
                    Ok(partitions) => self.handle_synced(now, partitions, events),
                    Err(error) => self.handle_group_error(now, error, events),
                }
            }
            GroupMessage::HeartbeatResponse { error, .. } => {
                let Phase::Stable { next_heartbeat, heartbeat_in_flight: Some(id) } = self.phase else { return };
                if id != correlation_id {
                    return;
                }
                self.phase = Phase::Stable { next_heartbeat, heartbeat_in_flight: None };
                match error {
                    None => self.last_contact = now,
                    Some(error) => self.handle_group_error(now, error, events),
                }
            }
            _ => {}
        }
    }

    fn handle_joined<T: From<MemberRequest>, E>(&mut self, now: Instant, result: JoinResult, metadata: Option<&Arc<ClusterMetadata>>, network: &mut NetworkClient<T>, out: &mut Outbox<E>) {
        let Some(coordinator) = self.coordinator_destination() else { return };
        self.member_id = Some(result.member_id.clone());
        self.generation = result.generation;
        self.last_contact = now;
        let assignments = if result.leader == result.member_id {
            let assignor = Assignor::from_name(&result.protocol).unwrap_or(Assignor::Range);
            let counts: BTreeMap<Arc<str>, u32> = result
                .members
                .iter()
                .flat_map(|(_, subscription)| subscription.topics.iter().cloned())
                .map(|topic| {
                    let count = metadata.map_or(0, |metadata| metadata.partition_count(&topic));
                    (topic, count)
                })
                .collect();
            let assignment = assignor.assign(&result.members, &counts);
            if self.overlapping_assignment {
                // The injected bug (ConsumerConfig::overlapping_assignment).
                let everything: Vec<TopicPartition> = assignment.values().flatten().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                assignment.into_keys().map(|member| (member, everything.clone())).collect()
            } else {
                assignment.into_iter().collect()
            }
        } else {
            Vec::new()
        };
        if !network.is_ready(coordinator) {
            // The JoinGroup answer came on the coordinator's connection, which is ready.
            self.coordinator_lost(now);
            return;
        }
        let (group_id, generation, member_id) = (self.group_id.clone(), self.generation, result.member_id);
        let message = |correlation_id| Message::group(GroupMessage::SyncGroupRequest { correlation_id, group_id, generation, member_id, assignments });
        let correlation_id = network.send(now, coordinator, self.request_timeout, MemberRequest::SyncGroup.into(), message, out);
        self.phase = Phase::AwaitingSync { correlation_id };
    }

    fn handle_synced(&mut self, now: Instant, partitions: Vec<TopicPartition>, events: &mut Vec<MemberEvent>) {
        self.last_contact = now;
        self.phase = Phase::Stable { next_heartbeat: now + self.heartbeat_interval, heartbeat_in_flight: None };
        let revoked: Vec<TopicPartition> = self.owned.iter().filter(|partition| !partitions.contains(partition)).cloned().collect();
        let added: Vec<TopicPartition> = partitions.iter().filter(|partition| !self.owned.contains(partition)).cloned().collect();
        tracing::info!(group = &*self.group_id, generation = self.generation.0, partitions = ?partitions, "consumer synced");
        self.owned = partitions;
        if !revoked.is_empty() {
            events.push(MemberEvent::Revoked { generation: self.generation, partitions: revoked, reason: "rebalance (cooperative)" });
            // KIP-429: having given up what moves, rejoin so it can be assigned.
            self.phase = Phase::Unjoined;
        }
        // Even an empty assignment is recorded: the generation's ownership is then complete.
        events.push(MemberEvent::Assigned { generation: self.generation, partitions: self.owned.clone(), added });
    }

    /// A commit refused: fenced members rejoin, as Kafka's CommitFailedException path does.
    pub fn handle_commit_error(&mut self, now: Instant, error: ErrorCode, events: &mut Vec<MemberEvent>) {
        if self.is_stable() || error != ErrorCode::RebalanceInProgress {
            self.handle_group_error(now, error, events);
        }
    }

    fn handle_group_error(&mut self, now: Instant, error: ErrorCode, events: &mut Vec<MemberEvent>) {
        tracing::info!(group = &*self.group_id, %error, "consumer group error");
        match error {
            ErrorCode::RebalanceInProgress => {
                self.last_contact = now;
                self.phase = Phase::Unjoined;
            }
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => self.lose_partitions("fenced by the coordinator: partitions lost", events),
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::NetworkTimeout | ErrorCode::NetworkException => self.coordinator_lost(now),
            _ => {
                self.phase = if self.is_stable() { self.phase } else { Phase::Unjoined };
                self.retry_at = Some(now + self.retry_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::net::{CloseReason, ConnectionCommand, ConnectionEvent};
    use crate::config::NetworkConfig;

    struct Harness {
        member: GroupMember,
        network: NetworkClient<MemberRequest>,
        out: Outbox<()>,
        events: Vec<MemberEvent>,
    }

    impl Harness {
        fn new(config: &ConsumerConfig) -> Harness {
            let member = GroupMember::new(config, "g".into(), vec!["t".into()], vec![NodeId(1), NodeId(2)], 0);
            Harness { member, network: NetworkClient::new(NetworkConfig::default(), 1), out: Outbox::new(NodeId(3001)), events: Vec::new() }
        }

        /// Polls, completing every connect asked for, until nothing more is sent.
        fn poll(&mut self, now: Instant) {
            for _ in 0..4 {
                self.member.poll(now, &mut self.network, &mut self.out, &mut self.events);
                for (_, command) in std::mem::take(&mut self.out.connections) {
                    if let ConnectionCommand::Connect(destination) = command {
                        self.network.handle_connection(now, destination, ConnectionEvent::Established);
                    }
                }
            }
        }

        /// The last request sent, with its correlation id.
        fn sent(&mut self) -> (u64, Message) {
            let send = self.out.sends.pop().expect("a request went out");
            (send.message.correlation_id().expect("requests carry one"), send.message)
        }

        fn answer(&mut self, now: Instant, correlation_id: u64, message: GroupMessage) {
            assert!(self.network.take(correlation_id).is_some(), "the request was in flight");
            self.member.handle_response(now, correlation_id, message, None, &mut self.network, &mut self.out, &mut self.events);
        }

        /// Finds coordinator `coordinator`, joins as the group's only member and syncs `partitions`.
        fn join(&mut self, now: Instant, coordinator: u32, partitions: Vec<TopicPartition>) {
            self.poll(now);
            let (id, message) = self.sent();
            assert!(matches!(message, Message::FindCoordinatorRequest { .. }), "finds its coordinator first: {message:?}");
            assert!(self.network.take(id).is_some());
            self.member.handle_find_coordinator(now, Ok(NodeId(coordinator)));
            self.poll(now);
            let (id, message) = self.sent();
            let Message::Group(join) = message else { panic!("joins") };
            assert!(matches!(*join, GroupMessage::JoinGroupRequest { .. }));
            let subscription = Subscription { topics: vec!["t".into()], ..Subscription::default() };
            let result = JoinResult { generation: Generation(1), protocol: "range".into(), leader: "m".into(), member_id: "m".into(), members: vec![("m".into(), subscription)] };
            self.answer(now, id, GroupMessage::JoinGroupResponse { correlation_id: id, result: Ok(result) });
            let (id, _) = self.sent();
            self.answer(now, id, GroupMessage::SyncGroupResponse { correlation_id: id, result: Ok(partitions) });
        }
    }

    /// A member that joined and synced, then hears nothing from its coordinator
    /// past its session timeout, keeps its partitions and generation and looks
    /// for its coordinator again (Kafka's HeartbeatThread); the coordinator's
    /// UNKNOWN_MEMBER_ID is what takes its partitions.
    #[test]
    fn a_member_cut_off_past_its_session_keeps_its_partitions_until_the_coordinator_fences_it() {
        let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").expect("defaults");
        let mut harness = Harness::new(&config);
        let t0 = Instant::ZERO;
        let partitions = vec![TopicPartition::new("t", 0)];
        harness.join(t0, 2, partitions.clone());
        assert_eq!(harness.events, vec![MemberEvent::Assigned { generation: Generation(1), partitions: partitions.clone(), added: partitions.clone() }]);
        harness.events.clear();
        // Heartbeats go out but no answer comes back, and the connection stays up.
        let mut now = t0;
        while now.saturating_since(t0) <= config.session_timeout {
            now = now + Duration::from_secs(1);
            harness.member.poll(now, &mut harness.network, &mut harness.out, &mut harness.events);
        }
        assert!(harness.events.is_empty(), "nothing is given up on the client's own clock: {:?}", harness.events);
        assert_eq!(harness.member.owned(), &partitions[..]);
        assert!(harness.member.member_id().is_some());
        assert!(harness.member.coordinator_destination().is_none(), "the coordinator is looked up again");
    }

    /// Issue 14's hang: JoinGroup parked at a coordinator whose broker process
    /// crashed. With Kafka's defaults the JoinGroup would wait out the rebalance
    /// timeout plus five seconds (305 s); the crash resets the connection, so the
    /// member marks the coordinator unknown, finds the new one and joins again
    /// within the retry and reconnect backoffs.
    #[test]
    fn a_coordinator_crash_during_join_sends_the_member_to_the_next_coordinator_at_once() {
        let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").expect("defaults");
        let mut harness = Harness::new(&config);
        let t0 = Instant::ZERO;
        harness.poll(t0);
        let (id, _) = harness.sent();
        assert!(harness.network.take(id).is_some());
        harness.member.handle_find_coordinator(t0, Ok(NodeId(2)));
        harness.poll(t0);
        let (_, message) = harness.sent();
        assert!(matches!(message, Message::Group(ref join) if matches!(**join, GroupMessage::JoinGroupRequest { .. })));
        // Broker 2's process crashes: its kernel resets the connection.
        let crash = t0 + Duration::from_secs(1);
        let coordinator = Destination::new(NodeId(2), Channel::GroupCoordinator);
        let failed = harness.network.handle_connection(crash, coordinator, ConnectionEvent::Closed(CloseReason::Reset));
        assert_eq!(failed.len(), 1, "the JoinGroup in flight fails");
        for (request, failure) in failed {
            harness.member.handle_failure(crash, request, failure);
        }
        assert!(harness.member.coordinator().is_none(), "the coordinator is unknown again");
        let mut now = crash;
        let rejoined = loop {
            now = now + Duration::from_millis(10);
            harness.poll(now);
            if let Some(send) = harness.out.sends.pop() {
                let id = send.message.correlation_id().expect("a request");
                if let Message::FindCoordinatorRequest { .. } = send.message {
                    assert!(harness.network.take(id).is_some());
                    harness.member.handle_find_coordinator(now, Ok(NodeId(1)));
                    continue;
                }
                if let Message::Group(ref join) = send.message {
                    if matches!(**join, GroupMessage::JoinGroupRequest { .. }) {
                        break (now, send.to);
                    }
                }
            }
            assert!(now.saturating_since(crash) < Duration::from_secs(5), "the member rejoins within seconds");
        };
        assert_eq!(rejoined.1, NodeId(1), "at the new coordinator");
        assert!(rejoined.0.saturating_since(crash) <= Duration::from_secs(1), "after {:?}", rejoined.0.saturating_since(crash));
    }
}
