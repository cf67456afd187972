//! A property test of replication: three replicas of one partition, a
//! controller that elects leaders from the ISR, and random appends, follower
//! fetches (whose answers arrive late, or never), OffsetsForLeaderEpoch
//! truncations, ISR shrinks, crashes, restarts and leader changes. After every
//! step:
//! - every replica's high watermark is within its log;
//! - any two replicas hold the same records below both their high watermarks;
//! - every record that was ever below the leader's high watermark is still in
//!   every ISR member's log, at its offset;
//! - a leader's high watermark never goes back within its epoch.
//!
//! The follower side is the broker's own code (`truncate_to_leader_answer`,
//! `append_fetched`); the leader side is `Partition`'s. Two deliberate breaks
//! show the properties can fail: the pre-KIP-101 truncation to the high
//! watermark, and an unclean election.

use super::{Partition, Role};
use crate::log::Log;
use crate::protocol::EpochEndOffset;
use crate::record::{Record, RecordBatch, SharedBatch};
use crate::time::Instant;
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;

const REPLICAS: usize = 3;
/// Small, so a follower often needs several fetches to catch up.
const FETCH_MAX_BATCHES: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// The leader appends a batch of this many records.
    Produce(usize),
    /// The follower sends its next request (OffsetsForLeaderEpoch or Fetch);
    /// the leader serves it at once, and the answer waits in flight.
    Request(usize),
    /// The follower's answer in flight arrives.
    Respond(usize),
    /// The follower's answer in flight is lost.
    Drop(usize),
    /// The leader drops a follower from the ISR (it lagged, say).
    Shrink(usize),
    /// The replica's process dies (its log, all flushed, stays on disk).
    Crash(usize),
    Restart(usize),
    /// The controller moves leadership to this replica, if it may lead.
    Elect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let replica = 0..REPLICAS;
    prop_oneof![
        3 => (1..4usize).prop_map(Op::Produce),
        4 => replica.clone().prop_map(Op::Request),
        4 => replica.clone().prop_map(Op::Respond),
        1 => replica.clone().prop_map(Op::Drop),
        1 => replica.clone().prop_map(Op::Shrink),
        1 => replica.clone().prop_map(Op::Crash),
        1 => replica.clone().prop_map(Op::Restart),
        1 => replica.prop_map(Op::Elect),
    ]
}

/// What a deliberately broken cluster does differently.
#[derive(Clone, Copy, Debug, Default)]
struct Breaks {
    /// Followers cut their logs at their high watermark (before KIP-101).
    legacy_truncation: bool,
    /// The controller may elect a replica outside the ISR.
    unclean_election: bool,
}

enum Answer {
    Epoch { leader: NodeId, answer: EpochEndOffset },
    Fetch { leader: NodeId, batches: Vec<SharedBatch>, high_watermark: Offset },
}

struct Cluster {
    breaks: Breaks,
    replicas: Vec<Partition>,
    alive: [bool; REPLICAS],
    in_flight: [Option<Answer>; REPLICAS],
    leader: Option<usize>,
    epoch: LeaderEpoch,
    isr: Vec<usize>,
    next_value: u64,
    now: Instant,
    /// Every record ever below a leader's high watermark.
    committed: BTreeMap<Offset, Bytes>,
    /// The leader, its epoch and its high watermark after the last step.
    last_leader_high_watermark: Option<(usize, LeaderEpoch, Offset)>,
}

fn id(replica: usize) -> NodeId {
    NodeId(replica as u32 + 1)
}

fn records_of(partition: &Partition) -> BTreeMap<Offset, Bytes> {
    let mut records = BTreeMap::new();
    for batch in partition.log.batches() {
        for (index, record) in batch.records.iter().enumerate() {
            records.insert(Offset(batch.base_offset.0 + index as u64), record.value.clone());
        }
    }
    records
}

impl Cluster {
    fn new(breaks: Breaks) -> Cluster {
        let tp = TopicPartition::new("t", 0);
        let replicas = (0..REPLICAS)
            .map(|_| {
                let mut partition = Partition::new(tp.clone(), Log::default(), Offset(0));
                partition.replicas = (0..REPLICAS).map(id).collect();
                partition
            })
            .collect();
        let mut cluster = Cluster {
            breaks,
            replicas,
            alive: [true; REPLICAS],
            in_flight: Default::default(),
            leader: None,
            epoch: LeaderEpoch(0),
            isr: (0..REPLICAS).collect(),
            next_value: 0,
            now: Instant::ZERO,
            committed: BTreeMap::new(),
            last_leader_high_watermark: None,
        };
        cluster.elect(Some(0));
        cluster
    }

