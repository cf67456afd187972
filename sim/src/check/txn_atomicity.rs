//! `txn-atomicity`: a committed transaction's writes are only partly visible.
//!
//! Two views are judged. The final committed log: a committed transaction's
//! records all stand at the positions their sends were acknowledged at, or
//! (were they lost, which `lost-write` judges) none do; a record the log marks
//! aborted does not stand. And each consumer: one that read some records of a
//! committed transaction and whose final position in another of the
//! transaction's partitions lies past where another of its records stands must
//! have read that record too (KIP-98: a commit marker makes every partition's
//! share visible at once). Only what the consumer read itself counts: where its
//! last seek on that partition (to a group's committed offset, say) put it past
//! the record, someone else read it, and that is no partial visibility.
//!
//! Records are tied to their transaction by position (the offsets its sends
//! were acknowledged at), never by value: pipeline members write the same
//! values, and another member's copy proves nothing about this transaction's.
//! A value whose send has no acknowledged position is looked for by value
//! among the records that certainly stand.
//!
//! Transactions that aborted or whose outcome is unknown are not judged here:
//! an aborted transaction may well have left part of its writes in the log,
//! and `aborted-read` judges who read them.

use super::findings::Findings;
use super::observations::value_at;
use super::transactions::Outcome;
use super::value_map::ValueSet;
use super::views::{NodeKey, PartitionKey, Views};
use super::{CheckerKind, Violation};
use crate::final_state::{ConsumerSnapshot, FinalState, TransactionFate};
use crate::history::{History, OpBody, Value};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// One record of a transaction: where its send was acknowledged, if it was.
#[derive(Clone, Copy)]
struct Written {
    value: Value,
    position: Option<(PartitionKey, Offset)>,
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::TxnAtomicity);
    let committed: Vec<usize> = (0..views.transactions().len()).filter(|&index| views.transactions()[index].outcome() == Outcome::Committed).collect();
    if committed.is_empty() {
        return Vec::new();
    }
    let written = written_records(views);
    // Built at the first value with no acknowledged position: most runs have none.
    let mut visible: Option<ValueSet> = None;
    let mut stands = |record: &Written| match record.position {
        Some((partition, offset)) => {
            let view = views.partition(partition);
            value_at(view.log, offset) == Some(record.value) && view.fate(offset) != Some(TransactionFate::Aborted)
        }
        None => visible.get_or_insert_with(|| visible_values(views)).contains(0, record.value),
    };
    let consumers = consumers_and_reads(views);
    // Per consumer and partition: where its last seek put it.
    let mut last_seek: BTreeMap<(&str, &TopicPartition), Offset> = BTreeMap::new();
    for op in &views.history.ops {
        if let OpBody::Seek { partition, offset, .. } = &op.body {
            last_seek.insert((&op.node, partition), *offset);
        }
    }
    for index in committed {
        if findings.is_full() {
            break;
        }
        let transaction = &views.transactions()[index];
        let records = &written[index];
        let standing = records.iter().filter(|record| stands(record)).count();
        if standing > 0 && standing < records.len() {
            let missing: Vec<String> = records.iter().filter(|record| !stands(record)).map(|record| describe(views, record)).collect();
            findings.report(format!(
                "transaction {} of {} committed, but the final log holds {} of its {} records (missing {})",
                transaction.number,
                transaction.node(),
                standing,
                records.len(),
                missing.join(", ")
            ));
            continue;
        }
        for ConsumerReads { name: consumer, read: reads, snapshot } in &consumers {
            let read = |partition: PartitionKey, offset: Offset| reads.binary_search(&(partition, offset)).is_ok();
            let Some(witness) = records.iter().find(|record| record.position.is_some_and(|(partition, offset)| read(partition, offset))) else { continue };
            let unseen = records.iter().find(|record| {
                record.position.is_some_and(|(partition, offset)| {
                    let name = views.partition(partition).partition;
                    let read_from = last_seek.get(&(*consumer, name)).copied().unwrap_or(Offset(0));
                    !read(partition, offset) && read_from <= offset && snapshot.positions.get(name).is_some_and(|position| *position > offset)
                })
            });
            if let Some(record) = unseen {
                findings.report(format!(
                    "{consumer} read {} of transaction {} of {}, which committed, but not {} though it read past it",
                    describe(views, witness),
                    transaction.number,
                    transaction.node(),
                    describe(views, record)
                ));
                break;
            }
        }
    }
    findings.into_violations()
}

