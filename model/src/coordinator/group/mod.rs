//! The group coordinator (KIP-848's classic protocol, KIP-429 cooperative):
//! consumer groups and their committed offsets, kept on `__consumer_offsets`.
//!
//! This broker coordinates the groups whose id hashes to an internal partition it
//! leads. Group metadata (after each rebalance) and committed offsets are written
//! there with acks=all; SyncGroup and OffsetCommit are answered only once their
//! write committed. A broker that becomes leader of such a partition replays its
//! log (`load`) and takes over the groups: their last written generation,
//! members and assignments, and every committed offset.
//!
//! Transactional offsets (KIP-98, KIP-447): TxnOffsetCommit writes its offset
//! records into the producer's transaction on the group's partition and keeps
//! them pending per producer id (Kafka's pendingTransactionalOffsetCommits)
//! until the transaction's marker on that partition commits them into the
//! group's offsets or drops them. OffsetFetch with require_stable refuses a
//! partition with pending offsets (UnstableOffsetCommit). `load` rebuilds the
//! pending offsets from the log: offset records of transactional batches,
//! resolved by the later control markers of their producer.
//!
//! Files: `state.rs` is one group's membership state machine; `offsets.rs` commit
//! fencing and fetch; `records.rs` what goes into the log; `protocol.rs` the
//! messages. The assignors run on the group leader, a client
//! (`client/assignor.rs`), as in Kafka's classic protocol.

pub mod offsets;
pub mod protocol;
pub mod records;
pub mod state;