    /// A new leader epoch with `leader` (or none); every live replica learns it.
    fn elect(&mut self, leader: Option<usize>) {
        self.epoch = LeaderEpoch(self.epoch.0 + 1);
        self.leader = leader;
        for replica in 0..REPLICAS {
            if self.alive[replica] {
                self.learn(replica);
            }
        }
    }

    /// `replica` takes the controller's current orders.
    fn learn(&mut self, replica: usize) {
        let isr: Vec<NodeId> = self.isr.iter().map(|member| id(*member)).collect();
        let partition = &mut self.replicas[replica];
        partition.isr = isr;
        let mut disk = Vec::new();
        match self.leader {
            Some(leader) if leader == replica => partition.become_leader(self.now, id(replica), self.epoch, &mut disk),
            Some(leader) => partition.become_follower(id(leader), self.epoch, self.breaks.legacy_truncation, &mut disk),
            None => partition.become_offline(self.epoch),
        }
    }

    fn set_isr(&mut self, isr: Vec<usize>) {
        self.isr = isr;
        if let Some(leader) = self.leader {
            self.replicas[leader].isr = self.isr.iter().map(|member| id(*member)).collect();
        }
    }

    /// A replica the controller may make leader now.
    fn eligible(&self, replica: usize) -> bool {
        self.alive[replica] && (self.isr.contains(&replica) || self.breaks.unclean_election)
    }

    fn live_leader(&self) -> Option<usize> {
        self.leader.filter(|leader| self.alive[*leader])
    }

    fn apply(&mut self, op: Op) {
        self.now = self.now + std::time::Duration::from_millis(10);
        match op {
            Op::Produce(count) => {
                let Some(leader) = self.live_leader() else { return };
                let partition = &mut self.replicas[leader];
                let records: Vec<Record> = (0..count)
                    .map(|_| {
                        self.next_value += 1;
                        Record { key: None, value: Bytes::from(self.next_value.to_string()), headers: None }
                    })
                    .collect();
                let batch = RecordBatch::new(partition.log_end_offset(), partition.leader_epoch, None, records.into());
                partition.append(Arc::new(batch), 1, &mut Vec::new());
                partition.maybe_advance_high_watermark(id(leader));
            }
            Op::Request(follower) => self.request(follower),
            Op::Respond(follower) => self.respond(follower),
            Op::Drop(follower) => self.in_flight[follower] = None,
            Op::Shrink(follower) => {
                if Some(follower) != self.leader && self.isr.contains(&follower) {
                    let isr = self.isr.iter().copied().filter(|member| *member != follower).collect();
                    self.set_isr(isr);
                    if let Some(leader) = self.live_leader() {
                        self.replicas[leader].maybe_advance_high_watermark(id(leader));
                    }
                }
            }
            Op::Crash(replica) => {
                if !self.alive[replica] {
                    return;
                }
                self.alive[replica] = false;
                self.in_flight[replica] = None;
                let epoch = self.replicas[replica].leader_epoch;
                self.replicas[replica].become_offline(epoch);
                // KRaft fences the broker: out of the ISR unless it is the last member.
                if self.isr.len() > 1 && self.isr.contains(&replica) {
                    let isr = self.isr.iter().copied().filter(|member| *member != replica).collect();
                    self.set_isr(isr);
                }
                if self.leader == Some(replica) {
                    let next = (0..REPLICAS).find(|candidate| self.eligible(*candidate));
                    self.elect(next);
                }
            }
            Op::Restart(replica) => {
                if self.alive[replica] {
                    return;
                }
                self.alive[replica] = true;
                if self.live_leader().is_none() && self.eligible(replica) {
                    self.elect(Some(replica));
                } else {
                    self.learn(replica);
                }
            }
            Op::Elect(replica) => {
                if self.leader != Some(replica) && self.eligible(replica) {
                    if !self.isr.contains(&replica) {
                        let mut isr = self.isr.clone();
                        isr.push(replica);
                        self.isr = isr;
                    }
                    self.elect(Some(replica));
                }
            }
        }
        if let Some(leader) = self.live_leader() {
            let partition = &self.replicas[leader];
            let records = records_of(partition);
            for (offset, value) in records.range(..partition.high_watermark) {
                self.committed.entry(*offset).or_insert_with(|| value.clone());
            }
        }
    }

