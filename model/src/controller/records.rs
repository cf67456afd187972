//! The metadata log's records (KRaft's `__cluster_metadata`, KIP-631): what
//! the active controller appends for each change it makes, and the image
//! every standby controller and every broker rebuilds by applying them in
//! order. `changes` turns one controller state into the next as records;
//! `MetadataImage::apply` turns them back, so a controller that takes over
//! resumes from exactly what the log committed.
//!
//! Records carry a partition's whole state rather than Kafka's field-wise
//! PartitionChangeRecord: the image is the same, and a record is one fact.

use super::snapshot::{BrokerRegistration, ControllerSnapshot};
use crate::protocol::{ClusterMetadata, PartitionState};
use crate::types::{BrokerEpoch, NodeId, TopicPartition};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// KIP-631's RegisterBrokerRecord: a broker incarnation, with its new
    /// broker epoch; it starts fenced until it has caught up.
    RegisterBroker { broker: NodeId, broker_epoch: BrokerEpoch },
    /// KIP-631's BrokerRegistrationChangeRecord, fencing or unfencing.
    FenceBroker { broker: NodeId },
    UnfenceBroker { broker: NodeId },
    /// A partition appears or changes: replicas, leader, epochs, ISR.
    Partition { partition: TopicPartition, state: PartitionState },
}

impl MetadataRecord {
    /// One change's records as one log entry: the active controller appends
    /// them atomically (QuorumController's `scheduleAtomicAppend`), so that no
    /// replica ever applies half a change (a broker's new registration
    /// without the fencing that goes with it, say).
    pub fn encode_batch(records: &[MetadataRecord]) -> Bytes {
        Bytes::from(serde_json::to_vec(records).expect("metadata records always serialize"))
    }

    /// None for bytes that are no batch of metadata records (a torn or foreign entry).
    pub fn decode_batch(bytes: &[u8]) -> Option<Vec<MetadataRecord>> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The records that take `before` to `after`: registrations first (a
/// partition may name a broker registered in the same change), then every
/// partition whose state differs.
pub fn changes(before: &ControllerSnapshot, after: &ControllerSnapshot) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (broker, registration) in &after.registrations {
        let previous = before.registrations.get(broker);
        if previous.map(|previous| previous.broker_epoch) != Some(registration.broker_epoch) {
            records.push(MetadataRecord::RegisterBroker { broker: *broker, broker_epoch: registration.broker_epoch });
            if !registration.fenced {
                records.push(MetadataRecord::UnfenceBroker { broker: *broker });
            }
        } else if previous.map(|previous| previous.fenced) != Some(registration.fenced) {
            records.push(if registration.fenced { MetadataRecord::FenceBroker { broker: *broker } } else { MetadataRecord::UnfenceBroker { broker: *broker } });
        }
    }
    for (partition, state) in &after.metadata.partitions {
        if before.metadata.partitions.get(partition) != Some(state) {
            records.push(MetadataRecord::Partition { partition: partition.clone(), state: state.clone() });
        }
    }
    records
}

/// What applying the log up to an offset makes: the controller's state, as
/// a standby controller or a broker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataImage {
    /// The offset of the last record applied; None before the first.
    offset: Option<u64>,
    state: ControllerSnapshot,
}

impl MetadataImage {
    /// The image before any record: the cluster as it was bootstrapped.
    pub fn new(bootstrap: ControllerSnapshot) -> MetadataImage {
        MetadataImage { offset: None, state: bootstrap }
    }

    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    pub fn state(&self) -> &ControllerSnapshot {
        &self.state
    }

    pub fn metadata(&self) -> &ClusterMetadata {
        &self.state.metadata
    }

    /// Applies the batch of records at `offset`, in order. Offsets only grow:
    /// a replica that applies an older offset after a newer one has gone back
    /// in time (what `metadata-regression` will judge), so it is refused here.
    pub fn apply_batch(&mut self, offset: u64, records: &[MetadataRecord]) {
        assert!(self.offset.is_none_or(|applied| offset > applied), "metadata invariant: offset {offset} applied after {:?}", self.offset);
        self.offset = Some(offset);
        for record in records {
            self.apply_record(record);
        }
    }