use super::runtime::{BarrierOutcome, CoordinatorRuntime};
use super::{decode_record, partition_for, Coordinator, CoordinatorEffect, CoordinatorType, WriteToken};
use crate::config::{BrokerConfig, BrokerMutation};
use crate::protocol::Message;
use crate::error::ErrorCode;
use crate::record::SharedBatch;
use crate::time::{earliest, Instant};
use crate::types::{LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use protocol::{Generation, GroupMessage, MemberId};
use records::{GroupLogRecord, OffsetRecord};
use state::{coordinator_error, Group, GroupEffect};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a write in flight will complete.
enum PendingWrite {
    Group { group_id: Arc<str>, generation: Generation },
    Commit { group_id: Arc<str>, client: NodeId, correlation_id: u64, offsets: Vec<(TopicPartition, Offset)> },
    TxnCommit { group_id: Arc<str>, client: NodeId, correlation_id: u64, producer_id: ProducerId, offsets: Vec<(TopicPartition, Offset)> },
}

/// Per group, per producer id, the offsets of its open transaction.
type PendingTransactionalOffsets = BTreeMap<Arc<str>, BTreeMap<ProducerId, BTreeMap<TopicPartition, Offset>>>;

pub struct GroupCoordinator {
    config: BrokerConfig,
    /// The partitions it leads, their loading and its write tokens.
    runtime: CoordinatorRuntime,
    groups: BTreeMap<Arc<str>, Group>,
    pending: BTreeMap<WriteToken, PendingWrite>,
    /// Member ids are `<client node>-<coordinator epoch>-<counter>`: unique without
    /// randomness, since every new leadership of a partition has a higher epoch.
    next_member: u64,
    /// Answers for parked JoinGroup/SyncGroup requests of groups just unloaded;
    /// `unload` has no outputs, so they go out on the next `handle_timeout`.
    farewells: Vec<(NodeId, Message)>,
    /// KIP-98: offsets committed in transactions not yet ended by a marker.
    pending_transactional_offsets: PendingTransactionalOffsets,
}

impl GroupCoordinator {
    pub fn new(config: BrokerConfig) -> GroupCoordinator {
        GroupCoordinator { config, runtime: CoordinatorRuntime::default(), groups: BTreeMap::new(), pending: BTreeMap::new(), next_member: 0, farewells: Vec::new(), pending_transactional_offsets: BTreeMap::new() }
    }

    fn partition_of(&self, group_id: &str) -> u32 {
        partition_for(group_id, self.config.offsets_topic_num_partitions)
    }

    /// The offsets `group_id` committed, if this broker serves its group now.
    pub fn committed_offsets(&self, group_id: &str) -> Option<&BTreeMap<TopicPartition, Offset>> {
        self.check_coordinator(group_id).ok()?;
        self.groups.get(group_id).map(|group| &group.offsets)
    }

    /// The group's state, or why this broker cannot serve it.
    fn check_coordinator(&self, group_id: &str) -> Result<u32, ErrorCode> {
        let partition = self.partition_of(group_id);
        self.runtime.serves(partition).map(|()| partition)
    }

    fn group_mut(&mut self, group_id: &Arc<str>) -> &mut Group {
        let delay = self.config.group_initial_rebalance_delay;
        self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(group_id.clone(), delay))
    }

    fn write(&mut self, partition: u32, records: Vec<GroupLogRecord>, pending: PendingWrite, out: &mut Vec<CoordinatorEffect>) {
        self.write_as(partition, records, pending, None, out);
    }

    fn write_as(&mut self, partition: u32, records: Vec<GroupLogRecord>, pending: PendingWrite, producer: Option<(ProducerId, u16)>, out: &mut Vec<CoordinatorEffect>) {
        let token = self.runtime.next_token();
        self.pending.insert(token, pending);
        out.push(CoordinatorEffect::Append { partition, records: records.iter().map(GroupLogRecord::encode).collect(), token, producer });
    }

    /// A transaction's marker committed on offsets `partition`: the producer's
    /// pending offsets of every group there become committed offsets (commit) or
    /// are dropped (abort). Called by the broker (KIP-98 WriteTxnMarkers).
    pub fn complete_transaction(&mut self, partition: u32, producer_id: ProducerId, commit: bool) {
        let count = self.config.offsets_topic_num_partitions;
        let delay = self.config.group_initial_rebalance_delay;
        let mut committed = Vec::new();
        for (group_id, producers) in self.pending_transactional_offsets.iter_mut().filter(|(group_id, _)| partition_for(group_id, count) == partition) {
            if let Some(offsets) = producers.remove(&producer_id) {
                if commit {
                    committed.push((group_id.clone(), offsets));
                }
            }
        }
        self.pending_transactional_offsets.retain(|_, producers| !producers.is_empty());
        for (group_id, offsets) in committed {
            self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(group_id, delay)).offsets.extend(offsets);
        }
    }

    /// KIP-447: whether any of `partitions` has transactional offsets pending.
    fn has_pending_offsets(&self, group_id: &str, partitions: &[TopicPartition]) -> bool {
        self.pending_transactional_offsets
            .get(group_id)
            .is_some_and(|producers| producers.values().any(|offsets| partitions.iter().any(|partition| offsets.contains_key(partition))))
    }

    /// Carries out what a group asked for.
    fn apply_effects(&mut self, group_id: &Arc<str>, effects: Vec<GroupEffect>, out: &mut Vec<CoordinatorEffect>) {
        let partition = self.partition_of(group_id);
        for effect in effects {
            match effect {
                GroupEffect::Send { to, message } => out.push(CoordinatorEffect::Send { to, message }),
                GroupEffect::WriteGroup { record, generation } => {
                    let pending = PendingWrite::Group { group_id: group_id.clone(), generation };
                    self.write(partition, vec![GroupLogRecord::Group(record)], pending, out);
                }
            }
        }
    }

    fn handle_group_request(&mut self, now: Instant, from: NodeId, message: GroupMessage, out: &mut Vec<CoordinatorEffect>) {
        let Some(group_id) = message.group_id().cloned() else { return };
        let send = |out: &mut Vec<CoordinatorEffect>, message| out.push(CoordinatorEffect::Send { to: from, message: Message::group(message) });
        let served = self.check_coordinator(&group_id);
        let mut effects = Vec::new();
        match message {
            GroupMessage::JoinGroupRequest { correlation_id, member_id, session_timeout, rebalance_timeout, protocols, subscription, .. } => {
                let error = served.err().or_else(|| {
                    let allowed = self.config.group_min_session_timeout..=self.config.group_max_session_timeout;
                    (!allowed.contains(&session_timeout)).then_some(ErrorCode::InvalidSessionTimeout)
                });
                if let Some(error) = error {
                    return send(out, GroupMessage::JoinGroupResponse { correlation_id, result: Err(error) });
                }
                self.next_member += 1;
                let epoch = self.runtime.epoch(self.partition_of(&group_id)).expect("a served partition is loaded");
                let new_member_id: MemberId = format!("{}-{}-{}", from.0, epoch.0, self.next_member).into();
                self.group_mut(&group_id).handle_join(now, from, correlation_id, member_id, new_member_id, session_timeout, rebalance_timeout, protocols, subscription, &mut effects);
            }
            GroupMessage::SyncGroupRequest { correlation_id, generation, member_id, assignments, .. } => {
                if let Err(error) = served {
                    return send(out, GroupMessage::SyncGroupResponse { correlation_id, result: Err(error) });
                }
                match self.groups.get_mut(&group_id) {
                    Some(group) => group.handle_sync(now, from, correlation_id, generation, member_id, assignments, &mut effects),
                    None => send(out, GroupMessage::SyncGroupResponse { correlation_id, result: Err(ErrorCode::UnknownMemberId) }),
                }
            }
            GroupMessage::HeartbeatRequest { correlation_id, generation, member_id, .. } => {
                let error = match served {
                    Err(error) => Some(error),
                    Ok(_) => self.groups.get_mut(&group_id).map_or(Some(ErrorCode::UnknownMemberId), |group| group.handle_heartbeat(now, generation, &member_id)),
                };
                send(out, GroupMessage::HeartbeatResponse { correlation_id, error });
            }
            GroupMessage::LeaveGroupRequest { correlation_id, member_id, .. } => {
                let error = match served {
                    Err(error) => Some(error),
                    Ok(_) => self.groups.get_mut(&group_id).map_or(Some(ErrorCode::UnknownMemberId), |group| group.handle_leave(now, &member_id, &mut effects)),
                };
                send(out, GroupMessage::LeaveGroupResponse { correlation_id, error });
            }
            GroupMessage::OffsetCommitRequest { correlation_id, generation, member_id, offsets, .. } => {
                // The test-only `no-generation-fencing` mutation takes a commit from
                // any member of any generation: a zombie's commit goes through.
                let fenced = self.config.mutation != Some(BrokerMutation::NoGenerationFencing);
                let result = served.and_then(|partition| {
                    let valid = offsets::validate_commit(self.groups.get(&group_id), generation, member_id.as_ref(), false);
                    valid.or_else(|error| if fenced || !matches!(error, ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId) { Err(error) } else { Ok(()) }).map(|()| partition)
                });
                match result {
                    Err(error) => send(out, GroupMessage::OffsetCommitResponse { correlation_id, result: Err(error) }),
                    Ok(partition) => {
                        // Kafka's doCommitOffsets: an accepted commit also counts as a heartbeat.
                        if let Some(member) = member_id.as_ref().and_then(|member_id| self.groups.get_mut(&group_id)?.members.get_mut(member_id)) {
                            member.last_heartbeat = now;
                        }
                        let records = offsets
                            .iter()
                            .map(|(partition, offset)| GroupLogRecord::Offset(OffsetRecord { group_id: group_id.clone(), partition: partition.clone(), offset: *offset }))
                            .collect();
                        let pending = PendingWrite::Commit { group_id: group_id.clone(), client: from, correlation_id, offsets };
                        self.write(partition, records, pending, out);
                    }
                }
            }
            GroupMessage::OffsetFetchRequest { correlation_id, partitions, require_stable, .. } => {
                let unstable = require_stable && self.has_pending_offsets(&group_id, &partitions);
                let result = served.and_then(|_| if unstable { Err(ErrorCode::UnstableOffsetCommit) } else { Ok(offsets::fetch(self.groups.get(&group_id), &partitions)) });
                send(out, GroupMessage::OffsetFetchResponse { correlation_id, result });
            }
            GroupMessage::TxnOffsetCommitRequest { correlation_id, producer_id, producer_epoch, generation, member_id, offsets, .. } => {
                // KIP-447: fenced by generation and member id, as OffsetCommit is.
                let result = served.and_then(|partition| offsets::validate_commit(self.groups.get(&group_id), generation, Some(&member_id), true).map(|()| partition));
                match result {
                    Err(error) => send(out, GroupMessage::TxnOffsetCommitResponse { correlation_id, result: Err(error) }),
                    Ok(partition) => {
                        let records = offsets
                            .iter()
                            .map(|(partition, offset)| GroupLogRecord::Offset(OffsetRecord { group_id: group_id.clone(), partition: partition.clone(), offset: *offset }))
                            .collect();
                        // Kafka's prepareTxnOffsetCommit: the offsets are pending from
                        // the append on, not from its replication, so a marker that
                        // follows them in the log (appended before this write is
                        // acknowledged) finds them and ends them with the transaction.
                        self.pending_transactional_offsets.entry(group_id.clone()).or_default().entry(producer_id).or_default().extend(offsets.iter().map(|(tp, offset)| (tp.clone(), *offset)));
                        let pending = PendingWrite::TxnCommit { group_id: group_id.clone(), client: from, correlation_id, producer_id, offsets };
                        self.write_as(partition, records, pending, Some((producer_id, producer_epoch)), out);
                    }
                }
            }
            _ => {}
        }
        self.apply_effects(&group_id, effects, out);
    }
}