    /// The follower's fetcher, as `send_fetches`, and the leader's answer, as
    /// `offsets_for_leader_epoch` and `handle_fetch`.
    fn request(&mut self, follower: usize) {
        let Some(leader) = self.live_leader() else { return };
        if !self.alive[follower] || self.in_flight[follower].is_some() {
            return;
        }
        let empty = self.replicas[follower].log.latest_epoch().is_none();
        let Role::Follower(state) = &mut self.replicas[follower].role else { return };
        if state.leader != id(leader) {
            return;
        }
        if !state.truncated && empty {
            // An empty log has nothing to disagree about.
            state.truncated = true;
        }
        let truncated = state.truncated;
        let follower_epoch = self.replicas[follower].leader_epoch;
        if follower_epoch != self.replicas[leader].leader_epoch {
            return;
        }
        if !truncated {
            let latest = self.replicas[follower].log.latest_epoch().expect("checked above");
            let answer = self.replicas[leader].epoch_end_offset(latest);
            self.in_flight[follower] = Some(Answer::Epoch { leader: id(leader), answer });
            return;
        }
        let fetch_offset = self.replicas[follower].log_end_offset();
        let partition = &mut self.replicas[leader];
        if fetch_offset > partition.log_end_offset() {
            // OffsetOutOfRange: the follower looks for the divergence again.
            if let Role::Follower(state) = &mut self.replicas[follower].role {
                state.truncated = false;
            }
            return;
        }
        partition.record_follower_fetch(self.now, id(follower), fetch_offset);
        if partition.may_join_isr(id(follower)) {
            let mut isr = self.isr.clone();
            isr.push(follower);
            self.set_isr(isr);
        }
        let partition = &mut self.replicas[leader];
        partition.maybe_advance_high_watermark(id(leader));
        let batches = partition.log.read(fetch_offset, partition.log_end_offset(), FETCH_MAX_BATCHES);
        self.in_flight[follower] = Some(Answer::Fetch { leader: id(leader), batches, high_watermark: partition.high_watermark });
    }

    /// The answer reaches the follower, as the fetcher's response handlers.
    fn respond(&mut self, follower: usize) {
        let Some(answer) = self.in_flight[follower].take() else { return };
        let partition = &mut self.replicas[follower];
        let Role::Follower(state) = &partition.role else { return };
        match answer {
            Answer::Epoch { leader, answer } if state.leader == leader && !state.truncated => partition.truncate_to_leader_answer(answer, &mut Vec::new()),
            Answer::Fetch { leader, batches, high_watermark } if state.leader == leader && state.truncated => {
                partition.append_fetched(batches, high_watermark, 1, &mut Vec::new())
            }
            _ => {}
        }
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let records: Vec<BTreeMap<Offset, Bytes>> = self.replicas.iter().map(records_of).collect();
        for (replica, partition) in self.replicas.iter().enumerate() {
            prop_assert!(partition.high_watermark <= partition.log_end_offset(), "replica {replica}: high watermark {} past its log end {}", partition.high_watermark, partition.log_end_offset());
        }
        for a in 0..REPLICAS {
            for b in a + 1..REPLICAS {
                let below = self.replicas[a].high_watermark.min(self.replicas[b].high_watermark);
                for (offset, value) in records[a].range(..below) {
                    prop_assert_eq!(records[b].get(offset), Some(value), "replicas {} and {} disagree at offset {} below both high watermarks", a, b, offset);
                }
            }
        }
        for member in &self.isr {
            for (offset, value) in &self.committed {
                prop_assert_eq!(records[*member].get(offset), Some(value), "ISR member {} lost committed offset {}", member, offset);
            }
        }
        if let Some(leader) = self.live_leader() {
            let now = (leader, self.replicas[leader].leader_epoch, self.replicas[leader].high_watermark);
            if let Some((last_leader, last_epoch, last)) = self.last_leader_high_watermark {
                if last_leader == now.0 && last_epoch == now.1 {
                    prop_assert!(now.2 >= last, "leader {leader}'s high watermark went back from {last} to {} in epoch {}", now.2, now.1);
                }
            }
            self.last_leader_high_watermark = Some(now);
        }
        Ok(())
    }
}

fn run(breaks: Breaks, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut cluster = Cluster::new(breaks);
    for op in ops {
        cluster.apply(*op);
        cluster.check()?;
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    // A fixed seed: the same cases on every machine and every run.
    TestRunner::new_with_rng(Config { cases, failure_persistence: None, ..Config::default() }, proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha))
}

fn histories() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..80)
}

#[test]
fn replicas_agree_below_the_high_watermark_and_keep_what_was_committed() {
    let result = runner(2_000).run(&histories(), |ops| run(Breaks::default(), &ops));
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn truncating_to_the_high_watermark_breaks_replication_as_kip_101_says() {
    let breaks = Breaks { legacy_truncation: true, ..Breaks::default() };
    let result = runner(2_000).run(&histories(), |ops| run(breaks, &ops));
    assert!(result.is_err(), "the pre-KIP-101 truncation must lose or diverge a committed record");
}

#[test]
fn an_unclean_election_loses_committed_records() {
    let breaks = Breaks { unclean_election: true, ..Breaks::default() };
    let result = runner(2_000).run(&histories(), |ops| run(breaks, &ops));
    assert!(result.is_err(), "electing outside the ISR must lose a committed record");
}