    fn apply_record(&mut self, record: &MetadataRecord) {
        let registrations: &mut BTreeMap<NodeId, BrokerRegistration> = &mut self.state.registrations;
        match record {
            MetadataRecord::RegisterBroker { broker, broker_epoch } => {
                registrations.insert(*broker, BrokerRegistration { broker_epoch: *broker_epoch, fenced: true });
                self.state.next_broker_epoch = self.state.next_broker_epoch.max(broker_epoch.0 + 1);
            }
            MetadataRecord::FenceBroker { broker } | MetadataRecord::UnfenceBroker { broker } => {
                if let Some(registration) = registrations.get_mut(broker) {
                    registration.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                }
            }
            MetadataRecord::Partition { partition, state } => {
                self.state.metadata.partitions.insert(partition.clone(), state.clone());
            }
        }
        self.refresh_brokers();
        self.state.metadata.version += 1;
    }

    /// The metadata's broker list is the unfenced registered brokers, as the
    /// controller publishes it.
    fn refresh_brokers(&mut self) {
        self.state.metadata.brokers = self.state.registrations.iter().filter(|(_, registration)| !registration.fenced).map(|(broker, _)| *broker).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LeaderEpoch, PartitionEpoch};
    use proptest::prelude::*;

    fn snapshot(registrations: &[(u32, u64, bool)], partitions: &[(u32, Option<u32>, u32, &[u32])]) -> ControllerSnapshot {
        let registrations: BTreeMap<NodeId, BrokerRegistration> =
            registrations.iter().map(|(broker, epoch, fenced)| (NodeId(*broker), BrokerRegistration { broker_epoch: BrokerEpoch(*epoch), fenced: *fenced })).collect();
        let partitions = partitions
            .iter()
            .map(|(partition, leader, epoch, isr)| {
                let isr: Vec<NodeId> = isr.iter().copied().map(NodeId).collect();
                // Odd epochs carry an ELR (KIP-966), and a last known leader when
                // leaderless, so records are tried with and without them.
                let elr = if epoch % 2 == 1 { [1, 2, 3].into_iter().map(NodeId).filter(|replica| !isr.contains(replica)).collect() } else { Vec::new() };
                let last_known_elr = if epoch % 2 == 1 && leader.is_none() { vec![NodeId(1)] } else { Vec::new() };
                let state = PartitionState {
                    replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
                    leader: leader.map(NodeId),
                    leader_epoch: LeaderEpoch(*epoch),
                    partition_epoch: PartitionEpoch(*epoch),
                    isr,
                    elr,
                    last_known_elr,
                };
                (TopicPartition::new("events", *partition), state)
            })
            .collect();
        let next_broker_epoch = registrations.values().map(|registration| registration.broker_epoch.0 + 1).max().unwrap_or(1);
        let mut state = ControllerSnapshot { next_broker_epoch, registrations, metadata: ClusterMetadata { version: 0, brokers: Vec::new(), partitions } };
        state.metadata.brokers = state.registrations.iter().filter(|(_, registration)| !registration.fenced).map(|(broker, _)| *broker).collect();
        state
    }

    /// Applying `changes(before, after)` to an image of `before` gives `after`
    /// (but for the version counter, which counts records).
    fn round_trip(before: &ControllerSnapshot, after: &ControllerSnapshot) -> ControllerSnapshot {
        let mut image = MetadataImage::new(before.clone());
        let records = changes(before, after);
        let decoded = MetadataRecord::decode_batch(&MetadataRecord::encode_batch(&records)).expect("a batch decodes");
        assert_eq!(decoded, records);
        image.apply_batch(0, &decoded);
        let mut state = image.state().clone();
        state.metadata.version = after.metadata.version;
        state
    }

