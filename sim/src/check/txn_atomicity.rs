//! `txn-atomicity`: a committed transaction's writes are only partly visible.
//!
//! Two views are judged. The final committed log: a committed transaction's
//! values are all in it, or (were they lost, which `lost-write` judges) none.
//! And each consumer: one that read some values of a committed transaction and
//! whose final position in another of the transaction's partitions lies past
//! where another of its values stands must have read that value too (KIP-98:
//! a commit marker makes every partition's share visible at once).
//!
//! Transactions that aborted or whose outcome is unknown are not judged here:
//! an aborted transaction may well have left part of its writes in the log,
//! and `aborted-read` judges who read them.

use super::findings::Findings;
use super::observations::{acknowledged_sends, committed_logs, polled_records};
use super::transactions::{ended_transactions, Outcome};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Value};
use kafsim_model::{Offset, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::TxnAtomicity);
    let committed: Vec<_> = ended_transactions(history).filter(|transaction| transaction.outcome == Outcome::Committed).collect();
    if committed.is_empty() {
        return Vec::new();
    }
    let in_log: BTreeSet<Value> = committed_logs(final_state).values().flat_map(|log| log.iter().map(|(_, value)| *value)).collect();
    let placed: BTreeMap<Value, (&TopicPartition, Offset)> =
        acknowledged_sends(history).filter_map(|send| Some((send.value, (send.partition?, send.offset?)))).collect();
    let mut read_by: BTreeMap<&str, BTreeSet<Value>> = BTreeMap::new();
    for (op, record) in polled_records(history) {
        read_by.entry(&op.node).or_default().insert(record.value);
    }
    for transaction in &committed {
        if findings.is_full() {
            break;
        }
        let present: Vec<&Value> = transaction.values.iter().filter(|value| in_log.contains(value)).collect();
        if !present.is_empty() && present.len() < transaction.values.len() {
            let missing: Vec<String> = transaction.values.iter().filter(|value| !in_log.contains(value)).map(Value::to_string).collect();
            findings.report(format!(
                "transaction {} of {} committed, but the final log holds {} of its {} values (missing {})",
                transaction.number,
                transaction.op.node,
                present.len(),
                transaction.values.len(),
                missing.join(", ")
            ));
            continue;
        }
        for (consumer, seen) in &read_by {
            let Some(snapshot) = final_state.consumers.get(*consumer) else { continue };
            let Some(witness) = transaction.values.iter().find(|value| seen.contains(value)) else { continue };
            let unseen = transaction.values.iter().find(|value| {
                !seen.contains(value)
                    && placed.get(value).is_some_and(|(partition, offset)| snapshot.positions.get(*partition).is_some_and(|position| position > offset))
            });
            if let Some(value) = unseen {
                let (partition, offset) = placed[value];
                findings.report(format!(
                    "{consumer} read {witness} of transaction {} of {}, which committed, but not {value} at {partition}@{offset} though it read past it",
                    transaction.number, transaction.op.node
                ));
                break;
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
        assert_eq!(violations[0].detail, "transaction 0 of producer-1 committed, but the final log holds 1 of its 2 values (missing 1:1)");
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
            "consumer-1 read 1:0 of transaction 0 of producer-1, which committed, but not 1:1 at events/1@0 though it read past it"
        );
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
}
