//! Checkers: each a pure function of the History and the FinalState, named after
//! the anomaly it finds (Jepsen's Kafka taxonomy where one exists, DESIGN §5).

use crate::final_state::FinalState;
use crate::history::History;
use kafsim_model::hash::StableHasher;
use serde::Serialize;
use std::fmt;
use views::Views;

pub mod aborted_read;
pub mod at_least_once;
pub mod at_most_once;
pub mod committed_data_lost;
pub mod controller_split_brain;
pub mod duplicate;
pub mod eos_violation;
pub(crate) mod findings;
pub mod group_overlap;
pub mod inconsistent_offsets;
pub mod liveness;
pub mod lost_write;
pub mod metadata_divergence;
pub mod metadata_regression;
pub mod nonmonotonic_poll;
pub mod nonmonotonic_send;
mod observations;
pub mod panic;
pub mod poll_skip;
pub mod replica_divergence;
#[cfg(test)]
pub(crate) mod testkit;
pub mod timeout;
mod transactions;
pub mod txn_atomicity;
pub mod unseen;
mod value_map;
mod views;

/// Every anomaly kind a scenario may name in `expect.never` / `expect.finds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckerKind {
    LostWrite,
    Duplicate,
    InconsistentOffsets,
    NonmonotonicSend,
    NonmonotonicPoll,
    PollSkip,
    CommittedDataLost,
    ReplicaDivergence,
    Unseen,
    AbortedRead,
    TxnAtomicity,
    EosViolation,
    AtMostOnce,
    AtLeastOnce,
    GroupOverlap,
    Liveness,
    Panic,
    Timeout,
    ControllerSplitBrain,
    MetadataDivergence,
    MetadataRegression,
}

impl CheckerKind {
    pub const ALL: [CheckerKind; 21] = [
        CheckerKind::LostWrite,
        CheckerKind::Duplicate,
        CheckerKind::InconsistentOffsets,
        CheckerKind::NonmonotonicSend,
        CheckerKind::NonmonotonicPoll,
        CheckerKind::PollSkip,
        CheckerKind::CommittedDataLost,
        CheckerKind::ReplicaDivergence,
        CheckerKind::Unseen,
        CheckerKind::AbortedRead,
        CheckerKind::TxnAtomicity,
        CheckerKind::EosViolation,
        CheckerKind::AtMostOnce,
        CheckerKind::AtLeastOnce,
        CheckerKind::GroupOverlap,
        CheckerKind::Liveness,
        CheckerKind::Panic,
        CheckerKind::Timeout,
        CheckerKind::ControllerSplitBrain,
        CheckerKind::MetadataDivergence,
        CheckerKind::MetadataRegression,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckerKind::LostWrite => "lost-write",
            CheckerKind::Duplicate => "duplicate",
            CheckerKind::InconsistentOffsets => "inconsistent-offsets",
            CheckerKind::NonmonotonicSend => "nonmonotonic-send",
            CheckerKind::NonmonotonicPoll => "nonmonotonic-poll",
            CheckerKind::PollSkip => "poll-skip",
            CheckerKind::CommittedDataLost => "committed-data-lost",
            CheckerKind::ReplicaDivergence => "replica-divergence",
            CheckerKind::Unseen => "unseen",
            CheckerKind::AbortedRead => "aborted-read",
            CheckerKind::TxnAtomicity => "txn-atomicity",
            CheckerKind::EosViolation => "eos-violation",
            CheckerKind::AtMostOnce => "at-most-once",
            CheckerKind::AtLeastOnce => "at-least-once",
            CheckerKind::GroupOverlap => "group-overlap",
            CheckerKind::Liveness => "liveness",
            CheckerKind::Panic => "panic",
            CheckerKind::Timeout => "timeout",
            CheckerKind::ControllerSplitBrain => "controller-split-brain",
            CheckerKind::MetadataDivergence => "metadata-divergence",
            CheckerKind::MetadataRegression => "metadata-regression",
        }
    }

    pub fn from_name(name: &str) -> Option<CheckerKind> {
        CheckerKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for CheckerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One anomaly found in one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: CheckerKind,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: CheckerKind, detail: impl Into<String>) -> Violation {
        Violation { kind, detail: detail.into() }
    }
}

