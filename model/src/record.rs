//! Records and record batches, the unit Kafka appends, replicates and fetches.
//!
//! A batch carries the leader epoch under which it was appended (KIP-101) and, for
//! an idempotent producer, its producer id, epoch and base sequence (KIP-98). Its
//! `crc` lets recovery after a power loss cut a torn tail at the last whole batch.

use crate::hash::StableHasher;
use crate::types::{LeaderEpoch, Offset, ProducerId, Sequence};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Kafka's record headers (KIP-82), in the order the producer gave them.
    /// Boxed behind one pointer: most records carry none, and a record stays
    /// as small as it was without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<RecordHeaders>,
}

/// A record's headers: name and value pairs; a name may repeat, as in Kafka.
/// A thin pointer, so a record without headers grows by one word only.
pub type RecordHeaders = Arc<Vec<(Arc<str>, Bytes)>>;

impl Record {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.as_ref()?.iter().find(|(key, _)| &**key == name).map(|(_, value)| value)
    }

    /// The bytes the record takes in a batch, roughly as Kafka counts them.
    pub fn size_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().flat_map(|headers| headers.iter()).map(|(key, value)| key.len() + value.len() + 2).sum();
        self.value.len() + self.key.as_ref().map_or(0, |key| key.len()) + headers + 16
    }
}

/// The idempotence header of a batch (KIP-98); absent for a plain producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStamp {
    pub producer_id: ProducerId,
    pub producer_epoch: u16,
    pub base_sequence: Sequence,
    /// KIP-98: the batch belongs to a transaction (the `isTransactional` attribute).
    #[serde(default)]
    pub transactional: bool,
}

/// KIP-98: the control record of a control batch, a transaction's commit or abort
/// marker, written by the partition leader on the coordinator's WriteTxnMarkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMarker {
    pub commit: bool,
    pub coordinator_epoch: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub base_offset: Offset,
    pub partition_leader_epoch: LeaderEpoch,
    pub producer: Option<ProducerStamp>,
    /// Shared with the produce request that brought them (and its retries), so
    /// appending a batch never copies its records.
    pub records: Arc<[Record]>,
    /// Set on a control batch (KIP-98's `isControl` attribute); such a batch holds
    /// one control record and is never handed to an application.
    pub control: Option<ControlMarker>,
    /// Checksum over the batch's contents, as Kafka's CRC-32C; a torn write breaks it.
    pub crc: u32,
}

impl RecordBatch {
    pub fn new(
        base_offset: Offset,
        partition_leader_epoch: LeaderEpoch,
        producer: Option<ProducerStamp>,
        records: Arc<[Record]>,
    ) -> RecordBatch {
        assert!(!records.is_empty(), "a record batch holds at least one record");
        let mut batch = RecordBatch { base_offset, partition_leader_epoch, producer, records, control: None, crc: 0 };
        batch.crc = batch.compute_crc();
        batch
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.records.len() as u64 - 1)
    }

    pub fn next_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.records.len() as u64)
    }

    pub fn is_valid(&self) -> bool {
        self.crc == self.compute_crc()
    }

    /// The records of this batch with their offsets.
    pub fn iter(&self) -> impl Iterator<Item = (Offset, &Record)> {
        let base = self.base_offset.0;
        self.records.iter().enumerate().map(move |(index, record)| (Offset(base + index as u64), record))
    }

    /// The part of this batch below `end`, as a new batch; None when nothing is below it.
    pub fn truncated_before(&self, end: Offset) -> Option<RecordBatch> {
        if end <= self.base_offset {
            return None;
        }
        let keep = (end.0 - self.base_offset.0) as usize;
        let records = self.records[..keep.min(self.records.len())].into();
        Some(self.sliced(self.base_offset, self.producer, records))
    }

    /// A control batch carrying `marker` for the producer of `stamp` (KIP-98).
    pub fn control(base_offset: Offset, partition_leader_epoch: LeaderEpoch, stamp: ProducerStamp, marker: ControlMarker) -> RecordBatch {
        let record = Record { key: Some(Bytes::from_static(if marker.commit { b"COMMIT" } else { b"ABORT" })), value: Bytes::new(), headers: None };
        let mut batch = RecordBatch::new(base_offset, partition_leader_epoch, Some(stamp), Arc::new([record]));
        batch.control = Some(marker);
        batch.crc = batch.compute_crc();
        batch
    }

    /// A part of this batch as a batch of its own, keeping its attributes.
    pub fn sliced(&self, base_offset: Offset, producer: Option<ProducerStamp>, records: Arc<[Record]>) -> RecordBatch {
        let mut batch = RecordBatch::new(base_offset, self.partition_leader_epoch, producer, records);
        batch.control = self.control;
        batch.crc = batch.compute_crc();
        batch
    }

    /// Whether this batch holds a transaction's data (not a control batch).
    pub fn is_transactional_data(&self) -> bool {
        self.control.is_none() && self.producer.is_some_and(|stamp| stamp.transactional)
    }

    /// A multiplicative hash over what a CRC would cover, eight bytes at a time: a
    /// stand-in that is cheap and stable. Only its agreement with the batch matters
    /// (a torn write breaks it), never its value.
    fn compute_crc(&self) -> u32 {
        let mut hash = StableHasher::default();
        hash.write(&self.base_offset.0.to_le_bytes());
        hash.write(&self.partition_leader_epoch.0.to_le_bytes());
        if let Some(stamp) = &self.producer {
            hash.write(&stamp.producer_id.0.to_le_bytes());
            hash.write(&stamp.base_sequence.0.to_le_bytes());
            if stamp.transactional {
                hash.write(&stamp.producer_epoch.to_le_bytes());
                hash.write(b"txn");
            }
        }
        if let Some(marker) = &self.control {
            hash.write(&[u8::from(marker.commit)]);
            hash.write(&marker.coordinator_epoch.to_le_bytes());
        }
        for record in self.records.iter() {
            if let Some(key) = &record.key {
                hash.write(key);
            }
            hash.write(&record.value);
            for (name, value) in record.headers.iter().flat_map(|headers| headers.iter()) {
                hash.write(name.as_bytes());
                hash.write(value);
            }
        }
        let hash = hash.finish();
        (hash ^ (hash >> 32)) as u32
    }
}

