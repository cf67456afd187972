//! The views of one run that the checkers share, built once per run by
//! `check_all` rather than once per checker: the records consumers polled, the
//! sends brokers acknowledged, sends paired with their completions, each
//! consumer's consecutive reads of a partition, each partition's committed
//! log, and the few ops of kinds that only some checkers read. Nodes and
//! partitions are numbered once (`NodeKey`, `PartitionKey`), so checkers key
//! their own tables by small integers instead of comparing names.
//!
//! Building costs one pass over the history (sized by the counts the history
//! keeps as it is recorded) and one over the final state. The numbering
//! follows the history's order, never a hash, so it is as deterministic as the run.

use super::observations::committed_log;
use super::transactions::{self, Outcome, Transaction, TransactionTracker};
use super::value_map::{ValueMap, ValueSet};
use crate::final_state::{FinalState, PartitionSnapshot, ReplicaSnapshot, TransactionFate};
use crate::history::{History, Op, OpBody, OpType, PolledRecord, Value};
use kafsim_model::{Offset, TopicPartition};
use kafsim_model::hash::StableHasher;
use std::cell::OnceCell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A node of the run (`producer-1`, `consumer-2`), numbered by first appearance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeKey(pub(crate) u32);

/// A partition of the run: the final state's partitions first, numbered in their
/// order, then any other the history names, by first appearance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PartitionKey(pub(crate) u32);

impl PartitionKey {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Names (nodes, groups, topics) numbered by first appearance. Lookups compare
/// `Arc` pointers first: a run's ops share their node's name, so the pointer
/// usually matches at once; the text decides when it does not.
#[derive(Default)]
pub(crate) struct Names<'a> {
    names: Vec<&'a Arc<str>>,
    /// Every `Arc` seen for a name, with the name's number; bounded, since a
    /// hand-written history makes a new `Arc` per op.
    pointers: Vec<(&'a Arc<str>, u32)>,
}

/// How many distinct `Arc`s `Names` remembers before it compares text only.
const NAME_POINTERS_MAX: usize = 64;

impl<'a> Names<'a> {
    /// The number of `name`, given a new one if it is new.
    #[inline]
    pub(crate) fn key(&mut self, name: &'a Arc<str>) -> u32 {
        match self.find_pointer(name) {
            Some(number) => number,
            None => self.key_by_text(name),
        }
    }

    /// The number of `name`, if it has one.
    #[inline]
    pub(crate) fn find(&mut self, name: &'a Arc<str>) -> Option<u32> {
        self.find_pointer(name).or_else(|| self.find_by_text(name))
    }

    #[inline]
    fn find_pointer(&self, name: &Arc<str>) -> Option<u32> {
        self.pointers.iter().find(|(known, _)| Arc::ptr_eq(known, name)).map(|&(_, number)| number)
    }

    #[inline(never)]
    fn key_by_text(&mut self, name: &'a Arc<str>) -> u32 {
        if let Some(number) = self.find_by_text(name) {
            return number;
        }
        let number = self.names.len() as u32;
        self.names.push(name);
        self.remember(name, number);
        number
    }

    #[inline(never)]
    fn find_by_text(&mut self, name: &'a Arc<str>) -> Option<u32> {
        let number = self.find_text(name)?;
        self.remember(name, number);
        Some(number)
    }

    /// The number of `name` without remembering its pointer.
    pub(crate) fn find_text(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|known| ***known == *name).map(|number| number as u32)
    }

    fn remember(&mut self, name: &'a Arc<str>, number: u32) {
        if self.pointers.len() < NAME_POINTERS_MAX {
            self.pointers.push((name, number));
        }
    }

