//! `committed-data-lost`: a record a consumer read is absent from the final
//! committed log at that offset. Consumers only read below the high watermark,
//! that is records every in-sync replica already holds, which Kafka promises will
//! never be truncated; a read record that later vanished (the log ends before its
//! offset, or another value stands there) was committed and then lost, typically
//! by an unclean leader election or a power loss of unflushed replicas.
//!
//! One violation per partition offset, however many times it was read.

use super::findings::{seconds, Findings};
use super::observations::value_at;
use super::views::{PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::History;
use kafsim_model::Offset;
use std::collections::BTreeSet;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::CommittedDataLost);
    let mut reported: BTreeSet<(PartitionKey, Offset)> = BTreeSet::new();
    for read in views.reads() {
        if findings.is_full() {
            break;
        }
        let (offset, value) = (read.offset, read.value);
        let view = views.partition(read.partition);
        let high_watermark = view.committed.map(|replica| replica.high_watermark);
        let committed_value = value_at(view.log, offset);
        let gone = match (high_watermark, committed_value) {
            (None, _) => "the partition has no committed replica".to_string(),
            (_, Some(committed_value)) if committed_value == value => continue,
            (_, Some(committed_value)) => format!("the committed log holds {committed_value} there"),
            (Some(high_watermark), None) if offset >= high_watermark => {
                format!("the committed log ends before it, at offset {high_watermark}")
            }
            (Some(_), None) => "the committed log holds no workload record there".to_string(),
        };
        if reported.insert((read.partition, offset)) {
            findings.report(format!(
                "value {value} read at {}@{offset} by {} at {} is gone: {gone}",
                views.read_record(read).partition,
                views.read_op(read).node,
                seconds(views.read_op(read).time)
            ));
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_a_read_record_is_overwritten() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.poll(20, "consumer-2", &[(0, 1, value(1, 1))]);
        let records = [(0, value(1, 0)), (1, value(2, 0))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 2, &records))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::CommittedDataLost);
        assert_eq!(
            violations[0].detail,
            "value 1:1 read at events/0@1 by consumer-1 at 0.010s is gone: the committed log holds 2:0 there"
        );
    }

    #[test]
    fn fires_when_the_committed_log_ends_before_a_read_record() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))]))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.ends_with("the committed log ends before it, at offset 1"));
    }

    #[test]
    fn silent_when_every_read_record_is_committed() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1)), (1, 0, value(2, 0))]);
        let records = [(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))];
        let state = final_state(vec![
            (0, partition_snapshot(1, &[1, 2], 3, &records)),
            (1, partition_snapshot(2, &[1, 2], 1, &[(0, value(2, 0))])),
        ]);
        assert!(check(&history.build(), &state).is_empty());
    }
}