/// One checker: a pure function of a run's history and final state, reading them
/// through the views `check_all` builds once for every checker. Each checker
/// module also has `check(history, final_state)`, which builds the views itself.
pub(crate) type Checker = fn(&Views<'_>) -> Vec<Violation>;

/// Every checker, in `CheckerKind` order.
pub(crate) const CHECKERS: [(CheckerKind, Checker); 21] = [
    (CheckerKind::LostWrite, lost_write::judge),
    (CheckerKind::Duplicate, duplicate::judge),
    (CheckerKind::InconsistentOffsets, inconsistent_offsets::judge),
    (CheckerKind::NonmonotonicSend, nonmonotonic_send::judge),
    (CheckerKind::NonmonotonicPoll, nonmonotonic_poll::judge),
    (CheckerKind::PollSkip, poll_skip::judge),
    (CheckerKind::CommittedDataLost, committed_data_lost::judge),
    (CheckerKind::ReplicaDivergence, replica_divergence::judge),
    (CheckerKind::Unseen, unseen::judge),
    (CheckerKind::AbortedRead, aborted_read::judge),
    (CheckerKind::TxnAtomicity, txn_atomicity::judge),
    (CheckerKind::EosViolation, eos_violation::judge),
    (CheckerKind::AtMostOnce, at_most_once::judge),
    (CheckerKind::AtLeastOnce, at_least_once::judge),
    (CheckerKind::GroupOverlap, group_overlap::judge),
    (CheckerKind::Liveness, liveness::judge),
    (CheckerKind::Panic, panic::judge),
    (CheckerKind::Timeout, timeout::judge),
    (CheckerKind::ControllerSplitBrain, controller_split_brain::judge),
    (CheckerKind::MetadataDivergence, metadata_divergence::judge),
    (CheckerKind::MetadataRegression, metadata_regression::judge),
];

/// Runs every checker over one run's history and final state. Violations come
/// sorted by kind; within a kind, in the order the checker found them. Each checker
/// reports at most `VIOLATIONS_PER_CHECKER_MAX` (10) violations.
pub fn check_all(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge_all(&Views::new(history, final_state))
}

/// `check_all`, which also hashes the history's ops into `ops_hasher` in the one
/// pass it makes over them, so that a run's trace hash (`trace::trace_hash_after`)
/// needs no pass of its own over a history of megabytes.
pub fn check_all_hashing(history: &History, final_state: &FinalState, ops_hasher: &mut StableHasher) -> Vec<Violation> {
    judge_all(&Views::new_hashing(history, final_state, ops_hasher))
}

fn judge_all(views: &Views<'_>) -> Vec<Violation> {
    let mut violations: Vec<Violation> = CHECKERS.iter().flat_map(|(_, judge)| judge(views)).collect();
    // Stable: keeps each checker's own order within its kind.
    violations.sort_by_key(|violation| violation.kind);
    violations
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in CheckerKind::ALL {
            assert_eq!(CheckerKind::from_name(kind.name()), Some(kind), "{kind:?}");
        }
        assert_eq!(CheckerKind::from_name("no-such-anomaly"), None);
    }

    #[test]
    fn checkers_are_listed_in_kind_order_and_report_their_own_kind() {
        let kinds: Vec<CheckerKind> = CHECKERS.iter().map(|(kind, _)| *kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(kinds, sorted);
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.send_invoke(15, "producer-1", value(1, 1));
        history.poll(20, "consumer-1", &[(0, 0, value(1, 0)), (0, 0, value(1, 0))]);
        history.heal(30);
        history.panic(40, "broker-1", "boom");
        history.timeout(50, "limit");
        history.controller_elected(60, "controller-1", 1, true).controller_elected(61, "controller-2", 1, false);
        history.metadata_applied(70, "controller-1", 1, 0, &[1, 2]).metadata_applied(71, "broker-1", 1, 0, &[1, 3]).metadata_applied(72, "broker-1", 1, 1, &[3]);
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        for (kind, judge) in CHECKERS {
            assert!(judge(&views).iter().all(|violation| violation.kind == kind), "{kind}");
        }
        // The quorum's ops above break each quorum invariant, so the loop above judged those checkers on findings.
        let quorum_kinds: Vec<CheckerKind> = check_all(&history, &state).into_iter().map(|violation| violation.kind).filter(|kind| *kind >= CheckerKind::ControllerSplitBrain).collect();
        let expected = [CheckerKind::ControllerSplitBrain, CheckerKind::ControllerSplitBrain, CheckerKind::MetadataDivergence, CheckerKind::MetadataRegression];
        assert_eq!(quorum_kinds, expected);
    }

    #[test]
    fn check_all_is_silent_on_a_clean_run() {
        let mut history = HistoryBuilder::new();
        history.client_start(0, "consumer-1");
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.acked_send(20, "producer-1", value(1, 1), 0, 1);
        history.acked_send(25, "producer-2", value(2, 0), 1, 0);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0)), (1, 0, value(2, 0))]);
        history.poll(40, "consumer-1", &[(0, 1, value(1, 1))]);
        history.heal(50);
        let mut state = final_state(vec![
            (0, partition_snapshot(1, &[1, 2, 3], 2, &[(0, value(1, 0)), (1, value(1, 1))])),
            (1, partition_snapshot(2, &[1, 2, 3], 1, &[(0, value(2, 0))])),
        ]);
        state = with_consumer(state, "consumer-1", &[(0, 2), (1, 1)]);
        state.drained = true;
        assert_eq!(check_all(&history.build(), &state), Vec::new());
    }

    /// Jepsen's `info`: a commit whose answer timed out may or may not have
    /// happened. Whatever the final log shows (the records gone, committed, or
    /// aborted by the coordinator), no checker counts the transaction's sends
    /// as lost, nor its records as certainly committed.
    #[test]
    fn a_timed_out_commit_is_indeterminate() {
        let values = [value(1, 0), value(1, 1)];
        let mut history = HistoryBuilder::new();
        history.transaction(10, "producer-1", 0, &[(values[0], 0, 0), (values[1], 0, 1)], crate::history::OpType::Info);
        let history = history.build();
        let records = [(0, values[0]), (1, values[1])];
        let gone = final_state(vec![(0, partition_snapshot(1, &[1], 0, &[]))]);
        let committed = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 2, &records), &[(0, 1, crate::final_state::TransactionFate::Committed)]))]);
        let aborted = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 2, &records), &[(0, 1, crate::final_state::TransactionFate::Aborted)]))]);
        for state in [gone, committed, aborted] {
            assert_eq!(check_all(&history, &state), Vec::new());
        }
    }

    proptest::proptest! {
        /// The trace hash the runner takes from the checkers' pass is the one
        /// `trace_hash` computes in a pass of its own, and so are the violations.
        #[test]
        fn check_all_hashing_gives_the_trace_hash_and_the_violations_of_check_all((history, state) in random_reads()) {
            for final_state in [Some(&state), None] {
                let judged = final_state.cloned().unwrap_or_default();
                let mut ops_hasher = StableHasher::default();
                let violations = check_all_hashing(&history, &judged, &mut ops_hasher);
                proptest::prop_assert_eq!(violations, check_all(&history, &judged));
                let expected = crate::trace::trace_hash(&history, final_state);
                proptest::prop_assert_eq!(crate::trace::trace_hash_after(ops_hasher, final_state), expected);
            }
        }
    }

    #[test]
    fn check_all_sorts_violations_by_kind() {
        let mut history = HistoryBuilder::new();
        history.timeout(90, "limit");
        history.panic(80, "broker-1", "boom");
        history.heal(70);
        history.send_invoke(60, "producer-1", value(1, 1));
        history.poll(20, "consumer-1", &[(0, 1, value(9, 9)), (0, 0, value(1, 0))]);
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        let violations = check_all(&history.build(), &final_state(vec![]));
        let kinds: Vec<CheckerKind> = violations.iter().map(|violation| violation.kind).collect();
        assert_eq!(
            kinds,
            vec![
                CheckerKind::LostWrite,
                CheckerKind::NonmonotonicPoll,
                CheckerKind::CommittedDataLost,
                CheckerKind::CommittedDataLost,
                CheckerKind::Liveness,
                CheckerKind::Panic,
                CheckerKind::Timeout,
            ]
        );
    }
}
