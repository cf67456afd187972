//! Maps and sets keyed by a workload `Value`, within a small per-run `scope` (a
//! consumer group, a node, or 0 when there is none), laid out for lookups that
//! cost an index rather than a tree walk. A value is a producer's number and that
//! producer's own counter from 0, so each (scope, producer) pair gets a `Vec`
//! indexed by sequence: a "lane". A sequence far beyond its lane's length (hand
//! written histories, or anything unexpected) goes to an overflow tree instead,
//! so a stray large sequence never allocates a huge lane.
//!
//! Nothing iterates these maps: they answer lookups only, so their layout decides
//! nothing a checker reports or in what order.

use crate::history::Value;
use std::cell::Cell;
use std::collections::BTreeMap;

/// A lane may grow to at least this many sequences, and to at most twice its
/// length at a time; sequences beyond that go to the overflow tree.
const LANE_LENGTH_MIN: u64 = 1024;

/// A lane starts this long, or as long as its first sequence needs.
const LANE_GROWTH_MIN: usize = 256;

/// Up to this many lanes, a lane is found by a scan rather than a bisection.
const LANES_SCANNED_MAX: usize = 8;

/// A map told the run's sequence bound starts its lanes that long, up to this.
const LANE_PRESIZE_MAX: u64 = 1 << 16;

pub(crate) struct ValueMap<T> {
    /// Sorted by lane id: `scope << 32 | producer`.
    lanes: Vec<(u64, Vec<Option<T>>)>,
    /// Values whose sequence was beyond their lane when first stored. Such a value
    /// stays here even once its lane grows past it, so every lookup that misses
    /// in the lane also looks here (and this is empty in every ordinary run).
    overflow: BTreeMap<(u64, u64), Option<T>>,
    /// The index of the lane used last: lookups mostly stay in one lane a while.
    last_lane: Cell<usize>,
    /// How long a new lane starts, so that a lane filled in sequence order is
    /// allocated once instead of grown twofold again and again.
    lane_length_initial: usize,
}

/// A set of values within scopes.
pub(crate) type ValueSet = ValueMap<()>;

fn lane_id(scope: u32, value: Value) -> u64 {
    (u64::from(scope) << 32) | u64::from(value.producer)
}

impl<T> Default for ValueMap<T> {
    fn default() -> ValueMap<T> {
        ValueMap { lanes: Vec::new(), overflow: BTreeMap::new(), last_lane: Cell::new(0), lane_length_initial: LANE_GROWTH_MIN }
    }
}

impl<T> ValueMap<T> {
    pub(crate) fn new() -> ValueMap<T> {
        ValueMap::default()
    }

    /// A map for values whose sequences are mostly below `bound`
    /// (`Views::sequence_bound`): its lanes start that long.
    pub(crate) fn with_sequence_bound(bound: u64) -> ValueMap<T> {
        let lane_length_initial = bound.min(LANE_PRESIZE_MAX) as usize;
        ValueMap { lane_length_initial: lane_length_initial.max(LANE_GROWTH_MIN), ..ValueMap::default() }
    }

    /// The index of lane `id`, if it exists.
    #[inline]
    fn lane(&self, id: u64) -> Option<usize> {
        let last = self.last_lane.get();
        if self.lanes.get(last).is_some_and(|(lane, _)| *lane == id) {
            return Some(last);
        }
        // A run's values alternate between a few producers, so lookups often
        // change lanes; among that few, a scan is cheaper than a bisection.
        let index = if self.lanes.len() <= LANES_SCANNED_MAX {
            self.lanes.iter().position(|(lane, _)| *lane == id)?
        } else {
            self.lanes.binary_search_by_key(&id, |(lane, _)| *lane).ok()?
        };
        self.last_lane.set(index);
        Some(index)
    }

