//! `poll-skip`: one consumer's consecutive reads of one partition jumped from
//! offset `a` to `b > a + 1` although some record is known to stand strictly
//! between them. A consumer must see every record of a partition it reads without
//! seeking; skipping one means the fetch position jumped forward (an offset reset
//! to latest, a fetch from a leader whose log differs), and the record was never
//! processed by that consumer.
//!
//! Known records are every polled record and every committed-log record of the
//! partition; gaps with no known record (compacted away, unparseable, or aborted
//! transaction markers) are not skips. A `Seek` of that consumer and partition, or
//! a `ClientStart` of that consumer, resets the expectation, so the first read
//! after a reset is never a skip.
//!
//! Records of transactions that did not commit are not known records: a
//! read_committed consumer rightly steps over them (KIP-98). The final log's
//! markers say which of its records those are; a polled record, or one of a log
//! without markers, is left out if its value was sent in a transaction that did
//! not knowingly commit.

use super::findings::{seconds, Findings};
use super::views::{PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Value};
use kafsim_model::Offset;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::PollSkip);
    // Built at the first gap: most runs have none.
    let mut known: Option<KnownRecords> = None;
    for (previous, current) in views.consecutive_reads() {
        let (from, to) = (previous.offset, current.offset);
        if to.0 > from.0.saturating_add(1) {
            let known = known.get_or_insert_with(|| KnownRecords::new(views));
            if let Some((skipped_offset, skipped_value)) = known.first_between(current.partition, from.next(), to) {
                findings.report(format!(
                    "{} read {}@{from} then @{to} at {}, skipping offset {skipped_offset}, which holds {skipped_value}",
                    views.read_op(current).node,
                    views.read_record(current).partition,
                    seconds(views.read_op(current).time)
                ));
            }
        }
        if findings.is_full() {
            break;
        }
    }
    findings.into_violations()
}

/// Every offset known to hold a record, per partition, with the first value seen
/// there: the committed log's, else the first poll's. Values of transactions that
/// did not commit are not known records.
struct KnownRecords<'v, 'a> {
    views: &'v Views<'a>,
    /// Per partition key: the polled records, sorted by offset, the first poll of
    /// each offset only.
    polled: Vec<Vec<(Offset, Value)>>,
}

impl<'v, 'a> KnownRecords<'v, 'a> {
    fn new(views: &'v Views<'a>) -> KnownRecords<'v, 'a> {
        let uncommitted = views.uncommitted_values();
        let mut polled = vec![Vec::new(); views.partition_count()];
        for read in views.reads().iter().filter(|read| !uncommitted.contains(0, read.value)) {
            polled[read.partition.0 as usize].push((read.offset, read.value));
        }
        for records in &mut polled {
            // Stable, so the first poll of an offset stays first and survives the dedup.
            records.sort_by_key(|(offset, _)| *offset);
            records.dedup_by_key(|(offset, _)| *offset);
        }
        KnownRecords { views, polled }
    }

