//! `duplicate`: one sent value standing at more than one position (partition and
//! offset). Every value the workload sends is unique, so a value at two offsets was
//! written twice: a producer retry the broker did not deduplicate (no idempotence,
//! or idempotence state lost with a leader change), which a consumer then reads
//! twice.
//!
//! Positions are taken from the final committed log of every partition and from
//! every polled record, together: a value polled at `events/0@5` and committed at
//! `events/0@7` stood at two offsets just as surely as one present twice in a log.
//! Reading the same record twice (after a seek) is one position, not a duplicate.
//!
//! Only positions where the value certainly stands count. A record of a
//! transaction that aborted stays in Kafka's log but stands for no reader
//! that honours the abort, and pipeline members rightly write the same output
//! again after an abort; a record of a transaction still open at the end, or
//! of one whose outcome is unknown, may go either way (Jepsen's `info`). The
//! final log's markers say which records those are where it holds the record;
//! for a polled record it no longer holds, the history's send acknowledged at
//! that position does.

use super::findings::Findings;
use super::observations::{value_at, Witness};
use super::transactions::Outcome;
use super::value_map::ValueMap;
use super::views::{PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Value};
use kafsim_model::Offset;

/// Where a value was first seen standing, and whether it was reported.
struct Position<'a> {
    partition: PartitionKey,
    offset: Offset,
    witness: Witness<'a>,
    reported: bool,
}

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::Duplicate);
    let mut first_positions: ValueMap<Position<'_>> = ValueMap::with_sequence_bound(views.sequence_bound());
    let committed = views.final_partitions().flat_map(|(partition, view)| {
        view.log.iter().filter(|(offset, _)| view.is_visible(*offset)).map(move |&(offset, value)| (value, partition, offset, Witness::CommittedLog))
    });
    let polled = views
        .reads()
        .iter()
        .filter(|read| stands(views, read.partition, read.offset, read.value))
        .map(|read| (read.value, read.partition, read.offset, Witness::polled(views.read_op(read))));
    for (value, partition, offset, witness) in committed.chain(polled) {
        if findings.is_full() {
            break;
        }
        let slot = first_positions.slot(0, value);
        let Some(first) = slot else {
            *slot = Some(Position { partition, offset, witness, reported: false });
            continue;
        };
        let same_place = first.partition == partition && first.offset == offset;
        if !same_place && !first.reported {
            first.reported = true;
            findings.report(format!(
                "value {value} stands at {}@{} ({}) and at {}@{} ({})",
                views.partition(first.partition).partition,
                first.offset,
                first.witness,
                views.partition(partition).partition,
                offset,
                witness
            ));
        }
    }
    findings.into_violations()
}

/// Whether `value`, polled at `partition`/`offset`, certainly stood there: by
/// the final log's marker where the log still holds it, else by how the
/// transaction of the send acknowledged there ended (a send in no transaction,
/// or none known there, stood).
fn stands(views: &Views<'_>, partition: PartitionKey, offset: Offset, value: Value) -> bool {
    let view = views.partition(partition);
    if value_at(view.log, offset) == Some(value) {
        return view.is_visible(offset);
    }
    views
        .acknowledged_at(partition, offset)
        .filter(|send| send.value == value)
        .all(|send| matches!(views.transaction_outcome(send.transaction), None | Some(Outcome::Committed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::final_state::TransactionFate;
    use crate::history::OpType;

    #[test]
    fn fires_for_a_value_twice_in_a_committed_log() {
        let records = [(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 0))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 3, &records))]);
        let violations = check(&History::default(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Duplicate);
        assert_eq!(
            violations[0].detail,
            "value 1:0 stands at events/0@0 (in the committed log) and at events/0@2 (in the committed log)"
        );
    }

    #[test]
    fn fires_for_a_value_polled_at_two_positions() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 3, value(1, 0))]);
        history.poll(20, "consumer-2", &[(1, 4, value(1, 0))]);
        // Polled again: still one violation per value.
        history.poll(30, "consumer-2", &[(1, 4, value(1, 0))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "value 1:0 stands at events/0@3 (polled by consumer-1 at 0.010s) and at events/1@4 (polled by consumer-2 at 0.020s)"
        );
    }

    #[test]
    fn fires_for_a_value_polled_at_one_offset_and_committed_at_another() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0))]);
        let records = [(0, value(2, 0)), (1, value(1, 0))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 2, &records))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Duplicate);
    }

    #[test]
    fn silent_when_each_value_stands_once_even_if_read_twice() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.seek(15, "consumer-1", 0, 0);
        history.poll(20, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.poll(20, "consumer-2", &[(0, 1, value(1, 1))]);
        let records = [(0, value(1, 0)), (1, value(1, 1))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1, 2], 2, &records))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    /// Pipeline member 1 wrote an output at 0 in a transaction that aborted;
    /// member 2 reprocessed the input and wrote the same value at 1, committed.
    fn reprocessed(fates: &[(u64, u64, TransactionFate)]) -> FinalState {
        let output = value(1, 0).pipeline_output();
        final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 2, &[(0, output), (1, output)]), fates))])
    }

    #[test]
    fn an_aborted_copy_and_its_committed_reprocessing_are_not_a_duplicate() {
        let mut history = HistoryBuilder::new();
        // A read_uncommitted consumer read both copies.
        history.poll(10, "consumer-1", &[(0, 0, value(1, 0).pipeline_output()), (0, 1, value(1, 0).pipeline_output())]);
        let history = history.build();
        assert!(check(&history, &reprocessed(&[(0, 0, TransactionFate::Aborted), (1, 1, TransactionFate::Committed)])).is_empty());
        assert!(check(&history, &reprocessed(&[(0, 0, TransactionFate::Open), (1, 1, TransactionFate::Committed)])).is_empty(), "an open transaction may yet abort");
        let violations = check(&history, &reprocessed(&[(0, 0, TransactionFate::Committed), (1, 1, TransactionFate::Committed)]));
        assert_eq!(violations.len(), 1, "both copies committed");
        assert_eq!(violations[0].detail, "value 1000001:0 stands at events/0@0 (in the committed log) and at events/0@1 (in the committed log)");
    }

    /// A polled copy the final log no longer holds counts by how the
    /// transaction of the send acknowledged at its position ended.
    #[test]
    fn a_polled_copy_of_an_aborted_transaction_is_not_a_duplicate() {
        let output = value(1, 0).pipeline_output();
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, output)]))]);
        for (outcome, findings) in [(OpType::Fail, 0), (OpType::Info, 0), (OpType::Ok, 1)] {
            let mut history = HistoryBuilder::new();
            history.transaction(10, "pipeline-1", 0, &[(output, 1, 4)], outcome);
            history.poll(20, "consumer-1", &[(1, 4, output)]);
            assert_eq!(check(&history.build(), &state).len(), findings, "{outcome:?}");
        }
    }
}
