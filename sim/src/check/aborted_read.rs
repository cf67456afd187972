//! `aborted-read` (Jepsen's G1a): a consumer read a record written in a
//! transaction that aborted. A read_committed consumer must never (KIP-98: the
//! broker returns the aborted transactions of a fetch and the consumer skips
//! their batches); a read_uncommitted one sees them, which is how the
//! must-find scenario shows that this checker can fire.
//!
//! A read is tied to its write by position, never by value alone: pipeline
//! members write the same output value for one input, so a value aborted in
//! one member's transaction may stand committed at another offset, written by
//! the member that took the input over. In order of authority:
//! - the final log, where it still holds the record read at that offset: the
//!   fate of its transaction (`TransactionFate`, from the log's own markers);
//! - else the history: the send acknowledged at that offset with that value,
//!   and how its transaction ended, as its producer learned;
//! - else, with no known write at that position, the value: a transaction that
//!   aborted is blamed only if no other write of the value could explain the
//!   read (none committed, none of unknown outcome, none outside a transaction).
//!
//! A transaction whose outcome is unknown (`info`) may have committed, so the
//! history never blames it; the final log may still show it aborted. One whose
//! commit its producer saw acknowledged is never blamed, even where the final
//! log marks it aborted: that is committed data lost, for the loss checkers.

use super::findings::Findings;
use super::observations::value_at;
use super::transactions::{Outcome, Transaction};
use super::value_map::{ValueMap, ValueSet};
use super::views::{PartitionKey, Read, Views};
use super::{CheckerKind, Violation};
use crate::final_state::{FinalState, TransactionFate};
use crate::history::History;
use kafsim_model::Offset;
use std::collections::BTreeSet;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::AbortedRead);
    let aborted_in_history = views.transactions().iter().any(|transaction| transaction.outcome() == Outcome::Aborted);
    let aborted_in_logs = views.final_partitions().any(|(_, view)| {
        view.committed.is_some_and(|replica| replica.transactions.iter().any(|batch| batch.fate == TransactionFate::Aborted))
    });
    if !aborted_in_history && !aborted_in_logs {
        return Vec::new();
    }
    // Built at the first read no position explains: in most runs, never.
    let mut aborted_values: Option<ValueMap<u32>> = None;
    let mut reported: BTreeSet<(PartitionKey, Offset)> = BTreeSet::new();
    for read in views.reads() {
        if findings.is_full() {
            break;
        }
        let writer = match writer_of(views, read) {
            Writer::Known(writer) => writer,
            Writer::Unknown => {
                let aborted = aborted_values.get_or_insert_with(|| aborted_only_values(views));
                aborted.get(0, read.value).map(|&index| Aborted::InHistory(views.transaction(index)))
            }
        };
        let Some(writer) = writer else { continue };
        if reported.insert((read.partition, read.offset)) {
            let record = views.read_record(read);
            findings.report(format!("{} read {} at {}@{}, {writer}", views.read_op(read).node, read.value, record.partition, read.offset));
        }
    }
    findings.into_violations()
}

/// The aborted write a read is of.
enum Aborted<'v, 'a> {
    /// A transaction of the history whose abort its producer saw.
    InHistory(&'v Transaction<'a>),
    /// The final log marks the record aborted; the history's transaction
    /// that wrote it, if a send was acknowledged there.
    InLog { producer_id: u64, transaction: Option<&'v Transaction<'a>> },
}

impl std::fmt::Display for Aborted<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aborted::InHistory(transaction) | Aborted::InLog { transaction: Some(transaction), .. } => {
                write!(f, "written in transaction {} of {}, which aborted", transaction.number, transaction.node())
            }
            Aborted::InLog { producer_id, transaction: None } => {
                write!(f, "written in a transaction of producer id {producer_id}, which the log's marker aborted")
            }
        }
    }
}

enum Writer<'v, 'a> {
    /// The position names the write: Some if it aborted.
    Known(Option<Aborted<'v, 'a>>),
    /// No known write stands at the read's position.
    Unknown,
}

