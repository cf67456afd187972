//! The fate of every transactional batch of a replica's log (KIP-98), read from
//! the log itself for the final snapshot: a transactional data batch belongs
//! to its producer's open transaction in the partition, and that producer's
//! next control batch (the coordinator's commit or abort marker) ends it. A
//! transaction no marker ended by the end of the log is open.
//!
//! This is what the model's transaction index derives too (`txn_index.rs`),
//! kept per batch instead of per aborted transaction, so that the checkers
//! read which records committed instead of guessing from the history.

use crate::final_state::{TransactionFate, TransactionalBatch};
use kafsim_model::record::RecordBatch;
use kafsim_model::ProducerId;
use std::collections::BTreeMap;

/// The transactional data batches of `batches` (a log, in offset order) with
/// their fates; adjacent batches of one transaction are merged into one entry.
pub fn transaction_fates<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> Vec<TransactionalBatch> {
    let mut fates: Vec<TransactionalBatch> = Vec::new();
    // Per producer: the indexes in `fates` of its open transaction's batches.
    let mut open: BTreeMap<ProducerId, Vec<usize>> = BTreeMap::new();
    for batch in batches {
        let Some(stamp) = batch.producer else { continue };
        if let Some(marker) = batch.control {
            let fate = if marker.commit { TransactionFate::Committed } else { TransactionFate::Aborted };
            for index in open.remove(&stamp.producer_id).unwrap_or_default() {
                fates[index].fate = fate;
            }
            continue;
        }
        if !stamp.transactional {
            continue;
        }
        let batches = open.entry(stamp.producer_id).or_default();
        let adjacent = batches.last().filter(|&&index| index + 1 == fates.len() && fates[index].last_offset.next() == batch.base_offset);
        match adjacent {
            Some(&index) => fates[index].last_offset = batch.last_offset(),
            None => {
                batches.push(fates.len());
                fates.push(TransactionalBatch { first_offset: batch.base_offset, last_offset: batch.last_offset(), producer_id: stamp.producer_id, fate: TransactionFate::Open });
            }
        }
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafsim_model::record::{ControlMarker, ProducerStamp, Record};
    use kafsim_model::{LeaderEpoch, Offset, Sequence};
    use std::sync::Arc;

    fn stamp(producer: u64, transactional: bool) -> ProducerStamp {
        ProducerStamp { producer_id: ProducerId(producer), producer_epoch: 0, base_sequence: Sequence(0), transactional }
    }

    fn data(base: u64, count: usize, producer: u64, transactional: bool) -> RecordBatch {
        let records: Vec<Record> = (0..count).map(|_| Record { key: None, value: Bytes::from_static(b"1:0"), headers: None }).collect();
        RecordBatch::new(Offset(base), LeaderEpoch(0), Some(stamp(producer, transactional)), records.into())
    }

    fn marker(base: u64, producer: u64, commit: bool) -> RecordBatch {
        RecordBatch::control(Offset(base), LeaderEpoch(0), stamp(producer, true), ControlMarker { commit, coordinator_epoch: 0 })
    }

    fn entry(first: u64, last: u64, producer: u64, fate: TransactionFate) -> TransactionalBatch {
        TransactionalBatch { first_offset: Offset(first), last_offset: Offset(last), producer_id: ProducerId(producer), fate }
    }

    #[test]
    fn each_transaction_takes_the_fate_of_its_producers_next_marker() {
        let plain = RecordBatch::new(Offset(2), LeaderEpoch(0), None, Arc::new([Record { key: None, value: Bytes::from_static(b"9:0"), headers: None }]));
        let log = [
            data(0, 2, 1, true),
            plain,
            data(3, 1, 2, true),
            data(4, 1, 1, true),
            data(5, 1, 3, false),
            marker(6, 1, false),
            marker(7, 2, true),
            // Producer 1's next transaction, adjacent batches merged, and no marker.
            data(8, 1, 1, true),
            data(9, 2, 1, true),
            // A stray marker with no open transaction changes nothing.
            marker(11, 4, true),
        ];
        assert_eq!(
            transaction_fates(&log),
            vec![
                entry(0, 1, 1, TransactionFate::Aborted),
                entry(3, 3, 2, TransactionFate::Committed),
                entry(4, 4, 1, TransactionFate::Aborted),
                entry(8, 10, 1, TransactionFate::Open),
            ]
        );
    }

    #[test]
    fn a_replica_answers_the_fate_of_each_offset() {
        let log = [data(0, 2, 1, true), data(2, 1, 9, false), data(3, 1, 2, true), marker(4, 1, true)];
        let replica = crate::final_state::ReplicaSnapshot { transactions: transaction_fates(&log), ..Default::default() };
        let fates: Vec<Option<TransactionFate>> = (0..6).map(|offset| replica.transaction_fate(Offset(offset))).collect();
        let (committed, open) = (Some(TransactionFate::Committed), Some(TransactionFate::Open));
        assert_eq!(fates, vec![committed, committed, None, open, None, None]);
    }
}
