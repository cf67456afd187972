//! `controller-split-brain`: two controllers led the KRaft quorum in the same
//! epoch, or a node that is not a voter led it. KIP-595 gives an epoch at most
//! one leader: a candidate needs the votes of a majority of the voters, and a
//! voter grants one vote per epoch; observers never stand. Two active
//! controllers in one epoch would both write the metadata log, and brokers would
//! follow whichever they heard from last.
//!
//! Every `ControllerElected` op counts, whatever its type: it records what the
//! node did, not the outcome of a request. Each further leader of an epoch is
//! reported once, against the first; a non-voter once per election.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Op, OpBody};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::ControllerSplitBrain);
    // Each epoch's leaders, one election per node, the first elected first.
    let mut leaders: BTreeMap<u32, Vec<&Op>> = BTreeMap::new();
    for op in views.controller_elections() {
        if findings.is_full() {
            break;
        }
        let OpBody::ControllerElected { epoch, voter } = op.body else { continue };
        if !voter {
            findings.report(format!("{} became active controller in quorum epoch {epoch} at {}, but it is not a voter", op.node, seconds(op.time)));
        }
        let epoch_leaders = leaders.entry(epoch).or_default();
        if epoch_leaders.iter().any(|leader| leader.node == op.node) {
            continue;
        }
        if let Some(first) = epoch_leaders.first() {
            findings.report(format!(
                "{} became active controller in quorum epoch {epoch} at {}, while {} had led that epoch since {}",
                op.node,
                seconds(op.time),
                first.node,
                seconds(first.time)
            ));
        }
        epoch_leaders.push(op);
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_for_two_leaders_in_one_epoch() {
        let mut history = HistoryBuilder::new();
        history.controller_elected(1_000, "controller-1", 3, true);
        // controller-1 is elected again in its own epoch: recorded twice, still one leader.
        history.controller_elected(1_100, "controller-1", 3, true);
        history.controller_elected(2_500, "controller-2", 3, true);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::ControllerSplitBrain);
        assert_eq!(
            violations[0].detail,
            "controller-2 became active controller in quorum epoch 3 at 2.500s, while controller-1 had led that epoch since 1.000s"
        );
    }

    #[test]
    fn fires_for_a_leader_that_is_not_a_voter() {
        let mut history = HistoryBuilder::new();
        history.controller_elected(4_000, "controller-4", 2, false);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "controller-4 became active controller in quorum epoch 2 at 4.000s, but it is not a voter");
    }

    #[test]
    fn silent_for_one_voter_leading_each_epoch() {
        let mut history = HistoryBuilder::new();
        history.controller_elected(1_000, "controller-1", 1, true);
        history.controller_change(2_000, "controller-1", "resigned: lost check quorum");
        history.controller_elected(2_400, "controller-2", 2, true);
        // The old leader leads again, in a later epoch.
        history.controller_elected(5_000, "controller-1", 4, true);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
