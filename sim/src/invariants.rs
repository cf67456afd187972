//! Invariants checked while a run goes, TigerBeetle style, across nodes:
//! - at most one leader per partition and leader epoch;
//! - on every replica, LSO <= HW <= LEO;
//! - a leader's high watermark never goes back within its epoch (per process
//!   incarnation: a restarted broker starts from its checkpoint);
//! - replicas agree below the high watermark: a record below any replica's high
//!   watermark is the same on every replica whose high watermark passes it;
//! - a committed offset never goes back in a generation: the offsets a group's
//!   members are told were committed, per partition and generation, only grow.
//!
//! A breach is a bug in the model, so it panics, and the runner reports the
//! panic with its seed. The last two hold only where Kafka promises them, so
//! they are armed only when the scenario's configuration does: no unclean
//! election, no pre-KIP-101 truncation, and no power loss of unflushed writes
//! (each of which really loses committed records, and then consumers' positions
//! really go back). `kafsim.test.mutation` injects a bug that trips each one.
//! A controller quorum broken on purpose (a quorum mutation) forgets committed
//! metadata, so two leaders may share an epoch and committed records may be
//! overwritten: all three data invariants are then disarmed, and the history
//! checkers judge what follows.

use crate::scenario::{Action, FaultKind, Scenario, Target};
use kafsim_model::partition::Partition;
use kafsim_model::{LeaderEpoch, NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use kafsim_model::hash::StableHasher;
use std::hash::Hasher;
use std::sync::{Arc, Mutex};

pub struct Invariants {
    /// None when the scenario's controller quorum is broken on purpose.
    leaders: Option<Mutex<BTreeMap<(TopicPartition, LeaderEpoch), NodeId>>>,
    /// Per partition, a digest of each record below the highest high watermark
    /// any replica reached; None when the scenario does not promise agreement.
    agreed: Option<Mutex<BTreeMap<TopicPartition, Ledger>>>,
    /// Per group and partition, the generation and offset last acknowledged;
    /// None when the scenario does not promise it.
    commits: Option<Mutex<Commits>>,
}

/// One partition's record digests below the highest high watermark any of
/// its replicas reached, shared by the replicas' watches.
type Ledger = Arc<Mutex<Vec<u64>>>;

/// Per group and partition, the generation and offset of the last commit.
type Commits = BTreeMap<(Arc<str>, TopicPartition), (i32, Offset)>;

/// Controllers fsync their quorum state and log, so their power loss costs
/// the data logs nothing.
fn hits_only_controllers(target: &Target) -> bool {
    match target {
        Target::Controller | Target::ControllersMajority | Target::ControllersMinority => true,
        Target::Node(name) => name.starts_with("controller-"),
        Target::Nodes(names) => names.iter().all(|name| name.starts_with("controller-")),
        _ => false,
    }
}

/// Only the always-armed invariant (one leader per partition and epoch), for
/// tests that drive a node without a scenario.
impl Default for Invariants {
    fn default() -> Invariants {
        Invariants { leaders: Some(Mutex::default()), agreed: None, commits: None }
    }
}

impl Invariants {
    pub fn for_scenario(scenario: &Scenario) -> Invariants {
        let config = &scenario.cluster.config;
        let power_loss = scenario.faults.kinds.iter().any(|kind| matches!(kind, FaultKind::PowerLoss | FaultKind::ReplicaPowerLoss))
            || scenario.faults.schedule.iter().any(|fault| fault.action == Action::PowerLoss && !hits_only_controllers(&fault.target));
        let broken_quorum = config.quorum_mutation().is_some();
        let loses_committed = broken_quorum
            || config.unclean_leader_election_enable || config.legacy_high_watermark_truncation || (power_loss && config.log_flush_interval_messages > 1);
        // A broken assignment is `group-overlap`'s to find, by the history.
        let overlapping = scenario.consumers.iter().any(|consumer| consumer.config.overlapping_assignment)
            || scenario.pipelines.iter().any(|pipeline| pipeline.consumer_config.overlapping_assignment);
        Invariants {
            leaders: (!broken_quorum).then(Mutex::default),
            agreed: (!loses_committed).then(Mutex::default),
            commits: (!loses_committed && !overlapping).then(Mutex::default),
        }
    }

    pub fn leader_elected(&self, partition: &TopicPartition, leader_epoch: LeaderEpoch, broker: NodeId) {
        let Some(leaders) = &self.leaders else { return };
        let mut leaders = leaders.lock().expect("invariants lock");
        let first = *leaders.entry((partition.clone(), leader_epoch)).or_insert(broker);
        assert_eq!(
            first, broker,
            "invariant: at most one leader per partition and epoch, but {partition} epoch {leader_epoch} was led by broker {first} and then broker {broker}"
        );
    }

    /// A group member was told `offsets` were committed in `generation`.
    pub fn offsets_committed(&self, group: &Arc<str>, generation: i32, offsets: &[(TopicPartition, Offset)]) {
        let Some(commits) = &self.commits else { return };
        let mut commits = commits.lock().expect("invariants lock");
        for (partition, offset) in offsets {
            let last = commits.entry((group.clone(), partition.clone())).or_insert((generation, *offset));
            if last.0 == generation {
                assert!(
                    *offset >= last.1,
                    "invariant: a committed offset never goes back in a generation, but group {group} committed {partition} at {offset} after {} in generation {generation}",
                    last.1
                );
            }
            if generation >= last.0 {
                *last = (generation, *offset);
            }
        }
    }

    /// The ledger of `partition`, None when agreement is not armed.
    fn ledger(&self, partition: &TopicPartition) -> Option<Ledger> {
        let mut agreed = self.agreed.as_ref()?.lock().expect("invariants lock");
        Some(agreed.entry(partition.clone()).or_default().clone())
    }
}

/// Checks the records of `partition` in `from..high_watermark` against what
/// the replicas that got there first had.
fn agree(ledger: &Mutex<Vec<u64>>, broker: NodeId, partition: &Partition, from: Offset) {
    let high_watermark = partition.high_watermark;
    let mut digests = ledger.lock().expect("ledger lock");
    for batch in partition.log.batches_from(from).iter().take_while(|batch| batch.base_offset < high_watermark) {
        for (index, record) in batch.records.iter().enumerate() {
            let offset = batch.base_offset.0 + index as u64;
            if offset < from.0 || offset >= high_watermark.0 {
                continue;
            }
            let mut hasher = StableHasher::default();
            hasher.write_u32(batch.partition_leader_epoch.0);
            hasher.write(record.key.as_deref().unwrap_or_default());
            hasher.write(&record.value);
            let digest = hasher.finish();
            match digests.get(offset as usize) {
                Some(first) => assert_eq!(
                    *first, digest,
                    "invariant: replicas agree below the high watermark, but broker {broker}'s {} holds another record at offset {offset} (below its high watermark {high_watermark}) than a replica that had it committed before",
                    partition.tp
                ),
                None if digests.len() as u64 == offset => digests.push(digest),
                None => {}
            }
        }
    }
}

/// One broker process's watch over its replicas, for the invariants that
/// follow a replica over time.
pub struct ReplicaWatch {
    invariants: Arc<Invariants>,
    broker: NodeId,
    replicas: BTreeMap<TopicPartition, Watched>,
}

/// What the watch keeps of one replica: one lookup per high-watermark move.
struct Watched {
    /// Up to where this replica's records were checked.
    checked: Offset,
    /// While this process leads it: the epoch and high watermark last seen.
    leading: Option<(LeaderEpoch, Offset)>,
    ledger: Option<Ledger>,
}

impl ReplicaWatch {
    pub fn new(invariants: Arc<Invariants>, broker: NodeId) -> ReplicaWatch {
        ReplicaWatch { invariants, broker, replicas: BTreeMap::new() }
    }

    /// This process took the lead of `partition` at `leader_epoch`, with
    /// `high_watermark`, the floor of its high watermark in the epoch.
    pub fn leader_elected(&mut self, partition: &TopicPartition, leader_epoch: LeaderEpoch, high_watermark: Offset) {
        self.invariants.leader_elected(partition, leader_epoch, self.broker);
        self.watched(partition).leading = Some((leader_epoch, high_watermark));
    }

    /// The replica's high watermark moved (or the process just recovered it).
    pub fn high_watermark_moved(&mut self, partition: &Partition) {
        let broker = self.broker;
        let tp = &partition.tp;
        let high_watermark = partition.high_watermark;
        let log_end = partition.log_end_offset();
        let stable = partition.log.transactions().last_stable_offset(high_watermark);
        assert!(
            stable <= high_watermark && high_watermark <= log_end,
            "invariant: LSO <= HW <= LEO, but broker {broker}'s {tp} has LSO {stable}, HW {high_watermark}, LEO {log_end}"
        );
        let watched = self.watched(tp);
        if partition.is_leader() {
            let epoch = partition.leader_epoch;
            if let Some((last_epoch, last)) = watched.leading.replace((epoch, high_watermark)) {
                assert!(
                    last_epoch != epoch || high_watermark >= last,
                    "invariant: a leader's high watermark never goes back within its epoch, but broker {broker}'s {tp} went from {last} to {high_watermark} in epoch {epoch}"
                );
            }
        }
        if high_watermark > watched.checked {
            if let Some(ledger) = &watched.ledger {
                agree(ledger, broker, partition, watched.checked);
            }
        }
        watched.checked = high_watermark;
    }

    fn watched(&mut self, partition: &TopicPartition) -> &mut Watched {
        if !self.replicas.contains_key(partition) {
            let ledger = self.invariants.ledger(partition);
            self.replicas.insert(partition.clone(), Watched { checked: Offset(0), leading: None, ledger });
        }
        self.replicas.get_mut(partition).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed() -> Invariants {
        Invariants { leaders: Some(Mutex::default()), agreed: Some(Mutex::default()), commits: Some(Mutex::default()) }
    }

    #[test]
    fn the_same_leader_may_take_its_epoch_again_after_a_restart() {
        let invariants = armed();
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
    }

    #[test]
    #[should_panic(expected = "at most one leader per partition and epoch")]
    fn two_leaders_in_one_epoch_trip_the_invariant() {
        let invariants = armed();
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(2));
    }

    #[test]
    fn a_new_generation_may_commit_lower() {
        let invariants = armed();
        let group: Arc<str> = "g".into();
        let tp = TopicPartition::new("t", 0);
        invariants.offsets_committed(&group, 1, &[(tp.clone(), Offset(10))]);
        invariants.offsets_committed(&group, 1, &[(tp.clone(), Offset(10))]);
        invariants.offsets_committed(&group, 2, &[(tp.clone(), Offset(4))]);
        // A late answer from an older generation says nothing of the newer one.
        invariants.offsets_committed(&group, 1, &[(tp, Offset(2))]);
    }

    #[test]
    #[should_panic(expected = "a committed offset never goes back in a generation")]
    fn a_commit_going_back_in_its_generation_trips_the_invariant() {
        let invariants = armed();
        let group: Arc<str> = "g".into();
        let tp = TopicPartition::new("t", 0);
        invariants.offsets_committed(&group, 1, &[(tp.clone(), Offset(10))]);
        invariants.offsets_committed(&group, 1, &[(tp, Offset(9))]);
    }

    #[test]
    fn a_controller_power_loss_keeps_agreement_armed_and_a_broken_quorum_disarms_all() {
        let scenario = |extra: &str| {
            let text = format!(
                "name = \"x\"\nduration = \"20s\"\n[cluster]\nbrokers = 3\ncontrollers = 3\n[cluster.config]\n{extra}\n[[topics]]\nname = \"events\"\npartitions = 1\nreplication_factor = 3\n\
[[producers]]\ncount = 1\ntopic = \"events\"\nmessages = 10\nrate = 10\n[faults]\n[[faults.schedule]]\nat = \"5s\"\naction = \"power-loss\"\ntarget = \"active-controller\"\nduration = \"2s\"\n"
            );
            Scenario::parse(&text, std::path::Path::new("x.toml")).expect("valid")
        };
        let controllers_only = Invariants::for_scenario(&scenario(""));
        assert!(controllers_only.agreed.is_some() && controllers_only.leaders.is_some());
        let broken = Invariants::for_scenario(&scenario("\"kafsim.test.mutation\" = \"vote-without-log-check\""));
        assert!(broken.agreed.is_none() && broken.leaders.is_none() && broken.commits.is_none());
    }
}