impl Coordinator for GroupCoordinator {
    fn coordinator_type(&self) -> CoordinatorType {
        CoordinatorType::Group
    }

    /// Replays the partition's log: the last group record of each group is its
    /// state, and the last offset record per partition its committed offset.
    fn load(&mut self, now: Instant, partition: u32, leader_epoch: LeaderEpoch, batches: &[SharedBatch], out: &mut Vec<CoordinatorEffect>) {
        if self.runtime.bump_epoch(partition, leader_epoch) {
            // Elected again without losing the partition in between (a leader
            // epoch bump): Kafka's GroupMetadataManager keeps a partition it
            // already owns (`addLoadingPartition`), so the groups in memory, and
            // the requests parked in them, stay as they are.
            return;
        }
        let delay = self.config.group_initial_rebalance_delay;
        let mut loaded: BTreeMap<Arc<str>, Group> = BTreeMap::new();
        let mut pending: PendingTransactionalOffsets = BTreeMap::new();
        for batch in batches {
            // KIP-98: a marker ends its producer's transaction here.
            if let (Some(marker), Some(stamp)) = (&batch.control, &batch.producer) {
                for (group_id, producers) in pending.iter_mut() {
                    if let Some(offsets) = producers.remove(&stamp.producer_id) {
                        if marker.commit {
                            loaded.entry(group_id.clone()).or_insert_with(|| Group::new(group_id.clone(), delay)).offsets.extend(offsets);
                        }
                    }
                }
                continue;
            }
            let transactional = batch.producer.filter(|stamp| stamp.transactional).map(|stamp| stamp.producer_id);
            for (_, record) in batch.iter() {
                let Some(entry) = decode_record::<GroupLogRecord>(record) else { continue };
                if self.partition_of(entry.group_id()) != partition {
                    continue;
                }
                match entry {
                    GroupLogRecord::Group(record) => {
                        let offsets = loaded.remove(&record.group_id).map(|group| group.offsets).unwrap_or_default();
                        let mut group = Group::from_record(record, now, delay);
                        group.offsets = offsets;
                        loaded.insert(group.id.clone(), group);
                    }
                    GroupLogRecord::Offset(record) if transactional.is_some() => {
                        let producer_id = transactional.expect("matched above");
                        pending.entry(record.group_id.clone()).or_default().entry(producer_id).or_default().insert(record.partition, record.offset);
                    }
                    GroupLogRecord::Offset(record) => {
                        let group = loaded.entry(record.group_id.clone()).or_insert_with(|| Group::new(record.group_id.clone(), delay));
                        group.offsets.insert(record.partition, record.offset);
                    }
                }
            }
        }
        tracing::info!(partition, groups = loaded.len(), "group coordinator loaded");
        self.groups.retain(|group_id, _| partition_for(group_id, self.config.offsets_topic_num_partitions) != partition);
        self.groups.extend(loaded);
        self.pending_transactional_offsets.retain(|group_id, _| partition_for(group_id, self.config.offsets_topic_num_partitions) != partition);
        pending.retain(|_, producers| {
            producers.retain(|_, offsets| !offsets.is_empty());
            !producers.is_empty()
        });
        self.pending_transactional_offsets.extend(pending);
        self.runtime.load(partition, leader_epoch, out);
    }

