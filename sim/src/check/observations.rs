//! Views of one run that several checkers share: sends paired with their
//! completions, the records consumers polled, each consumer's consecutive reads of
//! a partition, and each partition's committed log as a slice sorted by offset.
//! Each view costs one pass over the history or the final state, so checkers built
//! on them stay linear (times a logarithm) in the size of the run.

use super::findings::seconds;
use crate::final_state::{FinalState, PartitionSnapshot};
use crate::history::{History, Op, OpBody, OpType, PolledRecord, Value};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;

/// Where a checker saw a value stand at a partition offset, for violation details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Witness<'a> {
    /// A producer's send completed `ok` with this position.
    Acknowledged { node: &'a str, time: u64 },
    /// A consumer's poll returned it.
    Polled { node: &'a str, time: u64 },
    /// The final committed log holds it.
    CommittedLog,
}

impl Witness<'_> {
    pub(crate) fn acknowledged(op: &Op) -> Witness<'_> {
        Witness::Acknowledged { node: &op.node, time: op.time }
    }

    pub(crate) fn polled(op: &Op) -> Witness<'_> {
        Witness::Polled { node: &op.node, time: op.time }
    }
}

impl fmt::Display for Witness<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Witness::Acknowledged { node, time } => write!(f, "acknowledged to {node} at {}", seconds(*time)),
            Witness::Polled { node, time } => write!(f, "polled by {node} at {}", seconds(*time)),
            Witness::CommittedLog => f.write_str("in the committed log"),
        }
    }
}

/// A partition's committed log: the records of `committed()` below its high
/// watermark, exactly what `PartitionSnapshot::committed_records` yields, as a
/// slice. A log's records are sorted by offset, so the slice can be binary searched.
pub(crate) fn committed_log(snapshot: &PartitionSnapshot) -> &[(Offset, Value)] {
    let Some(replica) = snapshot.committed() else {
        return &[];
    };
    let count = replica.records.iter().take_while(|(offset, _)| *offset < replica.high_watermark).count();
    &replica.records[..count]
}

/// Every partition's committed log, computed once so lookups cost a logarithm.
pub(crate) fn committed_logs(final_state: &FinalState) -> BTreeMap<&TopicPartition, &[(Offset, Value)]> {
    final_state.partitions.iter().map(|(partition, snapshot)| (partition, committed_log(snapshot))).collect()
}

/// The value a sorted log holds at `offset`, if any.
pub(crate) fn value_at(log: &[(Offset, Value)], offset: Offset) -> Option<Value> {
    log.binary_search_by_key(&offset, |(record_offset, _)| *record_offset).ok().map(|index| log[index].1)
}

/// Every record a consumer reported reading, in history order, with the poll op.
/// A poll that failed read nothing; `ok` and `info` polls count, since any record
/// they carry was really returned by a broker.
pub(crate) fn polled_records(history: &History) -> impl Iterator<Item = (&Op, &PolledRecord)> {
    history.ops.iter().filter(|op| matches!(op.kind, OpType::Ok | OpType::Info)).flat_map(|op| {
        let records: &[PolledRecord] = match &op.body {
            OpBody::Poll { records } => records,
            _ => &[],
        };
        records.iter().map(move |record| (op, record))
    })
}

/// A send completed `ok`: the broker placed `value` at `partition`/`offset`.
pub(crate) struct AcknowledgedSend<'a> {
    pub(crate) op: &'a Op,
    pub(crate) value: Value,
    pub(crate) partition: Option<&'a TopicPartition>,
    pub(crate) offset: Option<Offset>,
}

/// Every `ok` send, in history order.
pub(crate) fn acknowledged_sends(history: &History) -> impl Iterator<Item = AcknowledgedSend<'_>> {
    history.ops.iter().filter_map(|op| match &op.body {
        OpBody::Send { value, partition, offset, .. } if op.kind == OpType::Ok => {
            Some(AcknowledgedSend { op, value: *value, partition: partition.as_ref(), offset: *offset })
        }
        _ => None,
    })
}

/// One send's invoke and, if it came, its completion (`ok`, `fail` or `info`).
pub(crate) struct SendPair<'a> {
    pub(crate) invoke: &'a Op,
    pub(crate) value: Value,
    pub(crate) completion: Option<&'a Op>,
}

