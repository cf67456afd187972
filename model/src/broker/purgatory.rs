//! The broker's produce purgatory (Kafka's `DelayedProduce`): acks=all writes of
//! clients, coordinators and transaction markers, each waiting for the high
//! watermark to pass it or for its deadline.
//!
//! Waiters are kept per partition, since only a change on their own partition
//! (its high watermark, its ISR, its leadership) can complete them, and every
//! produce, follower fetch and ISR change looks at one partition's waiters.
//! Each partition remembers the least offset and the earliest deadline its
//! waiters have, so most looks end without a walk, and the earliest deadline of
//! all is computed again only after a waiter left. Each waiter carries its
//! arrival number, so what expires together is answered in arrival order, as
//! from one list in arrival order.

use super::Waiter;
use crate::partition_map::PartitionMap;
use crate::time::{earliest, Instant};
use crate::types::{Offset, TopicPartition};
use std::cell::Cell;

pub(super) struct DelayedProduce {
    pub waiter: Waiter,
    pub partition: TopicPartition,
    pub base_offset: Offset,
    pub required_offset: Offset,
    pub deadline: Instant,
    /// Arrival order across partitions.
    arrival: u64,
}

impl DelayedProduce {
    pub fn new(waiter: Waiter, partition: TopicPartition, base_offset: Offset, required_offset: Offset, deadline: Instant) -> DelayedProduce {
        DelayedProduce { waiter, partition, base_offset, required_offset, deadline, arrival: 0 }
    }
}

/// One partition's waiters.
#[derive(Default)]
struct Waiters {
    /// In arrival order.
    list: Vec<DelayedProduce>,
    /// The least offset a waiter needs (meaningless when there are none): a
    /// high watermark below it completes nothing.
    required_offset_min: Offset,
    /// The earliest deadline among the waiters.
    deadline_min: Option<Instant>,
}

impl Waiters {
    fn push(&mut self, delayed: DelayedProduce) {
        if self.list.is_empty() || delayed.required_offset < self.required_offset_min {
            self.required_offset_min = delayed.required_offset;
        }
        self.deadline_min = earliest(self.deadline_min, Some(delayed.deadline));
        self.list.push(delayed);
    }

    /// Moves the waiters `done` picks to `taken`, in arrival order; returns whether there were any.
    fn take_where(&mut self, mut done: impl FnMut(&DelayedProduce) -> bool, taken: &mut Vec<DelayedProduce>) -> bool {
        let before = taken.len();
        taken.extend(self.list.extract_if(.., |delayed| done(delayed)));
        if taken.len() == before {
            return false;
        }
        self.required_offset_min = self.list.iter().map(|delayed| delayed.required_offset).min().unwrap_or_default();
        self.deadline_min = self.list.iter().map(|delayed| delayed.deadline).min();
        true
    }
}

#[derive(Default)]
pub(super) struct DelayedProduces {
    by_partition: PartitionMap<Waiters>,
    next_arrival: u64,
    /// The earliest deadline of all waiters, once computed (None: to be computed).
    deadline_min: Cell<Option<Option<Instant>>>,
}

impl DelayedProduces {
    pub fn push(&mut self, mut delayed: DelayedProduce) {
        delayed.arrival = self.next_arrival;
        self.next_arrival += 1;
        if let Some(deadline) = self.deadline_min.get() {
            self.deadline_min.set(Some(earliest(deadline, Some(delayed.deadline))));
        }
        self.by_partition.get_or_insert_with(&delayed.partition, Waiters::default).push(delayed);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_partition.values().map(|waiters| waiters.list.len()).sum()
    }

    /// Whether any write waits on `tp`.
    #[cfg(test)]
    pub fn waiting_on(&self, tp: &TopicPartition) -> bool {
        self.by_partition.get(tp).is_some_and(|waiters| !waiters.list.is_empty())
    }

    /// Whether `high_watermark` reaches any waiter of `tp`: most calls end here.
    pub fn may_complete(&self, tp: &TopicPartition, high_watermark: Offset) -> bool {
        self.by_partition.get(tp).is_some_and(|waiters| !waiters.list.is_empty() && high_watermark >= waiters.required_offset_min)
    }

    /// Moves the waiters of `tp` that `high_watermark` reached to `taken`, in arrival order.
    pub fn take_replicated(&mut self, tp: &TopicPartition, high_watermark: Offset, taken: &mut Vec<DelayedProduce>) {
        let Some(waiters) = self.by_partition.get_mut(tp) else { return };
        if waiters.list.is_empty() || high_watermark < waiters.required_offset_min {
            return;
        }
        if waiters.take_where(|delayed| high_watermark >= delayed.required_offset, taken) {
            self.deadline_min.set(None);
        }
    }

    /// Moves every waiter of `tp` to `taken`, in arrival order.
    pub fn take_all(&mut self, tp: &TopicPartition, taken: &mut Vec<DelayedProduce>) {
        let Some(waiters) = self.by_partition.get_mut(tp) else { return };
        if waiters.take_where(|_| true, taken) {
            self.deadline_min.set(None);
        }
    }

