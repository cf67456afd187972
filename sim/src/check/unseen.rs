//! `unseen`: an acknowledged send stands in the committed log, consumers drained
//! its partition past its offset, and yet no consumer ever polled it. Jepsen's
//! name for records that exist but that consumers silently step over: a position
//! committed or reset beyond records nobody processed (a rebalance that resumed
//! from a too-high offset, an `auto.offset.reset` to latest).
//!
//! Judged only when `final_state.drained` is true: before the final drain, unread
//! records are just not read yet. "Past its offset" means some consumer's final
//! position for the partition is greater than the record's committed offset.
//!
//! A record written in a transaction counts only once the transaction committed:
//! a read_committed consumer rightly never sees an aborted one (KIP-98). The
//! final log's markers say which records those are; the send behind a record
//! counts only if its transaction knowingly committed.

use super::findings::{seconds, Findings};
use super::transactions::Outcome;
use super::value_map::{ValueMap, ValueSet};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Op};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let final_state = views.final_state;
    let mut findings = Findings::new(CheckerKind::Unseen);
    if !final_state.drained {
        return findings.into_violations();
    }
    let mut polled = ValueSet::with_sequence_bound(views.sequence_bound());
    polled.extend(views.reads().iter().map(|read| read.value));
    // Built at the first record nobody polled: in a clean run, never.
    let mut acknowledged = None;
    let furthest = furthest_positions(final_state);
    for (key, view) in views.final_partitions() {
        let Some(&(position, consumer)) = furthest.get(view.partition) else {
            continue;
        };
        let partition = view.partition;
        for &(offset, value) in view.log.iter().take_while(|(offset, _)| *offset < position) {
            if findings.is_full() {
                return findings.into_violations();
            }
            // A record of a transaction the log marks aborted, or leaves open,
            // is no record a read_committed consumer is promised.
            if polled.contains(0, value) || !view.is_visible(offset) {
                continue;
            }
            // The send acknowledged at this position, else (the log moved it) the value's.
            let here = views.acknowledged_at(key, offset).find(|send| send.value == value).map(|send| (send.op, views.transaction_outcome(send.transaction)));
            let op = match here {
                Some((op, None | Some(Outcome::Committed))) => op,
                Some(_) => continue,
                None => match acknowledged.get_or_insert_with(|| acknowledged_sends(views)).get(0, value) {
                    Some(op) => *op,
                    None => continue,
                },
            };
            findings.report(format!(
                "value {value} acknowledged to {} at {} stands at {partition}@{offset}, \
                 but no consumer polled it though {consumer} reached offset {position}",
                op.node,
                seconds(op.time)
            ));
        }
    }
    findings.into_violations()
}

/// The last `ok` send of each value outside uncommitted transactions.
fn acknowledged_sends<'a>(views: &Views<'a>) -> ValueMap<&'a Op> {
    let uncommitted = views.uncommitted_values();
    let mut acknowledged = ValueMap::with_sequence_bound(views.sequence_bound());
    for send in views.acknowledged_sends().iter().filter(|send| !uncommitted.contains(0, send.value)) {
        acknowledged.insert(0, send.value, send.op);
    }
    acknowledged
}

/// Per partition, the furthest final position any consumer reached, and whose.
fn furthest_positions(final_state: &FinalState) -> BTreeMap<&TopicPartition, (Offset, &str)> {
    let mut furthest: BTreeMap<&TopicPartition, (Offset, &str)> = BTreeMap::new();
    for (consumer, snapshot) in &final_state.consumers {
        for (partition, &position) in &snapshot.positions {
            let entry = furthest.entry(partition).or_insert((position, consumer));
            if position > entry.0 {
                *entry = (position, consumer);
            }
        }
    }
    furthest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    fn three_committed_records() -> FinalState {
        let records = [(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))];
        final_state(vec![(0, partition_snapshot(1, &[1], 3, &records))])
    }

    fn history(polled: &[(u32, u64, crate::history::Value)]) -> History {
        let mut history = HistoryBuilder::new();
        for sequence in 0..3 {
            history.acked_send(10 * sequence, "producer-1", value(1, sequence), 0, sequence);
        }
        history.poll(100, "consumer-1", polled);
        history.build()
    }

    #[test]
    fn fires_when_consumers_passed_an_unread_record() {
        let mut state = with_consumer(three_committed_records(), "consumer-1", &[(0, 3)]);
        state = with_consumer(state, "consumer-2", &[(0, 1)]);
        state.drained = true;
        let violations = check(&history(&[(0, 0, value(1, 0)), (0, 2, value(1, 2))]), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Unseen);
        assert_eq!(
            violations[0].detail,
            "value 1:1 acknowledged to producer-1 at 0.011s stands at events/0@1, but no consumer polled it though consumer-1 reached offset 3"
        );
    }

    #[test]
    fn silent_when_every_passed_record_was_read() {
        let mut state = with_consumer(three_committed_records(), "consumer-1", &[(0, 3)]);
        state.drained = true;
        let polled = [(0, 0, value(1, 0)), (0, 1, value(1, 1)), (0, 2, value(1, 2))];
        assert!(check(&history(&polled), &state).is_empty());
    }

    #[test]
    fn silent_for_records_no_consumer_reached_or_without_a_drain() {
        let mut state = with_consumer(three_committed_records(), "consumer-1", &[(0, 1)]);
        state.drained = true;
        assert!(check(&history(&[(0, 0, value(1, 0))]), &state).is_empty());
        let mut undrained = with_consumer(three_committed_records(), "consumer-1", &[(0, 3)]);
        undrained.drained = false;
        assert!(check(&history(&[(0, 0, value(1, 0))]), &undrained).is_empty());
    }
}