pub type SharedBatch = Arc<RecordBatch>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum only lives as long as a run (the simulated disk is in memory),
    /// so its value may change between versions; what matters is that equal
    /// batches agree and that any change to what it covers breaks it.
    #[test]
    fn a_batch_checksum_covers_every_field_and_record() {
        let record = |key: &'static [u8], value: &'static [u8]| Record { key: Some(Bytes::from_static(key)), value: Bytes::from_static(value), headers: None };
        let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 2, base_sequence: Sequence(40), transactional: true };
        let batch = |offset: u64, epoch: u32, stamp: ProducerStamp, records: Vec<Record>| RecordBatch::new(Offset(offset), LeaderEpoch(epoch), Some(stamp), records.into());
        let original = batch(1234, 5, stamp, vec![record(b"key-1", b"1:17 a value of some length")]);
        assert!(original.is_valid());
        assert_eq!(original.crc, batch(1234, 5, stamp, vec![record(b"key-1", b"1:17 a value of some length")]).crc);
        let changed = [
            batch(1235, 5, stamp, vec![record(b"key-1", b"1:17 a value of some length")]),
            batch(1234, 6, stamp, vec![record(b"key-1", b"1:17 a value of some length")]),
            batch(1234, 5, ProducerStamp { base_sequence: Sequence(41), ..stamp }, vec![record(b"key-1", b"1:17 a value of some length")]),
            batch(1234, 5, ProducerStamp { producer_epoch: 3, ..stamp }, vec![record(b"key-1", b"1:17 a value of some length")]),
            batch(1234, 5, stamp, vec![record(b"key-2", b"1:17 a value of some length")]),
            batch(1234, 5, stamp, vec![record(b"key-1", b"1:17 a value of some lengtH")]),
            batch(1234, 5, stamp, vec![record(b"key-11", b":17 a value of some length")]),
        ];
        for other in changed {
            assert_ne!(other.crc, original.crc, "{other:?}");
        }
        let mut torn = original.clone();
        torn.records = Arc::new([record(b"key-1", b"1:17 a value of some")]);
        assert!(!torn.is_valid());
    }
}

/// Batches for tests of transactional reading: a one-record transactional batch
/// and a commit or abort marker, by base offset and producer id.
#[cfg(test)]
pub(crate) mod transactional_batches {
    use super::{ControlMarker, ProducerStamp, Record, RecordBatch};
    use crate::types::{LeaderEpoch, Offset, ProducerId, Sequence};
    use bytes::Bytes;
    use std::sync::Arc;

    pub fn data(base: u64, producer: u64) -> RecordBatch {
        let stamp = ProducerStamp { producer_id: ProducerId(producer), producer_epoch: 0, base_sequence: Sequence(0), transactional: true };
        RecordBatch::new(Offset(base), LeaderEpoch(0), Some(stamp), Arc::new([Record { key: None, value: Bytes::from_static(b"v"), headers: None }]))
    }

    pub fn marker(base: u64, producer: u64, commit: bool) -> RecordBatch {
        let stamp = ProducerStamp { producer_id: ProducerId(producer), producer_epoch: 1, base_sequence: Sequence(-1), transactional: true };
        RecordBatch::control(Offset(base), LeaderEpoch(0), stamp, ControlMarker { commit, coordinator_epoch: 0 })
    }
}