    /// Removes every waiter whose deadline is at or before `now`, and returns them in arrival order.
    pub fn take_expired(&mut self, now: Instant) -> Vec<DelayedProduce> {
        let mut expired = Vec::new();
        for waiters in self.by_partition.values_mut() {
            if waiters.deadline_min.is_some_and(|deadline| deadline <= now) {
                waiters.take_where(|delayed| delayed.deadline <= now, &mut expired);
            }
        }
        if !expired.is_empty() {
            self.deadline_min.set(None);
        }
        expired.sort_by_key(|delayed| delayed.arrival);
        expired
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.deadline_min.get() {
            Some(deadline) => deadline,
            None => self.compute_next_deadline(),
        }
    }

    /// Out of line: the broker asks for the deadline after every message, and
    /// mostly the remembered one still holds.
    #[inline(never)]
    fn compute_next_deadline(&self) -> Option<Instant> {
        let deadline = self.by_partition.values().fold(None, |deadline, waiters| earliest(deadline, waiters.deadline_min));
        self.deadline_min.set(Some(deadline));
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::WriteToken;
    use crate::protocol::CoordinatorType;
    use proptest::prelude::*;
    use std::time::Duration;

    fn waiter(token: u64) -> Waiter {
        Waiter::Coordinator { kind: CoordinatorType::Group, token: WriteToken(token) }
    }

    fn token_of(delayed: &DelayedProduce) -> u64 {
        match delayed.waiter {
            Waiter::Coordinator { token, .. } => token.0,
            _ => unreachable!("tests push coordinator waiters only"),
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Partition, required offset, deadline in milliseconds.
        Push(u32, u64, u64),
        /// Partition, high watermark.
        Complete(u32, u64),
        /// Partition.
        Fail(u32),
        /// Now, in milliseconds.
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3u32, 0..20u64, 0..50u64).prop_map(|(p, r, d)| Op::Push(p, r, d)),
            2 => (0..3u32, 0..20u64).prop_map(|(p, h)| Op::Complete(p, h)),
            1 => (0..3u32).prop_map(Op::Fail),
            2 => (0..50u64).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// The per-partition purgatory answers exactly what one list in arrival
        /// order, scanned whole each time (the broker's former purgatory), answers,
        /// in the same order, and agrees on the earliest deadline.
        #[test]
        fn answers_as_one_list_in_arrival_order(ops in proptest::collection::vec(op(), 0..80)) {
            let mut purgatory = DelayedProduces::default();
            let mut list: Vec<(u64, TopicPartition, u64, Instant)> = Vec::new();
            let at = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
            for (token, op) in ops.into_iter().enumerate() {
                let token = token as u64;
                let (got, want): (Vec<u64>, Vec<u64>) = match op {
                    Op::Push(p, required, deadline) => {
                        let tp = TopicPartition::new("t", p);
                        purgatory.push(DelayedProduce::new(waiter(token), tp.clone(), Offset(0), Offset(required), at(deadline)));
                        list.push((token, tp, required, at(deadline)));
                        (Vec::new(), Vec::new())
                    }
                    Op::Complete(p, high_watermark) => {
                        let tp = TopicPartition::new("t", p);
                        let mut taken = Vec::new();
                        purgatory.take_replicated(&tp, Offset(high_watermark), &mut taken);
                        let got = taken.iter().map(token_of).collect();
                        let want = list.iter().filter(|entry| entry.1 == tp && entry.2 <= high_watermark).map(|entry| entry.0).collect();
                        list.retain(|entry| !(entry.1 == tp && entry.2 <= high_watermark));
                        (got, want)
                    }
                    Op::Fail(p) => {
                        let tp = TopicPartition::new("t", p);
                        let mut taken = Vec::new();
                        purgatory.take_all(&tp, &mut taken);
                        let got = taken.iter().map(token_of).collect();
                        let want = list.iter().filter(|entry| entry.1 == tp).map(|entry| entry.0).collect();
                        list.retain(|entry| entry.1 != tp);
                        (got, want)
                    }
                    Op::Expire(now) => {
                        let got = purgatory.take_expired(at(now)).iter().map(token_of).collect();
                        let want = list.iter().filter(|entry| entry.3 <= at(now)).map(|entry| entry.0).collect();
                        list.retain(|entry| entry.3 > at(now));
                        (got, want)
                    }
                };
                prop_assert_eq!(got, want);
                prop_assert_eq!(purgatory.len(), list.len());
                prop_assert_eq!(purgatory.next_deadline(), list.iter().map(|entry| entry.3).min());
                for p in 0..3 {
                    let tp = TopicPartition::new("t", p);
                    prop_assert_eq!(purgatory.waiting_on(&tp), list.iter().any(|entry| entry.1 == tp));
                }
            }
        }
    }
}
