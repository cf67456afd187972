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
use crate::coordinator::group::assignor::{rebalance_protocol, Assignor, RebalanceProtocol};
use crate::coordinator::group::protocol::{Generation, GroupMessage, JoinResult, MemberId, Subscription};
use crate::coordinator::CoordinatorType;
use crate::protocol::{ClusterMetadata, ErrorCode, Message, Send};
use crate::time::{earliest, Instant};
use crate::types::{NodeId, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Unjoined,
    Joining { correlation_id: u64, sent: Instant },
    AwaitingSync { correlation_id: u64, sent: Instant },
    Stable { next_heartbeat: Instant, heartbeat_in_flight: Option<(u64, Instant)> },
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
    find_in_flight: Option<(u64, Instant)>,
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
}

impl GroupMember {
    pub fn new(config: &ConsumerConfig, group_id: Arc<str>, topics: Vec<Arc<str>>, bootstrap: Vec<NodeId>, first_broker: usize) -> GroupMember {
        GroupMember {
            group_id,
            topics,
            bootstrap,
            next_broker: first_broker,
            coordinator: None,
            find_in_flight: None,
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
        }
    }

    pub fn protocol(&self) -> RebalanceProtocol {
        rebalance_protocol(&self.assignors)
    }

    pub fn coordinator(&self) -> Option<NodeId> {
        self.coordinator
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

    /// The coordinator did not answer, or said it is not the coordinator: find it again.
    pub fn coordinator_lost(&mut self, now: Instant) {
        if self.coordinator.take().is_some() {
            tracing::info!(group = &*self.group_id, "consumer lost its coordinator");
        }
        self.retry_at = Some(now + self.retry_backoff);
        match self.phase {
            Phase::Joining { .. } | Phase::AwaitingSync { .. } => self.phase = Phase::Unjoined,
            Phase::Stable { next_heartbeat, .. } => self.phase = Phase::Stable { next_heartbeat, heartbeat_in_flight: None },
            Phase::Unjoined => {}
        }
    }

    fn join_timeout(&self) -> Duration {
        self.rebalance_timeout + Duration::from_secs(5)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.retry_at;
        if let Some((_, sent)) = self.find_in_flight {
            deadline = earliest(deadline, Some(sent + self.request_timeout));
        }
        match self.phase {
            Phase::Unjoined => {}
            Phase::Joining { sent, .. } => deadline = earliest(deadline, Some(sent + self.join_timeout())),
            Phase::AwaitingSync { sent, .. } => deadline = earliest(deadline, Some(sent + self.request_timeout)),
            Phase::Stable { next_heartbeat, heartbeat_in_flight } => {
                deadline = earliest(deadline, Some(next_heartbeat));
                if let Some((_, sent)) = heartbeat_in_flight {
                    deadline = earliest(deadline, Some(sent + self.request_timeout));
                }
            }
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

    /// Drives membership: timeouts, coordinator discovery, joining, heartbeats.
    pub fn poll(&mut self, now: Instant, mut correlation: impl FnMut() -> u64, out: &mut Vec<Send>, events: &mut Vec<MemberEvent>) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
        if self.find_in_flight.is_some_and(|(_, sent)| now.saturating_since(sent) >= self.request_timeout) {
            self.find_in_flight = None;
        }
        let timed_out = match self.phase {
            Phase::Joining { sent, .. } => now.saturating_since(sent) >= self.join_timeout(),
            Phase::AwaitingSync { sent, .. } => now.saturating_since(sent) >= self.request_timeout,
            Phase::Stable { heartbeat_in_flight: Some((_, sent)), .. } => now.saturating_since(sent) >= self.request_timeout,
            _ => false,
        };
        if timed_out {
            self.coordinator_lost(now);
        }
        if self.session_expired(now) {
            tracing::info!(group = &*self.group_id, "consumer's session timed out without a heartbeat response");
            self.lose_partitions("session timed out: partitions lost", events);
            self.coordinator_lost(now);
        }
        if self.retry_at.is_some() {
            return;
        }
        let Some(coordinator) = self.coordinator else {
            if self.find_in_flight.is_none() && !self.bootstrap.is_empty() {
                let to = self.bootstrap[self.next_broker % self.bootstrap.len()];
                self.next_broker += 1;
                let correlation_id = correlation();
                self.find_in_flight = Some((correlation_id, now));
                let message = Message::FindCoordinatorRequest { correlation_id, key_type: CoordinatorType::Group, key: self.group_id.clone() };
                out.push(Send { to, message });
            }
            return;
        };
        match self.phase {
            Phase::Unjoined => {
                if self.protocol() == RebalanceProtocol::Eager && !self.owned.is_empty() {
                    // Eager: everything is revoked before joining.
                    let partitions = std::mem::take(&mut self.owned);
                    events.push(MemberEvent::Revoked { generation: self.generation, partitions, reason: "rebalance (eager)" });
                }
                let correlation_id = correlation();
                self.phase = Phase::Joining { correlation_id, sent: now };
                let subscription = Subscription { topics: self.topics.clone(), owned_partitions: self.owned.clone(), generation: self.generation };
                let message = GroupMessage::JoinGroupRequest {
                    correlation_id,
                    group_id: self.group_id.clone(),
                    member_id: self.member_id.clone(),
                    session_timeout: self.session_timeout,
                    rebalance_timeout: self.rebalance_timeout,
                    protocols: self.assignors.iter().map(|assignor| Arc::from(assignor.name())).collect(),
                    subscription,
                };
                out.push(Send { to: coordinator, message: Message::group(message) });
            }
            Phase::Stable { next_heartbeat, heartbeat_in_flight: None } if next_heartbeat <= now => {
                let Some(member_id) = self.member_id.clone() else { return };
                let correlation_id = correlation();
                self.phase = Phase::Stable { next_heartbeat: now + self.heartbeat_interval, heartbeat_in_flight: Some((correlation_id, now)) };
                let message = GroupMessage::HeartbeatRequest { correlation_id, group_id: self.group_id.clone(), generation: self.generation, member_id };
                out.push(Send { to: coordinator, message: Message::group(message) });
            }
            _ => {}
        }
    }

    pub fn handle_find_coordinator(&mut self, now: Instant, correlation_id: u64, result: Result<NodeId, ErrorCode>) {
        if self.find_in_flight.map(|(id, _)| id) != Some(correlation_id) {
            return;
        }
        self.find_in_flight = None;
        match result {
            Ok(node) => {
                tracing::info!(group = &*self.group_id, coordinator = node.0, "consumer found its coordinator");
                self.coordinator = Some(node);
            }
            Err(_) => self.retry_at = Some(now + self.retry_backoff),
        }
    }

    /// Handles a group response; returns whether it was this member's.
    pub fn handle_response(&mut self, now: Instant, message: GroupMessage, metadata: Option<&Arc<ClusterMetadata>>, mut correlation: impl FnMut() -> u64, out: &mut Vec<Send>, events: &mut Vec<MemberEvent>) {
        match message {
            GroupMessage::JoinGroupResponse { correlation_id, result } => {
                if !matches!(self.phase, Phase::Joining { correlation_id: id, .. } if id == correlation_id) {
                    return;
                }
                match result {
                    Ok(result) => self.handle_joined(now, result, metadata, correlation(), out),
                    Err(error) => self.handle_group_error(now, error, events),
                }
            }
            GroupMessage::SyncGroupResponse { correlation_id, result } => {
                if !matches!(self.phase, Phase::AwaitingSync { correlation_id: id, .. } if id == correlation_id) {
                    return;
                }
                match result {
                    Ok(partitions) => self.handle_synced(now, partitions, events),
                    Err(error) => self.handle_group_error(now, error, events),
                }
            }
            GroupMessage::HeartbeatResponse { correlation_id, error } => {
                let Phase::Stable { next_heartbeat, heartbeat_in_flight: Some((id, _)) } = self.phase else { return };
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

    fn handle_joined(&mut self, now: Instant, result: JoinResult, metadata: Option<&Arc<ClusterMetadata>>, correlation_id: u64, out: &mut Vec<Send>) {
        let Some(coordinator) = self.coordinator else { return };
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
        self.phase = Phase::AwaitingSync { correlation_id, sent: now };
        let message = GroupMessage::SyncGroupRequest { correlation_id, group_id: self.group_id.clone(), generation: self.generation, member_id: result.member_id, assignments };
        out.push(Send { to: coordinator, message: Message::group(message) });
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
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress | ErrorCode::NetworkTimeout => self.coordinator_lost(now),
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

    fn sent(out: &[Send]) -> Vec<&GroupMessage> {
        out.iter().filter_map(|send| if let Message::Group(message) = &send.message { Some(&**message) } else { None }).collect()
    }

    /// A member that joined and synced, then hears nothing from its coordinator,
    /// gives up its partitions once its session timeout passed, and rejoins as new.
    #[test]
    fn a_member_cut_off_past_its_session_loses_its_partitions() {
        let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").expect("defaults");
        let mut member = GroupMember::new(&config, "g".into(), vec!["t".into()], vec![NodeId(1)], 0);
        let mut counter = 0;
        let mut next = || {
            counter += 1;
            counter
        };
        let (mut out, mut events) = (Vec::new(), Vec::new());
        let t0 = Instant::ZERO;
        member.poll(t0, &mut next, &mut out, &mut events);
        let find = out.iter().find_map(|send| if let Message::FindCoordinatorRequest { correlation_id, .. } = send.message { Some(correlation_id) } else { None }).expect("finds its coordinator");
        member.handle_find_coordinator(t0, find, Ok(NodeId(2)));
        out.clear();
        member.poll(t0, &mut next, &mut out, &mut events);
        let GroupMessage::JoinGroupRequest { correlation_id, .. } = sent(&out)[0] else { panic!("joins") };
        let subscription = Subscription { topics: vec!["t".into()], ..Subscription::default() };
        let result = JoinResult { generation: Generation(1), protocol: "range".into(), leader: "m".into(), member_id: "m".into(), members: vec![("m".into(), subscription)] };
        let join = GroupMessage::JoinGroupResponse { correlation_id: *correlation_id, result: Ok(result) };
        out.clear();
        member.handle_response(t0, join, None, &mut next, &mut out, &mut events);
        let GroupMessage::SyncGroupRequest { correlation_id, .. } = sent(&out)[0] else { panic!("syncs") };
        let partitions = vec![TopicPartition::new("t", 0)];
        member.handle_response(t0, GroupMessage::SyncGroupResponse { correlation_id: *correlation_id, result: Ok(partitions.clone()) }, None, &mut next, &mut out, &mut events);
        assert_eq!(events, vec![MemberEvent::Assigned { generation: Generation(1), partitions: partitions.clone(), added: partitions.clone() }]);
        events.clear();
        // Heartbeats go out but no answer comes back.
        let mut now = t0;
        while now.saturating_since(t0) < config.session_timeout {
            now = now + Duration::from_secs(1);
            member.poll(now, &mut next, &mut out, &mut events);
        }
        assert_eq!(events, vec![MemberEvent::Revoked { generation: Generation(1), partitions, reason: "session timed out: partitions lost" }]);
        assert!(member.member_id().is_none(), "it rejoins as a new member");
        assert!(member.owned().is_empty());
    }
}
