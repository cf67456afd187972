//! A map keyed by topic partition, for the paths that look partitions up on
//! every message: the broker's replicas and purgatory, the consumer's positions,
//! the simulated disk's log files.
//!
//! It iterates in the order of a `BTreeMap<TopicPartition, V>` (topic name, then
//! partition number), so whatever walks it decides, sends and prints exactly as
//! before. It finds an entry without ordering strings: it picks the topic by
//! equality (an `Arc<str>` compares its pointer first, and the topic names of a
//! run share their `Arc`s) and then indexes by partition number. A cluster has a
//! handful of topics and numbers each topic's partitions from 0, so both steps
//! are short; a `BTreeMap` instead compares topic names byte by byte at every
//! level of its search.

use crate::types::TopicPartition;
use std::fmt;
use std::sync::Arc;

pub struct PartitionMap<V> {
    /// Topics in name order; each holds its partitions by number.
    topics: Vec<Topic<V>>,
    len: usize,
}

#[derive(Clone)]
struct Topic<V> {
    name: Arc<str>,
    slots: Vec<Option<(TopicPartition, V)>>,
}

impl<V> Default for PartitionMap<V> {
    fn default() -> Self {
        PartitionMap { topics: Vec::new(), len: 0 }
    }
}

impl<V: Clone> Clone for PartitionMap<V> {
    fn clone(&self) -> Self {
        PartitionMap { topics: self.topics.clone(), len: self.len }
    }
}

impl<V: fmt::Debug> fmt::Debug for PartitionMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> PartitionMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn topic(&self, name: &Arc<str>) -> Option<&Topic<V>> {
        topic_index(&self.topics, name).map(|index| &self.topics[index])
    }

    fn topic_mut(&mut self, name: &Arc<str>) -> Option<&mut Topic<V>> {
        topic_index(&self.topics, name).map(|index| &mut self.topics[index])
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&V> {
        let slot = self.topic(&tp.topic)?.slots.get(tp.partition as usize)?;
        slot.as_ref().map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut V> {
        let slot = self.topic_mut(&tp.topic)?.slots.get_mut(tp.partition as usize)?;
        slot.as_mut().map(|(_, value)| value)
    }

    /// The key of partition `partition` of `topic`, found by name: a caller holding
    /// only the name borrows the map's key instead of building one.
    pub fn key_named(&self, topic: &str, partition: u32) -> Option<&TopicPartition> {
        let topic = self.topics.iter().find(|candidate| *candidate.name == *topic)?;
        topic.slots.get(partition as usize)?.as_ref().map(|(tp, _)| tp)
    }

    pub fn contains_key(&self, tp: &TopicPartition) -> bool {
        self.get(tp).is_some()
    }

    /// Inserts `value` at `tp`; returns the value it replaced.
    pub fn insert(&mut self, tp: TopicPartition, value: V) -> Option<V> {
        let slot = slot_mut(&mut self.topics, &tp);
        let previous = slot.replace((tp, value)).map(|(_, value)| value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// The value at `tp`, inserting `make()` first when there is none (a
    /// `BTreeMap`'s `entry(tp).or_insert_with(make)`).
    pub fn get_or_insert_with(&mut self, tp: &TopicPartition, make: impl FnOnce() -> V) -> &mut V {
        let slot = slot_mut(&mut self.topics, tp);
        if slot.is_none() {
            *slot = Some((tp.clone(), make()));
            self.len += 1;
        }
        &mut slot.as_mut().expect("the slot was filled above").1
    }

    pub fn remove(&mut self, tp: &TopicPartition) -> Option<V> {
        let slot = self.topic_mut(&tp.topic)?.slots.get_mut(tp.partition as usize)?;
        let removed = slot.take().map(|(_, value)| value);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    pub fn clear(&mut self) {
        self.topics.clear();
        self.len = 0;
    }

    /// Keeps the entries for which `keep` is true, visiting them in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&TopicPartition, &mut V) -> bool) {
        for topic in &mut self.topics {
            for slot in &mut topic.slots {
                if let Some((tp, value)) = slot {
                    if !keep(tp, value) {
                        *slot = None;
                        self.len -= 1;
                    }
                }
            }
        }
    }

    /// The entries in `BTreeMap<TopicPartition, _>` order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter { topics: self.topics.iter(), slots: [].iter() }
    }

    pub fn iter_mut(&mut self) -> IterMut<'_, V> {
        IterMut { topics: self.topics.iter_mut(), slots: [].iter_mut() }
    }

    pub fn keys(&self) -> impl Iterator<Item = &TopicPartition> {
        self.iter().map(|(tp, _)| tp)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, value)| value)
    }
}

/// Whether two topic names are equal, trying their pointers first: `Arc<str>`'s
/// own `==` always compares the bytes (std takes the pointer shortcut only for
/// sized types), and the names of one run mostly share their `Arc`s.
pub fn same_topic(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// `a == b`, trying the topic names' pointers first (see `same_topic`).
pub fn same_partition(a: &TopicPartition, b: &TopicPartition) -> bool {
    a.partition == b.partition && same_topic(&a.topic, &b.topic)
}

/// Where `name` is among `topics`: by pointer first, the common case, then by
/// bytes.
#[inline]
fn topic_index<V>(topics: &[Topic<V>], name: &Arc<str>) -> Option<usize> {
    topics.iter().position(|topic| Arc::ptr_eq(&topic.name, name)).or_else(|| topics.iter().position(|topic| *topic.name == **name))
}

/// The slot of `tp`, made (empty) if missing.
fn slot_mut<'a, V>(topics: &'a mut Vec<Topic<V>>, tp: &TopicPartition) -> &'a mut Option<(TopicPartition, V)> {
    let index = match topic_index(topics, &tp.topic) {
        Some(index) => index,
        None => {
            let index = topics.partition_point(|topic| *topic.name < *tp.topic);
            topics.insert(index, Topic { name: tp.topic.clone(), slots: Vec::new() });
            index
        }
    };
    let slots = &mut topics[index].slots;
    let position = tp.partition as usize;
    if slots.len() <= position {
        slots.resize_with(position + 1, || None);
    }
    &mut slots[position]
}

