//! What a consumer hands to the application from fetched batches (KIP-98):
//! control batches never; under read_committed, no batch of an aborted
//! transaction either.
//!
//! The broker returns, with a read_committed fetch, the aborted transactions
//! overlapping the data (producer id and first offset). As Kafka's fetcher does,
//! the consumer walks the batches in offset order: a producer becomes "aborted"
//! once the walk reaches its aborted transaction's first offset, and stops being
//! so at that producer's abort marker; its data batches in between are skipped.

use crate::record::RecordBatch;
use crate::txn_index::AbortedTransaction;
use crate::types::ProducerId;
use std::collections::BTreeSet;

pub struct ReadIsolation {
    read_committed: bool,
    /// Aborted transactions not reached yet, by first offset (latest first, to pop).
    pending: Vec<AbortedTransaction>,
    aborted_producers: BTreeSet<ProducerId>,
}

impl ReadIsolation {
    pub fn new(read_committed: bool, aborted: &[AbortedTransaction]) -> ReadIsolation {
        let mut pending = if read_committed { aborted.to_vec() } else { Vec::new() };
        pending.sort_by_key(|aborted| std::cmp::Reverse(aborted.first_offset));
        ReadIsolation { read_committed, pending, aborted_producers: BTreeSet::new() }
    }

    /// Whether the records of `batch` are withheld from the application. Batches
    /// must be passed in offset order, every one of them.
    pub fn skips(&mut self, batch: &RecordBatch) -> bool {
        if !self.read_committed {
            return batch.control.is_some();
        }
        while self.pending.last().is_some_and(|aborted| aborted.first_offset <= batch.last_offset()) {
            let aborted = self.pending.pop().expect("checked above");
            self.aborted_producers.insert(aborted.producer_id);
        }
        let Some(stamp) = batch.producer else { return false };
        if let Some(marker) = batch.control {
            if !marker.commit {
                self.aborted_producers.remove(&stamp.producer_id);
            }
            return true;
        }
        stamp.transactional && self.aborted_producers.contains(&stamp.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::transactional_batches::{data, marker};
    use crate::types::Offset;

    #[test]
    fn read_committed_skips_aborted_data_and_every_marker() {
        let batches = [data(0, 1), data(1, 2), marker(2, 1, false), data(3, 1), marker(4, 2, true), marker(5, 1, true)];
        let aborted = [AbortedTransaction { producer_id: ProducerId(1), first_offset: Offset(0), last_offset: Offset(2) }];
        let mut committed = ReadIsolation::new(true, &aborted);
        let skipped: Vec<bool> = batches.iter().map(|batch| committed.skips(batch)).collect();
        assert_eq!(skipped, vec![true, false, true, false, true, true]);
        let mut uncommitted = ReadIsolation::new(false, &aborted);
        let skipped: Vec<bool> = batches.iter().map(|batch| uncommitted.skips(batch)).collect();
        assert_eq!(skipped, vec![false, false, true, false, true, true]);
    }
}
