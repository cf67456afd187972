//! The group coordinator driven by hand: a join, a sync, commits, a member that
//! stops heartbeating, and a successor coordinator loading the log.

use super::protocol::{Generation, GroupMessage, JoinResult, Subscription};
use super::*;
use crate::coordinator::runtime::BARRIER_RETRY_BACKOFF;
use crate::record::RecordBatch;
use std::time::Duration;

const SECOND: u64 = 1_000_000;

fn config() -> BrokerConfig {
    BrokerConfig { offsets_topic_num_partitions: 1, group_initial_rebalance_delay: Duration::ZERO, ..BrokerConfig::default() }
}

fn at(seconds: u64) -> Instant {
    Instant::from_micros(seconds * SECOND)
}

/// Loads partition 0 and lets its barrier write commit, so the coordinator serves.
fn load_committed(coordinator: &mut GroupCoordinator, now: Instant, leader_epoch: LeaderEpoch, batches: &[SharedBatch]) {
    let mut effects = Vec::new();
    coordinator.load(now, 0, leader_epoch, batches, &mut effects);
    let end = batches.last().map_or(Offset(0), |batch| batch.next_offset());
    for effect in effects {
        if let CoordinatorEffect::Append { token, .. } = effect {
            coordinator.write_completed(now, token, Ok(end), &mut Vec::new());
        }
    }
}

/// A loaded log may end in records that were never committed: nothing is served
/// until the barrier written after them commits, and a failed barrier is retried.
#[test]
fn a_loaded_partition_serves_nothing_until_its_barrier_commits() {
    let mut coordinator = GroupCoordinator::new(config());
    let mut effects = Vec::new();
    coordinator.load(Instant::ZERO, 0, LeaderEpoch(1), &[], &mut effects);
    let barrier = |effects: &[CoordinatorEffect]| {
        effects.iter().find_map(|effect| if let CoordinatorEffect::Append { token, .. } = effect { Some(*token) } else { None }).expect("a barrier write")
    };
    let first = barrier(&effects);
    let fetch = || Message::group(GroupMessage::OffsetFetchRequest { correlation_id: 7, group_id: "g".into(), partitions: Vec::new(), require_stable: false });
    let mut out = Vec::new();
    coordinator.handle_request(Instant::ZERO, NodeId(9), fetch(), &mut out);
    assert!(matches!(group_replies(&out)[..], [GroupMessage::OffsetFetchResponse { result: Err(ErrorCode::CoordinatorLoadInProgress), .. }]));
    coordinator.write_completed(Instant::ZERO, first, Err(ErrorCode::NotEnoughReplicas), &mut Vec::new());
    assert_eq!(coordinator.next_deadline(), Some(Instant::ZERO + BARRIER_RETRY_BACKOFF));
    let mut retried = Vec::new();
    coordinator.handle_timeout(Instant::ZERO + BARRIER_RETRY_BACKOFF, &mut retried);
    coordinator.write_completed(Instant::ZERO + BARRIER_RETRY_BACKOFF, barrier(&retried), Ok(Offset(0)), &mut Vec::new());
    let mut out = Vec::new();
    coordinator.handle_request(Instant::ZERO + BARRIER_RETRY_BACKOFF, NodeId(9), fetch(), &mut out);
    assert!(matches!(group_replies(&out)[..], [GroupMessage::OffsetFetchResponse { result: Ok(_), .. }]));
}

/// A coordinator that leads partition 0, whose writes all commit at once; the
/// log it writes is kept in `log` for a successor to load.
struct Harness {
    coordinator: GroupCoordinator,
    log: Vec<SharedBatch>,
    replies: Vec<(NodeId, GroupMessage)>,
}

impl Harness {
    fn new() -> Harness {
        let mut coordinator = GroupCoordinator::new(config());
        load_committed(&mut coordinator, Instant::ZERO, LeaderEpoch(1), &[]);
        Harness { coordinator, log: Vec::new(), replies: Vec::new() }
    }