    #[inline]
    pub(crate) fn get(&self, scope: u32, value: Value) -> Option<&T> {
        let id = lane_id(scope, value);
        if let Some(index) = self.lane(id) {
            let slots = &self.lanes[index].1;
            if let Some(Some(stored)) = usize::try_from(value.sequence).ok().and_then(|sequence| slots.get(sequence)) {
                return Some(stored);
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&(id, value.sequence)).and_then(Option::as_ref)
    }

    pub(crate) fn contains(&self, scope: u32, value: Value) -> bool {
        self.get(scope, value).is_some()
    }

    /// The slot of `value` in `scope`, created empty if need be.
    #[inline]
    pub(crate) fn slot(&mut self, scope: u32, value: Value) -> &mut Option<T> {
        let id = lane_id(scope, value);
        if self.overflow.is_empty() {
            if let Some(index) = self.lane(id) {
                // The common case: a lane that already reaches this sequence.
                if let Some(sequence) = usize::try_from(value.sequence).ok().filter(|sequence| *sequence < self.lanes[index].1.len()) {
                    return &mut self.lanes[index].1[sequence];
                }
            }
        }
        self.slot_slow(id, value.sequence)
    }

    #[inline(never)]
    fn slot_slow(&mut self, id: u64, sequence: u64) -> &mut Option<T> {
        if self.overflow.contains_key(&(id, sequence)) {
            return self.overflow.get_mut(&(id, sequence)).expect("just found in the overflow tree");
        }
        let index = match self.lane(id) {
            Some(index) => index,
            None => {
                let index = self.lanes.partition_point(|(lane, _)| *lane < id);
                self.lanes.insert(index, (id, Vec::new()));
                self.last_lane.set(index);
                index
            }
        };
        let slots = &mut self.lanes[index].1;
        let length = slots.len() as u64;
        if sequence >= length.saturating_mul(2).max(LANE_LENGTH_MIN).max(self.lane_length_initial as u64) {
            return self.overflow.entry((id, sequence)).or_insert(None);
        }
        let sequence = sequence as usize;
        if sequence >= slots.len() {
            // Grow at least twofold, so that a lane filled in sequence order
            // comes here a logarithmic number of times.
            let length = (sequence + 1).max(slots.len() * 2).max(self.lane_length_initial);
            slots.resize_with(length, || None);
        }
        &mut slots[sequence]
    }

    /// Stores `stored` for `value` in `scope`; returns what was stored before.
    pub(crate) fn insert(&mut self, scope: u32, value: Value, stored: T) -> Option<T> {
        self.slot(scope, value).replace(stored)
    }

    /// Takes out what is stored for `value` in `scope`, creating nothing.
    #[inline]
    pub(crate) fn remove(&mut self, scope: u32, value: Value) -> Option<T> {
        let id = lane_id(scope, value);
        if let Some(index) = self.lane(id) {
            let slots = &mut self.lanes[index].1;
            if let Some(slot) = usize::try_from(value.sequence).ok().and_then(|sequence| slots.get_mut(sequence)) {
                if slot.is_some() {
                    return slot.take();
                }
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get_mut(&(id, value.sequence)).and_then(Option::take)
    }
}

impl ValueSet {
    /// Adds `value` to `scope`; whether it was absent.
    pub(crate) fn add(&mut self, scope: u32, value: Value) -> bool {
        self.insert(scope, value, ()).is_none()
    }
}

/// Adds values to scope 0.
impl Extend<Value> for ValueSet {
    fn extend<I: IntoIterator<Item = Value>>(&mut self, values: I) {
        for value in values {
            self.add(0, value);
        }
    }
}

/// A set of values in scope 0.
impl FromIterator<Value> for ValueSet {
    fn from_iter<I: IntoIterator<Item = Value>>(values: I) -> ValueSet {
        let mut set = ValueSet::new();
        set.extend(values);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::value;
    use proptest::prelude::*;

    #[test]
    fn scopes_and_producers_are_kept_apart() {
        let mut map: ValueMap<&str> = ValueMap::new();
        assert_eq!(map.insert(0, value(1, 0), "a"), None);
        assert_eq!(map.insert(1, value(1, 0), "b"), None);
        assert_eq!(map.insert(0, value(2, 0), "c"), None);
        assert_eq!(map.insert(0, value(1, 0), "d"), Some("a"));
        assert_eq!(map.get(0, value(1, 0)), Some(&"d"));
        assert_eq!(map.get(1, value(1, 0)), Some(&"b"));
        assert_eq!(map.get(0, value(2, 0)), Some(&"c"));
        assert_eq!(map.get(0, value(1, 1)), None);
        assert_eq!(map.get(2, value(1, 0)), None);
        assert_eq!(map.remove(1, value(1, 0)), Some("b"));
        assert_eq!(map.remove(1, value(1, 0)), None);
        assert!(!map.contains(1, value(1, 0)));
    }

    #[test]
    fn a_huge_sequence_goes_to_the_overflow_tree_and_stays_found() {
        let mut set = ValueSet::new();
        assert!(set.add(0, value(1, u64::MAX)));
        assert!(set.add(0, value(1, 5_000)));
        assert!(set.lanes.iter().all(|(_, slots)| slots.len() < 5_000));
        // Grow the lane past 5000: the overflowed value must still be found, once.
        for sequence in 0..6_000 {
            set.add(0, value(1, sequence));
        }
        assert!(set.contains(0, value(1, 5_000)));
        assert!(set.contains(0, value(1, u64::MAX)));
        assert!(!set.add(0, value(1, 5_000)));
        assert_eq!(set.remove(0, value(1, 5_000)), Some(()));
        assert!(!set.contains(0, value(1, 5_000)));
    }

    proptest! {
        /// Any sequence of inserts and removes agrees with a BTreeMap, whatever
        /// sequence bound the map was made with.
        #[test]
        fn agrees_with_a_tree(
            operations in proptest::collection::vec((0u32..3, 0u32..3, prop_oneof![0u64..3000, any::<u64>()], any::<bool>()), 0..300),
            bound in prop_oneof![Just(None), (0u64..5000).prop_map(Some), any::<u64>().prop_map(Some)],
        ) {
            let mut map: ValueMap<u64> = bound.map_or_else(ValueMap::new, ValueMap::with_sequence_bound);
            let mut tree: BTreeMap<(u32, Value), u64> = BTreeMap::new();
            for (index, (scope, producer, sequence, is_insert)) in operations.into_iter().enumerate() {
                let key = value(producer, sequence);
                if is_insert {
                    prop_assert_eq!(map.insert(scope, key, index as u64), tree.insert((scope, key), index as u64));
                } else {
                    prop_assert_eq!(map.remove(scope, key), tree.remove(&(scope, key)));
                }
                for (&(scope, key), stored) in &tree {
                    prop_assert_eq!(map.get(scope, key), Some(stored));
                }
            }
        }
    }
}