/// Every invoked send in invoke order, paired with its completion by value (values
/// are unique per run). A completion with no open invoke of its value is ignored.
pub(crate) fn paired_sends(history: &History) -> Vec<SendPair<'_>> {
    let mut pairs: Vec<SendPair<'_>> = Vec::new();
    // Keyed by node too: pipeline members may send the same output value at once
    // (a zombie and its successor), and each completion belongs to its own invoke.
    let mut open: BTreeMap<(&str, Value), usize> = BTreeMap::new();
    for op in &history.ops {
        let OpBody::Send { value, .. } = &op.body else {
            continue;
        };
        if op.kind == OpType::Invoke {
            open.insert((&op.node, *value), pairs.len());
            pairs.push(SendPair { invoke: op, value: *value, completion: None });
        } else if let Some(index) = open.remove(&(&*op.node, *value)) {
            pairs[index].completion = Some(op);
        }
    }
    pairs
}

/// One record as one consumer read it.
#[derive(Clone, Copy)]
pub(crate) struct Read<'a> {
    pub(crate) op: &'a Op,
    pub(crate) record: &'a PolledRecord,
}

/// Calls `visit(previous, current)` for each pair of consecutive reads of one
/// partition by one consumer node, in history order. A `Seek` of that node and
/// partition, or a `ClientStart` of that node, forgets the previous read: the next
/// read after it has no predecessor and is never visited as a `current`.
pub(crate) fn for_each_consecutive_read<'a>(
    history: &'a History,
    mut visit: impl FnMut(Read<'a>, Read<'a>) -> ControlFlow<()>,
) {
    let mut last_reads: BTreeMap<&'a str, BTreeMap<&'a TopicPartition, Read<'a>>> = BTreeMap::new();
    for op in &history.ops {
        match &op.body {
            OpBody::ClientStart => {
                last_reads.remove(&*op.node);
            }
            OpBody::Seek { partition, .. } => {
                if let Some(node_reads) = last_reads.get_mut(&*op.node) {
                    node_reads.remove(partition);
                }
            }
            OpBody::Poll { records } if matches!(op.kind, OpType::Ok | OpType::Info) => {
                let node_reads = last_reads.entry(&op.node).or_default();
                for record in records {
                    let current = Read { op, record };
                    if let Some(previous) = node_reads.insert(&record.partition, current) {
                        if visit(previous, current).is_break() {
                            return;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn committed_log_matches_committed_records() {
        let snapshot = partition_snapshot(1, &[1, 2], 2, &[(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))]);
        let slice: Vec<_> = committed_log(&snapshot).to_vec();
        let iterated: Vec<_> = snapshot.committed_records().copied().collect();
        assert_eq!(slice, iterated);
        assert_eq!(slice.len(), 2);
        assert_eq!(value_at(&slice, Offset(1)), Some(value(1, 1)));
        assert_eq!(value_at(&slice, Offset(2)), None);
    }

    #[test]
    fn paired_sends_match_completions_by_value() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(1, "producer-1", value(1, 0));
        history.send_invoke(2, "producer-1", value(1, 1));
        history.send_ok(3, "producer-1", value(1, 1), 0, 0);
        let history = history.build();
        let pairs = paired_sends(&history);
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].completion.is_none());
        assert_eq!(pairs[1].completion.map(|op| op.time), Some(3_000));
    }

    /// Two pipeline members sending the same output value (seed 5 of
    /// pipeline-exactly-once): each completion pairs with its own node's invoke.
    #[test]
    fn paired_sends_keep_apart_the_same_value_sent_by_two_nodes() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(1, "pipeline-1", value(1, 0));
        history.send_invoke(2, "pipeline-2", value(1, 0));
        history.send_ok(3, "pipeline-2", value(1, 0), 0, 0);
        history.send_fail(4, "pipeline-1", value(1, 0));
        let history = history.build();
        let pairs = paired_sends(&history);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].completion.map(|op| op.time), Some(4_000));
        assert_eq!(pairs[1].completion.map(|op| op.time), Some(3_000));
    }

    #[test]
    fn seek_and_client_start_forget_the_previous_read() {
        let mut history = HistoryBuilder::new();
        history.poll(1, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.seek(2, "consumer-1", 0, 0);
        history.poll(3, "consumer-1", &[(0, 0, value(1, 0))]);
        history.client_start(4, "consumer-1");
        history.poll(5, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        let history = history.build();
        let mut pairs = Vec::new();
        for_each_consecutive_read(&history, |previous, current| {
            pairs.push((previous.op.time / 1000, previous.record.offset.0, current.op.time / 1000, current.record.offset.0));
            ControlFlow::Continue(())
        });
        assert_eq!(pairs, vec![(1, 0, 1, 1), (5, 0, 5, 1)]);
    }
}
