//! Cheap invariants checked while a run goes, across nodes: at most one leader
//! per partition and leader epoch. (The high watermark never moving back on a
//! leader is asserted inside the broker itself.) A breach is a bug in the model,
//! so it panics, and the runner reports the panic with its seed.

use kafsim_model::{LeaderEpoch, NodeId, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Invariants {
    leaders: Mutex<BTreeMap<(TopicPartition, LeaderEpoch), NodeId>>,
}

impl Invariants {
    pub fn leader_elected(&self, partition: &TopicPartition, leader_epoch: LeaderEpoch, broker: NodeId) {
        let mut leaders = self.leaders.lock().expect("invariants lock");
        let first = *leaders.entry((partition.clone(), leader_epoch)).or_insert(broker);
        assert_eq!(
            first, broker,
            "invariant: at most one leader per partition and epoch, but {partition} epoch {leader_epoch} was led by broker {first} and then broker {broker}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_leader_may_take_its_epoch_again_after_a_restart() {
        let invariants = Invariants::default();
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
    }

    #[test]
    #[should_panic(expected = "at most one leader per partition and epoch")]
    fn two_leaders_in_one_epoch_trip_the_invariant() {
        let invariants = Invariants::default();
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(1));
        invariants.leader_elected(&TopicPartition::new("t", 0), LeaderEpoch(3), NodeId(2));
    }
}
