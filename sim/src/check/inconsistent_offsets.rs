//! `inconsistent-offsets`: two observations of one partition offset disagree on
//! the value there. An offset names one record forever in Kafka; if an
//! acknowledgement, a poll or the final committed log place different values at
//! the same offset, the log was rewritten under someone who had already seen it:
//! a truncation below what was acknowledged or read, followed by new appends
//! (an acknowledged write at offset 5 overwritten by another value at offset 5).
//!
//! Observations are `ok` sends (their partition and offset), polled records, and
//! the committed log's records. The committed log is the reference where it
//! reaches; beyond it the first observation in history order is. One violation per
//! partition offset.

use super::findings::Findings;
use super::observations::{value_at, Witness};
use super::views::{PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Value};
use kafsim_model::Offset;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::InconsistentOffsets);
    let mut first_seen: BTreeMap<(PartitionKey, Offset), (Value, Witness<'_>)> = BTreeMap::new();
    let mut reported: BTreeSet<(PartitionKey, Offset)> = BTreeSet::new();
    for (partition, offset, value, witness) in history_observations(views) {
        if findings.is_full() {
            break;
        }
        let committed_value = value_at(views.partition(partition).log, offset);
        let reference = match committed_value {
            Some(committed_value) => (committed_value, Witness::CommittedLog),
            None => match first_seen.entry((partition, offset)) {
                Entry::Vacant(entry) => {
                    entry.insert((value, witness));
                    continue;
                }
                Entry::Occupied(entry) => *entry.get(),
            },
        };
        if reference.0 != value && reported.insert((partition, offset)) {
            let partition = views.partition(partition).partition;
            findings.report(format!("{partition}@{offset} holds {} ({}) and {value} ({witness})", reference.0, reference.1));
        }
    }
    findings.into_violations()
}

/// Every position the history reports for a value, in history order: `ok` sends
/// that carry a partition and offset, and polled records. Left out are those that
/// agree with the committed log, which is the reference wherever it reaches: they
/// can neither disagree nor become the first observation of their offset.
fn history_observations<'a>(views: &'a Views<'_>) -> impl Iterator<Item = (PartitionKey, Offset, Value, Witness<'a>)> {
    let disputed = |partition: PartitionKey, offset: Offset, value: Value| value_at(views.partition(partition).log, offset) != Some(value);
    let mut acknowledged = views
        .acknowledged_sends()
        .iter()
        .filter_map(|send| Some((send, send.partition?.1, send.offset?)))
        .filter(move |(send, partition, offset)| disputed(*partition, *offset, send.value))
        .map(|(send, partition, offset)| (send.op_index, partition, offset, send.value, Witness::acknowledged(send.op)))
        .peekable();
    let mut polled = views
        .reads()
        .iter()
        .filter(move |read| disputed(read.partition, read.offset, read.value))
        .map(|read| (read.op_index, read.partition, read.offset, read.value, Witness::polled(views.read_op(read))))
        .peekable();
    // Both lists are in history order and no op is both a send and a poll: merge them by op index.
    std::iter::from_fn(move || {
        let take_acknowledged = match (acknowledged.peek(), polled.peek()) {
            (Some(send), Some(read)) => send.0 < read.0,
            (send, _) => send.is_some(),
        };
        let (_, partition, offset, value, witness) = if take_acknowledged { acknowledged.next() } else { polled.next() }?;
        Some((partition, offset, value, witness))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_an_acknowledged_offset_is_overwritten() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.acked_send(20, "producer-2", value(2, 0), 0, 0);
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(2, 0))]))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::InconsistentOffsets);
        assert_eq!(
            violations[0].detail,
            "events/0@0 holds 2:0 (in the committed log) and 1:0 (acknowledged to producer-1 at 0.011s)"
        );
    }

    #[test]
    fn fires_when_two_polls_disagree_beyond_the_committed_log() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 7, value(1, 0))]);
        history.poll(20, "consumer-2", &[(0, 7, value(1, 1))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "events/0@7 holds 1:0 (polled by consumer-1 at 0.010s) and 1:1 (polled by consumer-2 at 0.020s)"
        );
    }

    #[test]
    fn silent_when_every_observation_agrees() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.acked_send(20, "producer-1", value(1, 1), 0, 1);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.poll(40, "consumer-2", &[(0, 0, value(1, 0))]);
        let records = [(0, value(1, 0)), (1, value(1, 1))];
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 2, &records))]);
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn silent_for_the_same_offset_in_different_partitions() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.acked_send(20, "producer-1", value(1, 1), 1, 0);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
