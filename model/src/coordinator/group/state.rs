//! One consumer group's membership state machine, Kafka's `GroupMetadata` with
//! its phases: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
//!
//! - Empty: no members (offsets may still be committed outside group management).
//! - PreparingRebalance: members rejoin; JoinGroup responses are parked until every
//!   known member has rejoined or the rebalance timeout passed (members that did
//!   not rejoin are dropped). An empty group's first rebalance waits
//!   `group.initial.rebalance.delay.ms` for more members (KIP-134).
//! - CompletingRebalance: the generation is bumped and JoinGroup answered; the
//!   leader's SyncGroup carries the assignment, which is written to the log;
//!   SyncGroup is answered only once that write committed.
//! - Stable: members heartbeat; a member missing its session timeout, leaving, or
//!   joining anew moves the group back to PreparingRebalance.
//! - Dead: the coordinator unloaded the group (it moved to another broker).

use super::protocol::{Generation, GroupMessage, JoinResult, MemberId, Subscription};
use super::records::{GroupRecord, MemberRecord};
use crate::protocol::Message;
use crate::error::ErrorCode;
use crate::time::{earliest, Instant};
use crate::types::{NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Empty,
    /// `initial`: the first rebalance of an empty group, which waits until
    /// `deadline` even once every member joined (KIP-134).
    PreparingRebalance { deadline: Instant, initial: bool },
    CompletingRebalance,
    Stable,
    Dead,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub client: NodeId,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<Arc<str>>,
    pub subscription: Subscription,
    pub assignment: Vec<TopicPartition>,
    /// The correlation id of a parked JoinGroup.
    pub awaiting_join: Option<u64>,
    /// The correlation id of a parked SyncGroup.
    pub awaiting_sync: Option<u64>,
    pub last_heartbeat: Instant,
}

/// What a group asks of its coordinator.
#[derive(Debug)]
pub enum GroupEffect {
    Send { to: NodeId, message: Message },
    /// Write the group's metadata; `Group::sync_written` hears the outcome.
    WriteGroup { record: GroupRecord, generation: Generation },
}

pub struct Group {
    pub id: Arc<str>,
    pub phase: Phase,
    pub generation: Generation,
    pub protocol: Option<Arc<str>>,
    pub leader: Option<MemberId>,
    pub members: BTreeMap<MemberId, Member>,
    /// The leader's assignment while its write is in flight.
    pending_assignment: Option<BTreeMap<MemberId, Vec<TopicPartition>>>,
    pub offsets: BTreeMap<TopicPartition, Offset>,
    initial_rebalance_delay: Duration,
}

fn reply(out: &mut Vec<GroupEffect>, to: NodeId, message: GroupMessage) {
    out.push(GroupEffect::Send { to, message: Message::group(message) });
}

impl Group {
    pub fn new(id: Arc<str>, initial_rebalance_delay: Duration) -> Group {
        Group {
            id,
            phase: Phase::Empty,
            generation: Generation(0),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_assignment: None,
            offsets: BTreeMap::new(),
            initial_rebalance_delay,
        }
    }

    /// A group as a new coordinator finds it in the log: its last written
    /// generation is Stable, and every member's session starts afresh now.
    pub fn from_record(record: GroupRecord, now: Instant, initial_rebalance_delay: Duration) -> Group {
        let mut group = Group::new(record.group_id.clone(), initial_rebalance_delay);
        group.generation = record.generation;
        group.protocol = record.protocol;
        group.leader = record.leader;
        for member in record.members {
            group.members.insert(
                member.member_id,
                Member {
                    client: member.client,
                    session_timeout: member.session_timeout,
                    rebalance_timeout: member.rebalance_timeout,
                    protocols: member.protocols,
                    subscription: member.subscription,
                    assignment: member.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                },
            );
        }
        group.phase = if group.members.is_empty() { Phase::Empty } else { Phase::Stable };
        group
    }