    pub(crate) fn name(&self, number: u32) -> &'a str {
        self.names[number as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// One partition as the checkers see it at the end of the run.
pub(crate) struct PartitionView<'a> {
    pub(crate) partition: &'a TopicPartition,
    /// Its final snapshot; None for a partition only the history names.
    pub(crate) snapshot: Option<&'a PartitionSnapshot>,
    /// `snapshot.committed()`: the replica whose log is the committed one.
    pub(crate) committed: Option<&'a ReplicaSnapshot>,
    /// `committed_log(snapshot)`, sorted by offset; empty without a snapshot.
    /// It holds the records of every transaction, aborted ones included, as
    /// Kafka's log does: `fate` and `is_visible` tell them apart.
    pub(crate) log: &'a [(Offset, Value)],
}

impl PartitionView<'_> {
    /// The fate of the transaction that wrote the committed log's record at
    /// `offset`; None for a record no transaction wrote, or an offset beyond the
    /// committed log (at or above its high watermark).
    pub(crate) fn fate(&self, offset: Offset) -> Option<TransactionFate> {
        let replica = self.committed.filter(|replica| offset < replica.high_watermark)?;
        replica.transaction_fate(offset)
    }

    /// Whether the committed log's record at `offset` certainly stands for a
    /// read_committed reader: no transaction wrote it, or its transaction
    /// committed. A record of an aborted transaction never does, and one of a
    /// transaction still open at the end may go either way.
    pub(crate) fn is_visible(&self, offset: Offset) -> bool {
        matches!(self.fate(offset), None | Some(TransactionFate::Committed))
    }
}

/// One record as one consumer read it, with where it stands in the history.
/// Its offset and value are copied in and its poll is named by index, so that
/// the checkers, which walk every read, read this list alone (40 bytes a read)
/// and not the polls' ops and records too; `Views::read_op` and
/// `Views::read_record` find those for a violation's details.
#[derive(Clone, Copy)]
pub(crate) struct Read {
    pub(crate) offset: Offset,
    pub(crate) value: Value,
    /// The index of the poll's op in the history.
    pub(crate) op_index: u32,
    /// The index of the record among the poll's records.
    record_index: u32,
    pub(crate) node: NodeKey,
    pub(crate) partition: PartitionKey,
}

/// A send completed `ok`: the broker placed `value` at `partition`/`offset`.
pub(crate) struct AcknowledgedSend<'a> {
    pub(crate) op: &'a Op,
    /// The index of `op` in the history.
    pub(crate) op_index: u32,
    pub(crate) value: Value,
    pub(crate) partition: Option<(&'a TopicPartition, PartitionKey)>,
    pub(crate) offset: Option<Offset>,
    /// The transaction the send was made in (an index into
    /// `Views::transactions`), if any.
    pub(crate) transaction: Option<u32>,
}

/// One send's invoke and, if it came, its completion (`ok`, `fail` or `info`).
pub(crate) struct SendPair<'a> {
    pub(crate) invoke: &'a Op,
    pub(crate) value: Value,
    pub(crate) completion: Option<&'a Op>,
    /// The partition the completion names, if it names one.
    pub(crate) completion_partition: Option<(&'a TopicPartition, PartitionKey)>,
    pub(crate) node: NodeKey,
    /// The transaction the send was made in (an index into
    /// `Views::transactions`), if any.
    pub(crate) transaction: Option<u32>,
}

/// What forgets a consumer's previous reads: a `ClientStart` of the node (every
/// partition) or a `Seek` of one partition.
struct ReadReset {
    op_index: u32,
    node: NodeKey,
    partition: Option<PartitionKey>,
}

