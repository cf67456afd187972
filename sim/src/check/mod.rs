//! Checkers: each a pure function of the History and the FinalState, named after
//! the anomaly it finds (Jepsen's Kafka taxonomy where one exists, DESIGN §5).

use crate::final_state::FinalState;
use crate::history::History;
use serde::Serialize;
use std::fmt;

pub mod committed_data_lost;
pub mod duplicate;
mod findings;
pub mod inconsistent_offsets;
pub mod lost_write;
pub mod nonmonotonic_poll;
pub mod nonmonotonic_send;
mod observations;
pub mod poll_skip;
pub mod replica_divergence;
#[cfg(test)]
mod testkit;

/// Every anomaly kind a scenario may name in `expect.never` / `expect.finds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
}

impl CheckerKind {
    pub const ALL: [CheckerKind; 18] = [
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

/// Runs every checker over one run's history and final state.
pub fn check_all(history: &History, final_state: &FinalState) -> Vec<Violation> {
    let _ = (history, final_state);
    Vec::new()
}
