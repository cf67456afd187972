//! The producer's bookkeeping, shaped for the calls it serves on every wake:
//! the per-partition queues (Kafka's RecordAccumulator keeps a deque of batches
//! per partition), the produce requests in flight (Kafka's InFlightRequests,
//! counted per broker for max.in.flight.requests.per.connection), and the
//! partition count of each topic sent to.

use super::batch::Batch;
use crate::client::metadata::MetadataTracker;
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
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
        // Answers mostly come in the order requests went out: the oldest first.
        let (_, flight) = if self.requests.front().is_some_and(|(id, _)| *id == correlation_id) {
            self.requests.pop_front().expect("front exists")
        } else {
            let index = self.requests.binary_search_by_key(&correlation_id, |(id, _)| *id).ok()?;
            self.requests.remove(index).expect("found above")
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClusterMetadata, Message, PartitionState};
    use crate::record::Record;
    use crate::types::{LeaderEpoch, PartitionEpoch};
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn batch(id: u64) -> Batch {
        Batch::open(id, TopicPartition::new("t", 0), id, Record { key: None, value: Bytes::from_static(b"v") }, Instant::ZERO, 17)
    }

    proptest! {
        /// The per-broker counts always equal a count over the requests, and
        /// expiry takes exactly the requests a scan would find expired.
        #[test]
        fn in_flight_counts_match_a_scan(steps in proptest::collection::vec((0u8..3, 1u32..4, any::<usize>()), 1..200)) {
            let mut requests = InFlightRequests::default();
            let mut next_id = 0u64;
            let mut now = Instant::ZERO;
            for (action, leader, pick) in steps {
                match action {
                    0 => {
                        next_id += 1 + pick as u64 % 3;
                        now = now + Duration::from_millis(pick as u64 % 50);
                        requests.insert(next_id, InFlight { to: NodeId(leader), batch: batch(next_id), sent: now });
                    }
                    1 => {
                        let ids: Vec<u64> = requests.requests.iter().map(|(id, _)| *id).collect();
                        if let Some(id) = ids.get(pick % ids.len().max(1)) {
                            prop_assert_eq!(requests.remove(*id).map(|flight| flight.batch.id), Some(*id));
                        }
                        prop_assert!(requests.remove(next_id + 1).is_none());
                    }
                    _ => {
                        now = now + Duration::from_millis(pick as u64 % 200);
                        let timeout = Duration::from_millis(100);
                        let expected: Vec<u64> = requests.requests.iter().filter(|(_, flight)| now.saturating_since(flight.sent) >= timeout).map(|(id, _)| *id).collect();
                        let mut expired = Vec::new();
                        while let Some(flight) = requests.pop_expired(now, timeout) {
                            expired.push(flight.batch.id);
                        }
                        prop_assert_eq!(expired, expected);
                    }
                }
                for leader in 1..4 {
                    let scanned = requests.values().filter(|flight| flight.to == NodeId(leader)).count();
                    prop_assert_eq!(requests.count_to(NodeId(leader)), scanned);
                }
                prop_assert_eq!(requests.oldest_sent(), requests.values().map(|flight| flight.sent).min());
                prop_assert_eq!(requests.is_empty(), requests.values().next().is_none());
            }
        }

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

    /// Answers `metadata`'s pending request with leaders `leaders` for t/0 and t/1.
    fn refresh(metadata: &mut MetadataTracker, now: Instant, version: u64, leaders: [Option<NodeId>; 2]) {
        let mut sends = Vec::new();
        assert!(metadata.poll(now, version, &mut sends));
        let Message::MetadataRequest { correlation_id } = sends[0].message else { panic!("a metadata request") };
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(index, leader)| {
                let state = PartitionState { replicas: vec![], leader: *leader, leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![] };
                (TopicPartition::new("t", index as u32), state)
            })
            .collect();
        assert!(metadata.handle_response(now, correlation_id, Arc::new(ClusterMetadata { version, brokers: vec![], partitions })));
        metadata.request_update();
    }

    /// A queue's leader and a topic's partition count follow each new metadata view.
    #[test]
    fn cached_leaders_and_counts_follow_the_metadata() {
        let mut metadata = MetadataTracker::new(vec![NodeId(1)], 0, Duration::from_secs(300));
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
