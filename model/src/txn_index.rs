//! A partition's transaction state (KIP-98): the transactions still open in it,
//! the last stable offset they hold back, and the aborted-transaction index that
//! read_committed fetches return.
//!
//! Everything here is derived from the log itself: a transactional data batch
//! opens its producer's transaction at the batch's offset, and a control batch
//! (the commit or abort marker) closes it. So a follower builds the same state
//! from the batches it replicates, recovery rebuilds it by replaying the log,
//! and a truncation rebuilds it from what is left; Kafka keeps the same facts in
//! its producer-state snapshots and `.txnindex` files.

use crate::record::RecordBatch;
use crate::types::{Offset, ProducerId};
use std::collections::BTreeMap;

/// One aborted transaction of one partition: its producer, its first offset in
/// the partition and the offset of its abort marker (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

/// A transaction whose marker is in the log: until the marker is below the high
/// watermark, the transaction still holds the last stable offset back (Kafka's
/// "unreplicated transactions"), since the marker might yet be truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    first_offset: Offset,
    marker_offset: Offset,
}

#[derive(Clone, Debug, Default)]
pub struct TransactionIndex {
    /// Open transactions: producer -> first offset of its transaction here.
    ongoing: BTreeMap<ProducerId, Offset>,
    /// Completed transactions, in marker order; only the recent ones matter.
    completed: Vec<Completed>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTransaction>,
}

/// How many completed transactions are remembered for the last stable offset;
/// older ones are long below the high watermark.
const COMPLETED_RETAINED: usize = 64;

impl TransactionIndex {
    /// Replays `batches` from the start of the log.
    pub fn rebuild<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> TransactionIndex {
        let mut index = TransactionIndex::default();
        for batch in batches {
            index.observe(batch);
        }
        index
    }

    /// Takes one appended batch into account.
    pub fn observe(&mut self, batch: &RecordBatch) {
        let Some(stamp) = batch.producer else { return };
        if let Some(marker) = batch.control {
            let Some(first_offset) = self.ongoing.remove(&stamp.producer_id) else { return };
            let marker_offset = batch.base_offset;
            self.completed.push(Completed { first_offset, marker_offset });
            if self.completed.len() > 2 * COMPLETED_RETAINED {
                self.completed.drain(..COMPLETED_RETAINED);
            }
            if !marker.commit {
                self.aborted.push(AbortedTransaction { producer_id: stamp.producer_id, first_offset, last_offset: marker_offset });
            }
        } else if stamp.transactional {
            self.ongoing.entry(stamp.producer_id).or_insert(batch.base_offset);
        }
    }

    /// KIP-98's last stable offset: the first offset of the earliest transaction
    /// not known to be complete, capped by the high watermark.
    pub fn last_stable_offset(&self, high_watermark: Offset) -> Offset {
        let mut stable = high_watermark;
        for first in self.ongoing.values() {
            stable = stable.min(*first);
        }
        for completed in self.completed.iter().rev() {
            if completed.marker_offset < high_watermark {
                // Markers are in offset order: every earlier one is below too.
                break;
            }
            stable = stable.min(completed.first_offset);
        }
        stable
    }

    /// The aborted transactions with records in `[from, until)`, for a read_committed fetch.
    pub fn aborted_between(&self, from: Offset, until: Offset) -> Vec<AbortedTransaction> {
        let start = self.aborted.partition_point(|aborted| aborted.last_offset < from);
        self.aborted[start..].iter().filter(|aborted| aborted.first_offset < until).copied().collect()
    }

    /// Whether `producer_id` has a transaction open in this partition.
    pub fn is_ongoing(&self, producer_id: ProducerId) -> bool {
        self.ongoing.contains_key(&producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::transactional_batches::{data, marker};

    #[test]
    fn last_stable_offset_waits_for_open_transactions_and_unreplicated_markers() {
        let mut index = TransactionIndex::default();
        index.observe(&data(0, 1));
        index.observe(&data(1, 2));
        assert_eq!(index.last_stable_offset(Offset(2)), Offset(0));
        index.observe(&marker(2, 1, true));
        // Producer 1's marker is not below the high watermark yet.
        assert_eq!(index.last_stable_offset(Offset(2)), Offset(0));
        assert_eq!(index.last_stable_offset(Offset(3)), Offset(1));
        index.observe(&marker(3, 2, false));
        assert_eq!(index.last_stable_offset(Offset(4)), Offset(4));
        assert_eq!(index.aborted_between(Offset(0), Offset(4)), vec![AbortedTransaction { producer_id: ProducerId(2), first_offset: Offset(1), last_offset: Offset(3) }]);
        assert!(index.aborted_between(Offset(4), Offset(9)).is_empty());
    }

    /// Pruning old completed transactions must never forget one of the last
    /// COMPLETED_RETAINED: a high watermark that lags that far still has to hold
    /// the last stable offset at the first offset of the transaction whose
    /// marker it has not passed. Run past several prunings to see each one.
    #[test]
    fn last_stable_offset_remembers_the_recent_completed_transactions_across_pruning() {
        let mut index = TransactionIndex::default();
        for transaction in 0..5 * COMPLETED_RETAINED as u64 {
            index.observe(&data(2 * transaction, 1));
            index.observe(&marker(2 * transaction + 1, 1, transaction % 2 == 0));
            let oldest_remembered = (transaction + 1).saturating_sub(COMPLETED_RETAINED as u64);
            for recent in oldest_remembered..=transaction {
                let marker_offset = Offset(2 * recent + 1);
                assert_eq!(index.last_stable_offset(marker_offset), Offset(2 * recent), "after {} transactions, high watermark at the marker of {recent}", transaction + 1);
            }
        }
    }

    #[test]
    fn rebuild_after_truncation_reopens_a_transaction_whose_marker_was_cut() {
        let batches = [data(0, 1), marker(1, 1, false)];
        let index = TransactionIndex::rebuild(&batches[..1]);
        assert!(index.is_ongoing(ProducerId(1)));
        let index = TransactionIndex::rebuild(&batches);
        assert!(!index.is_ongoing(ProducerId(1)));
        assert_eq!(index.aborted_between(Offset(0), Offset(2)).len(), 1);
    }
}
