//! Records and record batches, the unit Kafka appends, replicates and fetches.
//!
//! A batch carries the leader epoch under which it was appended (KIP-101) and, for
//! an idempotent producer, its producer id, epoch and base sequence (KIP-98). Its
//! `crc` lets recovery after a power loss cut a torn tail at the last whole batch.

use crate::types::{LeaderEpoch, Offset, ProducerId, Sequence};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// The idempotence header of a batch (KIP-98); absent for a plain producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStamp {
    pub producer_id: ProducerId,
    pub producer_epoch: u16,
    pub base_sequence: Sequence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub base_offset: Offset,
    pub partition_leader_epoch: LeaderEpoch,
    pub producer: Option<ProducerStamp>,
    pub records: Vec<Record>,
    /// Checksum over the batch's contents, as Kafka's CRC-32C; a torn write breaks it.
    pub crc: u32,
}

impl RecordBatch {
    pub fn new(
        base_offset: Offset,
        partition_leader_epoch: LeaderEpoch,
        producer: Option<ProducerStamp>,
        records: Vec<Record>,
    ) -> RecordBatch {
        assert!(!records.is_empty(), "a record batch holds at least one record");
        let mut batch = RecordBatch { base_offset, partition_leader_epoch, producer, records, crc: 0 };
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
        let records = self.records[..keep.min(self.records.len())].to_vec();
        Some(RecordBatch::new(self.base_offset, self.partition_leader_epoch, self.producer, records))
    }

    /// FNV-1a over what a CRC would cover; a stand-in that is cheap and stable.
    fn compute_crc(&self) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&self.base_offset.0.to_le_bytes());
        eat(&self.partition_leader_epoch.0.to_le_bytes());
        if let Some(stamp) = &self.producer {
            eat(&stamp.producer_id.0.to_le_bytes());
            eat(&stamp.base_sequence.0.to_le_bytes());
        }
        for record in &self.records {
            if let Some(key) = &record.key {
                eat(key);
            }
            eat(&record.value);
            eat(&[0xff]);
        }
        (hash ^ (hash >> 32)) as u32
    }
}

pub type SharedBatch = Arc<RecordBatch>;
