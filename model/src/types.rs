//! Newtypes for Kafka's identifiers, so an offset is never mistaken for an epoch.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A node of the cluster: broker, controller or client. Kafka's broker.id / node.id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// A position in a partition's log; the first record is at offset 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offset(pub u64);

/// Bumped by the controller each time a partition gets a new leader (KIP-101).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderEpoch(pub u32);

/// Bumped by the controller on every change of a partition's state, ISR included (KIP-497).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionEpoch(pub u32);

/// Identifies an idempotent or transactional producer (KIP-98).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerId(pub u64);

/// Per-partition sequence number of an idempotent producer's first record in a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sequence(pub i32);

/// Bumped each time a broker registers anew with the controller (after a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerEpoch(pub u64);

impl Offset {
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A topic's partition, as Kafka names it: `events-0`. Cheap to clone.
#[derive(Clone, Eq, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: u32,
}

/// Ordered by topic name, then partition, as a derived order would be. Maps keyed
/// by partition compare keys on every lookup, and the two topic names are most
/// often one shared allocation: then the bytes need no comparing.
impl Ord for TopicPartition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let topics = if Arc::ptr_eq(&self.topic, &other.topic) { std::cmp::Ordering::Equal } else { self.topic.cmp(&other.topic) };
        topics.then(self.partition.cmp(&other.partition))
    }
}

impl PartialEq for TopicPartition {
    fn eq(&self, other: &Self) -> bool {
        self.partition == other.partition && (Arc::ptr_eq(&self.topic, &other.topic) || self.topic == other.topic)
    }
}

/// As derived: the topic's name, then the partition.
impl std::hash::Hash for TopicPartition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.topic.hash(state);
        self.partition.hash(state);
    }
}

impl PartialOrd for TopicPartition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_order_by_topic_name_then_number_whether_or_not_names_are_shared() {
        let shared: Arc<str> = "events".into();
        let a = TopicPartition { topic: shared.clone(), partition: 2 };
        let b = TopicPartition { topic: shared, partition: 10 };
        let c = TopicPartition::new("events", 10);
        let d = TopicPartition::new("alpha", 99);
        assert!(a < b && b == c && b.cmp(&c) == std::cmp::Ordering::Equal);
        assert!(d < a && d < c);
        let mut sorted = vec![c.clone(), a.clone(), d.clone(), b.clone()];
        sorted.sort();
        assert_eq!(sorted, vec![d, a, b, c]);
    }
}
