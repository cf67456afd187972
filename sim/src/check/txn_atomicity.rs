//! `txn-atomicity`: a committed transaction's writes are only partly visible.
//!
//! Two views are judged. The final committed log: a committed transaction's
//! values are all in it, or (were they lost, which `lost-write` judges) none.
//! And each consumer: one that read some values of a committed transaction and
//! whose final position in another of the transaction's partitions lies past
//! where another of its values stands must have read that value too (KIP-98:
//! a commit marker makes every partition's share visible at once). Only what
//! the consumer read itself counts: where its last seek on that partition (to
//! a group's committed offset, say) put it past the value, someone else read
//! the value, and that is no partial visibility.
//!
//! Transactions that aborted or whose outcome is unknown are not judged here:
//! an aborted transaction may well have left part of its writes in the log,
//! and `aborted-read` judges who read them.

use super::findings::Findings;
use super::transactions::{ended_transactions, Outcome};
use super::value_map::{ValueMap, ValueSet};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::{ConsumerSnapshot, FinalState};
use crate::history::{History, Value};
use kafsim_model::{Offset, TopicPartition};

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::TxnAtomicity);
    let committed: Vec<_> = ended_transactions(views.transaction_ops()).filter(|transaction| transaction.outcome == Outcome::Committed).collect();
    if committed.is_empty() {
        return Vec::new();
    }
    let in_log: ValueSet = views.final_partitions().flat_map(|(_, view)| view.log.iter().map(|(_, value)| *value)).collect();
    let mut placed: ValueMap<(&TopicPartition, Offset)> = ValueMap::new();
    for send in views.acknowledged_sends() {
        if let (Some((partition, _)), Some(offset)) = (send.partition, send.offset) {
            placed.insert(0, send.value, (partition, offset));
        }
    }
    // Per reading node (its key is the scope): the values it read.
    let mut read_by = ValueSet::new();
    let mut reads_any = vec![false; views.node_count()];
    for read in views.reads() {
        read_by.add(read.node.0, read.value);
        reads_any[read.node.0 as usize] = true;
    }
    // Consumers that read something and have a final snapshot, by name.
    let mut consumers: Vec<(&str, u32, &ConsumerSnapshot)> = Vec::new();
    for (node, _) in reads_any.iter().enumerate().filter(|(_, reads)| **reads) {
        let name = views.node_name(super::views::NodeKey(node as u32));
        if let Some(snapshot) = views.final_state.consumers.get(name) {
            consumers.push((name, node as u32, snapshot));
        }
    }
    consumers.sort_by_key(|(name, _, _)| *name);
    // Per consumer and partition: where its last seek put it.
    let mut last_seek: std::collections::BTreeMap<(&str, &TopicPartition), Offset> = std::collections::BTreeMap::new();
    for op in &views.history.ops {
        if let crate::history::OpBody::Seek { partition, offset, .. } = &op.body {
            last_seek.insert((&op.node, partition), *offset);
        }
    }
    for transaction in &committed {
        if findings.is_full() {
            break;
        }
        let present: Vec<&Value> = transaction.values.iter().filter(|value| in_log.contains(0, **value)).collect();
        if !present.is_empty() && present.len() < transaction.values.len() {
            let missing: Vec<String> = transaction.values.iter().filter(|value| !in_log.contains(0, **value)).map(Value::to_string).collect();
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
        for &(consumer, scope, snapshot) in &consumers {
            let Some(witness) = transaction.values.iter().find(|value| read_by.contains(scope, **value)) else { continue };
            let unseen = transaction.values.iter().find(|value| {
                !read_by.contains(scope, **value)
                    && placed.get(0, **value).is_some_and(|(partition, offset)| {
                        let read_from = last_seek.get(&(consumer, *partition)).copied().unwrap_or(Offset(0));
                        read_from <= *offset && snapshot.positions.get(*partition).is_some_and(|position| position > offset)
                    })
            });
            if let Some(value) = unseen {
                let (partition, offset) = placed.get(0, *value).expect("found placed just above");
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
}