/// Per transaction (as `Views::transactions`): its values, each with the
/// position its send was acknowledged at, if one was.
fn written_records(views: &Views<'_>) -> Vec<Vec<Written>> {
    let mut written: Vec<Vec<Written>> = views.transactions().iter().map(|transaction| transaction.values.iter().map(|&value| Written { value, position: None }).collect()).collect();
    for send in views.acknowledged_sends() {
        let (Some(index), Some((_, partition)), Some(offset)) = (send.transaction, send.partition, send.offset) else { continue };
        if let Some(record) = written[index as usize].iter_mut().find(|record| record.value == send.value && record.position.is_none()) {
            record.position = Some((partition, offset));
        }
    }
    written
}

/// The values of every final committed log that certainly stand.
fn visible_values(views: &Views<'_>) -> ValueSet {
    views.final_partitions().flat_map(|(_, view)| view.log.iter().filter(|(offset, _)| view.is_visible(*offset)).map(|(_, value)| *value)).collect()
}

/// A consumer that read something and has a final snapshot.
struct ConsumerReads<'a> {
    name: &'a str,
    /// The positions it read, sorted, each once.
    read: Vec<(PartitionKey, Offset)>,
    snapshot: &'a ConsumerSnapshot,
}

/// Consumers that read something and have a final snapshot, by name.
fn consumers_and_reads<'a>(views: &Views<'a>) -> Vec<ConsumerReads<'a>> {
    let mut reads: Vec<Vec<(PartitionKey, Offset)>> = vec![Vec::new(); views.node_count()];
    for read in views.reads() {
        reads[read.node.0 as usize].push((read.partition, read.offset));
    }
    let mut consumers = Vec::new();
    for (node, mut positions) in reads.into_iter().enumerate().filter(|(_, positions)| !positions.is_empty()) {
        let name = views.node_name(NodeKey(node as u32));
        if let Some(snapshot) = views.final_state.consumers.get(name) {
            positions.sort_unstable();
            positions.dedup();
            consumers.push(ConsumerReads { name, read: positions, snapshot });
        }
    }
    consumers.sort_by_key(|consumer| consumer.name);
    consumers
}