    /// The known record with the lowest offset in `from..to`.
    fn first_between(&self, partition: PartitionKey, from: Offset, to: Offset) -> Option<(Offset, Value)> {
        let log = self.views.partition(partition).log;
        let start = log.partition_point(|(offset, _)| *offset < from);
        let view = self.views.partition(partition);
        let committed = log[start..].iter().take_while(|(offset, _)| *offset < to).find(|(offset, value)| self.views.is_committed_record(view, *offset, *value)).copied();
        let polled = &self.polled[partition.0 as usize];
        let start = polled.partition_point(|(offset, _)| *offset < from);
        let polled = polled.get(start).filter(|(offset, _)| *offset < to).copied();
        match (committed, polled) {
            // At one offset the committed log's value is the known one.
            (Some(committed), Some(polled)) => Some(if committed.0 <= polled.0 { committed } else { polled }),
            (committed, polled) => committed.or(polled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_a_read_jumps_over_a_committed_record() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0))]);
        history.poll(20, "consumer-1", &[(0, 2, value(1, 2))]);
        let records = [(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 3, &records))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::PollSkip);
        assert_eq!(violations[0].detail, "consumer-1 read events/0@0 then @2 at 0.020s, skipping offset 1, which holds 1:1");
    }

    #[test]
    fn fires_when_a_read_jumps_over_a_record_another_consumer_polled() {
        let mut history = HistoryBuilder::new();
        history.poll(5, "consumer-2", &[(0, 3, value(1, 3))]);
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 7, value(1, 7))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.contains("skipping offset 3, which holds 1:3"));
    }

    #[test]
    fn silent_for_gaps_with_no_known_record() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 2, value(1, 2))]);
        let records = [(0, value(1, 0)), (2, value(1, 2))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 3, &records))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn silent_for_a_jump_after_a_seek_or_restart() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0))]);
        history.seek(15, "consumer-1", 0, 3);
        history.poll(20, "consumer-1", &[(0, 3, value(1, 3))]);
        history.client_start(25, "consumer-1");
        history.poll(30, "consumer-1", &[(0, 5, value(1, 5))]);
        let records: Vec<(u64, Value)> = (0..6).map(|offset| (offset, value(1, offset))).collect();
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 6, &records))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn silent_when_the_skipped_offsets_hold_an_aborted_transaction() {
        let mut history = HistoryBuilder::new();
        history.txn(5, "producer-1", crate::history::OpType::Invoke, 0, &[value(1, 1)]);
        history.txn(6, "producer-1", crate::history::OpType::Fail, 0, &[value(1, 1)]);
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0))]);
        history.poll(20, "consumer-1", &[(0, 3, value(1, 2))]);
        let records = [(0, value(1, 0)), (1, value(1, 1)), (3, value(1, 2))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 4, &records))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    /// `check` as it was before `Views`: trees of every known record.
    fn oracle(history: &History, final_state: &FinalState) -> Vec<Violation> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut uncommitted = BTreeSet::new();
        let mut committed = BTreeSet::new();
        for op in &history.ops {
            if let crate::history::OpBody::Txn { values: sent, .. } = &op.body {
                let into = if op.kind == crate::history::OpType::Ok { &mut committed } else { &mut uncommitted };
                into.extend(sent.iter().copied());
            }
        }
        uncommitted.retain(|value| !committed.contains(value));
        let mut known: BTreeMap<&kafsim_model::TopicPartition, BTreeMap<Offset, Value>> = BTreeMap::new();
        for (partition, snapshot) in &final_state.partitions {
            let log = crate::check::observations::committed_log(snapshot);
            known.entry(partition).or_default().extend(log.iter().copied().filter(|(_, value)| !uncommitted.contains(value)));
        }
        for op in history.ops.iter().filter(|op| matches!(op.kind, crate::history::OpType::Ok | crate::history::OpType::Info)) {
            if let crate::history::OpBody::Poll { records } = &op.body {
                for record in records.iter().filter(|record| !uncommitted.contains(&record.value)) {
                    known.entry(&record.partition).or_default().entry(record.offset).or_insert(record.value);
                }
            }
        }
        let mut findings = Findings::new(CheckerKind::PollSkip);
        for (_, previous, op, current) in consecutive_reads_oracle(history) {
            let (from, to) = (previous.offset, current.offset);
            if to.0 > from.0.saturating_add(1) {
                let skipped = known.get(&current.partition).and_then(|records| records.range(from.next()..to).next());
                if let Some((skipped_offset, skipped_value)) = skipped {
                    findings.report(format!(
                        "{} read {}@{from} then @{to} at {}, skipping offset {skipped_offset}, which holds {skipped_value}",
                        op.node,
                        current.partition,
                        seconds(op.time)
                    ));
                }
            }
            if findings.is_full() {
                break;
            }
        }
        findings.into_violations()
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_tree_of_known_records((history, state) in random_reads()) {
            proptest::prop_assert_eq!(check(&history, &state), oracle(&history, &state));
        }
    }
}