/// The write a read is of, by its position: the final log's record there if it
/// is the one read, else the send acknowledged there with the value read.
fn writer_of<'v, 'a>(views: &'v Views<'a>, read: &Read) -> Writer<'v, 'a> {
    let view = views.partition(read.partition);
    let acknowledged = || views.acknowledged_at(read.partition, read.offset).find(|send| send.value == read.value);
    if value_at(view.log, read.offset) == Some(read.value) {
        if view.fate(read.offset) != Some(TransactionFate::Aborted) {
            return Writer::Known(None);
        }
        let producer_id = view.committed.and_then(|replica| replica.transactions.iter().find(|batch| batch.first_offset <= read.offset && read.offset <= batch.last_offset));
        let producer_id = producer_id.map_or(0, |batch| batch.producer_id.0);
        let transaction = acknowledged().and_then(|send| send.transaction).map(|index| views.transaction(index));
        // Its producer saw the commit acknowledged: the record was committed
        // when it was read, and the log's later abort (its commit marker lost
        // to power loss, the transaction aborted again) is a loss of committed
        // data, which lost-write and committed-data-lost judge.
        if transaction.is_some_and(|transaction| transaction.outcome() == Outcome::Committed) {
            return Writer::Known(None);
        }
        return Writer::Known(Some(Aborted::InLog { producer_id, transaction }));
    }
    match acknowledged() {
        Some(send) => {
            let transaction = send.transaction.map(|index| views.transaction(index)).filter(|transaction| transaction.outcome() == Outcome::Aborted);
            Writer::Known(transaction.map(Aborted::InHistory))
        }
        None => Writer::Unknown,
    }
}

