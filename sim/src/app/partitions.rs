//! `TopicPartitionList`, `Offset`, `Timeout` and `CommitMode`, as the `rdkafka`
//! crate has them: what commits, assignments and positions are given and returned in.

use super::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use std::time::Duration;

/// An offset, or a logical one (rdkafka's `Offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offset {
    Beginning,
    End,
    /// The group's committed offset.
    Stored,
    Invalid,
    Offset(i64),
}

impl Offset {
    pub fn to_raw(self) -> Option<i64> {
        match self {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }
}

/// How long a call may wait (rdkafka's `util::Timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    After(Duration),
    Never,
}

impl From<Duration> for Timeout {
    fn from(duration: Duration) -> Timeout {
        Timeout::After(duration)
    }
}

impl From<Option<Duration>> for Timeout {
    fn from(duration: Option<Duration>) -> Timeout {
        duration.map_or(Timeout::Never, Timeout::After)
    }
}

/// Whether `commit` waits for the coordinator's answer (rdkafka's `CommitMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    Sync,
    Async,
}

/// One entry of a `TopicPartitionList`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitionListElem {
    topic: String,
    partition: i32,
    offset: Offset,
}

impl TopicPartitionListElem {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn offset(&self) -> Offset {
        self.offset
    }

    pub fn set_offset(&mut self, offset: Offset) -> KafkaResult<()> {
        self.offset = offset;
        Ok(())
    }
}

/// Partitions, each with an offset (rdkafka's `TopicPartitionList`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPartitionList {
    elements: Vec<TopicPartitionListElem>,
}

impl TopicPartitionList {
    pub fn new() -> TopicPartitionList {
        TopicPartitionList::default()
    }

    pub fn with_capacity(capacity: usize) -> TopicPartitionList {
        TopicPartitionList { elements: Vec::with_capacity(capacity) }
    }

    /// Adds a partition with an invalid offset and gives it back to set one.
    pub fn add_partition(&mut self, topic: &str, partition: i32) -> &mut TopicPartitionListElem {
        self.elements.push(TopicPartitionListElem { topic: topic.into(), partition, offset: Offset::Invalid });
        self.elements.last_mut().expect("just pushed")
    }

    pub fn add_partition_offset(&mut self, topic: &str, partition: i32, offset: Offset) -> KafkaResult<()> {
        match self.elements.iter_mut().find(|element| element.topic == topic && element.partition == partition) {
            Some(element) => element.offset = offset,
            None => self.elements.push(TopicPartitionListElem { topic: topic.into(), partition, offset }),
        }
        Ok(())
    }

    /// Adds every partition of `topic` in `partitions` (rdkafka's `add_partition_range`).
    pub fn add_partition_range(&mut self, topic: &str, start: i32, stop: i32) {
        for partition in start..=stop {
            self.add_partition(topic, partition);
        }
    }

    pub fn find_partition(&self, topic: &str, partition: i32) -> Option<TopicPartitionListElem> {
        self.elements.iter().find(|element| element.topic == topic && element.partition == partition).cloned()
    }

    pub fn set_partition_offset(&mut self, topic: &str, partition: i32, offset: Offset) -> KafkaResult<()> {
        let element = self.elements.iter_mut().find(|element| element.topic == topic && element.partition == partition);
        let element = element.ok_or(KafkaError::SetPartitionOffset(RDKafkaErrorCode::InvalidArgument))?;
        element.offset = offset;
        Ok(())
    }

    pub fn set_all_offsets(&mut self, offset: Offset) -> KafkaResult<()> {
        for element in &mut self.elements {
            element.offset = offset;
        }
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.elements.len()
    }

    pub fn elements(&self) -> Vec<TopicPartitionListElem> {
        self.elements.clone()
    }

    pub fn elements_for_topic(&self, topic: &str) -> Vec<TopicPartitionListElem> {
        self.elements.iter().filter(|element| element.topic == topic).cloned().collect()
    }

    /// The partitions with an absolute offset, in kafsim's terms; an entry
    /// with a logical offset is an error.
    pub(crate) fn absolute_offsets(&self) -> Result<Vec<(kafsim_model::TopicPartition, kafsim_model::Offset)>, TopicPartitionListElem> {
        self.elements
            .iter()
            .map(|element| match element.offset {
                Offset::Offset(offset) if offset >= 0 && element.partition >= 0 => Ok((kafsim_model::TopicPartition::new(element.topic.as_str(), element.partition as u32), kafsim_model::Offset(offset as u64))),
                _ => Err(element.clone()),
            })
            .collect()
    }

    pub(crate) fn from_partitions(partitions: impl IntoIterator<Item = (kafsim_model::TopicPartition, Offset)>) -> TopicPartitionList {
        let elements = partitions.into_iter().map(|(tp, offset)| TopicPartitionListElem { topic: tp.topic.to_string(), partition: tp.partition as i32, offset }).collect();
        TopicPartitionList { elements }
    }
}
