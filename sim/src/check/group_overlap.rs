//! `group-overlap`: two members of one consumer group owned the same partition
//! in the same generation. Each generation's assignment comes from one leader's
//! assignor and is handed out only after it is written, so owners within a
//! generation are disjoint; overlap means fencing or the assignment broke.
//!
//! Reads `Assign` ops: each names everything its member owns in a generation.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody};
use kafsim_model::TopicPartition;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::GroupOverlap);
    // Per group, generation and partition: the first member assigned it, and when.
    let mut owners: BTreeMap<(&Arc<str>, i32, &TopicPartition), (&str, u64)> = BTreeMap::new();
    for op in views.group_ops() {
        let OpBody::Assign { group, generation, partitions } = &op.body else { continue };
        for partition in partitions {
            match owners.get(&(group, *generation, partition)) {
                Some(&(owner, time)) if owner != &*op.node => {
                    findings.report(format!(
                        "group {group} generation {generation}: {partition} assigned to {owner} at {} and to {} at {}",
                        seconds(time),
                        op.node,
                        seconds(op.time)
                    ));
                    if findings.is_full() {
                        return findings.into_violations();
                    }
                }
                Some(_) => {}
                None => {
                    owners.insert((group, *generation, partition), (&*op.node, op.time));
                }
            }
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_two_members_own_a_partition_in_one_generation() {
        let mut history = HistoryBuilder::new();
        history.assign(10, "consumer-1", 3, &[0, 1]);
        history.assign(11, "consumer-2", 3, &[1, 2]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::GroupOverlap);
        assert_eq!(violations[0].detail, "group g1 generation 3: events/1 assigned to consumer-1 at 0.010s and to consumer-2 at 0.011s");
    }

    #[test]
    fn silent_when_a_partition_moves_between_generations() {
        let mut history = HistoryBuilder::new();
        history.assign(10, "consumer-1", 3, &[0, 1]);
        history.assign(11, "consumer-2", 3, &[2]);
        history.revoke(20, "consumer-1", 3, &[0, 1]);
        history.assign(30, "consumer-2", 4, &[0, 1, 2]);
        // A member restating its own ownership is no overlap.
        history.assign(40, "consumer-2", 4, &[0, 1, 2]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
