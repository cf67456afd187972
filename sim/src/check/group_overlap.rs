//! `group-overlap`: two members of one consumer group owned the same partition
//! in the same generation. Each generation's assignment comes from one leader's
//! assignor and is handed out only after it is written, so owners within a
//! generation are disjoint; overlap means fencing or the assignment broke.
//! Reading is owning too: a member that polls records of a partition it does
//! not own (revoked, lost, or never assigned in its current generation) reads
//! beside the partition's owner, which is the same overlap.
//!
//! Reads `Assign` ops (each names everything its member owns in a generation),
//! `Revoke` ops, client starts (a restarted process owns nothing) and polls.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody, OpType};
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
    judge_reads(views, &mut findings);
    findings.into_violations()
}

/// A group member's polls, against what it owned when it polled.
fn judge_reads(views: &Views<'_>, findings: &mut Findings) {
    // Per member: its group, generation and owned partitions; None before its
    // first assignment (a consumer outside any group is never tracked).
    let mut members: BTreeMap<&str, (&Arc<str>, i32, Vec<&TopicPartition>)> = BTreeMap::new();
    for op in views.membership_ops() {
        match &op.body {
            OpBody::Assign { group, generation, partitions } => {
                members.insert(&op.node, (group, *generation, partitions.iter().collect()));
            }
            OpBody::Revoke { partitions, .. } => {
                if let Some((_, _, owned)) = members.get_mut(&*op.node) {
                    owned.retain(|partition| !partitions.contains(partition));
                }
            }
            // A process start (invoke); a pipeline's rewind to its committed
            // offsets is recorded as an `info` start and owns on.
            OpBody::ClientStart if op.kind != OpType::Info => {
                if let Some((_, _, owned)) = members.get_mut(&*op.node) {
                    owned.clear();
                }
            }
            OpBody::Poll { records } => {
                let Some((group, generation, owned)) = members.get(&*op.node) else { continue };
                let Some(record) = records.iter().find(|record| !owned.contains(&&record.partition)) else { continue };
                findings.report(format!(
                    "group {group} generation {generation}: {} polled {}@{} at {}, a partition it did not own",
                    op.node,
                    record.partition,
                    record.offset,
                    seconds(op.time)
                ));
                if findings.is_full() {
                    return;
                }
            }
            _ => {}
        }
    }
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

    #[test]
    fn fires_when_a_member_reads_a_partition_it_no_longer_owns() {
        let mut history = HistoryBuilder::new();
        history.assign(10, "consumer-1", 3, &[0, 1]);
        history.poll(11, "consumer-1", &[(1, 0, value(1, 0))]);
        history.revoke(20, "consumer-1", 3, &[1]);
        history.poll(21, "consumer-1", &[(0, 5, value(1, 5)), (1, 1, value(1, 1))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "group g1 generation 3: consumer-1 polled events/1@1 at 0.021s, a partition it did not own");
    }

    #[test]
    fn silent_when_members_read_what_they_own_and_plain_consumers_read_anything() {
        let mut history = HistoryBuilder::new();
        history.assign(10, "consumer-1", 3, &[0]);
        history.poll(11, "consumer-1", &[(0, 0, value(1, 0))]);
        // Outside any group: it owns nothing and reads everything.
        history.poll(12, "consumer-9", &[(1, 0, value(1, 1))]);
        // A rewind to the committed offsets (an info start) keeps what it owns.
        history.rewind(13, "consumer-1");
        history.poll(14, "consumer-1", &[(0, 0, value(1, 0))]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }

    #[test]
    fn a_restarted_member_owns_nothing_until_assigned() {
        let mut history = HistoryBuilder::new();
        history.assign(10, "consumer-1", 3, &[0]);
        history.client_start(20, "consumer-1");
        history.poll(21, "consumer-1", &[(0, 0, value(1, 0))]);
        assert_eq!(check(&history.build(), &final_state(vec![])).len(), 1);
    }
}
