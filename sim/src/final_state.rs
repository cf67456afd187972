//! What the cluster looked like once faults healed and the workload drained:
//! every replica's log, with the fate of each transactional batch in it, and
//! what each consumer had reached.

use crate::history::Value;
use kafsim_model::{LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
use serde::Serialize;
use std::collections::BTreeMap;

/// One replica's log at the end of the run, as its broker held it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaSnapshot {
    pub broker: NodeId,
    /// Every record in the replica's log, by offset from 0, aborted
    /// transactions' included (they stay in Kafka's log; `transactions` says
    /// which they are). A record the workload did not write (a control batch's
    /// marker, anything unparseable) is absent here but counted in `log_end_offset`.
    pub records: Vec<(Offset, Value)>,
    pub high_watermark: Offset,
    pub log_end_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    /// Whether this broker believed it led the partition.
    pub is_leader: bool,
    /// The transactional data batches of this log (KIP-98), in offset order,
    /// each with its fate as this log's control batches tell it. Empty where no
    /// transaction wrote.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<TransactionalBatch>,
}

/// As derived, but `transactions` is left out while empty: the trace hash
/// covers the final state, and runs without transactions keep their hashes.
impl std::hash::Hash for ReplicaSnapshot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.broker.hash(state);
        self.records.hash(state);
        self.high_watermark.hash(state);
        self.log_end_offset.hash(state);
        self.leader_epoch.hash(state);
        self.is_leader.hash(state);
        if !self.transactions.is_empty() {
            self.transactions.hash(state);
        }
    }
}

impl ReplicaSnapshot {
    /// The fate of the transaction that wrote `offset`; None where no
    /// transaction wrote it (a plain or idempotent producer's record, a marker,
    /// or beyond the log).
    pub fn transaction_fate(&self, offset: Offset) -> Option<TransactionFate> {
        let after = self.transactions.partition_point(|batch| batch.first_offset <= offset);
        let batch = self.transactions[..after].last()?;
        (offset <= batch.last_offset).then_some(batch.fate)
    }
}

/// How a transaction ended in one partition's log: the control batch (KIP-98's
/// marker) its coordinator wrote there, or none by the end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionFate {
    Committed,
    Aborted,
    /// No marker followed: the transaction still held the last stable offset
    /// back when the run ended.
    Open,
}

/// A run of consecutive offsets one transaction wrote in one partition (one
/// batch, or several adjacent batches of the same transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TransactionalBatch {
    pub first_offset: Offset,
    pub last_offset: Offset,
    pub producer_id: ProducerId,
    pub fate: TransactionFate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionSnapshot {
    /// The controller's view.
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub isr: Vec<NodeId>,
    /// KIP-966's eligible leader replicas; empty unless the cluster turns them on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<NodeId>,
    /// KIP-966's last known leader, kept while the ISR and ELR are empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_known_elr: Vec<NodeId>,
    pub replicas: BTreeMap<NodeId, ReplicaSnapshot>,
}

/// As derived, but KIP-966's `elr` and `last_known_elr` are left out while
/// empty: the trace hash covers the final state, and runs without eligible
/// leader replicas keep the hashes they had before them.
impl std::hash::Hash for PartitionSnapshot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.leader.hash(state);
        self.leader_epoch.hash(state);
        self.isr.hash(state);
        if !self.elr.is_empty() {
            self.elr.hash(state);
        }
        if !self.last_known_elr.is_empty() {
            self.last_known_elr.hash(state);
        }
        self.replicas.hash(state);
    }
}

impl PartitionSnapshot {
    /// The committed log: the controller's leader's records below its high watermark.
    /// With no leader, the ISR member that holds the most committed records;
    /// with an empty ISR (KIP-966), the eligible leader replica that does, and
    /// with an empty ELR too, the last known leader, which will lead next.
    pub fn committed(&self) -> Option<&ReplicaSnapshot> {
        if let Some(leader) = self.leader.and_then(|leader| self.replicas.get(&leader)) {
            return Some(leader);
        }
        let candidates = [&self.isr, &self.elr, &self.last_known_elr].into_iter().find(|candidates| !candidates.is_empty()).unwrap_or(&self.isr);
        candidates.iter().filter_map(|broker| self.replicas.get(broker)).max_by_key(|replica| replica.high_watermark)
    }

    /// The committed records: `committed()`'s records below its high watermark.
    pub fn committed_records(&self) -> impl Iterator<Item = &(Offset, Value)> {
        let replica = self.committed();
        let high_watermark = replica.map(|replica| replica.high_watermark).unwrap_or_default();
        replica.into_iter().flat_map(|replica| replica.records.iter()).take_while(move |(offset, _)| *offset < high_watermark)
    }
}

/// Where one consumer stood at the end of the drain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ConsumerSnapshot {
    pub positions: BTreeMap<TopicPartition, Offset>,
}

/// A consumer group at the end: the topic it subscribes to and its consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct GroupSnapshot {
    pub topic: String,
    pub members: Vec<String>,
}

/// A consume-transform-produce pipeline at the end: which topic it read and
/// which it wrote, and whether it drained (every input read, processed and
/// committed by a settled, stable group). Its output topic's records include
/// those of aborted transactions, as Kafka's log does; their replicas'
/// `transactions` tell which records a read_committed reader sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PipelineSnapshot {
    pub group: String,
    pub from: String,
    pub to: String,
    pub drained: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FinalState {
    pub partitions: BTreeMap<TopicPartition, PartitionSnapshot>,
    pub consumers: BTreeMap<String, ConsumerSnapshot>,
    /// Whether consumers existed and ran their final drain.
    pub drained: bool,
    /// Consumer groups by name (empty when no consumer uses a group).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupSnapshot>,
    /// Pipelines, one per `[[pipelines]]` block (empty without pipelines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<PipelineSnapshot>,
}

/// As derived, but `groups` is left out while empty: the trace hash covers the
/// final state, and runs without groups keep the hashes they had before groups existed.
impl std::hash::Hash for FinalState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.partitions.hash(state);
        self.consumers.hash(state);
        self.drained.hash(state);
        if !self.groups.is_empty() {
            self.groups.hash(state);
        }
        if !self.pipelines.is_empty() {
            self.pipelines.hash(state);
        }
    }
}