/// Per value: the last transaction that sent it and aborted, for values that
/// no other write explains: none sent in a transaction that committed or whose
/// outcome is unknown, none sent outside a transaction.
fn aborted_only_values(views: &Views<'_>) -> ValueMap<u32> {
    let mut explained = ValueSet::with_sequence_bound(views.sequence_bound());
    for pair in views.send_pairs() {
        if views.transaction_outcome(pair.transaction) != Some(Outcome::Aborted) {
            explained.add(0, pair.value);
        }
    }
    // Values named by a transaction that may have committed, even those whose
    // sends the history lacks.
    for transaction in views.transactions().iter().filter(|transaction| transaction.outcome() != Outcome::Aborted) {
        explained.extend(transaction.values.iter().copied());
    }
    let mut aborted = ValueMap::with_sequence_bound(views.sequence_bound());
    for (index, transaction) in views.transactions().iter().enumerate().filter(|(_, transaction)| transaction.outcome() == Outcome::Aborted) {
        for value in transaction.values.iter().filter(|value| !explained.contains(0, **value)) {
            aborted.insert(0, *value, index as u32);
        }
    }
    aborted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::history::OpType;

    #[test]
    fn fires_when_a_consumer_reads_a_value_of_an_aborted_transaction() {
        let mut history = HistoryBuilder::new();
        history.txn(10, "producer-1", OpType::Invoke, 0, &[value(1, 0), value(1, 1)]);
        history.acked_send(11, "producer-1", value(1, 0), 0, 0);
        history.acked_send(11, "producer-1", value(1, 1), 1, 0);
        history.txn(20, "producer-1", OpType::Fail, 0, &[value(1, 0), value(1, 1)]);
        history.poll(30, "consumer-1", &[(1, 0, value(1, 1))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::AbortedRead);
        assert_eq!(violations[0].detail, "consumer-1 read 1:1 at events/1@0, written in transaction 0 of producer-1, which aborted");
    }

    #[test]
    fn silent_for_committed_and_unknown_transactions() {
        let mut history = HistoryBuilder::new();
        history.txn(10, "producer-1", OpType::Invoke, 0, &[value(1, 0)]);
        history.txn(20, "producer-1", OpType::Ok, 0, &[value(1, 0)]);
        history.txn(21, "producer-1", OpType::Invoke, 1, &[value(1, 1)]);
        history.txn(25, "producer-1", OpType::Info, 1, &[value(1, 1)]);
        history.txn(26, "producer-1", OpType::Invoke, 2, &[value(1, 2)]);
        history.txn(27, "producer-1", OpType::Fail, 2, &[value(1, 2)]);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }

    /// Pipeline member 1's transaction aborted; member 2 took its input over
    /// and wrote the same output value in a transaction that committed, at
    /// another offset. The consumer read member 2's record.
    fn reprocessed_output(history: &mut HistoryBuilder) -> crate::history::Value {
        let output = value(1, 0).pipeline_output();
        history.transaction(10, "pipeline-1", 0, &[(output, 0, 0)], OpType::Fail);
        history.transaction(20, "pipeline-2", 0, &[(output, 0, 1)], OpType::Ok);
        output
    }

    fn reprocessed_log(output: crate::history::Value) -> FinalState {
        let log = partition_snapshot(1, &[1], 2, &[(0, output), (1, output)]);
        final_state(vec![(0, with_transactions(log, &[(0, 0, TransactionFate::Aborted), (1, 1, TransactionFate::Committed)]))])
    }

    #[test]
    fn a_reprocessed_value_committed_later_is_not_an_aborted_read() {
        let mut history = HistoryBuilder::new();
        let output = reprocessed_output(&mut history);
        history.poll(30, "consumer-1", &[(0, 1, output)]);
        let history = history.build();
        assert!(check(&history, &reprocessed_log(output)).is_empty(), "the final log says offset 1 committed");
        assert!(check(&history, &final_state(vec![])).is_empty(), "the history says offset 1 was written by a committed transaction");
    }

    #[test]
    fn the_aborted_copy_of_a_reprocessed_value_is_an_aborted_read() {
        let mut history = HistoryBuilder::new();
        let output = reprocessed_output(&mut history);
        history.poll(30, "consumer-1", &[(0, 0, output), (0, 1, output)]);
        let history = history.build();
        for state in [reprocessed_log(output), final_state(vec![])] {
            let violations = check(&history, &state);
            assert_eq!(violations.len(), 1);
            assert_eq!(violations[0].detail, "consumer-1 read 1000001:0 at events/0@0, written in transaction 0 of pipeline-1, which aborted");
        }
    }

    /// Producer 1's transaction of 1:0 at events/0@0, ended as its producer
    /// saw it (`outcome`), and consumer 1's read of it; and a final log whose
    /// marker aborted it.
    fn one_read_the_log_aborted(outcome: OpType) -> (History, FinalState) {
        let mut history = HistoryBuilder::new();
        history.transaction(10, "producer-1", 0, &[(value(1, 0), 0, 0)], outcome);
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0))]);
        let log = with_transactions(partition_snapshot(1, &[1], 1, &[(0, value(1, 0))]), &[(0, 0, TransactionFate::Aborted)]);
        (history.build(), final_state(vec![(0, log)]))
    }

    /// The producer never learned how its transaction ended; the log's marker says it aborted.
    #[test]
    fn the_final_log_decides_a_transaction_of_unknown_outcome() {
        let (history, aborted_log) = one_read_the_log_aborted(OpType::Info);
        assert!(check(&history, &final_state(vec![])).is_empty(), "unknown outcome, no log: it may have committed");
        let violations = check(&history, &aborted_log);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "consumer-1 read 1:0 at events/0@0, written in transaction 0 of producer-1, which aborted");
    }

    /// The commit was acknowledged and the record read; then every replica
    /// lost power, the commit marker with it, and the transaction aborted
    /// again. The read was of committed data: the loss is not an aborted read.
    #[test]
    fn a_commit_acknowledged_then_lost_is_not_an_aborted_read() {
        let (history, aborted_log) = one_read_the_log_aborted(OpType::Ok);
        assert!(check(&history, &aborted_log).is_empty());
    }

    /// With no write known at the read's position (its send's answer was lost
    /// and the log no longer reaches it), only the value is left: a value that
    /// a committed transaction also wrote is not blamed on the aborted one.
    #[test]
    fn by_value_alone_an_aborted_write_is_blamed_only_if_nothing_else_explains_it() {
        let mut history = HistoryBuilder::new();
        let (explained, aborted) = (value(1, 0).pipeline_output(), value(1, 1).pipeline_output());
        history.txn(10, "pipeline-1", OpType::Invoke, 0, &[explained, aborted]);
        history.send_invoke(11, "pipeline-1", explained);
        history.send_invoke(11, "pipeline-1", aborted);
        history.send_info(12, "pipeline-1", explained);
        history.send_info(12, "pipeline-1", aborted);
        history.txn(13, "pipeline-1", OpType::Fail, 0, &[explained, aborted]);
        history.transaction(20, "pipeline-2", 0, &[(explained, 0, 7)], OpType::Ok);
        history.poll(30, "consumer-1", &[(0, 3, explained), (0, 4, aborted)]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "consumer-1 read 1000001:1 at events/0@4, written in transaction 0 of pipeline-1, which aborted");
    }
}
