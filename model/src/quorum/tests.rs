//! The quorum in a small deterministic world: messages delivered in any
//! order, dropped, nodes crashed (keeping only what they made durable),
//! restarted and cut off. Proptest draws the schedule; every step checks
//! Raft's safety properties.

use super::*;
use proptest::prelude::*;

/// `KAFSIM_QUORUM_TRACE=1` prints every step and every node after it: how a
/// failing schedule is read.
fn tracing_steps() -> bool {
    std::env::var_os("KAFSIM_QUORUM_TRACE").is_some()
}

#[derive(Clone, Debug)]
enum Action {
    Deliver(usize),
    Drop(usize),
    Advance,
    Append,
    Crash(usize),
    Restart(usize),
    Isolate(usize),
    Heal,
}

struct World {
    now: Instant,
    config: QuorumConfig,
    nodes: Vec<Option<QuorumNode>>,
    disks: Vec<QuorumDurable>,
    in_flight: Vec<(NodeId, NodeId, QuorumMessage)>,
    isolated: Option<NodeId>,
    /// The leader of each epoch, as seen so far.
    leaders: BTreeMap<u32, NodeId>,
    /// The longest committed prefix any node has reported.
    committed: Vec<Entry>,
    high_watermarks: Vec<u64>,
    next_record: u64,
    restarts: u64,
    /// Whether a step's state is durable before its messages leave (Kafka
    /// fsyncs the quorum state and the log). Without, a crash is a power
    /// loss that keeps only what the page cache happened to write back.
    fsync: bool,
    advances: u64,
}

impl World {
    fn new(voters: usize) -> World {
        World::with_pre_vote(voters, false)
    }

    fn with_pre_vote(voters: usize, pre_vote: bool) -> World {
        World::with_observers(voters, 0, pre_vote)
    }

    /// `voters` voters (ids 1..), then `observers` observers.
    fn with_observers(voters: usize, observers: usize, pre_vote: bool) -> World {
        let ids: Vec<NodeId> = (1..=(voters + observers) as u32).map(NodeId).collect();
        let mut config = QuorumConfig::new(ids[..voters].to_vec());
        config.pre_vote = pre_vote;
        let mut world = World {
            now: Instant::ZERO,
            config: config.clone(),
            nodes: Vec::new(),
            disks: vec![QuorumDurable::default(); voters + observers],
            in_flight: Vec::new(),
            isolated: None,
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            high_watermarks: vec![0; voters + observers],
            next_record: 0,
            restarts: 0,
            fsync: true,
            advances: 0,
        };
        for id in ids {
            let mut out = Vec::new();
            let node = QuorumNode::recover(Instant::ZERO, id, config.clone(), QuorumDurable::default(), u64::from(id.0) * 7919, &mut out);
            world.nodes.push(Some(node));
            world.send(id, out);
        }
        world
    }

    fn send(&mut self, from: NodeId, out: Vec<(NodeId, QuorumMessage)>) {
        self.in_flight.extend(out.into_iter().map(|(to, message)| (from, to, message)));
    }

    fn index(id: NodeId) -> usize {
        id.0 as usize - 1
    }

    fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.isolated.is_some_and(|isolated| isolated == a || isolated == b)
    }

    fn step(&mut self, action: &Action) {
        if tracing_steps() {
            let picked = match action {
                Action::Deliver(pick) if !self.in_flight.is_empty() => {
                    let (from, to, message) = &self.in_flight[pick % self.in_flight.len()];
                    format!(" {}->{} {message:?}", from.0, to.0)
                }
                _ => String::new(),
            };
            eprintln!("t={} {action:?}{picked}", self.now);
        }
        match action {
            Action::Deliver(pick) if !self.in_flight.is_empty() => {
                let (from, to, message) = self.in_flight.remove(pick % self.in_flight.len());
                if self.cut(from, to) {
                    return;
                }
                let mut out = Vec::new();
                if let Some(node) = self.nodes[Self::index(to)].as_mut() {
                    node.handle_message(self.now, from, message, &mut out);
                }
                self.send(to, out);
            }
            Action::Drop(pick) if !self.in_flight.is_empty() => {
                self.in_flight.remove(pick % self.in_flight.len());
            }
            Action::Advance => {
                self.advances += 1;
                let Some(next) = self.nodes.iter().flatten().filter_map(|node| node.next_deadline()).min() else { return };
                self.now = self.now.max(next);
                for index in 0..self.nodes.len() {
                    let mut out = Vec::new();
                    let Some(node) = self.nodes[index].as_mut() else { continue };
                    if node.next_deadline().is_some_and(|deadline| deadline <= self.now) {
                        node.handle_timeout(self.now, &mut out);
                    }
                    let id = node.id();
                    self.send(id, out);
                }
            }
            Action::Append => {
                let record = Bytes::from(self.next_record.to_string());
                self.next_record += 1;
                for index in 0..self.nodes.len() {
                    let mut out = Vec::new();
                    let Some(node) = self.nodes[index].as_mut() else { continue };
                    node.append(self.now, record.clone(), &mut out);
                    let id = node.id();
                    self.send(id, out);
                }
            }
            Action::Crash(index) => {
                let index = index % self.nodes.len();
                self.nodes[index] = None;
                self.high_watermarks[index] = 0;
                self.in_flight.retain(|(_, to, _)| Self::index(*to) != index);
            }
            Action::Restart(index) => {
                let index = index % self.nodes.len();
                if self.nodes[index].is_none() {
                    self.restarts += 1;
                    let id = NodeId(index as u32 + 1);
                    let mut out = Vec::new();
                    let node = QuorumNode::recover(self.now, id, self.config.clone(), self.disks[index].clone(), self.restarts * 104_729 + index as u64, &mut out);
                    self.nodes[index] = Some(node);
                    self.send(id, out);
                }
            }
            Action::Isolate(index) => self.isolated = Some(NodeId((index % self.nodes.len()) as u32 + 1)),
            Action::Heal => self.isolated = None,
            _ => {}
        }
        // The shell makes a step's state durable before its messages leave;
        // without fsync, the page cache writes it back now and then.
        let written_back = self.fsync || (matches!(action, Action::Advance) && self.advances.is_multiple_of(8));
        for (index, node) in self.nodes.iter().enumerate().filter(|_| written_back) {
            if let Some(node) = node {
                self.disks[index] = node.durable().clone();
            }
        }
        self.check();
    }

    fn check(&mut self) {
        if tracing_steps() {
            for node in self.nodes.iter().flatten() {
                let epochs: Vec<u32> = node.log().iter().map(|entry| entry.epoch).collect();
                eprintln!("   node {} epoch {} {:?} hw {} log epochs {epochs:?} voted {:?}", node.id().0, node.epoch(), node.role(), node.high_watermark(), node.durable().voted_for);
            }
        }
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            if node.is_leader() {
                assert!(node.is_voter(), "an observer never leads");
                let leader = *self.leaders.entry(node.epoch()).or_insert(node.id());
                assert_eq!(leader, node.id(), "election safety: two leaders in epoch {}", node.epoch());
            }
            let high_watermark = node.high_watermark();
            assert!(high_watermark >= self.high_watermarks[index], "a node's high watermark went back");
            assert!(high_watermark as usize <= node.log().len(), "the high watermark is past the log end");
            self.high_watermarks[index] = high_watermark;
            let prefix = &node.log()[..high_watermark as usize];
            let common = prefix.len().min(self.committed.len());
            assert_eq!(&prefix[..common], &self.committed[..common], "committed records differ on node {}", node.id().0);
            if prefix.len() > self.committed.len() {
                self.committed = prefix.to_vec();
            }
        }
    }
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        60 => any::<usize>().prop_map(Action::Deliver),
        5 => any::<usize>().prop_map(Action::Drop),
        18 => Just(Action::Advance),
        10 => Just(Action::Append),
        2 => any::<usize>().prop_map(Action::Crash),
        4 => any::<usize>().prop_map(Action::Restart),
        2 => any::<usize>().prop_map(Action::Isolate),
        3 => Just(Action::Heal),
    ]
}

/// Voters, observers, whether voters pre-vote (KIP-996), and what happens.
fn schedule() -> impl Strategy<Value = (usize, usize, bool, Vec<Action>)> {
    (prop_oneof![Just(3usize), Just(5usize)], 0..3usize, any::<bool>(), proptest::collection::vec(action(), 0..600))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn any_schedule_keeps_one_leader_per_epoch_and_committed_records_fixed((voters, observers, pre_vote, actions) in schedule()) {
        let mut world = World::with_observers(voters, observers, pre_vote);
        for action in &actions {
            world.step(action);
        }
    }
}

