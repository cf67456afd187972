//! The producer's bookkeeping, shaped for the calls it serves on every wake:
//! the per-partition queues (Kafka's RecordAccumulator keeps a deque of batches
//! per partition) and the partition count of each topic sent to. The requests
//! in flight are the producer's `NetworkClient`'s.

use super::batch::Batch;
use crate::client::metadata::MetadataTracker;
use crate::types::{NodeId, TopicPartition};
use std::collections::VecDeque;
use std::sync::Arc;

/// One partition's part of the accumulator, with what the sender tracks for it.
#[derive(Default)]
pub(super) struct PartitionQueue {
    pub(super) batches: VecDeque<Batch>,
    /// The batches sent since the oldest one not yet completed (true once
    /// completed), by batch id; a batch being retried stays in. No more than
    /// max.in.flight batches are ever written past an unresolved one, which keeps
    /// a retry within the broker's five-batch duplicate window (Kafka's
    /// RecordAccumulator drains only the first in-flight sequence of a partition
    /// whose head is being retried).
    pub(super) window: VecDeque<(u64, bool)>,
    /// Where the next batch's sequence numbers start, under the current producer
    /// id and epoch (KIP-98).
    pub(super) next_sequence: i32,
    /// The last drain found the next batch waiting for a leader or an in-flight
    /// slot: it wakes on a response, not on a timer. Kept up to date only while
    /// the queue holds a batch (every drain follows a batch's arrival).
    pub(super) blocked: bool,
    /// The partition's leader in the metadata view of the given id, so a drain
    /// does not look it up again while the view stands.
    leader: Option<(u64, Option<NodeId>)>,
}

impl PartitionQueue {
    #[inline]
    pub(super) fn leader(&mut self, metadata: &MetadataTracker, tp: &TopicPartition) -> Option<NodeId> {
        let view_id = metadata.view_id();
        match self.leader {
            Some((cached, leader)) if cached == view_id => leader,
            _ => {
                let leader = metadata.partition(tp).and_then(|state| state.leader);
                self.leader = Some((view_id, leader));
                leader
            }
        }
    }

    /// Whether `limit` batches were sent past an unresolved one and the front
    /// batch (a retry may be among them) is not one of those.
    pub(super) fn window_full(&self, limit: usize) -> bool {
        let front_id = self.batches.front().map(|batch| batch.id);
        self.window.len() >= limit && !self.window.iter().any(|(id, _)| Some(*id) == front_id)
    }

    /// Marks a batch completed (acknowledged or failed for good) and slides the window.
    pub(super) fn completed(&mut self, batch_id: u64) {
        if let Some(entry) = self.window.iter_mut().find(|(id, _)| *id == batch_id) {
            entry.1 = true;
        }
        while self.window.front().is_some_and(|(_, done)| *done) {
            self.window.pop_front();
        }
    }
}

/// The queues in partition order, the order a `BTreeMap` would keep them in,
/// held as a sorted list: a producer writes to a handful of partitions and
/// walks them all on every wake, which a list does for a fraction of a map's cost.
/// Queues are never removed, so an emptied one keeps its window and sequences.
#[derive(Default)]
pub(super) struct PartitionQueues {
    entries: Vec<(TopicPartition, PartitionQueue)>,
}

/// Up to this many queues a search scans the list; beyond, it bisects it.
const SCAN_LIMIT: usize = 16;

impl PartitionQueues {
    /// Where `tp`'s queue is, or would go to keep `TopicPartition`'s order. The
    /// producer makes every partition of a topic from the one `Arc` it was given,
    /// so a match is usually found without comparing the topic's bytes.
    fn search(&self, tp: &TopicPartition) -> Result<usize, usize> {
        if self.entries.len() <= SCAN_LIMIT {
            let same = |key: &TopicPartition| key.partition == tp.partition && (Arc::ptr_eq(&key.topic, &tp.topic) || key.topic == tp.topic);
            if let Some(index) = self.entries.iter().position(|(key, _)| same(key)) {
                return Ok(index);
            }
            return Err(self.entries.partition_point(|(key, _)| key < tp));
        }
        self.entries.binary_search_by(|(key, _)| key.cmp(tp))
    }

    pub(super) fn get(&self, tp: &TopicPartition) -> Option<&PartitionQueue> {
        self.search(tp).ok().map(|index| &self.entries[index].1)
    }

    pub(super) fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionQueue> {
        self.search(tp).ok().map(|index| &mut self.entries[index].1)
    }