    fn carry_out(&mut self, now: Instant, mut effects: Vec<CoordinatorEffect>) {
        while !effects.is_empty() {
            let mut next = Vec::new();
            for effect in effects {
                match effect {
                    CoordinatorEffect::Send { to, message } => {
                        if let Message::Group(message) = message {
                            self.replies.push((to, *message));
                        }
                    }
                    CoordinatorEffect::Append { records, token, producer, .. } => {
                        let base = self.log_end();
                        let stamp = producer.map(|(producer_id, producer_epoch)| crate::record::ProducerStamp {
                            producer_id,
                            producer_epoch,
                            base_sequence: crate::types::Sequence(-1),
                            transactional: true,
                        });
                        self.log.push(Arc::new(RecordBatch::new(base, LeaderEpoch(1), stamp, records.into())));
                        self.coordinator.write_completed(now, token, Ok(base), &mut next);
                    }
                }
            }
            effects = next;
        }
    }

    fn log_end(&self) -> Offset {
        self.log.last().map_or(Offset(0), |batch| batch.next_offset())
    }

    /// KIP-98: the transaction coordinator's marker for `producer` lands on the
    /// offsets partition, and the broker tells the group coordinator.
    fn marker(&mut self, producer: u64, commit: bool) {
        let stamp = crate::record::ProducerStamp { producer_id: ProducerId(producer), producer_epoch: 1, base_sequence: crate::types::Sequence(-1), transactional: true };
        let marker = crate::record::ControlMarker { commit, coordinator_epoch: 0 };
        self.log.push(Arc::new(RecordBatch::control(self.log_end(), LeaderEpoch(1), stamp, marker)));
        self.coordinator.complete_transaction(0, ProducerId(producer), commit);
    }

    fn request(&mut self, now: Instant, from: u32, message: GroupMessage) {
        let mut effects = Vec::new();
        self.coordinator.handle_request(now, NodeId(from), Message::group(message), &mut effects);
        self.carry_out(now, effects);
    }

    fn tick(&mut self, now: Instant) {
        let mut effects = Vec::new();
        self.coordinator.handle_timeout(now, &mut effects);
        self.carry_out(now, effects);
    }

    fn take(&mut self) -> Vec<(NodeId, GroupMessage)> {
        std::mem::take(&mut self.replies)
    }

    /// Consumer 3001 joins the group alone and syncs, owning `t/0`: its
    /// member id and generation. Its replies are taken.
    fn stable_member(&mut self) -> (MemberId, Generation) {
        self.request(at(0), 3001, join(1, None));
        let result = join_results(&self.take()).pop().expect("joined");
        let member = result.member_id.clone();
        self.request(at(0), 3001, sync(2, result.generation, &member, vec![(member.clone(), vec![TopicPartition::new("t", 0)])]));
        self.take();
        (member, result.generation)
    }
}

fn join(correlation_id: u64, member_id: Option<MemberId>) -> GroupMessage {
    GroupMessage::JoinGroupRequest {
        correlation_id,
        group_id: "g".into(),
        member_id,
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocols: vec!["range".into()],
        subscription: Subscription { topics: vec!["t".into()], ..Subscription::default() },
    }
}