/// The first failure of the safety property over deterministic schedules of
/// a world that `setup` breaks, as text.
fn first_failure(setup: impl Fn(&mut World)) -> String {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let config = ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&schedule(), |(voters, observers, pre_vote, actions)| {
        let mut world = World::with_observers(voters, observers, pre_vote);
        setup(&mut world);
        for action in &actions {
            world.step(action);
        }
        Ok(())
    });
    result.expect_err("the safety property catches the broken quorum").to_string()
}

/// The property above can fail: with votes granted without the log check, a
/// stale candidate wins and a committed record is overwritten.
#[test]
fn granting_votes_without_the_log_check_breaks_a_committed_record() {
    let failure = first_failure(|world| {
        for node in world.nodes.iter_mut().flatten() {
            node.config.mutation = Some(QuorumMutation::VoteWithoutLogCheck);
            node.config.pre_vote = false;
        }
    });
    assert!(["committed records differ", "below its high watermark", "went back"].iter().any(|symptom| failure.contains(symptom)), "{failure}");
}

/// Without fsync a voter that loses power forgets its vote or its log: two
/// leaders in one epoch, or a committed record lost.
#[test]
fn a_quorum_without_fsync_breaks_under_power_loss() {
    let failure = first_failure(|world| world.fsync = false);
    assert!(["two leaders", "committed records differ", "below its high watermark", "went back"].iter().any(|symptom| failure.contains(symptom)), "{failure}");
}

/// Delivers everything, in order, and lets time pass, until `done` or a bound.
fn run_until(world: &mut World, steps: usize, done: impl Fn(&World) -> bool) -> bool {
    for _ in 0..steps {
        if done(world) {
            return true;
        }
        if world.in_flight.is_empty() {
            world.step(&Action::Advance);
        } else {
            world.step(&Action::Deliver(0));
        }
    }
    done(world)
}

fn leader(world: &World) -> Option<NodeId> {
    world.nodes.iter().flatten().find(|node| node.is_leader()).map(|node| node.id())
}

#[test]
fn a_healthy_quorum_elects_a_leader_and_commits_what_it_appends() {
    let mut world = World::new(3);
    assert!(run_until(&mut world, 1_000, |world| leader(world).is_some()), "no leader elected");
    for _ in 0..5 {
        world.step(&Action::Append);
    }
    // The LeaderChange record and the five appended ones, on every voter.
    assert!(run_until(&mut world, 1_000, |world| world.nodes.iter().flatten().all(|node| node.high_watermark() == 6)), "not committed everywhere");
    let records: Vec<Option<Bytes>> = world.committed.iter().map(|entry| entry.record.clone()).collect();
    assert_eq!(records[0], None);
    assert_eq!(records[1..].iter().flatten().map(|record| record.to_vec()).collect::<Vec<_>>(), (0..5).map(|n| n.to_string().into_bytes()).collect::<Vec<_>>());
}

#[test]
fn a_crashed_leader_is_replaced_and_nothing_committed_is_lost() {
    let mut world = World::new(3);
    assert!(run_until(&mut world, 1_000, |world| leader(world).is_some()));
    world.step(&Action::Append);
    assert!(run_until(&mut world, 1_000, |world| world.nodes.iter().flatten().all(|node| node.high_watermark() == 2)));
    let old = leader(&world).expect("a leader");
    world.step(&Action::Crash(World::index(old)));
    assert!(run_until(&mut world, 5_000, |world| leader(world).is_some_and(|leader| leader != old)), "no new leader");
    world.step(&Action::Append);
    world.step(&Action::Restart(World::index(old)));
    assert!(run_until(&mut world, 5_000, |world| world.nodes.iter().flatten().all(|node| node.high_watermark() == 4)), "the old leader did not catch up");
    let node = world.nodes[World::index(old)].as_ref().expect("restarted");
    assert_eq!(node.log()[..4], world.committed[..4]);
}

