//! Builders for the small hand-written histories and final states that the
//! checkers' tests feed them. Times are given in simulated milliseconds; every
//! partition belongs to the topic `events`.

use crate::final_state::{ConsumerSnapshot, FinalState, PartitionSnapshot, ReplicaSnapshot, TransactionFate, TransactionalBatch};
use crate::history::{History, OpBody, OpType, PolledRecord, Value};
use kafsim_model::{LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use std::sync::Arc;

pub(crate) fn value(producer: u32, sequence: u64) -> Value {
    Value { producer, sequence }
}

pub(crate) fn partition(index: u32) -> TopicPartition {
    TopicPartition::new("events", index)
}

#[derive(Default)]
pub(crate) struct HistoryBuilder {
    history: History,
}

impl HistoryBuilder {
    pub(crate) fn new() -> HistoryBuilder {
        HistoryBuilder::default()
    }

    pub(crate) fn build(self) -> History {
        self.history
    }

    fn push(&mut self, time_ms: u64, node: &str, kind: OpType, body: OpBody) -> &mut HistoryBuilder {
        let node: Arc<str> = Arc::from(node);
        self.history.push(time_ms * 1000, &node, kind, body);
        self
    }

    pub(crate) fn send_invoke(&mut self, time_ms: u64, node: &str, value: Value) -> &mut HistoryBuilder {
        let body = OpBody::Send { value, partition: None, offset: None, error: None };
        self.push(time_ms, node, OpType::Invoke, body)
    }

    pub(crate) fn send_ok(&mut self, time_ms: u64, node: &str, value: Value, index: u32, offset: u64) -> &mut HistoryBuilder {
        let body = OpBody::Send { value, partition: Some(partition(index)), offset: Some(Offset(offset)), error: None };
        self.push(time_ms, node, OpType::Ok, body)
    }

    pub(crate) fn send_fail(&mut self, time_ms: u64, node: &str, value: Value) -> &mut HistoryBuilder {
        let body = OpBody::Send { value, partition: None, offset: None, error: Some("NotEnoughReplicas".to_string()) };
        self.push(time_ms, node, OpType::Fail, body)
    }

    /// A send completed `info`: its answer was lost, it may or may not be in the log.
    pub(crate) fn send_info(&mut self, time_ms: u64, node: &str, value: Value) -> &mut HistoryBuilder {
        let body = OpBody::Send { value, partition: None, offset: None, error: Some("NetworkTimeout".to_string()) };
        self.push(time_ms, node, OpType::Info, body)
    }

    /// One transaction of `node` whose values are each sent and acknowledged at
    /// `(partition index, offset)`, invoked at `time_ms` and ended as `outcome`
    /// (`Ok` committed, `Fail` aborted, `Info` unknown; `Invoke` leaves it open).
    pub(crate) fn transaction(&mut self, time_ms: u64, node: &str, number: u64, sends: &[(Value, u32, u64)], outcome: OpType) -> &mut HistoryBuilder {
        let values: Vec<Value> = sends.iter().map(|(value, _, _)| *value).collect();
        self.txn(time_ms, node, OpType::Invoke, number, &values);
        for &(value, index, offset) in sends {
            self.acked_send(time_ms + 1, node, value, index, offset);
        }
        if outcome != OpType::Invoke {
            self.txn(time_ms + 5, node, outcome, number, &values);
        }
        self
    }

    /// An invoke at `time_ms` acknowledged one millisecond later.
    pub(crate) fn acked_send(&mut self, time_ms: u64, node: &str, value: Value, index: u32, offset: u64) -> &mut HistoryBuilder {
        self.send_invoke(time_ms, node, value);
        self.send_ok(time_ms + 1, node, value, index, offset)
    }

    /// One `ok` poll returning `(partition index, offset, value)` records.
    pub(crate) fn poll(&mut self, time_ms: u64, node: &str, records: &[(u32, u64, Value)]) -> &mut HistoryBuilder {
        let records = records
            .iter()
            .map(|&(index, offset, value)| PolledRecord { partition: partition(index), offset: Offset(offset), value })
            .collect();
        self.push(time_ms, node, OpType::Ok, OpBody::Poll { records })
    }

    /// A poll completed as `kind`: only `ok` and `info` polls count as reads.
    pub(crate) fn poll_as(&mut self, time_ms: u64, node: &str, kind: OpType, records: &[(u32, u64, Value)]) -> &mut HistoryBuilder {
        self.push(time_ms, node, kind, OpBody::Poll { records: Self::records(records) })
    }

    pub(crate) fn seek(&mut self, time_ms: u64, node: &str, index: u32, offset: u64) -> &mut HistoryBuilder {
        let body = OpBody::Seek { partition: partition(index), offset: Offset(offset), reason: "rebalance".to_string() };
        self.push(time_ms, node, OpType::Ok, body)
    }

    fn records(records: &[(u32, u64, Value)]) -> Vec<PolledRecord> {
        records.iter().map(|&(index, offset, value)| PolledRecord { partition: partition(index), offset: Offset(offset), value }).collect()
    }

    /// The application of group `g1` processed `(partition index, offset, value)` records.
    pub(crate) fn process(&mut self, time_ms: u64, node: &str, records: &[(u32, u64, Value)]) -> &mut HistoryBuilder {
        let body = OpBody::Process { group: "g1".into(), records: Self::records(records) };
        self.push(time_ms, node, OpType::Ok, body)
    }

    /// A commit by a member of group `g1` of `(partition index, offset)` pairs, invoked and then completed as `kind`.
    pub(crate) fn commit(&mut self, time_ms: u64, node: &str, generation: i32, offsets: &[(u32, u64)], kind: OpType) -> &mut HistoryBuilder {
        let offsets: Vec<(TopicPartition, Offset)> = offsets.iter().map(|&(index, offset)| (partition(index), Offset(offset))).collect();
        let invoke = OpBody::Commit { group: "g1".into(), generation, offsets: offsets.clone(), error: None };
        self.push(time_ms, node, OpType::Invoke, invoke);
        let error = (kind != OpType::Ok).then(|| "IllegalGeneration".to_string());
        self.push(time_ms + 1, node, kind, OpBody::Commit { group: "g1".into(), generation, offsets, error })
    }

    /// A member of group `g1` owns these partitions (by index) in `generation`.
    pub(crate) fn assign(&mut self, time_ms: u64, node: &str, generation: i32, partitions: &[u32]) -> &mut HistoryBuilder {
        let partitions = partitions.iter().map(|&index| partition(index)).collect();
        self.push(time_ms, node, OpType::Ok, OpBody::Assign { group: "g1".into(), generation, partitions })
    }

    pub(crate) fn revoke(&mut self, time_ms: u64, node: &str, generation: i32, partitions: &[u32]) -> &mut HistoryBuilder {
        let partitions = partitions.iter().map(|&index| partition(index)).collect();
        self.push(time_ms, node, OpType::Ok, OpBody::Revoke { group: "g1".into(), generation, partitions, reason: "rebalance".into() })
    }

    /// A transaction's invoke or completion (`Ok` committed, `Fail` aborted, `Info` unknown).
    pub(crate) fn txn(&mut self, time_ms: u64, node: &str, kind: OpType, number: u64, values: &[Value]) -> &mut HistoryBuilder {
        let error = match kind {
            OpType::Fail => Some("aborted".to_string()),
            OpType::Info => Some("unknown".to_string()),
            _ => None,
        };
        self.push(time_ms, node, kind, OpBody::Txn { number, values: values.to_vec(), error })
    }

    /// A pipeline member's rewind to its committed offsets, recorded as an
    /// `info` start.
    pub(crate) fn rewind(&mut self, time_ms: u64, node: &str) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::ClientStart)
    }

    pub(crate) fn client_start(&mut self, time_ms: u64, node: &str) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Ok, OpBody::ClientStart)
    }

    /// A connection the node opened closed, as the shell records it.
    pub(crate) fn connection_closed(&mut self, time_ms: u64, node: &str, event: &str) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::Connection { event: event.to_string() })
    }

    pub(crate) fn heal(&mut self, time_ms: u64) -> &mut HistoryBuilder {
        self.push(time_ms, "nemesis", OpType::Info, OpBody::Heal)
    }

    pub(crate) fn fault(&mut self, time_ms: u64, description: &str) -> &mut HistoryBuilder {
        self.push(time_ms, "nemesis", OpType::Info, OpBody::Fault { description: description.to_string() })
    }

    pub(crate) fn panic(&mut self, time_ms: u64, node: &str, message: &str) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::Panic { message: message.to_string() })
    }

    pub(crate) fn timeout(&mut self, time_ms: u64, message: &str) -> &mut HistoryBuilder {
        self.push(time_ms, "runner", OpType::Info, OpBody::Timeout { message: message.to_string() })
    }

    /// `node` became the KRaft quorum's leader in `epoch`.
    pub(crate) fn controller_elected(&mut self, time_ms: u64, node: &str, epoch: u32, voter: bool) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::ControllerElected { epoch, voter })
    }

    pub(crate) fn controller_change(&mut self, time_ms: u64, node: &str, event: &str) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::ControllerChange { event: event.to_string() })
    }

    /// `node` applied metadata log entries from `offset` on, one per digest, in
    /// its process lifetime `incarnation`.
    pub(crate) fn metadata_applied(&mut self, time_ms: u64, node: &str, incarnation: u32, offset: u64, digests: &[u64]) -> &mut HistoryBuilder {
        self.push(time_ms, node, OpType::Info, OpBody::MetadataApplied { incarnation, offset, digests: digests.to_vec() })
    }
}