impl<V> std::ops::Index<&TopicPartition> for PartitionMap<V> {
    type Output = V;

    fn index(&self, tp: &TopicPartition) -> &V {
        self.get(tp).unwrap_or_else(|| panic!("no entry for partition {tp}"))
    }
}

pub struct Iter<'a, V> {
    topics: std::slice::Iter<'a, Topic<V>>,
    slots: std::slice::Iter<'a, Option<(TopicPartition, V)>>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a TopicPartition, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.slots.next() {
                Some(Some((tp, value))) => return Some((tp, value)),
                Some(None) => continue,
                None => self.slots = self.topics.next()?.slots.iter(),
            }
        }
    }
}

pub struct IterMut<'a, V> {
    topics: std::slice::IterMut<'a, Topic<V>>,
    slots: std::slice::IterMut<'a, Option<(TopicPartition, V)>>,
}

impl<'a, V> Iterator for IterMut<'a, V> {
    type Item = (&'a TopicPartition, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.slots.next() {
                Some(Some((tp, value))) => return Some((&*tp, value)),
                Some(None) => continue,
                None => self.slots = self.topics.next()?.slots.iter_mut(),
            }
        }
    }
}

impl<'a, V> IntoIterator for &'a PartitionMap<V> {
    type Item = (&'a TopicPartition, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<'a, V> IntoIterator for &'a mut PartitionMap<V> {
    type Item = (&'a TopicPartition, &'a mut V);
    type IntoIter = IterMut<'a, V>;

    fn into_iter(self) -> IterMut<'a, V> {
        self.iter_mut()
    }
}

impl<V> FromIterator<(TopicPartition, V)> for PartitionMap<V> {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, V)>>(entries: I) -> Self {
        let mut map = PartitionMap::new();
        for (tp, value) in entries {
            map.insert(tp, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize, u32, u32),
        GetOrInsert(usize, u32, u32),
        Remove(usize, u32),
        Bump(usize, u32),
        RetainEven,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        let topic = 0..4usize;
        let partition = 0..6u32;
        prop_oneof![
            4 => (topic.clone(), partition.clone(), any::<u32>()).prop_map(|(t, p, v)| Op::Insert(t, p, v)),
            3 => (topic.clone(), partition.clone(), any::<u32>()).prop_map(|(t, p, v)| Op::GetOrInsert(t, p, v)),
            3 => (topic.clone(), partition.clone()).prop_map(|(t, p)| Op::Remove(t, p)),
            2 => (topic, partition).prop_map(|(t, p)| Op::Bump(t, p)),
            1 => Just(Op::RetainEven),
            1 => Just(Op::Clear),
        ]
    }

    /// Names that sort differently by length and by bytes; every key is built
    /// from a fresh `Arc`, so lookups take the string comparison, not the pointer.
    fn key(topic: usize, partition: u32) -> TopicPartition {
        let names = ["events", "__consumer_offsets", "a", "__transaction_state"];
        TopicPartition::new(names[topic], partition)
    }

    proptest! {
        /// Any sequence of operations leaves the map holding what a BTreeMap
        /// would, iterated in the same order.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..60)) {
            let mut map = PartitionMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(t, p, v) => prop_assert_eq!(map.insert(key(t, p), v), model.insert(key(t, p), v)),
                    Op::GetOrInsert(t, p, v) => prop_assert_eq!(*map.get_or_insert_with(&key(t, p), || v), *model.entry(key(t, p)).or_insert(v)),
                    Op::Remove(t, p) => prop_assert_eq!(map.remove(&key(t, p)), model.remove(&key(t, p))),
                    Op::Bump(t, p) => {
                        if let Some(value) = map.get_mut(&key(t, p)) { *value = value.wrapping_add(1) }
                        if let Some(value) = model.get_mut(&key(t, p)) { *value = value.wrapping_add(1) }
                    }
                    Op::RetainEven => {
                        map.retain(|_, value| *value % 2 == 0);
                        model.retain(|_, value| *value % 2 == 0);
                    }
                    Op::Clear => {
                        map.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                for tp in model.keys() {
                    prop_assert_eq!(map.key_named(&tp.topic, tp.partition), Some(tp));
                }
                let entries: Vec<(TopicPartition, u32)> = map.iter().map(|(tp, value)| (tp.clone(), *value)).collect();
                let expected: Vec<(TopicPartition, u32)> = model.iter().map(|(tp, value)| (tp.clone(), *value)).collect();
                prop_assert_eq!(entries, expected);
                for t in 0..4 {
                    for p in 0..6 {
                        prop_assert_eq!(map.get(&key(t, p)), model.get(&key(t, p)));
                    }
                }
            }
        }
    }

    #[test]
    fn iterates_in_topic_then_partition_order() {
        let map: PartitionMap<u32> = [(key(0, 2), 1), (key(0, 0), 2), (key(1, 1), 3)].into_iter().collect();
        let keys: Vec<String> = map.keys().map(|tp| tp.to_string()).collect();
        assert_eq!(keys, ["__consumer_offsets/1", "events/0", "events/2"]);
        assert_eq!(map[&key(0, 0)], 2);
    }
}
