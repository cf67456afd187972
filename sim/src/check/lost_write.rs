//! `lost-write`: a send the broker acknowledged (`ok`) whose value is absent from
//! the final committed log of its partition. An acknowledgement is the promise
//! Kafka makes to a producer; with acks=all and min.insync.replicas it must survive
//! any crash of fewer brokers than the ISR, so losing one means truncation below
//! the high watermark (an unclean election, a power loss of unflushed data).
//!
//! A value found elsewhere in the partition's committed log than its acknowledged
//! offset is not lost (`inconsistent-offsets` reports the move). A partition with no
//! snapshot at all lost every write acknowledged in it.
//!
//! A send made in a transaction promises nothing until the transaction's commit
//! is acknowledged (KIP-98): the producer's `ok` only says the record reached
//! the log, where an abort marker may follow it. So such a send counts only
//! once its transaction committed (`ok`); one that aborted, or whose outcome is
//! unknown (Jepsen's `info`: it may or may not have happened), is never lost.
//! A committed one is judged by its position alone, since other pipeline
//! members write the same values: its record must stand at its acknowledged
//! offset, and the log must not mark it aborted there.

use super::findings::{seconds, Findings};
use super::observations::value_at;
use super::transactions::Outcome;
use super::value_map::ValueSet;
use super::views::{AcknowledgedSend, PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::{FinalState, TransactionFate};
use crate::history::{History, Value};
use kafsim_model::Offset;
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::LostWrite);
    // Values of a partition's committed log, built only for partitions where some
    // acknowledged value is not at its acknowledged offset.
    let mut value_sets: BTreeMap<PartitionKey, ValueSet> = BTreeMap::new();
    // None: the partition has no final snapshot.
    let mut is_committed = |partition: PartitionKey, offset: Option<Offset>, value: Value| -> Option<bool> {
        let view = views.partition(partition);
        view.snapshot?;
        if offset.and_then(|offset| value_at(view.log, offset)) == Some(value) {
            return Some(true);
        }
        let values = value_sets.entry(partition).or_insert_with(|| view.log.iter().filter(|(offset, _)| view.is_visible(*offset)).map(|(_, value)| *value).collect());
        Some(values.contains(0, value))
    };
    for send in views.acknowledged_sends() {
        if findings.is_full() {
            break;
        }
        let missing = match (views.transaction_outcome(send.transaction), send.partition, send.offset) {
            // Not (knowingly) committed: the send promised nothing.
            (Some(Outcome::Aborted | Outcome::Unknown), _, _) => None,
            (Some(Outcome::Committed), Some((_, partition)), Some(offset)) => committed_send_missing(views, partition, offset, send.value),
            (_, Some((_, partition)), offset) => match is_committed(partition, offset, send.value) {
                Some(true) => None,
                Some(false) => Some("is absent from the committed log"),
                None => Some("is absent: the partition has no final snapshot"),
            },
            // The broker always says where it put a value; if the history does not,
            // the value must still stand in some partition's committed log.
            (_, None, _) => {
                let partitions: Vec<PartitionKey> = views.final_partitions().map(|(partition, _)| partition).collect();
                let found = partitions.into_iter().any(|partition| is_committed(partition, None, send.value) == Some(true));
                (!found).then_some("is absent from every committed log")
            }
        };
        if let Some(missing) = missing {
            findings.report(describe(views, send, missing));
        }
    }
    findings.into_violations()
}

