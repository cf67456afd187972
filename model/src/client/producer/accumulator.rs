//! The producer's bookkeeping, shaped for the calls it serves on every wake:
//! the per-partition queues (Kafka's RecordAccumulator keeps a deque of batches
//! per partition), the produce requests in flight (Kafka's InFlightRequests,
//! counted per broker for max.in.flight.requests.per.connection), and the
//! partition count of each topic sent to.

use super::Batch;
use crate::client::metadata::MetadataTracker;
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct InFlight {
    pub(super) to: NodeId,
    pub(super) batch: Batch,
    pub(super) sent: Instant,
}

/// One partition's part of the accumulator, with what the sender tracks for it.
#[derive(Default)]
pub(super) struct PartitionQueue {
    pub(super) batches: VecDeque<Batch>,
    /// The batches sent since the oldest one not yet completed (true once
    /// completed), by batch id; a batch being retried stays in. Kafka's TCP
    /// connection answers requests in order and fails every later request when
    /// one is lost, so no more than max.in.flight batches are ever written past an
    /// unresolved one, which keeps a retry within the broker's five-batch
    /// duplicate window; this keeps that true over lossy simulated links.
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

/// `TopicPartition`'s own order, without comparing the topic's bytes when both
/// name it with the same `Arc` (the producer makes every partition of a topic
/// from the one it was given).
fn compare(a: &TopicPartition, b: &TopicPartition) -> Ordering {
    if Arc::ptr_eq(&a.topic, &b.topic) {
        a.partition.cmp(&b.partition)
    } else {
        a.cmp(b)
    }
}

impl PartitionQueues {
    fn search(&self, tp: &TopicPartition) -> Result<usize, usize> {
        self.entries.binary_search_by(|(key, _)| compare(key, tp))
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

/// The produce requests awaiting an answer, in correlation id order, and how
/// many go to each broker. Ids only grow, so a request joins at the back, and
/// the few in flight (max.in.flight per broker) are found by binary search.
#[derive(Default)]
pub(super) struct InFlightRequests {
    requests: VecDeque<(u64, InFlight)>,
    /// One entry per broker ever sent to: a handful, so a list beats a map.
    per_leader: Vec<(NodeId, usize)>,
}

impl InFlightRequests {
    pub(super) fn insert(&mut self, correlation_id: u64, flight: InFlight) {
        if let Some((last, latest)) = self.requests.back() {
            assert!(*last < correlation_id && latest.sent <= flight.sent, "requests go out in correlation id order, at nondecreasing times");
        }
        match self.per_leader.iter_mut().find(|(leader, _)| *leader == flight.to) {
            Some((_, count)) => *count += 1,
            None => self.per_leader.push((flight.to, 1)),
        }
        self.requests.push_back((correlation_id, flight));
    }

    pub(super) fn remove(&mut self, correlation_id: u64) -> Option<InFlight> {
        let index = self.requests.binary_search_by_key(&correlation_id, |(id, _)| *id).ok()?;
        let (_, flight) = self.requests.remove(index).expect("found above");
        self.forget(&flight);
        Some(flight)
    }

    /// The oldest request, taken out if it was sent `timeout` or longer before
    /// `now`. Requests go out in correlation id order at nondecreasing times, so
    /// the expired ones are always the first.
    pub(super) fn pop_expired(&mut self, now: Instant, timeout: Duration) -> Option<InFlight> {
        let (_, oldest) = self.requests.front()?;
        if now.saturating_since(oldest.sent) < timeout {
            return None;
        }
        let (_, flight) = self.requests.pop_front().expect("front exists");
        self.forget(&flight);
        Some(flight)
    }

    fn forget(&mut self, flight: &InFlight) {
        let (_, count) = self.per_leader.iter_mut().find(|(leader, _)| *leader == flight.to).expect("every request in flight is counted");
        *count -= 1;
    }

    pub(super) fn count_to(&self, leader: NodeId) -> usize {
        self.per_leader.iter().find(|(known, _)| *known == leader).map_or(0, |(_, count)| *count)
    }

    /// When the oldest request went out.
    pub(super) fn oldest_sent(&self) -> Option<Instant> {
        self.requests.front().map(|(_, flight)| flight.sent)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &InFlight> {
        self.requests.iter().map(|(_, flight)| flight)
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