pub(crate) struct Views<'a> {
    pub(crate) history: &'a History,
    pub(crate) final_state: &'a FinalState,
    nodes: Names<'a>,
    topics: Names<'a>,
    /// Per topic number: its partitions' numbers and keys, sorted by number.
    topic_partitions: Vec<Vec<(u32, PartitionKey)>>,
    partitions: Vec<PartitionView<'a>>,
    /// The partition `partition_key` looked up last, and its key.
    last_partition: Option<(&'a TopicPartition, PartitionKey)>,
    final_partition_count: usize,
    reads: Vec<Read>,
    acknowledged: Vec<AcknowledgedSend<'a>>,
    send_pairs: Vec<SendPair<'a>>,
    /// Pairs of indexes into `reads`: (previous, current).
    consecutive_reads: Vec<(u32, u32)>,
    heal_time: Option<u64>,
    /// One more than the largest sequence sent.
    sequence_bound: u64,
    uncommitted: OnceCell<ValueSet>,
    /// Every transaction the history began, in the order of their invokes.
    transactions: Vec<Transaction<'a>>,
    /// Indexes into `acknowledged` of the sends acknowledged with a position,
    /// sorted by that position: built at the first lookup.
    acknowledged_by_position: OnceCell<Vec<(PartitionKey, Offset, u32)>>,
    group_ops: Vec<&'a Op>,
    /// Assign, revoke, client start and ok poll ops, in history order: what a
    /// member owned when it read.
    membership_ops: Vec<&'a Op>,
    transaction_ops: Vec<&'a Op>,
    run_end_ops: Vec<&'a Op>,
    controller_elections: Vec<&'a Op>,
    metadata_applications: Vec<&'a Op>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(history: &'a History, final_state: &'a FinalState) -> Views<'a> {
        Views::build(history, final_state, None)
    }

    /// `new`, which also hashes the history's ops into `ops_hasher` in its one
    /// pass, as `history.ops.hash(ops_hasher)` would in a pass of its own
    /// (`crate::trace::trace_hash_after`).
    pub(crate) fn new_hashing(history: &'a History, final_state: &'a FinalState, ops_hasher: &mut StableHasher) -> Views<'a> {
        Views::build(history, final_state, Some(ops_hasher))
    }

    fn build(history: &'a History, final_state: &'a FinalState, ops_hasher: Option<&mut StableHasher>) -> Views<'a> {
        let mut views = Views {
            history,
            final_state,
            nodes: Names::default(),
            topics: Names::default(),
            topic_partitions: Vec::new(),
            partitions: Vec::with_capacity(final_state.partitions.len()),
            last_partition: None,
            final_partition_count: final_state.partitions.len(),
            reads: Vec::new(),
            acknowledged: Vec::new(),
            send_pairs: Vec::new(),
            consecutive_reads: Vec::new(),
            heal_time: None,
            sequence_bound: 0,
            uncommitted: OnceCell::new(),
            transactions: Vec::new(),
            acknowledged_by_position: OnceCell::new(),
            group_ops: Vec::new(),
            membership_ops: Vec::new(),
            transaction_ops: Vec::new(),
            run_end_ops: Vec::new(),
            controller_elections: Vec::new(),
            metadata_applications: Vec::new(),
        };
        for (partition, snapshot) in &final_state.partitions {
            let key = views.partition_key(partition);
            let view = &mut views.partitions[key.index()];
            view.snapshot = Some(snapshot);
            view.committed = snapshot.committed();
            view.log = committed_log(snapshot);
        }
        let resets = views.index_history(ops_hasher);
        views.consecutive_reads = consecutive_reads(&views.reads, &resets, views.nodes.len(), views.partitions.len());
        views
    }

    /// One pass over the history: reads, acknowledged and paired sends, the
    /// resets of consecutive reads, the heal, and the ops of the sparse kinds;
    /// and each op into `ops_hasher`, if given, while it is in the cache.
    fn index_history(&mut self, mut ops_hasher: Option<&mut StableHasher>) -> Vec<ReadReset> {
        let history = self.history;
        self.reserve(history);
        let mut resets = Vec::new();
        // Open invokes by node and value: pipeline members may send the same
        // output value at once (a zombie and its successor), and each completion
        // belongs to its own node's invoke.
        let mut open: ValueMap<u32> = ValueMap::with_sequence_bound(self.sequence_bound);
        let mut tracker = TransactionTracker::default();
        if let Some(hasher) = ops_hasher.as_deref_mut() {
            // A slice hashes as its length, then each element.
            hasher.write_usize(history.ops.len());
        }
        for (op_index, op) in history.ops.iter().enumerate() {
            let op_index = op_index as u32;
            if let Some(hasher) = ops_hasher.as_deref_mut() {
                op.hash(hasher);
            }
            match &op.body {
                OpBody::Send { value, partition, offset, .. } => {
                    let node = NodeKey(self.nodes.key(&op.node));
                    if op.kind == OpType::Invoke {
                        open.insert(node.0, *value, self.send_pairs.len() as u32);
                        let transaction = tracker.send_invoked(&self.transactions, node.0, *value);
                        let pair = SendPair { invoke: op, value: *value, completion: None, completion_partition: None, node, transaction };
                        self.send_pairs.push(pair);
                        continue;
                    }
                    let partition = partition.as_ref().map(|partition| (partition, self.partition_key(partition)));
                    let mut transaction = None;
                    if let Some(index) = open.remove(node.0, *value) {
                        let pair = &mut self.send_pairs[index as usize];
                        pair.completion = Some(op);
                        pair.completion_partition = partition;
                        transaction = pair.transaction;
                    }
                    if op.kind == OpType::Ok {
                        self.acknowledged.push(AcknowledgedSend { op, op_index, value: *value, partition, offset: *offset, transaction });
                    }
                }
                OpBody::Poll { records } if matches!(op.kind, OpType::Ok | OpType::Info) => {
                    self.membership_ops.push(op);
                    let node = NodeKey(self.nodes.key(&op.node));
                    for (record_index, record) in records.iter().enumerate() {
                        let partition = self.partition_key(&record.partition);
                        let record_index = record_index as u32;
                        self.reads.push(Read { offset: record.offset, value: record.value, op_index, record_index, node, partition });
                    }
                }
                OpBody::Seek { partition, .. } => {
                    let node = NodeKey(self.nodes.key(&op.node));
                    resets.push(ReadReset { op_index, node, partition: Some(self.partition_key(partition)) });
                }
                OpBody::ClientStart => {
                    self.membership_ops.push(op);
                    let node = NodeKey(self.nodes.key(&op.node));
                    resets.push(ReadReset { op_index, node, partition: None });
                }
                OpBody::Heal if self.heal_time.is_none() => self.heal_time = Some(op.time),
                OpBody::Assign { .. } | OpBody::Revoke { .. } => {
                    self.group_ops.push(op);
                    self.membership_ops.push(op);
                }
                OpBody::Commit { .. } | OpBody::Process { .. } => self.group_ops.push(op),
                OpBody::Txn { .. } => {
                    let node = NodeKey(self.nodes.key(&op.node));
                    tracker.transaction_op(&mut self.transactions, op, node.0);
                    self.transaction_ops.push(op);
                }
                OpBody::Panic { .. } | OpBody::Timeout { .. } => self.run_end_ops.push(op),
                OpBody::ControllerElected { .. } => self.controller_elections.push(op),
                OpBody::MetadataApplied { .. } => self.metadata_applications.push(op),
                _ => {}
            }
        }
        resets
    }

    /// Sizes the lists `index_history` fills, so that they never reallocate,
    /// and takes the sequence bound, from the history's tally (no pass of its own).
    fn reserve(&mut self, history: &History) {
        let tally = history.tally();
        self.sequence_bound = tally.sequence_bound;
        self.send_pairs.reserve_exact(tally.invokes);
        self.acknowledged.reserve_exact(tally.acknowledged);
        self.reads.reserve_exact(tally.polled_records);
    }

    /// The key of `partition`, given a new one if the run has not named it yet.
    #[inline]
    fn partition_key(&mut self, partition: &'a TopicPartition) -> PartitionKey {
        // Consecutive records of a poll mostly share their partition.
        if let Some((last, key)) = self.last_partition {
            if last.partition == partition.partition && Arc::ptr_eq(&last.topic, &partition.topic) {
                return key;
            }
        }
        let key = self.partition_key_by_name(partition);
        self.last_partition = Some((partition, key));
        key
    }

    fn partition_key_by_name(&mut self, partition: &'a TopicPartition) -> PartitionKey {
        let topic = self.topics.key(&partition.topic) as usize;
        if topic == self.topic_partitions.len() {
            self.topic_partitions.push(Vec::new());
        }
        let numbers = &mut self.topic_partitions[topic];
        match find_number(numbers, partition.partition) {
            Ok(key) => key,
            Err(index) => {
                let key = PartitionKey(self.partitions.len() as u32);
                numbers.insert(index, (partition.partition, key));
                self.partitions.push(PartitionView { partition, snapshot: None, committed: None, log: &[] });
                key
            }
        }
    }

    /// The key of `partition`, if the run names it.
    pub(crate) fn find_partition(&self, partition: &TopicPartition) -> Option<PartitionKey> {
        let topic = self.topics.find_text(&partition.topic)? as usize;
        find_number(&self.topic_partitions[topic], partition.partition).ok()
    }

    pub(crate) fn partition(&self, key: PartitionKey) -> &PartitionView<'a> {
        &self.partitions[key.index()]
    }

    /// The final state's partitions, in its order, with their keys.
    pub(crate) fn final_partitions(&self) -> impl Iterator<Item = (PartitionKey, &PartitionView<'a>)> {
        self.partitions[..self.final_partition_count].iter().enumerate().map(|(index, view)| (PartitionKey(index as u32), view))
    }

    /// How many partitions the run names.
    pub(crate) fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    pub(crate) fn node_name(&self, node: NodeKey) -> &'a str {
        self.nodes.name(node.0)
    }

    /// How many nodes the indexed ops name.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every record a consumer reported reading, in history order. A poll that
    /// failed read nothing; `ok` and `info` polls count, since any record they
    /// carry was really returned by a broker.
    pub(crate) fn reads(&self) -> &[Read] {
        &self.reads
    }

    /// The poll that returned `read`.
    pub(crate) fn read_op(&self, read: &Read) -> &'a Op {
        &self.history.ops[read.op_index as usize]
    }

    /// The record `read` is of, as its poll returned it.
    pub(crate) fn read_record(&self, read: &Read) -> &'a PolledRecord {
        match &self.read_op(read).body {
            OpBody::Poll { records } => &records[read.record_index as usize],
            body => unreachable!("a read names a poll, not {body:?}"),
        }
    }

    /// Every `ok` send, in history order.
    pub(crate) fn acknowledged_sends(&self) -> &[AcknowledgedSend<'a>] {
        &self.acknowledged
    }

    /// Every invoked send in invoke order, paired with its node's completion by
    /// value (values are unique per node). A completion with no open invoke of
    /// its node and value is ignored.
    pub(crate) fn send_pairs(&self) -> &[SendPair<'a>] {
        &self.send_pairs
    }

    /// Each pair of consecutive reads `(previous, current)` of one partition by
    /// one consumer node, in history order of `current`. A `Seek` of that node
    /// and partition, or a `ClientStart` of that node, forgets the previous
    /// read: the next read after it has no predecessor and is never a `current`.
    pub(crate) fn consecutive_reads(&self) -> impl Iterator<Item = (&Read, &Read)> {
        self.consecutive_reads.iter().map(|&(previous, current)| (&self.reads[previous as usize], &self.reads[current as usize]))
    }

    /// The time the fault phase ended, if the run got that far.
    pub(crate) fn heal_time(&self) -> Option<u64> {
        self.heal_time
    }

    /// One more than the largest sequence of any value sent: value-keyed maps
    /// made with it (`ValueMap::with_sequence_bound`) allocate each lane once.
    pub(crate) fn sequence_bound(&self) -> u64 {
        self.sequence_bound
    }

    /// Values sent in transactions that did not (knowingly) commit, in scope 0.
    pub(crate) fn uncommitted_values(&self) -> &ValueSet {
        self.uncommitted.get_or_init(|| transactions::uncommitted_values(&self.transaction_ops))
    }

    /// Whether the record `value` at `offset` of a committed log (`view`)
    /// certainly committed: the log marks its transaction committed, or marks
    /// no transaction there and no transaction of the history that sent `value`
    /// failed to (knowingly) commit. That last test, by value, matters only for
    /// final states written without transaction marks (hand-written ones): in a
    /// run's log a value of a transaction stands in a transactional batch.
    pub(crate) fn is_committed_record(&self, view: &PartitionView<'_>, offset: Offset, value: Value) -> bool {
        match view.fate(offset) {
            Some(fate) => fate == TransactionFate::Committed,
            None => !self.uncommitted_values().contains(0, value),
        }
    }

    /// Every transaction the history began, in the order of their invokes,
    /// each with its completion if it came.
    pub(crate) fn transactions(&self) -> &[Transaction<'a>] {
        &self.transactions
    }

    /// The transaction a send was made in, by its index (`SendPair::transaction`,
    /// `AcknowledgedSend::transaction`).
    pub(crate) fn transaction(&self, index: u32) -> &Transaction<'a> {
        &self.transactions[index as usize]
    }

    /// How the transaction of a send ended; None for a send made in no transaction.
    pub(crate) fn transaction_outcome(&self, index: Option<u32>) -> Option<Outcome> {
        index.map(|index| self.transaction(index).outcome())
    }

    /// The sends acknowledged at `partition`/`offset`, in history order (more
    /// than one only where the log was rewritten under an acknowledgement).
    pub(crate) fn acknowledged_at(&self, partition: PartitionKey, offset: Offset) -> impl Iterator<Item = &AcknowledgedSend<'a>> {
        let sorted = self.acknowledged_by_position.get_or_init(|| {
            let mut sorted: Vec<(PartitionKey, Offset, u32)> = self
                .acknowledged
                .iter()
                .enumerate()
                .filter_map(|(index, send)| Some((send.partition?.1, send.offset?, index as u32)))
                .collect();
            sorted.sort_unstable();
            sorted
        });
        let start = sorted.partition_point(|&(found_partition, found_offset, _)| (found_partition, found_offset) < (partition, offset));
        sorted[start..]
            .iter()
            .take_while(move |&&(found_partition, found_offset, _)| found_partition == partition && found_offset == offset)
            .map(|&(_, _, index)| &self.acknowledged[index as usize])
    }

    /// The ops of consumer groups (`Assign`, `Revoke`, `Commit`, `Process`), in
    /// history order. These, like the other sparse kinds below, are listed once
    /// so that the checkers that read them need not each walk the whole history.
    pub(crate) fn group_ops(&self) -> &[&'a Op] {
        &self.group_ops
    }

    /// Assign, revoke, client start and ok poll ops, in history order.
    pub(crate) fn membership_ops(&self) -> &[&'a Op] {
        &self.membership_ops
    }

    /// The `Panic` and `Timeout` ops, in history order.
    pub(crate) fn run_end_ops(&self) -> &[&'a Op] {
        &self.run_end_ops
    }

    /// The `ControllerElected` ops of the KRaft quorum, in history order.
    pub(crate) fn controller_elections(&self) -> &[&'a Op] {
        &self.controller_elections
    }

    /// The `MetadataApplied` ops of controllers and brokers, in history order.
    pub(crate) fn metadata_applications(&self) -> &[&'a Op] {
        &self.metadata_applications
    }
}

