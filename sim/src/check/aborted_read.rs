//! `aborted-read` (Jepsen's G1a): a consumer read a value written in a
//! transaction that aborted. A read_committed consumer must never (KIP-98: the
//! broker returns the aborted transactions of a fetch and the consumer skips
//! their batches); a read_uncommitted one sees them, which is how the
//! must-find scenario shows that this checker can fire.
//!
//! Only transactions whose producer saw the abort acknowledged count: one whose
//! outcome is unknown may have committed.

use super::findings::Findings;
use super::transactions::{ended_transactions, Outcome};
use super::value_map::{ValueMap, ValueSet};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::History;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::AbortedRead);
    // Per value: the last aborted transaction that sent it, and its producer.
    let mut aborted: ValueMap<(u64, &str)> = ValueMap::new();
    let mut any_aborted = false;
    for transaction in ended_transactions(views.transaction_ops()).filter(|transaction| transaction.outcome == Outcome::Aborted) {
        for value in transaction.values {
            aborted.insert(0, *value, (transaction.number, &transaction.op.node));
            any_aborted = true;
        }
    }
    if !any_aborted {
        return Vec::new();
    }
    let mut reported = ValueSet::new();
    for read in views.reads() {
        if findings.is_full() {
            break;
        }
        if let Some((number, producer)) = aborted.get(0, read.value) {
            if reported.add(0, read.value) {
                findings.report(format!(
                    "{} read {} at {}@{}, written in transaction {number} of {producer}, which aborted",
                    views.read_op(read).node, read.value, views.read_record(read).partition, read.offset
                ));
            }
        }
    }
    findings.into_violations()
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
}