    fn unload(&mut self, partition: u32) {
        self.runtime.unload(partition);
        let count = self.config.offsets_topic_num_partitions;
        self.pending_transactional_offsets.retain(|group_id, _| partition_for(group_id, count) != partition);
        let mut effects = Vec::new();
        self.groups.retain(|group_id, group| {
            let keep = partition_for(group_id, count) != partition;
            if !keep {
                // Kafka answers parked requests NOT_COORDINATOR when it unloads a group.
                group.unload(&mut effects);
            }
            keep
        });
        self.farewells.extend(effects.into_iter().filter_map(|effect| match effect {
            GroupEffect::Send { to, message } => Some((to, message)),
            GroupEffect::WriteGroup { .. } => None,
        }));
    }

    fn handle_request(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Vec<CoordinatorEffect>) {
        if let Message::Group(message) = message {
            self.handle_group_request(now, from, *message, out);
        }
    }

    fn write_completed(&mut self, now: Instant, token: WriteToken, result: Result<Offset, ErrorCode>, out: &mut Vec<CoordinatorEffect>) {
        if let Some(outcome) = self.runtime.barrier_completed(now, token, &result) {
            if let BarrierOutcome::Serving(partition) = outcome {
                tracing::info!(partition, "group coordinator serves its partition: the load barrier committed");
            }
            return;
        }
        let Some(pending) = self.pending.remove(&token) else { return };
        match pending {
            PendingWrite::Group { group_id, generation } => {
                let mut effects = Vec::new();
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.group_written(now, generation, result, &mut effects);
                }
                self.apply_effects(&group_id, effects, out);
            }
            PendingWrite::Commit { group_id, client, correlation_id, offsets } => {
                let result = match result {
                    Ok(_) => {
                        if let Some(group) = self.groups.get_mut(&group_id) {
                            group.offsets.extend(offsets);
                        } else if self.runtime.is_loaded(self.partition_of(&group_id)) {
                            let mut group = Group::new(group_id.clone(), self.config.group_initial_rebalance_delay);
                            group.offsets.extend(offsets);
                            self.groups.insert(group_id, group);
                        }
                        Ok(())
                    }
                    Err(error) => Err(coordinator_error(error)),
                };
                out.push(CoordinatorEffect::Send { to: client, message: Message::group(GroupMessage::OffsetCommitResponse { correlation_id, result }) });
            }
            PendingWrite::TxnCommit { group_id, client, correlation_id, producer_id, offsets } => {
                if result.is_err() {
                    // Kafka's failPendingTxnOffsetCommit: what this write made
                    // pending is pending no more (unless a later write replaced it).
                    if let Some(pending) = self.pending_transactional_offsets.get_mut(&group_id).and_then(|producers| producers.get_mut(&producer_id)) {
                        for (tp, offset) in &offsets {
                            if pending.get(tp) == Some(offset) {
                                pending.remove(tp);
                            }
                        }
                    }
                    self.pending_transactional_offsets.retain(|_, producers| {
                        producers.retain(|_, offsets| !offsets.is_empty());
                        !producers.is_empty()
                    });
                }
                let result = match result {
                    Ok(_) => Ok(()),
                    Err(ErrorCode::ProducerFenced) => Err(ErrorCode::ProducerFenced),
                    Err(error) => Err(coordinator_error(error)),
                };
                let message = GroupMessage::TxnOffsetCommitResponse { correlation_id, result };
                out.push(CoordinatorEffect::Send { to: client, message: Message::group(message) });
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<CoordinatorEffect>) {
        out.extend(self.farewells.drain(..).map(|(to, message)| CoordinatorEffect::Send { to, message }));
        self.runtime.retry_barriers(now, out);
        let due: Vec<Arc<str>> = self.groups.iter().filter(|(_, group)| group.next_deadline().is_some_and(|deadline| deadline <= now)).map(|(id, _)| id.clone()).collect();
        for group_id in due {
            let mut effects = Vec::new();
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.handle_timeout(now, &mut effects);
            }
            self.apply_effects(&group_id, effects, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.farewells.is_empty() {
            return Some(Instant::ZERO);
        }
        let barriers = self.runtime.next_deadline();
        self.groups.values().fold(barriers, |deadline, group| earliest(deadline, group.next_deadline()))
    }
}

#[cfg(test)]
mod tests;