fn find_number(numbers: &[(u32, PartitionKey)], number: u32) -> Result<PartitionKey, usize> {
    // Partitions are numbered from 0, so the number is usually its own index.
    if let Some(&(found, key)) = numbers.get(number as usize) {
        if found == number {
            return Ok(key);
        }
    }
    numbers.binary_search_by_key(&number, |(found, _)| *found).map(|index| numbers[index].1)
}

/// The consecutive reads of `reads`, as pairs of indexes into it, with `resets`
/// (in history order) applied between them.
fn consecutive_reads(reads: &[Read], resets: &[ReadReset], node_count: usize, partition_count: usize) -> Vec<(u32, u32)> {
    let mut pairs = Vec::with_capacity(reads.len());
    // The last read index per node and partition, node-major.
    let mut last: Vec<Option<u32>> = vec![None; node_count * partition_count];
    let mut resets = resets.iter().peekable();
    for (index, read) in reads.iter().enumerate() {
        while let Some(reset) = resets.next_if(|reset| reset.op_index < read.op_index) {
            let row = reset.node.0 as usize * partition_count;
            match reset.partition {
                Some(partition) => last[row + partition.index()] = None,
                None => last[row..row + partition_count].fill(None),
            }
        }
        let slot = &mut last[read.node.0 as usize * partition_count + read.partition.index()];
        if let Some(previous) = slot.replace(index as u32) {
            pairs.push((previous, index as u32));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn send_pairs_match_completions_by_value() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(1, "producer-1", value(1, 0));
        history.send_invoke(2, "producer-1", value(1, 1));
        history.send_ok(3, "producer-1", value(1, 1), 0, 0);
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let pairs = views.send_pairs();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].completion.is_none());
        assert_eq!(pairs[1].completion.map(|op| op.time), Some(3_000));
        assert_eq!(pairs[1].completion_partition.map(|(partition, _)| partition.to_string()), Some("events/0".to_string()));
    }

    /// Two pipeline members sending the same output value (seed 5 of
    /// pipeline-exactly-once): each completion pairs with its own node's invoke.
    #[test]
    fn send_pairs_keep_apart_the_same_value_sent_by_two_nodes() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(1, "pipeline-1", value(1, 0));
        history.send_invoke(2, "pipeline-2", value(1, 0));
        history.send_ok(3, "pipeline-2", value(1, 0), 0, 0);
        history.send_fail(4, "pipeline-1", value(1, 0));
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let pairs = views.send_pairs();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].completion.map(|op| op.time), Some(4_000));
        assert_eq!(pairs[1].completion.map(|op| op.time), Some(3_000));
    }

    #[test]
    fn a_second_invoke_of_a_value_takes_its_completion_and_a_stray_completion_is_ignored() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(1, "producer-1", value(1, 0));
        history.send_invoke(2, "producer-1", value(1, 0));
        history.send_ok(3, "producer-1", value(1, 0), 0, 0);
        history.send_ok(4, "producer-1", value(1, 0), 0, 1);
        history.send_ok(5, "producer-1", value(1, 9), 0, 2);
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let completions: Vec<Option<u64>> = views.send_pairs().iter().map(|pair| pair.completion.map(|op| op.time)).collect();
        assert_eq!(completions, vec![None, Some(3_000)]);
        assert_eq!(views.acknowledged_sends().len(), 3);
    }

    #[test]
    fn seek_and_client_start_forget_the_previous_read() {
        let mut history = HistoryBuilder::new();
        history.poll(1, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.seek(2, "consumer-1", 0, 0);
        history.poll(3, "consumer-1", &[(0, 0, value(1, 0))]);
        history.client_start(4, "consumer-1");
        history.poll(5, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        // Another node's and another partition's reads have their own predecessors.
        history.poll(6, "consumer-2", &[(0, 3, value(1, 3)), (1, 0, value(2, 0))]);
        history.seek(7, "consumer-2", 0, 0);
        history.poll(8, "consumer-2", &[(0, 4, value(1, 4)), (1, 1, value(2, 1))]);
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let pairs: Vec<_> = views
            .consecutive_reads()
            .map(|(previous, current)| (views.read_op(previous).time / 1000, previous.offset.0, views.read_op(current).time / 1000, current.offset.0))
            .collect();
        assert_eq!(pairs, vec![(1, 0, 1, 1), (5, 0, 5, 1), (6, 0, 8, 1)]);
    }

    #[test]
    fn final_state_partitions_come_first_and_in_order() {
        let mut history = HistoryBuilder::new();
        history.poll(1, "consumer-1", &[(7, 0, value(1, 0)), (1, 0, value(1, 1))]);
        let history = history.build();
        let state = final_state(vec![(2, partition_snapshot(1, &[1], 1, &[(0, value(1, 0))])), (1, partition_snapshot(1, &[1], 0, &[]))]);
        let views = Views::new(&history, &state);
        let names: Vec<String> = views.final_partitions().map(|(_, view)| view.partition.to_string()).collect();
        assert_eq!(names, vec!["events/1", "events/2"]);
        assert_eq!(views.partition_count(), 3);
        let seven = views.find_partition(&partition(7)).expect("polled, so named");
        assert!(views.partition(seven).snapshot.is_none());
        assert_eq!(views.partition(views.find_partition(&partition(2)).expect("in the final state")).log.len(), 1);
        assert_eq!(views.find_partition(&partition(3)), None);
        assert_eq!(views.reads()[1].partition, views.find_partition(&partition(1)).expect("in the final state"));
    }

    /// Every checker that walks the reads streams this list; its size is most of their cost.
    #[test]
    fn a_read_stays_small() {
        assert!(std::mem::size_of::<Read>() <= 40, "Read grew to {} bytes", std::mem::size_of::<Read>());
    }

    proptest::proptest! {
        #[test]
        fn consecutive_reads_agree_with_the_tree_walk((history, state) in random_reads()) {
            let views = Views::new(&history, &state);
            let found: Vec<_> = views
                .consecutive_reads()
                .map(|(previous, current)| (views.read_op(previous), views.read_record(previous), views.read_op(current), views.read_record(current)))
                .collect();
            for (previous, current) in views.consecutive_reads() {
                let (previous_record, current_record) = (views.read_record(previous), views.read_record(current));
                proptest::prop_assert!(previous.offset == previous_record.offset && previous.value == previous_record.value);
                proptest::prop_assert!(current.offset == current_record.offset && current.value == current_record.value);
            }
            let expected = consecutive_reads_oracle(&history);
            proptest::prop_assert_eq!(found.len(), expected.len());
            for (found, expected) in found.iter().zip(&expected) {
                proptest::prop_assert!(std::ptr::eq(found.0, expected.0) && std::ptr::eq(found.1, expected.1));
                proptest::prop_assert!(std::ptr::eq(found.2, expected.2) && std::ptr::eq(found.3, expected.3));
            }
        }
    }

    /// A send belongs to its node's open transaction; another node's sends of
    /// the same value, and sends after the transaction ended, do not.
    #[test]
    fn sends_are_tied_to_the_transaction_open_on_their_node() {
        let output = value(1, 0).pipeline_output();
        let mut history = HistoryBuilder::new();
        history.txn(1, "pipeline-1", OpType::Invoke, 7, &[output]);
        history.send_invoke(2, "pipeline-2", output);
        history.send_invoke(3, "pipeline-1", output);
        history.txn(4, "pipeline-1", OpType::Info, 7, &[output]);
        history.send_ok(5, "pipeline-1", output, 0, 3);
        history.send_invoke(6, "pipeline-1", value(1, 1));
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let tied: Vec<Option<u64>> = views.send_pairs().iter().map(|pair| pair.transaction.map(|index| views.transaction(index).number)).collect();
        assert_eq!(tied, vec![None, Some(7), None]);
        assert_eq!(views.transaction_outcome(views.acknowledged_sends()[0].transaction), Some(Outcome::Unknown));
        let sends: Vec<u64> = views.acknowledged_at(PartitionKey(0), Offset(3)).map(|send| send.op.time).collect();
        assert_eq!(sends, vec![5_000]);
        assert_eq!(views.acknowledged_at(PartitionKey(0), Offset(2)).count(), 0);
    }

    /// An application's transaction begins before it knows its values
    /// (`crate::app`): every send its node invokes while it is open is in it,
    /// and it takes its values from its completion.
    #[test]
    fn a_transaction_begun_without_values_takes_every_send_and_its_completions_values() {
        let mut history = HistoryBuilder::new();
        history.txn(1, "app-1", OpType::Invoke, 3, &[]);
        history.send_invoke(2, "app-1", value(200_101, 0));
        history.send_invoke(3, "app-1", value(200_101, 1));
        history.txn(4, "app-1", OpType::Ok, 3, &[value(200_101, 0), value(200_101, 1)]);
        history.send_invoke(5, "app-1", value(200_101, 2));
        let history = history.build();
        let state = final_state(vec![]);
        let views = Views::new(&history, &state);
        let tied: Vec<Option<u64>> = views.send_pairs().iter().map(|pair| pair.transaction.map(|index| views.transaction(index).number)).collect();
        assert_eq!(tied, vec![Some(3), Some(3), None]);
        assert_eq!(views.transaction(0).values, &[value(200_101, 0), value(200_101, 1)]);
    }
}
