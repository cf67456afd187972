//! `at-least-once`: a record below an offset its group committed was never
//! processed by any member of the group. With at-most-once delivery (commit
//! first, then process) a crash between the two skips records; with
//! at-least-once delivery (process, then commit) it must never happen.
//!
//! Per group and partition, the committed offset is the highest offset of any
//! `ok` commit (an `info` commit may or may not have been applied, so it is not
//! counted). Every record of the final committed log below it must appear in
//! one of the group's `Process` ops (matched by value, which is unique per send).
//!
//! A record of a transaction that did not commit is left out: a read_committed
//! member rightly never sees an aborted one (KIP-98), and one still open may yet
//! abort. The final log's markers say which those are; where a log carries none,
//! a value sent in a transaction that did not knowingly commit is left out.
//! (Under read_uncommitted this misses a skipped aborted record; it never
//! reports a false one.)

use super::findings::Findings;
use super::value_map::ValueSet;
use super::views::{Names, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody, OpType};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per group and partition: the highest committed offset, who committed it and when.
type Committed<'a> = BTreeMap<(&'a Arc<str>, &'a TopicPartition), (Offset, &'a Arc<str>, u64)>;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::AtLeastOnce);
    let mut committed: Committed = BTreeMap::new();
    let mut groups = Names::default();
    // Per group (its number in `groups`): the values its members processed.
    let mut processed = ValueSet::with_sequence_bound(views.sequence_bound());
    for op in views.group_ops() {
        match &op.body {
            OpBody::Commit { group, offsets, .. } if op.kind == OpType::Ok => {
                for (partition, offset) in offsets {
                    let entry = committed.entry((group, partition)).or_insert((*offset, &op.node, op.time));
                    if *offset > entry.0 {
                        *entry = (*offset, &op.node, op.time);
                    }
                }
            }
            OpBody::Process { group, records } => {
                let scope = groups.key(group);
                for record in records {
                    processed.add(scope, record.value);
                }
            }
            _ => {}
        }
    }
    for ((group, partition), (offset, node, time)) in committed {
        let Some(key) = views.find_partition(partition) else { continue };
        let scope = groups.find(group);
        let view = views.partition(key);
        for (record_offset, value) in view.log.iter().take_while(|(record_offset, _)| *record_offset < offset) {
            if !scope.is_some_and(|scope| processed.contains(scope, *value)) && views.is_committed_record(view, *record_offset, *value) {
                findings.report(format!(
                    "group {group} committed {partition} up to offset {offset} ({node} at {}), but nobody processed {value} at offset {record_offset}",
                    super::findings::seconds(time)
                ));
                if findings.is_full() {
                    return findings.into_violations();
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

    fn three_records() -> FinalState {
        final_state(vec![(0, partition_snapshot(1, &[1], 3, &[(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))]))])
    }

    #[test]
    fn fires_for_a_committed_but_unprocessed_record() {
        let mut history = HistoryBuilder::new();
        history.process(10, "consumer-1", &[(0, 0, value(1, 0))]);
        // Committed through offset 1 (next to read is 2), then crashed before processing 1:1.
        history.commit(20, "consumer-1", 1, &[(0, 2)], OpType::Ok);
        let violations = check(&history.build(), &three_records());
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::AtLeastOnce);
        assert_eq!(violations[0].detail, "group g1 committed events/0 up to offset 2 (consumer-1 at 0.021s), but nobody processed 1:1 at offset 1");
    }

    #[test]
    fn a_record_of_an_aborted_transaction_need_not_be_processed() {
        let mut history = HistoryBuilder::new();
        history.txn(5, "producer-1", OpType::Fail, 0, &[value(1, 1)]);
        history.process(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 2, value(1, 2))]);
        history.commit(20, "consumer-1", 1, &[(0, 3)], OpType::Ok);
        assert!(check(&history.build(), &three_records()).is_empty(), "a read_committed member skips 1:1");
        let mut history = HistoryBuilder::new();
        history.txn(5, "producer-1", OpType::Ok, 0, &[value(1, 1)]);
        history.process(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 2, value(1, 2))]);
        history.commit(20, "consumer-1", 1, &[(0, 3)], OpType::Ok);
        assert_eq!(check(&history.build(), &three_records()).len(), 1, "a committed transaction's record must be processed");
    }

    #[test]
    fn silent_when_everything_committed_was_processed_or_the_commit_failed() {
        let mut history = HistoryBuilder::new();
        history.process(10, "consumer-1", &[(0, 0, value(1, 0))]);
        history.commit(20, "consumer-1", 1, &[(0, 1)], OpType::Ok);
        history.process(30, "consumer-2", &[(0, 1, value(1, 1))]);
        history.commit(40, "consumer-2", 2, &[(0, 2)], OpType::Ok);
        // Refused and unknown commits do not count.
        history.commit(50, "consumer-1", 1, &[(0, 3)], OpType::Fail);
        history.commit(60, "consumer-1", 1, &[(0, 3)], OpType::Info);
        assert!(check(&history.build(), &three_records()).is_empty());
    }
}
