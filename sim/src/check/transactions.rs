//! The transactions of a run as the history records them (KIP-98 workloads):
//! each transaction's values, the sends made in it and how it ended, for the
//! checkers. Like Jepsen's `:info`, an outcome the producer never learned (its
//! process crashed, the commit's answer was lost) is unknown: the transaction
//! may or may not have committed, so it is never counted either way.

use crate::history::{Op, OpBody, OpType, Value};
use super::value_map::ValueSet;

/// How a transaction ended, as its producer learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The commit was acknowledged (`ok`).
    Committed,
    /// The abort was acknowledged (`fail`).
    Aborted,
    /// Never learned (`info`, or no completion at all): the producer crashed,
    /// or the commit's answer was lost.
    Unknown,
}

/// One transaction of one producer node, from its `invoke` to its completion.
pub(crate) struct Transaction<'a> {
    pub(crate) invoke: &'a Op,
    /// The `ok`, `fail` or `info` that ended it; None if none came.
    pub(crate) completion: Option<&'a Op>,
    pub(crate) number: u64,
    pub(crate) values: &'a [Value],
}

impl<'a> Transaction<'a> {
    pub(crate) fn outcome(&self) -> Outcome {
        match self.completion.map(|op| op.kind) {
            Some(OpType::Ok) => Outcome::Committed,
            Some(OpType::Fail) => Outcome::Aborted,
            _ => Outcome::Unknown,
        }
    }

    /// The producer node that ran it.
    pub(crate) fn node(&self) -> &'a str {
        &self.invoke.node
    }
}

/// Follows each node's open transaction while the history is indexed
/// (`Views`), so that every send is tied to the transaction it was made in: a
/// send a node invokes while its transaction is open, of one of that
/// transaction's values. A producer runs one transaction at a time (KIP-98),
/// and a restarted one first records its predecessor's open transaction as
/// `info`, so the node's open transaction is the one.
#[derive(Default)]
pub(crate) struct TransactionTracker {
    /// Per node key: its open transaction (an index into the transactions) and
    /// the index of the value its next send most likely carries.
    open: Vec<Option<(u32, usize)>>,
}

impl TransactionTracker {
    /// Takes a `Txn` op of `node` into account: an invoke opens a transaction
    /// (pushed to `transactions`), a completion ends the node's open one.
    pub(crate) fn transaction_op<'a>(&mut self, transactions: &mut Vec<Transaction<'a>>, op: &'a Op, node: u32) {
        let OpBody::Txn { number, values, .. } = &op.body else { return };
        let slot = node as usize;
        if self.open.len() <= slot {
            self.open.resize(slot + 1, None);
        }
        if op.kind == OpType::Invoke {
            self.open[slot] = Some((transactions.len() as u32, 0));
            transactions.push(Transaction { invoke: op, completion: None, number: *number, values });
            return;
        }
        if let Some((index, _)) = self.open[slot].filter(|&(index, _)| transactions[index as usize].number == *number) {
            let transaction = &mut transactions[index as usize];
            transaction.completion = Some(op);
            // An application's transaction names its values only as it ends (`crate::app`).
            if transaction.values.is_empty() {
                transaction.values = values;
            }
            self.open[slot] = None;
        }
    }

    /// The transaction a send of `value` that `node` invokes now belongs to.
    pub(crate) fn send_invoked(&mut self, transactions: &[Transaction<'_>], node: u32, value: Value) -> Option<u32> {
        let (index, next) = self.open.get_mut(node as usize)?.as_mut()?;
        let values = transactions[*index as usize].values;
        // An application's transaction begins without its values: every send made while it is open is in it.
        if values.is_empty() {
            return Some(*index);
        }
        // Workloads send a transaction's values in order: look at the expected one first.
        let position = if values.get(*next) == Some(&value) { Some(*next) } else { values.iter().position(|sent| *sent == value) };
        let position = position?;
        *next = position + 1;
        Some(*index)
    }
}

/// Values sent in transactions that did not (knowingly) commit: aborted, of
/// unknown outcome, or never ended, unless another transaction that committed
/// sent the same value. In scope 0. For checkers with only a value to go by;
/// those that know a record's position ask its fate in the final log instead.
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