fn describe(views: &Views<'_>, record: &Written) -> String {
    match record.position {
        Some((partition, offset)) => format!("{} at {}@{offset}", record.value, views.partition(partition).partition),
        None => record.value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::history::OpType;

    fn committed_transaction(history: &mut HistoryBuilder) {
        history.txn(10, "producer-1", OpType::Invoke, 0, &[value(1, 0), value(1, 1)]);
        history.acked_send(11, "producer-1", value(1, 0), 0, 0);
        history.acked_send(11, "producer-1", value(1, 1), 1, 0);
        history.txn(20, "producer-1", OpType::Ok, 0, &[value(1, 0), value(1, 1)]);
    }

    #[test]
    fn fires_when_the_final_log_holds_part_of_a_committed_transaction() {
        let mut history = HistoryBuilder::new();
        committed_transaction(&mut history);
        let state = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))])), (1, partition_snapshot(1, &[1], 0, &[]))]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "transaction 0 of producer-1 committed, but the final log holds 1 of its 2 records (missing 1:1 at events/1@0)");
    }

    #[test]
    fn fires_when_a_consumer_read_past_part_of_a_committed_transaction() {
        let mut history = HistoryBuilder::new();
        committed_transaction(&mut history);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0))]);
        let both = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))])), (1, partition_snapshot(1, &[1], 1, &[(0, value(1, 1))]))]);
        let state = with_consumer(both, "consumer-1", &[(0, 1), (1, 2)]);
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "consumer-1 read 1:0 at events/0@0 of transaction 0 of producer-1, which committed, but not 1:1 at events/1@0 though it read past it"
        );
    }

    #[test]
    fn silent_when_a_seek_moved_the_consumer_past_the_value() {
        let mut history = HistoryBuilder::new();
        committed_transaction(&mut history);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0))]);
        // A rebalance hands partition 1 over with another member's committed offset.
        history.seek(40, "consumer-1", 1, 1);
        let both = final_state(vec![(0, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))])), (1, partition_snapshot(1, &[1], 1, &[(0, value(1, 1))]))]);
        let state = with_consumer(both, "consumer-1", &[(0, 1), (1, 2)]);
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn silent_when_committed_transactions_are_whole_and_aborted_ones_partial() {
        let mut history = HistoryBuilder::new();
        committed_transaction(&mut history);
        history.txn(30, "producer-1", OpType::Invoke, 1, &[value(1, 2), value(1, 3)]);
        history.acked_send(31, "producer-1", value(1, 2), 0, 1);
        history.txn(40, "producer-1", OpType::Fail, 1, &[value(1, 2), value(1, 3)]);
        history.poll(50, "consumer-1", &[(0, 0, value(1, 0)), (1, 0, value(1, 1))]);
        let logs = final_state(vec![
            (0, partition_snapshot(1, &[1], 2, &[(0, value(1, 0)), (1, value(1, 2))])),
            (1, partition_snapshot(1, &[1], 1, &[(0, value(1, 1))])),
        ]);
        let state = with_consumer(logs, "consumer-1", &[(0, 2), (1, 1)]);
        assert!(check(&history.build(), &state).is_empty());
    }

    /// Pipeline member 2 committed outputs 1000001:0 and 1000001:1 at offsets 2
    /// and 3; member 1 wrote the same values at 0 and 1 in a transaction that
    /// aborted. Member 2's record at 3 was lost: the aborted copy of its value
    /// at 1 does not make member 2's transaction whole.
    #[test]
    fn another_members_copy_does_not_make_a_committed_transaction_whole() {
        let (first, second) = (value(1, 0).pipeline_output(), value(1, 1).pipeline_output());
        let mut history = HistoryBuilder::new();
        history.transaction(10, "pipeline-1", 0, &[(first, 0, 0), (second, 0, 1)], OpType::Fail);
        history.transaction(20, "pipeline-2", 0, &[(first, 0, 2), (second, 0, 3)], OpType::Ok);
        let history = history.build();
        let log = |records: &[(u64, Value)], fates: &[(u64, u64, TransactionFate)]| {
            let high_watermark = records.len() as u64;
            final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], high_watermark, records), fates))])
        };
        let whole = log(&[(0, first), (1, second), (2, first), (3, second)], &[(0, 1, TransactionFate::Aborted), (2, 3, TransactionFate::Committed)]);
        assert!(check(&history, &whole).is_empty());
        let partial = log(&[(0, first), (1, second), (2, first)], &[(0, 1, TransactionFate::Aborted), (2, 2, TransactionFate::Committed)]);
        let violations = check(&history, &partial);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "transaction 0 of pipeline-2 committed, but the final log holds 1 of its 2 records (missing 1000001:1 at events/0@3)");
    }

    /// A committed transaction whose record the log marks aborted in one
    /// partition is partly visible; one whose commit timed out (`info`) is not judged.
    #[test]
    fn a_record_the_log_aborted_does_not_stand_and_an_unknown_outcome_is_not_judged() {
        let records = [(0, value(1, 0)), (1, value(1, 1))];
        let state = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 2, &records), &[(0, 0, TransactionFate::Committed), (1, 1, TransactionFate::Aborted)]))]);
        for (outcome, findings) in [(OpType::Ok, 1), (OpType::Info, 0)] {
            let mut history = HistoryBuilder::new();
            history.transaction(10, "producer-1", 0, &[(value(1, 0), 0, 0), (value(1, 1), 0, 1)], outcome);
            let violations = check(&history.build(), &state);
            assert_eq!(violations.len(), findings, "{outcome:?}: {violations:?}");
        }
    }
}