    fn record(&self) -> GroupRecord {
        GroupRecord {
            group_id: self.id.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(member_id, member)| MemberRecord {
                    member_id: member_id.clone(),
                    client: member.client,
                    session_timeout: member.session_timeout,
                    rebalance_timeout: member.rebalance_timeout,
                    protocols: member.protocols.clone(),
                    subscription: member.subscription.clone(),
                    assignment: self.pending_assignment.as_ref().and_then(|pending| pending.get(member_id).cloned()).unwrap_or_else(|| member.assignment.clone()),
                })
                .collect(),
        }
    }

    pub fn is_stable(&self) -> bool {
        self.phase == Phase::Stable
    }

    /// The protocols every member supports, in the order of the first member's preference.
    fn common_protocols(&self, extra: Option<&[Arc<str>]>) -> Vec<Arc<str>> {
        let mut lists = self.members.values().map(|member| member.protocols.as_slice()).chain(extra);
        let Some(first) = lists.next() else { return Vec::new() };
        let rest: Vec<&[Arc<str>]> = lists.collect();
        first.iter().filter(|protocol| rest.iter().all(|list| list.contains(protocol))).cloned().collect()
    }

    /// Kafka's vote: each member votes for its most preferred common protocol.
    fn select_protocol(&self) -> Option<Arc<str>> {
        let candidates = self.common_protocols(None);
        let mut votes: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.protocols.iter().find(|protocol| candidates.contains(protocol)) {
                *votes.entry(choice.clone()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        candidates.into_iter().find(|candidate| votes.get(candidate) == Some(&most))
    }

    // ----- JoinGroup -----

    #[allow(clippy::too_many_arguments)]
    pub fn handle_join(
        &mut self,
        now: Instant,
        from: NodeId,
        correlation_id: u64,
        member_id: Option<MemberId>,
        new_member_id: MemberId,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        protocols: Vec<Arc<str>>,
        subscription: Subscription,
        out: &mut Vec<GroupEffect>,
    ) {
        let fail = |out: &mut Vec<GroupEffect>, error| reply(out, from, GroupMessage::JoinGroupResponse { correlation_id, result: Err(error) });
        if self.phase == Phase::Dead {
            return fail(out, ErrorCode::NotCoordinator);
        }
        let is_known = member_id.as_ref().is_some_and(|id| self.members.contains_key(id));
        if !is_known && !self.members.is_empty() && self.common_protocols(Some(&protocols)).is_empty() {
            return fail(out, ErrorCode::InconsistentGroupProtocol);
        }
        let member_id = match member_id {
            Some(id) if is_known => id,
            Some(_) => return fail(out, ErrorCode::UnknownMemberId),
            None => {
                let member = Member {
                    client: from,
                    session_timeout,
                    rebalance_timeout,
                    protocols: protocols.clone(),
                    subscription: subscription.clone(),
                    assignment: Vec::new(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                };
                tracing::info!(group = &*self.id, member = &*new_member_id, "member joins");
                self.members.insert(new_member_id.clone(), member);
                new_member_id
            }
        };
        let member = self.members.get_mut(&member_id).expect("inserted or known above");
        let changed = member.protocols != protocols || member.subscription != subscription;
        member.client = from;
        member.session_timeout = session_timeout;
        member.rebalance_timeout = rebalance_timeout;
        member.protocols = protocols;
        member.subscription = subscription;
        member.awaiting_join = Some(correlation_id);
        member.last_heartbeat = now;
        match self.phase {
            Phase::PreparingRebalance { .. } => {}
            // A follower rejoining a stable group with unchanged metadata gets the
            // current generation back (Kafka's GroupCoordinator does the same).
            // (A new member always rebalances: found by the simulator, where a
            // restarted consumer was handed the current generation's empty share.)
            Phase::Stable if is_known && !changed && self.leader.as_ref() != Some(&member_id) => {
                let member = self.members.get_mut(&member_id).expect("known");
                member.awaiting_join = None;
                let result = self.join_result(&member_id);
                return reply(out, from, GroupMessage::JoinGroupResponse { correlation_id, result: Ok(result) });
            }
            Phase::Empty => self.prepare_rebalance(now, true, out),
            _ => self.prepare_rebalance(now, false, out),
        }
        self.maybe_complete_join(now, out);
    }

    fn join_result(&self, member_id: &MemberId) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_else(|| member_id.clone());
        let members = if &leader == member_id {
            self.members.iter().map(|(id, member)| (id.clone(), member.subscription.clone())).collect()
        } else {
            Vec::new()
        };
        JoinResult { generation: self.generation, protocol: self.protocol.clone().unwrap_or_else(|| "".into()), leader, member_id: member_id.clone(), members }
    }

    /// Moves to PreparingRebalance; parked SyncGroups are told to rejoin.
    pub fn prepare_rebalance(&mut self, now: Instant, initial: bool, out: &mut Vec<GroupEffect>) {
        if matches!(self.phase, Phase::PreparingRebalance { .. } | Phase::Dead) {
            return;
        }
        let timeout = if initial {
            self.initial_rebalance_delay
        } else {
            self.members.values().map(|member| member.rebalance_timeout).max().unwrap_or_default()
        };
        tracing::info!(group = &*self.id, generation = self.generation.0, "group prepares a rebalance");
        self.pending_assignment = None;
        for member in self.members.values_mut() {
            if let Some(correlation_id) = member.awaiting_sync.take() {
                reply(out, member.client, GroupMessage::SyncGroupResponse { correlation_id, result: Err(ErrorCode::RebalanceInProgress) });
            }
        }
        self.phase = Phase::PreparingRebalance { deadline: now + timeout, initial };
    }

    fn maybe_complete_join(&mut self, now: Instant, out: &mut Vec<GroupEffect>) {
        let Phase::PreparingRebalance { deadline, initial } = self.phase else { return };
        let all_joined = self.members.values().all(|member| member.awaiting_join.is_some());
        if now >= deadline || (all_joined && !initial) {
            self.complete_join(now, out);
        }
    }

    /// Members that did not rejoin in time are dropped; the generation is bumped
    /// and every rejoined member hears it (the leader with every subscription).
    fn complete_join(&mut self, now: Instant, out: &mut Vec<GroupEffect>) {
        self.members.retain(|member_id, member| {
            let keep = member.awaiting_join.is_some();
            if !keep {
                tracing::info!(group = &*self.id, member = &**member_id, "member did not rejoin in time");
            }
            keep
        });
        self.generation = Generation(self.generation.0 + 1);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol = None;
            self.leader = None;
            out.push(GroupEffect::WriteGroup { record: self.record(), generation: self.generation });
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|leader| self.members.contains_key(leader)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.phase = Phase::CompletingRebalance;
        tracing::info!(group = &*self.id, generation = self.generation.0, members = self.members.len(), "group completes its join phase");
        let member_ids: Vec<MemberId> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let result = self.join_result(&member_id);
            let member = self.members.get_mut(&member_id).expect("listed above");
            member.assignment.clear();
            member.last_heartbeat = now;
            let correlation_id = member.awaiting_join.take().expect("every remaining member rejoined");
            reply(out, member.client, GroupMessage::JoinGroupResponse { correlation_id, result: Ok(result) });
        }
    }

    // ----- SyncGroup -----

    #[allow(clippy::too_many_arguments)]
    pub fn handle_sync(
        &mut self,
        now: Instant,
        from: NodeId,
        correlation_id: u64,
        generation: Generation,
        member_id: MemberId,
        assignments: Vec<(MemberId, Vec<TopicPartition>)>,
        out: &mut Vec<GroupEffect>,
    ) {
        let result = |error| GroupMessage::SyncGroupResponse { correlation_id, result: Err(error) };
        let Some(member) = self.members.get_mut(&member_id) else {
            return reply(out, from, result(ErrorCode::UnknownMemberId));
        };
        if generation != self.generation {
            return reply(out, from, result(ErrorCode::IllegalGeneration));
        }
        member.last_heartbeat = now;
        match self.phase {
            Phase::Empty | Phase::Dead => reply(out, from, result(ErrorCode::UnknownMemberId)),
            Phase::PreparingRebalance { .. } => reply(out, from, result(ErrorCode::RebalanceInProgress)),
            Phase::Stable => {
                let assignment = member.assignment.clone();
                reply(out, from, GroupMessage::SyncGroupResponse { correlation_id, result: Ok(assignment) })
            }
            Phase::CompletingRebalance => {
                member.awaiting_sync = Some(correlation_id);
                if self.leader.as_ref() == Some(&member_id) && self.pending_assignment.is_none() {
                    let assignment: BTreeMap<MemberId, Vec<TopicPartition>> =
                        assignments.into_iter().filter(|(member, _)| self.members.contains_key(member)).collect();
                    self.pending_assignment = Some(assignment);
                    out.push(GroupEffect::WriteGroup { record: self.record(), generation: self.generation });
                }
            }
        }
    }

    /// The group record of `generation` committed (or failed to).
    pub fn group_written(&mut self, now: Instant, generation: Generation, result: Result<Offset, ErrorCode>, out: &mut Vec<GroupEffect>) {
        if generation != self.generation || self.phase != Phase::CompletingRebalance {
            return;
        }
        let Some(assignment) = self.pending_assignment.take() else { return };
        match result {
            Ok(_) => {
                self.phase = Phase::Stable;
                tracing::info!(group = &*self.id, generation = self.generation.0, "group stable");
                for (member_id, member) in &mut self.members {
                    member.assignment = assignment.get(member_id).cloned().unwrap_or_default();
                    if let Some(correlation_id) = member.awaiting_sync.take() {
                        let result = Ok(member.assignment.clone());
                        reply(out, member.client, GroupMessage::SyncGroupResponse { correlation_id, result });
                    }
                }
            }
            Err(error) => {
                let error = coordinator_error(error);
                for member in self.members.values_mut() {
                    if let Some(correlation_id) = member.awaiting_sync.take() {
                        reply(out, member.client, GroupMessage::SyncGroupResponse { correlation_id, result: Err(error) });
                    }
                }
                self.prepare_rebalance(now, false, out);
            }
        }
    }

    // ----- Heartbeat and LeaveGroup -----

    pub fn handle_heartbeat(&mut self, now: Instant, generation: Generation, member_id: &MemberId) -> Option<ErrorCode> {
        if matches!(self.phase, Phase::Empty | Phase::Dead) {
            return Some(ErrorCode::UnknownMemberId);
        }
        let Some(member) = self.members.get_mut(member_id) else { return Some(ErrorCode::UnknownMemberId) };
        if generation != self.generation {
            return Some(ErrorCode::IllegalGeneration);
        }
        member.last_heartbeat = now;
        match self.phase {
            Phase::PreparingRebalance { .. } => Some(ErrorCode::RebalanceInProgress),
            _ => None,
        }
    }

    pub fn handle_leave(&mut self, now: Instant, member_id: &MemberId, out: &mut Vec<GroupEffect>) -> Option<ErrorCode> {
        if !self.members.contains_key(member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        tracing::info!(group = &*self.id, member = &**member_id, "member leaves");
        self.remove_member(now, member_id, out);
        None
    }

    fn remove_member(&mut self, now: Instant, member_id: &MemberId, out: &mut Vec<GroupEffect>) {
        let Some(member) = self.members.remove(member_id) else { return };
        if let Some(correlation_id) = member.awaiting_join {
            reply(out, member.client, GroupMessage::JoinGroupResponse { correlation_id, result: Err(ErrorCode::UnknownMemberId) });
        }
        if let Some(correlation_id) = member.awaiting_sync {
            reply(out, member.client, GroupMessage::SyncGroupResponse { correlation_id, result: Err(ErrorCode::UnknownMemberId) });
        }
        match self.phase {
            Phase::Stable | Phase::CompletingRebalance => self.prepare_rebalance(now, false, out),
            _ => {}
        }
        if self.members.is_empty() {
            // Nobody left to wait for.
            if let Phase::PreparingRebalance { .. } = self.phase {
                self.complete_join(now, out);
            }
        } else {
            self.maybe_complete_join(now, out);
        }
    }

    // ----- time -----

    /// Expires members whose session lapsed and rebalances whose time is up.
    /// A member parked in JoinGroup is kept alive, as Kafka's `shouldKeepAlive` does.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<GroupEffect>) {
        let expired: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, member)| member.awaiting_join.is_none() && member.last_heartbeat + member.session_timeout <= now)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in expired {
            tracing::info!(group = &*self.id, member = &*member_id, "member session expired");
            self.remove_member(now, &member_id, out);
        }
        self.maybe_complete_join(now, out);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = match self.phase {
            Phase::PreparingRebalance { deadline, .. } => Some(deadline),
            _ => None,
        };
        for member in self.members.values().filter(|member| member.awaiting_join.is_none()) {
            deadline = earliest(deadline, Some(member.last_heartbeat + member.session_timeout));
        }
        deadline
    }

    /// The coordinator moved away: parked requests learn it, and the group is dead here.
    pub fn unload(&mut self, out: &mut Vec<GroupEffect>) {
        for member in self.members.values_mut() {
            if let Some(correlation_id) = member.awaiting_join.take() {
                reply(out, member.client, GroupMessage::JoinGroupResponse { correlation_id, result: Err(ErrorCode::NotCoordinator) });
            }
            if let Some(correlation_id) = member.awaiting_sync.take() {
                reply(out, member.client, GroupMessage::SyncGroupResponse { correlation_id, result: Err(ErrorCode::NotCoordinator) });
            }
        }
        self.phase = Phase::Dead;
    }
}

/// How a failed coordinator write is reported to clients: as Kafka maps storage
/// errors, anything that means "not the leader any more" sends them to find the
/// coordinator again.
pub fn coordinator_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::NotLeaderOrFollower | ErrorCode::NotCoordinator | ErrorCode::FencedLeaderEpoch | ErrorCode::UnknownTopicOrPartition => ErrorCode::NotCoordinator,
        _ => ErrorCode::CoordinatorNotAvailable,
    }
}