    /// The queue of `tp`, made empty if there was none, with the partition as
    /// the queue holds it.
    pub(super) fn entry(&mut self, tp: TopicPartition) -> (&TopicPartition, &mut PartitionQueue) {
        let index = match self.search(&tp) {
            Ok(index) => index,
            Err(index) => {
                self.entries.insert(index, (tp, PartitionQueue::default()));
                index
            }
        };
        let (tp, queue) = &mut self.entries[index];
        (tp, queue)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&TopicPartition, &mut PartitionQueue)> {
        self.entries.iter_mut().map(|(tp, queue)| (&*tp, queue))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &PartitionQueue> {
        self.entries.iter().map(|(_, queue)| queue)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut PartitionQueue> {
        self.entries.iter_mut().map(|(_, queue)| queue)
    }
}

/// The partition count of each topic sent to, in one metadata view: the
/// partitioner asks for it once per record.
#[derive(Default)]
pub(super) struct PartitionCounts {
    view_id: u64,
    counts: Vec<(Arc<str>, u32)>,
}

impl PartitionCounts {
    pub(super) fn get(&mut self, metadata: &MetadataTracker, topic: &Arc<str>) -> u32 {
        if self.view_id != metadata.view_id() {
            self.view_id = metadata.view_id();
            self.counts.clear();
        }
        if let Some((_, count)) = self.counts.iter().find(|(known, _)| Arc::ptr_eq(known, topic) || known == topic) {
            return *count;
        }
        let count = metadata.current().map(|metadata| metadata.partition_count(topic)).unwrap_or(0);
        self.counts.push((topic.clone(), count));
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClusterMetadata, PartitionState};
    use crate::time::Instant;
    use crate::types::{LeaderEpoch, PartitionEpoch};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    proptest! {
        /// The list keeps the order a map would, whether it scans or bisects,
        /// and finds a partition named with another `Arc` of the same topic.
        #[test]
        fn queues_keep_map_order(partitions in proptest::collection::vec((0u8..3, 0u32..12), 1..60)) {
            let topics: Vec<Arc<str>> = vec!["a".into(), "events".into(), "z".into()];
            let mut queues = PartitionQueues::default();
            let mut map = BTreeMap::new();
            for (topic, partition) in partitions {
                let tp = TopicPartition { topic: topics[usize::from(topic)].clone(), partition };
                let (key, queue) = queues.entry(tp.clone());
                prop_assert_eq!(key, &tp);
                queue.next_sequence += 1;
                *map.entry(tp).or_insert(0) += 1;
                let listed: Vec<(TopicPartition, i32)> = queues.iter_mut().map(|(tp, queue)| (tp.clone(), queue.next_sequence)).collect();
                prop_assert_eq!(listed, map.iter().map(|(tp, count)| (tp.clone(), *count)).collect::<Vec<_>>());
            }
            for (tp, count) in &map {
                let copy = TopicPartition::new(&*tp.topic, tp.partition);
                prop_assert_eq!(queues.get(&copy).map(|queue| queue.next_sequence), Some(*count));
            }
            prop_assert!(queues.get(&TopicPartition::new("m", 0)).is_none());
        }
    }

    /// Gives `metadata` a view with leaders `leaders` for t/0 and t/1.
    fn refresh(metadata: &mut MetadataTracker, now: Instant, version: u64, leaders: [Option<NodeId>; 2]) {
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(index, leader)| {
                let state = PartitionState { replicas: vec![], leader: *leader, leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![], elr: Vec::new(), last_known_elr: Vec::new() };
                (TopicPartition::new("t", index as u32), state)
            })
            .collect();
        metadata.handle_response(now, Arc::new(ClusterMetadata { version, brokers: vec![], partitions }));
    }

    /// A queue's leader and a topic's partition count follow each new metadata view.
    #[test]
    fn cached_leaders_and_counts_follow_the_metadata() {
        let mut metadata = MetadataTracker::new(vec![NodeId(1)], 0, Duration::from_secs(300), Duration::from_millis(100), Duration::from_secs(30));
        let mut queue = PartitionQueue::default();
        let mut counts = PartitionCounts::default();
        let tp = TopicPartition::new("t", 1);
        let topic: Arc<str> = "t".into();
        assert_eq!(queue.leader(&metadata, &tp), None);
        assert_eq!(counts.get(&metadata, &topic), 0);
        refresh(&mut metadata, Instant::ZERO, 1, [Some(NodeId(1)), Some(NodeId(2))]);
        assert_eq!(queue.leader(&metadata, &tp), Some(NodeId(2)));
        assert_eq!(counts.get(&metadata, &topic), 2);
        assert_eq!(counts.get(&metadata, &"t".into()), 2, "another Arc of the same topic");
        assert_eq!(counts.get(&metadata, &"u".into()), 0);
        refresh(&mut metadata, Instant::from_micros(1_000_000), 2, [Some(NodeId(1)), None]);
        assert_eq!(queue.leader(&metadata, &tp), None);
        refresh(&mut metadata, Instant::from_micros(2_000_000), 3, [Some(NodeId(3)), Some(NodeId(3))]);
        assert_eq!(queue.leader(&metadata, &tp), Some(NodeId(3)));
    }
}