/// One replica holding `records` (offset, value), with the given high watermark;
/// its log end offset is one past its last record.
pub(crate) fn replica(broker: u32, high_watermark: u64, records: &[(u64, Value)]) -> ReplicaSnapshot {
    let log_end_offset = records.last().map_or(0, |(offset, _)| offset + 1);
    ReplicaSnapshot {
        broker: NodeId(broker),
        records: records.iter().map(|&(offset, value)| (Offset(offset), value)).collect(),
        high_watermark: Offset(high_watermark),
        log_end_offset: Offset(log_end_offset),
        leader_epoch: LeaderEpoch(1),
        is_leader: false,
        transactions: Vec::new(),
    }
}

/// A healthy partition: `leader` leads, every broker in `isr` holds the same
/// records with the same high watermark.
pub(crate) fn partition_snapshot(leader: u32, isr: &[u32], high_watermark: u64, records: &[(u64, Value)]) -> PartitionSnapshot {
    let replicas = isr
        .iter()
        .map(|&broker| {
            let mut snapshot = replica(broker, high_watermark, records);
            snapshot.is_leader = broker == leader;
            (NodeId(broker), snapshot)
        })
        .collect();
    PartitionSnapshot {
        leader: Some(NodeId(leader)),
        leader_epoch: LeaderEpoch(1),
        isr: isr.iter().map(|&broker| NodeId(broker)).collect(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        replicas,
    }
}

/// `snapshot` whose every replica holds transactional batches `(first offset,
/// last offset, fate)`, the n-th written by producer id n + 1.
pub(crate) fn with_transactions(mut snapshot: PartitionSnapshot, batches: &[(u64, u64, TransactionFate)]) -> PartitionSnapshot {
    let transactions: Vec<TransactionalBatch> = batches
        .iter()
        .enumerate()
        .map(|(index, &(first, last, fate))| TransactionalBatch { first_offset: Offset(first), last_offset: Offset(last), producer_id: ProducerId(index as u64 + 1), fate })
        .collect();
    for replica in snapshot.replicas.values_mut() {
        replica.transactions = transactions.clone();
    }
    snapshot
}

/// A final state with the given partitions (by index), no consumers, not drained.
pub(crate) fn final_state(partitions: Vec<(u32, PartitionSnapshot)>) -> FinalState {
    FinalState {
        partitions: partitions.into_iter().map(|(index, snapshot)| (partition(index), snapshot)).collect(),
        ..FinalState::default()
    }
}

/// Adds group `g1` on topic `events` with these members.
pub(crate) fn with_group(mut state: FinalState, members: &[&str]) -> FinalState {
    let members = members.iter().map(|member| member.to_string()).collect();
    state.groups.insert("g1".to_string(), crate::final_state::GroupSnapshot { topic: "events".to_string(), members });
    state
}

/// Adds a consumer whose final positions are `(partition index, offset)` pairs.
pub(crate) fn with_consumer(mut state: FinalState, name: &str, positions: &[(u32, u64)]) -> FinalState {
    let positions = positions.iter().map(|&(index, offset)| (partition(index), Offset(offset))).collect();
    state.consumers.insert(name.to_string(), ConsumerSnapshot { positions });
    state
}

/// One step of a random consumer history (`random_reads`).
#[derive(Clone, Debug)]
pub(crate) enum ReadStep {
    Poll { node: u8, kind: OpType, records: Vec<(u32, u64, u64)> },
    Seek { node: u8, partition: u32 },
    ClientStart { node: u8 },
    Txn { kind: OpType, sequences: Vec<u64> },
}

/// Random small histories of three consumers reading three partitions, with
/// seeks, restarts and transactions, and final states whose committed logs hold
/// some of the offsets: for differential tests of the read-based checkers. All
/// values come from producer 1, with sequences below 12, so they collide often.
pub(crate) fn random_reads() -> impl proptest::strategy::Strategy<Value = (History, FinalState)> {
    use proptest::prelude::*;
    let kind = || prop_oneof![Just(OpType::Ok), Just(OpType::Info), Just(OpType::Fail), Just(OpType::Invoke)];
    let step = prop_oneof![
        6 => (0u8..3, kind(), proptest::collection::vec((0u32..3, 0u64..10, 0u64..12), 0..5))
            .prop_map(|(node, kind, records)| ReadStep::Poll { node, kind, records }),
        1 => (0u8..3, 0u32..3).prop_map(|(node, partition)| ReadStep::Seek { node, partition }),
        1 => (0u8..3).prop_map(|node| ReadStep::ClientStart { node }),
        1 => (kind(), proptest::collection::vec(0u64..12, 0..3)).prop_map(|(kind, sequences)| ReadStep::Txn { kind, sequences }),
    ];
    let log = (proptest::collection::btree_map(0u64..10, 0u64..12, 0..8), 0u64..11);
    (proptest::collection::vec(step, 0..40), proptest::collection::vec(proptest::option::of(log), 3)).prop_map(|(steps, logs)| {
        let mut history = HistoryBuilder::new();
        for (index, step) in steps.into_iter().enumerate() {
            let time = index as u64;
            match step {
                ReadStep::Poll { node, kind, records } => {
                    let records: Vec<(u32, u64, Value)> = records.into_iter().map(|(index, offset, sequence)| (index, offset, value(1, sequence))).collect();
                    history.poll_as(time, &format!("consumer-{node}"), kind, &records);
                }
                ReadStep::Seek { node, partition } => {
                    history.seek(time, &format!("consumer-{node}"), partition, 0);
                }
                ReadStep::ClientStart { node } => {
                    history.client_start(time, &format!("consumer-{node}"));
                }
                ReadStep::Txn { kind, sequences } => {
                    let values: Vec<Value> = sequences.into_iter().map(|sequence| value(1, sequence)).collect();
                    history.txn(time, "producer-1", kind, index as u64, &values);
                }
            }
        }
        let partitions = logs
            .into_iter()
            .enumerate()
            .filter_map(|(index, log)| {
                let (records, high_watermark) = log?;
                let records: Vec<(u64, Value)> = records.into_iter().map(|(offset, sequence)| (offset, value(1, sequence))).collect();
                Some((index as u32, partition_snapshot(1, &[1], high_watermark, &records)))
            })
            .collect();
        (history.build(), final_state(partitions))
    })
}

/// Each consumer's consecutive reads of a partition, as the checkers computed
/// them before `Views` (trees keyed by node name and partition): the oracle that
/// differential tests hold `Views::consecutive_reads` to.
pub(crate) fn consecutive_reads_oracle(history: &History) -> Vec<(&crate::history::Op, &PolledRecord, &crate::history::Op, &PolledRecord)> {
    use std::collections::BTreeMap;
    let mut pairs = Vec::new();
    let mut last_reads: BTreeMap<&str, BTreeMap<&TopicPartition, (&crate::history::Op, &PolledRecord)>> = BTreeMap::new();
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
                    if let Some((previous_op, previous_record)) = node_reads.insert(&record.partition, (op, record)) {
                        pairs.push((previous_op, previous_record, op, record));
                    }
                }
            }
            _ => {}
        }
    }
    pairs
}
