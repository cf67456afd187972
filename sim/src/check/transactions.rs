//! The transactions of a run as the history records them (KIP-98 workloads):
//! each transaction's values and how it ended, for the transaction checkers.

use crate::history::{Op, OpBody, OpType, Value};
use super::value_map::ValueSet;

/// How a transaction ended, as its producer learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    Aborted,
    /// Never learned: the producer crashed, or the commit's answer was lost.
    Unknown,
}

pub(crate) struct Transaction<'a> {
    pub(crate) op: &'a Op,
    pub(crate) number: u64,
    pub(crate) values: &'a [Value],
    pub(crate) outcome: Outcome,
}

/// Every ended transaction (its completion op) among `transaction_ops` (the
/// run's `Txn` ops, `Views::transaction_ops`), in their order.
pub(crate) fn ended_transactions<'o, 'a>(transaction_ops: &'o [&'a Op]) -> impl Iterator<Item = Transaction<'a>> + 'o {
    transaction_ops.iter().filter_map(|&op| match &op.body {
        OpBody::Txn { number, values, .. } => {
            let outcome = match op.kind {
                OpType::Invoke => return None,
                OpType::Ok => Outcome::Committed,
                OpType::Fail => Outcome::Aborted,
                OpType::Info => Outcome::Unknown,
            };
            Some(Transaction { op, number: *number, values, outcome })
        }
        _ => None,
    })
}

/// Values sent in transactions that did not (knowingly) commit: aborted, of
/// unknown outcome, or never ended. In scope 0.
pub(crate) fn uncommitted_values(transaction_ops: &[&Op]) -> ValueSet {
    let transaction_ops = || transaction_ops.iter().filter_map(|op| match &op.body {
        OpBody::Txn { values, .. } => Some((op.kind, values)),
        _ => None,
    });
    let mut committed = ValueSet::new();
    for (_, values) in transaction_ops().filter(|(kind, _)| *kind == OpType::Ok) {
        committed.extend(values.iter().copied());
    }
    let mut uncommitted = ValueSet::new();
    for (_, values) in transaction_ops().filter(|(kind, _)| *kind != OpType::Ok) {
        uncommitted.extend(values.iter().copied().filter(|value| !committed.contains(0, *value)));
    }
    uncommitted
}