fn join_results(replies: &[(NodeId, GroupMessage)]) -> Vec<JoinResult> {
    replies
        .iter()
        .filter_map(|(_, message)| match message {
            GroupMessage::JoinGroupResponse { result: Ok(result), .. } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn sync(correlation_id: u64, generation: Generation, member_id: &MemberId, assignments: Vec<(MemberId, Vec<TopicPartition>)>) -> GroupMessage {
    GroupMessage::SyncGroupRequest { correlation_id, group_id: "g".into(), generation, member_id: member_id.clone(), assignments }
}

fn commit(correlation_id: u64, generation: Generation, member_id: &MemberId, offset: u64) -> GroupMessage {
    GroupMessage::OffsetCommitRequest {
        correlation_id,
        group_id: "g".into(),
        generation,
        member_id: Some(member_id.clone()),
        offsets: vec![(TopicPartition::new("t", 0), Offset(offset))],
    }
}

/// Two members join, the leader assigns, both become stable; a commit in the
/// current generation succeeds and one from an expired member is refused.
#[test]
fn join_sync_commit_and_session_expiry() {
    let mut harness = Harness::new();
    harness.request(at(0), 3001, join(1, None));
    harness.request(at(0), 3002, join(1, None));
    // The first join completed the (undelayed) rebalance alone; the second
    // member's join starts another, which completes once the first rejoins.
    let first = join_results(&harness.take());
    assert_eq!(first.len(), 1);
    let a = first[0].member_id.clone();
    harness.request(at(1), 3001, join(2, Some(a.clone())));
    let results = join_results(&harness.take());
    assert_eq!(results.len(), 2);
    let generation = results[0].generation;
    let leader = results.iter().find(|result| !result.members.is_empty()).expect("one leader").member_id.clone();
    let b = results.iter().map(|result| result.member_id.clone()).find(|id| *id != a).expect("two members");
    let t = |partition| TopicPartition::new("t", partition);
    let assignments = vec![(a.clone(), vec![t(0)]), (b.clone(), vec![t(1)])];
    let (follower, follower_node) = if leader == a { (b.clone(), 3002) } else { (a.clone(), 3001) };
    let leader_node = if leader == a { 3001 } else { 3002 };
    harness.request(at(1), follower_node, sync(3, generation, &follower, vec![]));
    assert!(harness.take().is_empty(), "the follower waits for the leader's assignment");
    harness.request(at(1), leader_node, sync(3, generation, &leader, assignments));
    let synced = harness.take();
    assert_eq!(synced.len(), 2);
    assert!(synced.iter().all(|(_, message)| matches!(message, GroupMessage::SyncGroupResponse { result: Ok(partitions), .. } if partitions.len() == 1)));
    harness.request(at(2), 3001, commit(4, generation, &a, 7));
    assert!(matches!(harness.take()[..], [(_, GroupMessage::OffsetCommitResponse { result: Ok(()), .. })]));
    // b keeps heartbeating; a stops and expires 10 s (its session) after its
    // commit, which counted as a heartbeat (Kafka's doCommitOffsets).
    for second in 3..=13 {
        harness.request(at(second), 3002, GroupMessage::HeartbeatRequest { correlation_id: 10 + second, group_id: "g".into(), generation, member_id: b.clone() });
        harness.tick(at(second));
    }
    let replies = harness.take();
    assert!(replies.iter().any(|(_, message)| matches!(message, GroupMessage::HeartbeatResponse { error: Some(ErrorCode::RebalanceInProgress), .. })));
    harness.request(at(14), 3001, commit(30, generation, &a, 9));
    assert!(matches!(harness.take()[..], [(_, GroupMessage::OffsetCommitResponse { result: Err(ErrorCode::UnknownMemberId), .. })]));
}

/// A successor coordinator replays the log: the stable generation and the
/// committed offset survive the failover.
#[test]
fn a_successor_loads_groups_and_offsets_from_the_log() {
    let mut harness = Harness::new();
    harness.request(at(0), 3001, join(1, None));
    let result = join_results(&harness.take()).pop().expect("joined");
    let member = result.member_id.clone();
    harness.request(at(0), 3001, sync(2, result.generation, &member, vec![(member.clone(), vec![TopicPartition::new("t", 0)])]));
    harness.request(at(1), 3001, commit(3, result.generation, &member, 42));
    harness.take();
    let mut successor = GroupCoordinator::new(config());
    load_committed(&mut successor, at(2), LeaderEpoch(2), &harness.log);
    let group = &successor.groups["g"];
    assert!(group.is_stable());
    assert_eq!(group.generation, result.generation);
    assert_eq!(group.offsets[&TopicPartition::new("t", 0)], Offset(42));
    assert_eq!(group.members[&member].assignment, vec![TopicPartition::new("t", 0)]);
}

fn txn_commit(correlation_id: u64, producer: u64, generation: Generation, member_id: &MemberId, offset: u64) -> GroupMessage {
    GroupMessage::TxnOffsetCommitRequest {
        correlation_id,
        group_id: "g".into(),
        transactional_id: "tx".into(),
        producer_id: ProducerId(producer),
        producer_epoch: 1,
        generation,
        member_id: member_id.clone(),
        offsets: vec![(TopicPartition::new("t", 0), Offset(offset))],
    }
}

fn fetch(correlation_id: u64, require_stable: bool) -> GroupMessage {
    GroupMessage::OffsetFetchRequest { correlation_id, group_id: "g".into(), partitions: vec![TopicPartition::new("t", 0)], require_stable }
}

/// The committed offset of t/0 an OffsetFetch answers, or its error.
fn fetched(coordinator: &mut GroupCoordinator, require_stable: bool) -> Result<Option<Offset>, ErrorCode> {
    let mut effects = Vec::new();
    coordinator.handle_request(at(9), NodeId(3001), Message::group(fetch(99, require_stable)), &mut effects);
    let answer = effects.into_iter().find_map(|effect| match effect {
        CoordinatorEffect::Send { message: Message::Group(message), .. } => match *message {
            GroupMessage::OffsetFetchResponse { result, .. } => Some(result),
            _ => None,
        },
        _ => None,
    });
    answer.expect("an OffsetFetch answer").map(|offsets| offsets[0].1)
}

/// KIP-98 + KIP-447: TxnOffsetCommit's offsets stay pending until the
/// transaction's marker lands on the offsets partition; meanwhile OffsetFetch
/// with require_stable answers UnstableOffsetCommit. A commit marker makes them
/// the group's offsets, an abort marker drops them, a stale generation is
/// fenced, and a successor coordinator rebuilds the pending offsets from the
/// log (transactional offset records resolved by later markers).
#[test]
fn transactional_offsets_are_pending_until_their_marker() {
    let mut harness = Harness::new();
    let (member, generation) = harness.stable_member();
    harness.request(at(1), 3001, txn_commit(3, 7, Generation(generation.0 - 1), &member, 5));
    assert!(matches!(harness.take()[..], [(_, GroupMessage::TxnOffsetCommitResponse { result: Err(ErrorCode::IllegalGeneration), .. })]), "a zombie's generation is fenced");
    harness.request(at(1), 3001, txn_commit(4, 7, generation, &member, 10));
    assert!(matches!(harness.take()[..], [(_, GroupMessage::TxnOffsetCommitResponse { result: Ok(()), .. })]));
    assert_eq!(fetched(&mut harness.coordinator, true), Err(ErrorCode::UnstableOffsetCommit));
    assert_eq!(fetched(&mut harness.coordinator, false), Ok(None), "read_uncommitted fetches see only committed offsets");
    let mut successor = GroupCoordinator::new(config());
    load_committed(&mut successor, at(2), LeaderEpoch(2), &harness.log);
    assert_eq!(fetched(&mut successor, true), Err(ErrorCode::UnstableOffsetCommit), "the successor rebuilt the pending offsets");
    harness.marker(7, true);
    assert_eq!(fetched(&mut harness.coordinator, true), Ok(Some(Offset(10))));
    harness.request(at(3), 3001, txn_commit(5, 8, generation, &member, 20));
    harness.take();
    assert_eq!(fetched(&mut harness.coordinator, true), Err(ErrorCode::UnstableOffsetCommit));
    harness.marker(8, false);
    assert_eq!(fetched(&mut harness.coordinator, true), Ok(Some(Offset(10))), "an aborted transaction's offsets are dropped");
    let mut successor = GroupCoordinator::new(config());
    load_committed(&mut successor, at(4), LeaderEpoch(3), &harness.log);
    assert_eq!(fetched(&mut successor, true), Ok(Some(Offset(10))), "the successor resolved both transactions by their markers");
}

/// A marker that lands on the offsets partition after a TxnOffsetCommit's
/// record, but before that record is replicated, ends those offsets (Kafka
/// makes them pending at the append: prepareTxnOffsetCommit). Were they made
/// pending only on replication, a zombie's offsets aborted by its successor's
/// InitProducerId would wait on, and the successor's next commit marker, for
/// the same producer id, would commit them.
#[test]
fn an_abort_marker_before_the_offsets_write_is_replicated_drops_them() {
    let mut harness = Harness::new();
    let (member, generation) = harness.stable_member();
    let mut effects = Vec::new();
    harness.coordinator.handle_request(at(1), NodeId(3001), Message::group(txn_commit(3, 7, generation, &member, 10)), &mut effects);
    let token = effects.iter().find_map(|effect| match effect {
        CoordinatorEffect::Append { token, .. } => Some(*token),
        _ => None,
    });
    let token = token.expect("the offsets are appended");
    harness.marker(7, false);
    let mut replies = Vec::new();
    harness.coordinator.write_completed(at(1), token, Ok(Offset(0)), &mut replies);
    assert_eq!(fetched(&mut harness.coordinator, true), Ok(None), "nothing is pending after the abort");
    harness.marker(7, true);
    assert_eq!(fetched(&mut harness.coordinator, true), Ok(None), "a later commit of the same producer id does not revive them");
}

/// A failed metadata write answers SyncGroup with an error and rebalances again.
#[test]
fn a_failed_group_write_rebalances() {
    let mut coordinator = GroupCoordinator::new(config());
    load_committed(&mut coordinator, Instant::ZERO, LeaderEpoch(1), &[]);
    let mut effects = Vec::new();
    coordinator.handle_request(at(0), NodeId(3001), Message::group(join(1, None)), &mut effects);
    let member = coordinator.groups["g"].members.keys().next().cloned().expect("a member");
    let generation = coordinator.groups["g"].generation;
    effects.clear();
    coordinator.handle_request(at(0), NodeId(3001), Message::group(sync(2, generation, &member, vec![])), &mut effects);
    let token = effects.iter().find_map(|effect| if let CoordinatorEffect::Append { token, .. } = effect { Some(*token) } else { None }).expect("a write");
    effects.clear();
    coordinator.write_completed(at(1), token, Err(ErrorCode::NotLeaderOrFollower), &mut effects);
    assert!(group_replies(&effects).iter().any(|message| matches!(message, GroupMessage::SyncGroupResponse { result: Err(ErrorCode::NotCoordinator), .. })));
    assert!(matches!(coordinator.groups["g"].phase, state::Phase::PreparingRebalance { .. }));
}

/// Regression (simulator, group-at-least-once seed 0): a member joining a
/// stable group must start a rebalance, not receive the current generation.
#[test]
fn a_new_member_joining_a_stable_group_starts_a_rebalance() {
    let mut harness = Harness::new();
    harness.stable_member();
    assert!(harness.coordinator.groups["g"].is_stable());
    harness.request(at(1), 3002, join(1, None));
    assert!(join_results(&harness.take()).is_empty(), "the newcomer waits for the rebalance");
    assert!(matches!(harness.coordinator.groups["g"].phase, state::Phase::PreparingRebalance { .. }));
}

mod properties {
    use super::*;
    use crate::client::assignor::Assignor;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Join(u32),
        Heartbeat(u32),
        Leave(u32),
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u32..4).prop_map(Step::Join),
            (0u32..4).prop_map(Step::Heartbeat),
            (0u32..4).prop_map(Step::Leave),
            (0u64..8).prop_map(Step::Wait),
        ]
    }

    /// What one simulated client believes.
    #[derive(Clone, Default)]
    struct Client {
        member_id: Option<MemberId>,
        generation: Generation,
    }

    proptest! {
        /// Whatever members join, heartbeat, leave or go silent, the partitions
        /// handed out in one generation go to one member each, and the group's
        /// phase and membership stay consistent.
        #[test]
        fn one_owner_per_partition_and_generation(steps in proptest::collection::vec(step(), 1..60)) {
            let mut harness = Harness::new();
            let mut clients = vec![Client::default(); 4];
            let mut owners: BTreeMap<(Generation, TopicPartition), NodeId> = BTreeMap::new();
            let mut now = 0u64;
            let mut correlation = 0u64;
            for step in steps {
                correlation += 1;
                match step {
                    Step::Join(index) => harness.request(at(now), 3000 + index, join(correlation, clients[index as usize].member_id.clone())),
                    Step::Heartbeat(index) => {
                        if let Some(member_id) = clients[index as usize].member_id.clone() {
                            let generation = clients[index as usize].generation;
                            harness.request(at(now), 3000 + index, GroupMessage::HeartbeatRequest { correlation_id: correlation, group_id: "g".into(), generation, member_id });
                        }
                    }
                    Step::Leave(index) => {
                        if let Some(member_id) = clients[index as usize].member_id.take() {
                            harness.request(at(now), 3000 + index, GroupMessage::LeaveGroupRequest { correlation_id: correlation, group_id: "g".into(), member_id });
                        }
                    }
                    Step::Wait(seconds) => {
                        now += seconds;
                        harness.tick(at(now));
                    }
                }
                // Clients react at once: joiners sync (the leader with a range assignment).
                for _ in 0..4 {
                    let replies = harness.take();
                    if replies.is_empty() {
                        break;
                    }
                    for (node, message) in replies {
                        let index = (node.0 - 3000) as usize;
                        match message {
                            GroupMessage::JoinGroupResponse { result: Ok(result), .. } => {
                                clients[index] = Client { member_id: Some(result.member_id.clone()), generation: result.generation };
                                let counts: BTreeMap<Arc<str>, u32> = [("t".into(), 5)].into_iter().collect();
                                let assignments = if result.leader == result.member_id { Assignor::Range.assign(&result.members, &counts).into_iter().collect() } else { Vec::new() };
                                correlation += 1;
                                harness.request(at(now), node.0, sync(correlation, result.generation, &result.member_id, assignments));
                            }
                            GroupMessage::SyncGroupResponse { result: Ok(partitions), .. } => {
                                for partition in partitions {
                                    let owner = owners.entry((clients[index].generation, partition.clone())).or_insert(node);
                                    prop_assert_eq!(*owner, node, "{} owned twice in generation {}", partition, clients[index].generation);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                let group = harness.coordinator.groups.get("g");
                if let Some(group) = group {
                    // An Empty group has no members; a group with none is Empty (or about to complete a rebalance into Empty).
                    let empty = matches!(group.phase, state::Phase::Empty);
                    prop_assert!(!empty || group.members.is_empty(), "an Empty group has no members");
                    let waiting = matches!(group.phase, state::Phase::Empty | state::Phase::PreparingRebalance { .. });
                    prop_assert!(!group.members.is_empty() || waiting, "a group without members is Empty or rebalancing");
                    if group.is_stable() {
                        prop_assert!(group.leader.as_ref().is_some_and(|leader| group.members.contains_key(leader)), "a stable group has a member as leader");
                    }
                }
            }
        }
    }
}

/// The group messages among a coordinator's effects, in order.
fn group_replies(effects: &[CoordinatorEffect]) -> Vec<&GroupMessage> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            CoordinatorEffect::Send { message: Message::Group(message), .. } => Some(&**message),
            _ => None,
        })
        .collect()
}

/// A coordinator elected again for its partition at a higher leader epoch,
/// without losing it in between, keeps its groups and the JoinGroup parked in
/// them, as Kafka's GroupMetadataManager keeps a partition it owns; reloading
/// dropped the parked joins unanswered, and their members waited out the
/// rebalance timeout (found by a scenario with Kafka's default 300 s).
#[test]
fn a_coordinator_elected_again_keeps_its_parked_joins() {
    let mut harness = Harness::new();
    harness.request(at(0), 1, join(1, None));
    harness.tick(at(0));
    let member = join_results(&harness.take())[0].member_id.clone();
    harness.request(at(1), 1, sync(2, Generation(1), &member, vec![(member.clone(), vec![TopicPartition::new("t", 0)])]));
    harness.take();
    // A second member joins: the first must rejoin, and its JoinGroup parks.
    harness.request(at(2), 2, join(3, None));
    harness.request(at(2), 1, join(4, Some(member.clone())));
    let log = harness.log.clone();
    let mut effects = Vec::new();
    harness.coordinator.load(at(3), 0, LeaderEpoch(2), &log, &mut effects);
    assert!(effects.is_empty(), "nothing is loaded again");
    harness.tick(at(3) + Duration::from_secs(31));
    let answered: Vec<u64> = harness.take().iter().filter_map(|(_, message)| if let GroupMessage::JoinGroupResponse { correlation_id, result: Ok(_) } = message { Some(*correlation_id) } else { None }).collect();
    assert!(answered.contains(&3) && answered.contains(&4), "both parked joins complete: {answered:?}");
}