/// Why a send whose transaction committed is missing from its acknowledged
/// position; None if it stands there. Judged by position only.
fn committed_send_missing(views: &Views<'_>, partition: PartitionKey, offset: Offset, value: Value) -> Option<&'static str> {
    let view = views.partition(partition);
    if view.snapshot.is_none() {
        return Some("is absent: the partition has no final snapshot");
    }
    if value_at(view.log, offset) != Some(value) {
        return Some("is absent from the committed log");
    }
    // An open transaction's marker may still come: `liveness` reports it.
    (view.fate(offset) == Some(TransactionFate::Aborted)).then_some("stands in the committed log, but the log's marker aborted it")
}

fn describe(views: &Views<'_>, send: &AcknowledgedSend<'_>, missing: &str) -> String {
    let place = match (send.partition, send.offset) {
        (Some((partition, _)), Some(offset)) => format!(" at {partition}@{offset}"),
        (Some((partition, _)), None) => format!(" in {partition}"),
        (None, _) => String::new(),
    };
    let transaction = match send.transaction {
        Some(index) => format!(" in transaction {}, which committed,", views.transaction(index).number),
        None => String::new(),
    };
    format!("value {} acknowledged{place} by {} at {}{transaction} {missing}", send.value, send.op.node, seconds(send.op.time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::history::OpType;

    fn history_of_two_acks() -> History {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.acked_send(20, "producer-2", value(2, 0), 0, 1);
        history.build()
    }

    #[test]
    fn fires_when_an_acknowledged_value_is_truncated_away() {
        // The leader lost offset 1 and the high watermark went back to 1.
        let state = final_state(vec![(0, partition_snapshot(1, &[1, 2], 1, &[(0, value(1, 0))]))]);
        let violations = check(&history_of_two_acks(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::LostWrite);
        assert_eq!(
            violations[0].detail,
            "value 2:0 acknowledged at events/0@1 by producer-2 at 0.021s is absent from the committed log"
        );
    }

    #[test]
    fn fires_when_the_value_sits_above_the_high_watermark() {
        let records = [(0, value(1, 0)), (1, value(2, 0))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &records))]);
        let violations = check(&history_of_two_acks(), &state);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.contains("2:0"));
    }

    #[test]
    fn fires_when_the_partition_has_no_snapshot() {
        let violations = check(&history_of_two_acks(), &final_state(vec![]));
        assert_eq!(violations.len(), 2);
        assert!(violations.iter().all(|violation| violation.kind == CheckerKind::LostWrite));
        assert!(violations[0].detail.contains("no final snapshot"));
    }

    #[test]
    fn silent_when_every_acknowledged_value_is_committed() {
        let records = [(0, value(1, 0)), (1, value(2, 0))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1, 2], 2, &records))]);
        assert!(check(&history_of_two_acks(), &state).is_empty());
    }

    #[test]
    fn silent_for_a_committed_value_at_another_offset_and_for_unacknowledged_sends() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 5);
        history.send_invoke(20, "producer-1", value(1, 1));
        history.send_fail(21, "producer-1", value(1, 1));
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))]))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn stops_at_the_cap() {
        let mut history = HistoryBuilder::new();
        for sequence in 0..50 {
            history.acked_send(sequence, "producer-1", value(1, sequence), 0, sequence);
        }
        let violations = check(&history.build(), &final_state(vec![(0, partition_snapshot(1, &[1], 0, &[]))]));
        assert_eq!(violations.len(), crate::check::findings::VIOLATIONS_PER_CHECKER_MAX);
    }

    /// Transactional sends acknowledged at offsets 0 to 2, none of which is in
    /// the final log (it ends before them).
    fn transactional_sends(outcome: OpType) -> History {
        let mut history = HistoryBuilder::new();
        history.transaction(10, "pipeline-1", 4, &[(value(1, 0).pipeline_output(), 0, 0), (value(1, 1).pipeline_output(), 0, 1)], outcome);
        history.build()
    }

    /// A send inside a transaction promises nothing until the commit is
    /// acknowledged: not when the transaction aborted (the coordinator's abort
    /// at transaction.timeout.ms, say), not when its outcome is unknown (the
    /// member crashed, its commit timed out), not while it never ended.
    #[test]
    fn an_uncommitted_transactional_send_is_not_a_lost_write() {
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 0, &[]))]);
        for outcome in [OpType::Fail, OpType::Info, OpType::Invoke] {
            assert!(check(&transactional_sends(outcome), &state).is_empty(), "{outcome:?}");
        }
    }

    #[test]
    fn a_committed_transactional_send_missing_from_its_offset_is_a_lost_write() {
        let violations = check(&transactional_sends(OpType::Ok), &final_state(vec![(0, partition_snapshot(1, &[1], 0, &[]))]));
        assert_eq!(violations.len(), 2);
        assert_eq!(
            violations[0].detail,
            "value 1000001:0 acknowledged at events/0@0 by pipeline-1 at 0.012s in transaction 4, which committed, is absent from the committed log"
        );
    }

    /// Judged by position: the same output value standing at another offset
    /// (another member's copy) does not stand in for the committed send, and a
    /// record the log's marker aborted is lost although it is there.
    #[test]
    fn a_committed_transactional_send_is_judged_at_its_own_offset() {
        let (first, second) = (value(1, 0).pipeline_output(), value(1, 1).pipeline_output());
        let records = [(0, first), (1, second), (2, first), (3, second)];
        let fates = [(0, 0, TransactionFate::Committed), (1, 1, TransactionFate::Aborted), (2, 3, TransactionFate::Committed)];
        let state = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 4, &records), &fates))]);
        let mut history = HistoryBuilder::new();
        history.transaction(10, "pipeline-1", 0, &[(first, 0, 0), (second, 0, 1)], OpType::Ok);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "value 1000001:1 acknowledged at events/0@1 by pipeline-1 at 0.012s in transaction 0, which committed, stands in the committed log, but the log's marker aborted it"
        );
        let mut history = HistoryBuilder::new();
        history.transaction(10, "pipeline-1", 0, &[(first, 0, 0), (second, 0, 5)], OpType::Ok);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1, "1000001:1 stands at 3, not at its offset 5");
        assert!(violations[0].detail.ends_with("is absent from the committed log"));
    }
}
