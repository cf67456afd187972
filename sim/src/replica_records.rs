//! A replica's log as the final snapshot holds it: each record's offset and its
//! decoded workload value. Followers append the very batches (the same `Arc`s)
//! their leader fetched them from, so the replicas of a partition mostly share
//! their batches: a batch decoded for one replica is copied for the next instead
//! of decoded again.

use crate::history::Value;
use kafsim_model::record::{RecordBatch, SharedBatch};
use kafsim_model::Offset;
use std::ops::Range;

/// Where the records of one batch stand in the records of the replica decoded last.
struct DecodedBatch {
    /// The batch's address, compared and never followed. The snapshot runs with
    /// every node stopped, so every batch it saw stays alive in its broker's log
    /// until it ends, and no other batch can take the same address meanwhile.
    address: *const RecordBatch,
    base_offset: Offset,
    records: Range<usize>,
}

/// The batches of the replica of a partition decoded last.
#[derive(Default)]
pub struct DecodedBatches {
    batches: Vec<DecodedBatch>,
}

impl DecodedBatches {
    /// The records of `batches`, in log order. `previous` holds the records of
    /// the replica `self` describes (empty before the first one); afterwards
    /// `self` describes the replica just decoded.
    pub fn decode<'a>(&mut self, batches: impl Iterator<Item = &'a SharedBatch>, previous: &[(Offset, Value)], capacity: usize) -> Vec<(Offset, Value)> {
        let mut records = Vec::with_capacity(capacity);
        let mut decoded = Vec::with_capacity(self.batches.len());
        // Both logs are in offset order, so one cursor walks the previous one.
        let mut cursor = 0;
        for batch in batches {
            while self.batches.get(cursor).is_some_and(|known| known.base_offset < batch.base_offset) {
                cursor += 1;
            }
            let start = records.len();
            match self.batches.get(cursor).filter(|known| std::ptr::eq(known.address, &**batch)) {
                Some(known) => records.extend_from_slice(&previous[known.records.clone()]),
                None => records.extend(batch.iter().filter_map(|(offset, record)| crate::app::message::record_value(record).map(|value| (offset, value)))),
            }
            decoded.push(DecodedBatch { address: &**batch, base_offset: batch.base_offset, records: start..records.len() });
        }
        self.batches = decoded;
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafsim_model::record::Record;
    use kafsim_model::LeaderEpoch;
    use std::sync::Arc;

    fn batch(base: u64, values: &[&'static str]) -> SharedBatch {
        let records = values.iter().map(|value| Record { key: None, value: Bytes::from_static(value.as_bytes()), headers: None }).collect();
        Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(0), None, records))
    }

    fn decoded_afresh(batches: &[SharedBatch]) -> Vec<(Offset, Value)> {
        batches.iter().flat_map(|batch| batch.iter().filter_map(|(offset, record)| crate::app::message::record_value(record).map(|value| (offset, value)))).collect()
    }

    /// Shared batches are copied, a batch at the same offset that is not the same
    /// batch (a diverged follower) is decoded, and either way the records are
    /// those a fresh decoding gives.
    #[test]
    fn records_agree_with_decoding_every_batch() {
        let shared = [batch(0, &["1:0", "x", "1:1"]), batch(3, &["2:0"]), batch(4, &["1:2", "2:1"])];
        let leader = shared.to_vec();
        let follower = vec![shared[0].clone(), batch(3, &["3:0", "3:1"]), batch(5, &["3:2"])];
        let lagging = vec![shared[0].clone(), shared[1].clone()];
        let mut decoded = DecodedBatches::default();
        let mut previous = Vec::new();
        for replica in [&leader, &follower, &lagging, &leader, &Vec::new(), &leader] {
            let records = decoded.decode(replica.iter(), &previous, 0);
            assert_eq!(records, decoded_afresh(replica));
            previous = records;
        }
    }
}