#[test]
fn a_vote_goes_only_to_a_candidate_whose_log_is_as_up_to_date() {
    let config = QuorumConfig::new(vec![NodeId(1), NodeId(2), NodeId(3)]);
    let durable = QuorumDurable { epoch: 2, voted_for: None, leader: None, log: vec![Entry { epoch: 1, record: None }, Entry { epoch: 2, record: None }] };
    let mut out = Vec::new();
    let mut voter = QuorumNode::recover(Instant::ZERO, NodeId(1), config, durable, 1, &mut out);
    // Behind: its last epoch is older.
    voter.handle_message(Instant::ZERO, NodeId(2), QuorumMessage::Vote { epoch: 3, last_epoch: 1, log_end_offset: 5, pre_vote: false }, &mut out);
    assert_eq!(out.pop(), Some((NodeId(2), QuorumMessage::VoteResponse { epoch: 3, granted: false, pre_vote: false, leader: None })));
    // As up to date: granted, and only once in the epoch.
    voter.handle_message(Instant::ZERO, NodeId(3), QuorumMessage::Vote { epoch: 3, last_epoch: 2, log_end_offset: 2, pre_vote: false }, &mut out);
    assert_eq!(out.pop(), Some((NodeId(3), QuorumMessage::VoteResponse { epoch: 3, granted: true, pre_vote: false, leader: None })));
    voter.handle_message(Instant::ZERO, NodeId(2), QuorumMessage::Vote { epoch: 3, last_epoch: 2, log_end_offset: 9, pre_vote: false }, &mut out);
    assert_eq!(out.pop(), Some((NodeId(2), QuorumMessage::VoteResponse { epoch: 3, granted: false, pre_vote: false, leader: None })));
    assert_eq!(voter.durable().voted_for, Some(NodeId(3)));
}


/// A follower cut off long enough to try elections, then let back: what
/// happens to the leader and its epoch.
fn leader_after_a_follower_returns(pre_vote: bool) -> ((NodeId, u32), (NodeId, u32)) {
    let mut world = World::with_pre_vote(3, pre_vote);
    assert!(run_until(&mut world, 1_000, |world| leader(world).is_some()));
    assert!(run_until(&mut world, 1_000, |world| world.nodes.iter().flatten().all(|node| node.leader().is_some())));
    let before = leader(&world).expect("a leader");
    let epoch = world.nodes[World::index(before)].as_ref().expect("up").epoch();
    let follower = world.nodes.iter().flatten().map(|node| node.id()).find(|id| *id != before).expect("a follower");
    world.step(&Action::Isolate(World::index(follower)));
    let until = world.now + Duration::from_secs(20);
    run_until(&mut world, 100_000, |world| world.now >= until);
    world.step(&Action::Heal);
    let settled = world.now + Duration::from_secs(20);
    run_until(&mut world, 100_000, |world| world.now >= settled);
    let after = leader(&world).expect("a leader after the heal");
    ((before, epoch), (after, world.nodes[World::index(after)].as_ref().expect("up").epoch()))
}

#[test]
fn with_pre_vote_a_returning_follower_does_not_depose_a_healthy_leader() {
    let (before, after) = leader_after_a_follower_returns(true);
    assert_eq!(after, before);
    // Without pre-vote, the follower's elections in higher epochs depose it (KIP-996's motivation).
    let (before, after) = leader_after_a_follower_returns(false);
    assert!(after.1 > before.1, "the epoch moved on: {before:?} -> {after:?}");
}

#[test]
fn an_observer_finds_the_leader_and_follows_the_committed_log_without_voting() {
    let mut world = World::with_observers(3, 1, false);
    assert!(run_until(&mut world, 2_000, |world| leader(world).is_some()));
    for _ in 0..3 {
        world.step(&Action::Append);
    }
    let observer = NodeId(4);
    assert!(run_until(&mut world, 5_000, |world| world.nodes.iter().flatten().all(|node| node.high_watermark() == 4)), "the observer did not catch up");
    let node = world.nodes[World::index(observer)].as_ref().expect("up");
    assert!(!node.is_voter());
    assert_eq!(node.leader(), leader(&world));
    assert_eq!(node.durable().voted_for, None);
    // The leader's high watermark never waited for it: cut it off and the quorum still commits.
    world.step(&Action::Isolate(World::index(observer)));
    world.step(&Action::Append);
    let quorum_caught_up = |world: &World| world.nodes.iter().flatten().filter(|node| node.is_voter()).all(|node| node.high_watermark() == 5);
    assert!(run_until(&mut world, 5_000, quorum_caught_up), "the voters did not commit without the observer");
}