    #[test]
    fn a_fenced_leader_replaced_and_a_broker_back_as_a_new_incarnation_round_trip() {
        let before = snapshot(&[(1, 1, false), (2, 2, false), (3, 3, false)], &[(0, Some(1), 0, &[1, 2, 3]), (1, Some(2), 0, &[1, 2, 3])]);
        let after = snapshot(&[(1, 4, false), (2, 2, true), (3, 3, false)], &[(0, Some(1), 0, &[1, 2, 3]), (1, Some(3), 1, &[1, 3])]);
        let records = changes(&before, &after);
        assert_eq!(
            records,
            vec![
                MetadataRecord::RegisterBroker { broker: NodeId(1), broker_epoch: BrokerEpoch(4) },
                MetadataRecord::UnfenceBroker { broker: NodeId(1) },
                MetadataRecord::FenceBroker { broker: NodeId(2) },
                MetadataRecord::Partition { partition: TopicPartition::new("events", 1), state: after.metadata.partitions[&TopicPartition::new("events", 1)].clone() },
            ]
        );
        assert_eq!(round_trip(&before, &after), after);
    }

    #[test]
    fn a_partition_record_from_before_kip_966_decodes_without_its_fields_and_encodes_to_the_same_bytes() {
        let entry = br#"[{"Partition":{"partition":{"topic":"events","partition":0},"state":{"replicas":[1,2],"leader":1,"leader_epoch":3,"partition_epoch":4,"isr":[1,2]}}}]"#;
        let records = MetadataRecord::decode_batch(entry).expect("a batch of one partition record decodes");
        let [MetadataRecord::Partition { state, .. }] = records.as_slice() else { panic!("one partition record, not {records:?}") };
        assert_eq!(state.isr, vec![NodeId(1), NodeId(2)]);
        assert!(state.elr.is_empty() && state.last_known_elr.is_empty());
        let encoded = MetadataRecord::encode_batch(&records);
        assert_eq!(&encoded[..], &entry[..], "without KIP-966's fields an entry is the same bytes as before them");
    }

    #[test]
    #[should_panic(expected = "metadata invariant")]
    fn an_older_offset_after_a_newer_one_is_refused() {
        let mut image = MetadataImage::new(snapshot(&[(1, 1, false)], &[]));
        image.apply_batch(5, &[MetadataRecord::FenceBroker { broker: NodeId(1) }]);
        image.apply_batch(4, &[MetadataRecord::UnfenceBroker { broker: NodeId(1) }]);
    }

    fn any_snapshot() -> impl Strategy<Value = ControllerSnapshot> {
        let registration = (1u64..6, any::<bool>());
        let partition = (proptest::option::of(1u32..4), 0u32..4, proptest::sample::subsequence(vec![1u32, 2, 3], 1..=3));
        (proptest::collection::vec(registration, 3), proptest::collection::vec(partition, 0..4)).prop_map(|(registrations, partitions)| {
            let registrations: Vec<(u32, u64, bool)> = registrations.into_iter().enumerate().map(|(index, (epoch, fenced))| (index as u32 + 1, epoch, fenced)).collect();
            let partitions: Vec<(u32, Option<u32>, u32, Vec<u32>)> = partitions.into_iter().enumerate().map(|(index, (leader, epoch, isr))| (index as u32, leader, epoch, isr)).collect();
            let partitions: Vec<(u32, Option<u32>, u32, &[u32])> = partitions.iter().map(|(index, leader, epoch, isr)| (*index, *leader, *epoch, isr.as_slice())).collect();
            snapshot(&registrations, &partitions)
        })
    }

    proptest! {
        /// Any change a controller makes, logged as records and applied by a
        /// replica, rebuilds the controller's own state.
        #[test]
        fn any_change_applied_from_its_records_rebuilds_the_state(before in any_snapshot(), after in any_snapshot()) {
            // Partitions are never deleted, and a broker's epoch never goes back.
            let mut after = after;
            for (partition, state) in &before.metadata.partitions {
                after.metadata.partitions.entry(partition.clone()).or_insert_with(|| state.clone());
            }
            for (broker, registration) in &before.registrations {
                let later = after.registrations.get_mut(broker).expect("the same brokers");
                if later.broker_epoch < registration.broker_epoch {
                    later.broker_epoch = registration.broker_epoch;
                }
            }
            after.next_broker_epoch = after.registrations.values().map(|registration| registration.broker_epoch.0 + 1).max().unwrap_or(1).max(before.next_broker_epoch);
            prop_assert_eq!(round_trip(&before, &after), after);
        }
    }
}
