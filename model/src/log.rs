//! A replica's log: record batches from offset 0, the leader-epoch cache (KIP-101,
//! KIP-279) and the idempotent-producer state table (KIP-98).
//!
//! The log here is the process's view: what it has written, flushed or not. What
//! reaches the disk leaves the broker as `storage::DiskOp`s; recovery rebuilds a log
//! from what the disk kept (`Log::recover`).

use crate::record::{ProducerStamp, RecordBatch, SharedBatch};
use crate::txn_index::TransactionIndex;
use crate::types::{LeaderEpoch, Offset, ProducerId, Sequence};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One entry of the leader-epoch cache: `epoch` began at `start_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// Kafka's LeaderEpochFileCache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` starts at `start_offset`; returns whether the cache changed.
    /// Entries that conflict with the new one (a later or equal epoch, or a start at or
    /// past it) are dropped first, as Kafka's `assign` does.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return false;
            }
        }
        self.entries.retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// KIP-279, as Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch not
    /// above `requested` and the offset where it ended (the start of the next epoch,
    /// or the log end offset for the latest epoch). None is Kafka's UNDEFINED_EPOCH:
    /// the requested epoch is newer than any this replica knows.
    pub fn end_offset_for(&self, requested: LeaderEpoch, log_end_offset: Offset) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.entries.last()?;
        if latest.epoch == requested {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().find(|entry| entry.epoch > requested)?;
        match self.entries.iter().rev().find(|entry| entry.epoch <= requested) {
            Some(floor) => Some((floor.epoch, higher.start_offset)),
            // Older than anything known: it ended where the oldest known epoch began.
            None => Some((requested, higher.start_offset)),
        }
    }

    /// Drops entries that start at or after `offset`, after the log was truncated there.
    pub fn truncate_from_end(&mut self, offset: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < offset);
        before != self.entries.len()
    }
}

/// What a broker remembers of one idempotent producer on one partition (KIP-98):
/// the metadata of its last five batches, to answer a retried batch with its
/// original offset instead of writing it twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_epoch: u16,
    pub batches: Vec<BatchMetadata>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: Sequence,
    pub last_sequence: Sequence,
    pub base_offset: Offset,
}

/// Kafka keeps the last five batches per producer, matching max.in.flight = 5.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Why a leader refuses an idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch in order: append it.
    Append,
    /// A retry of a batch already in the log at this base offset.
    Duplicate(Offset),
    OutOfOrder,
    ProducerFenced,
}

#[derive(Clone, Debug, Default)]
pub struct Log {
    batches: Vec<SharedBatch>,
    log_end_offset: Offset,
    epochs: LeaderEpochCache,
    producers: BTreeMap<ProducerId, ProducerEntry>,
    /// Open and aborted transactions (KIP-98), derived from the batches.
    transactions: TransactionIndex,
}

impl Log {
    /// Rebuilds a log from what the disk kept, cutting it at the first batch that is
    /// torn or out of place. Returns the log and, when something was cut, the offset
    /// it was cut at.
    ///
    /// The epoch cache is rebuilt from the batches themselves, as Kafka's segment
    /// recovery re-assigns epochs from each batch: after a power loss the durable
    /// checkpoint may describe writes that did not survive, or miss a truncation
    /// that did not, so it cannot be trusted over the log. An epoch a leader began
    /// without appending to it is forgotten, which only makes the replica ask the
    /// leader about an older epoch.
    pub fn recover(batches: &[SharedBatch]) -> (Log, Option<Offset>) {
        let mut log = Log::default();
        let mut cut = None;
        for batch in batches {
            if !batch.is_valid() || batch.base_offset != log.log_end_offset {
                cut = Some(log.log_end_offset);
                break;
            }
            log.append(batch.clone());
        }
        (log, cut)
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    pub fn batches(&self) -> &[SharedBatch] {
        &self.batches
    }

    /// A leader marks the start of its epoch at its log end (Kafka's
    /// `maybeAssignEpochStartOffset`), so followers can find where they diverge.
    pub fn assign_epoch_start(&mut self, epoch: LeaderEpoch) -> bool {
        let end = self.log_end_offset;
        self.epochs.assign(epoch, end)
    }

    /// Appends a batch whose offsets already follow the log end.
    pub fn append(&mut self, batch: SharedBatch) {
        assert_eq!(
            batch.base_offset, self.log_end_offset,
            "log append must continue the log: batch at {} but log ends at {}",
            batch.base_offset, self.log_end_offset
        );
        self.epochs.assign(batch.partition_leader_epoch, batch.base_offset);
        self.push(batch);
    }

    fn push(&mut self, batch: SharedBatch) {
        self.log_end_offset = batch.next_offset();
        if let Some(stamp) = batch.producer {
            self.remember_producer(stamp, &batch);
        }
        self.transactions.observe(&batch);
        self.batches.push(batch);
    }

    fn remember_producer(&mut self, stamp: ProducerStamp, batch: &RecordBatch) {
        // Most batches come from a producer already known: a lookup is cheaper
        // than the entry API, which prepares an insertion on every call.
        let entry = match self.producers.get_mut(&stamp.producer_id) {
            Some(entry) => entry,
            None => self.producers.entry(stamp.producer_id).or_default(),
        };
        if batch.control.is_some() {
            // A marker carries the producer's bumped epoch and no sequence: it
            // fences the older epoch's late batches (KIP-98, KIP-890).
            if stamp.producer_epoch > entry.producer_epoch {
                entry.producer_epoch = stamp.producer_epoch;
                entry.batches.clear();
            }
            return;
        }
        if stamp.producer_epoch != entry.producer_epoch {
            entry.producer_epoch = stamp.producer_epoch;
            entry.batches.clear();
        }
        let last_sequence = Sequence(stamp.base_sequence.0 + batch.records.len() as i32 - 1);
        let metadata = BatchMetadata { first_sequence: stamp.base_sequence, last_sequence, base_offset: batch.base_offset };
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED {
            // Full: the oldest goes and the rest move up one, in place, instead
            // of a push that may grow the vector followed by `remove(0)`.
            entry.batches.copy_within(1.., 0);
            *entry.batches.last_mut().expect("a full list of retained batches is not empty") = metadata;
        } else {
            entry.batches.push(metadata);
        }
    }

    /// The transaction index derived from this log.
    pub fn transactions(&self) -> &TransactionIndex {
        &self.transactions
    }

    /// The latest epoch this log has seen from `producer_id`, markers included.
    pub fn producer_epoch(&self, producer_id: ProducerId) -> Option<u16> {
        self.producers.get(&producer_id).map(|entry| entry.producer_epoch)
    }

    /// KIP-98 sequence validation on the leader, before an idempotent batch is appended.
    pub fn check_sequence(&self, stamp: ProducerStamp, record_count: usize) -> SequenceCheck {
        let Some(entry) = self.producers.get(&stamp.producer_id) else {
            return if stamp.base_sequence.0 == 0 { SequenceCheck::Append } else { SequenceCheck::OutOfOrder };
        };
        if stamp.producer_epoch < entry.producer_epoch {
            return SequenceCheck::ProducerFenced;
        }
        if stamp.producer_epoch > entry.producer_epoch {
            return if stamp.base_sequence.0 == 0 { SequenceCheck::Append } else { SequenceCheck::OutOfOrder };
        }
        let last_sequence = Sequence(stamp.base_sequence.0 + record_count as i32 - 1);
        if let Some(original) = entry
            .batches
            .iter()
            .find(|meta| meta.first_sequence == stamp.base_sequence && meta.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate(original.base_offset);
        }
        match entry.batches.last() {
            Some(last) if stamp.base_sequence.0 == last.last_sequence.0 + 1 => SequenceCheck::Append,
            None if stamp.base_sequence.0 == 0 => SequenceCheck::Append,
            _ => SequenceCheck::OutOfOrder,
        }
    }

    /// Removes every record at or above `offset`. The epoch cache and producer state
    /// are cut back to match.
    pub fn truncate_to(&mut self, offset: Offset) {
        if offset >= self.log_end_offset {
            return;
        }
        let keep = self.batches.partition_point(|batch| batch.next_offset() <= offset);
        let straddling = self.batches.get(keep).and_then(|batch| batch.truncated_before(offset));
        self.batches.truncate(keep);
        if let Some(part) = straddling {
            self.batches.push(Arc::new(part));
        }
        self.log_end_offset = offset;
        self.epochs.truncate_from_end(offset);
        self.rebuild_producers();
        self.transactions = TransactionIndex::rebuild(self.batches.iter().map(|batch| &**batch));
    }

    fn rebuild_producers(&mut self) {
        self.producers.clear();
        let batches = std::mem::take(&mut self.batches);
        for batch in &batches {
            if let Some(stamp) = batch.producer {
                self.remember_producer(stamp, batch);
            }
        }
        self.batches = batches;
    }

    /// The index of the first batch holding an offset at or after `offset` (the
    /// batch count if none does). Readers mostly ask near the log end (followers
    /// at it, consumers just behind), so this steps back from the end, doubling
    /// the step, and bisects only the last step.
    fn first_batch_ending_after(&self, offset: Offset) -> usize {
        let ends_before = |batch: &SharedBatch| batch.next_offset() <= offset;
        let batches = &self.batches[..];
        let mut high = batches.len();
        let mut step = 1;
        while step <= batches.len() {
            let probe = batches.len() - step;
            if ends_before(&batches[probe]) {
                return probe + 1 + batches[probe + 1..high].partition_point(ends_before);
            }
            high = probe;
            step *= 2;
        }
        batches[..high].partition_point(ends_before)
    }

    /// Whole batches holding offsets in `[from, until)`, at most `max_batches` of them.
    /// The first batch may start before `from`; readers skip what they did not ask for.
    /// The batches from the one holding `from` on, borrowed.
    pub fn batches_from(&self, from: Offset) -> &[SharedBatch] {
        &self.batches[self.first_batch_ending_after(from)..]
    }

    pub fn read(&self, from: Offset, until: Offset, max_batches: usize) -> Vec<SharedBatch> {
        if from >= until {
            return Vec::new();
        }
        let start = self.first_batch_ending_after(from);
        self.batches[start..]
            .iter()
            .take_while(|batch| batch.base_offset < until)
            .take(max_batches)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use bytes::Bytes;

    fn batch(base: u64, epoch: u32, count: usize) -> SharedBatch {
        let records = (0..count).map(|i| Record { key: None, value: Bytes::from(format!("v{}", base + i as u64)), headers: None }).collect();
        Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(epoch), None, records))
    }

    #[test]
    fn epoch_cache_answers_kip_279_lookups() {
        let mut cache = LeaderEpochCache::default();
        cache.assign(LeaderEpoch(1), Offset(0));
        cache.assign(LeaderEpoch(3), Offset(10));
        cache.assign(LeaderEpoch(5), Offset(20));
        assert_eq!(cache.end_offset_for(LeaderEpoch(5), Offset(25)), Some((LeaderEpoch(5), Offset(25))));
        assert_eq!(cache.end_offset_for(LeaderEpoch(4), Offset(25)), Some((LeaderEpoch(3), Offset(20))));
        assert_eq!(cache.end_offset_for(LeaderEpoch(1), Offset(25)), Some((LeaderEpoch(1), Offset(10))));
        assert_eq!(cache.end_offset_for(LeaderEpoch(0), Offset(25)), Some((LeaderEpoch(0), Offset(0))));
        assert_eq!(cache.end_offset_for(LeaderEpoch(6), Offset(25)), None);
    }

    fn entries(cache: &LeaderEpochCache) -> Vec<(u32, u64)> {
        cache.entries().iter().map(|entry| (entry.epoch.0, entry.start_offset.0)).collect()
    }

    /// Kafka's `assign` drops every entry that conflicts with the new one: a
    /// later or equal epoch, or one that starts at or past it. Either kind left
    /// behind would answer OffsetsForLeaderEpoch with an epoch that never wrote
    /// a record there.
    #[test]
    fn assigning_an_epoch_drops_the_entries_it_conflicts_with() {
        let mut cache = LeaderEpochCache::default();
        cache.assign(LeaderEpoch(1), Offset(0));
        cache.assign(LeaderEpoch(3), Offset(10));
        cache.assign(LeaderEpoch(5), Offset(20));
        assert!(cache.assign(LeaderEpoch(3), Offset(15)));
        assert_eq!(entries(&cache), vec![(1, 0), (3, 15)]);
        // A leader that appended nothing in its epoch before the next began.
        cache.assign(LeaderEpoch(4), Offset(15));
        assert_eq!(entries(&cache), vec![(1, 0), (4, 15)]);
    }

    #[test]
    fn truncation_splits_a_straddling_batch_and_trims_epochs() {
        let mut log = Log::default();
        log.append(batch(0, 1, 3));
        log.append(batch(3, 2, 3));
        log.truncate_to(Offset(4));
        assert_eq!(log.log_end_offset(), Offset(4));
        assert_eq!(log.batches().last().unwrap().records.len(), 1);
        log.truncate_to(Offset(3));
        assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
    }

    #[test]
    fn the_search_from_the_end_finds_what_a_bisection_finds() {
        let mut log = Log::default();
        for base in 0..40u64 {
            log.append(batch(base * 3, 1, 3));
        }
        for count in 0..=40 {
            let batches = &log.batches()[..count];
            let shortened = Log { batches: batches.to_vec(), ..Log::default() };
            for offset in 0..125 {
                let expected = batches.partition_point(|batch| batch.next_offset() <= Offset(offset));
                assert_eq!(shortened.first_batch_ending_after(Offset(offset)), expected, "{count} batches, offset {offset}");
            }
        }
    }

    /// A read stops before the batch that starts at `until`: for a consumer that
    /// is the high watermark or the last stable offset, and a batch from there on
    /// is not committed.
    #[test]
    fn reads_return_the_batches_holding_the_range_and_none_past_it() {
        let mut log = Log::default();
        for base in 0..4u64 {
            log.append(batch(base * 3, 1, 3));
        }
        let bases = |batches: &[SharedBatch]| batches.iter().map(|batch| batch.base_offset.0).collect::<Vec<_>>();
        assert_eq!(bases(&log.read(Offset(4), Offset(9), 10)), vec![3, 6]);
        assert_eq!(bases(&log.read(Offset(4), Offset(10), 1)), vec![3]);
        assert_eq!(bases(log.batches_from(Offset(7))), vec![6, 9]);
        assert!(log.batches_from(Offset(12)).is_empty());
    }

    #[test]
    fn recovery_cuts_a_torn_tail() {
        let first = batch(0, 1, 2);
        let mut torn = (*batch(2, 1, 2)).clone();
        torn.crc ^= 1;
        let (log, cut) = Log::recover(&[first, Arc::new(torn)]);
        assert_eq!(log.log_end_offset(), Offset(2));
        assert_eq!(cut, Some(Offset(2)));
    }

    #[test]
    fn idempotent_retry_is_a_duplicate_not_a_second_write() {
        let mut log = Log::default();
        let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: Sequence(0), transactional: false };
        assert_eq!(log.check_sequence(stamp, 2), SequenceCheck::Append);
        let records = vec![Record { key: None, value: Bytes::from_static(b"a"), headers: None }, Record { key: None, value: Bytes::from_static(b"b"), headers: None }];
        log.append(Arc::new(RecordBatch::new(Offset(0), LeaderEpoch(0), Some(stamp), records.into())));
        assert_eq!(log.check_sequence(stamp, 2), SequenceCheck::Duplicate(Offset(0)));
        let next = ProducerStamp { base_sequence: Sequence(3), ..stamp };
        assert_eq!(log.check_sequence(next, 1), SequenceCheck::OutOfOrder);
        let next = ProducerStamp { base_sequence: Sequence(2), ..stamp };
        assert_eq!(log.check_sequence(next, 1), SequenceCheck::Append);
    }

    fn stamp(producer_epoch: u16, base_sequence: i32) -> ProducerStamp {
        ProducerStamp { producer_id: ProducerId(7), producer_epoch, base_sequence: Sequence(base_sequence), transactional: false }
    }

    fn idempotent(base: u64, producer_epoch: u16, base_sequence: i32, count: usize) -> SharedBatch {
        let records: Vec<Record> = (0..count).map(|_| Record { key: None, value: Bytes::from_static(b"v"), headers: None }).collect();
        Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(0), Some(stamp(producer_epoch, base_sequence)), records.into()))
    }

    /// KIP-98 as Kafka's ProducerStateManager checks it: any of the last batches
    /// of the current epoch is a duplicate only with the same first and last
    /// sequence; a newer epoch starts again at sequence 0 and fences the older.
    #[test]
    fn sequence_checks_follow_the_producer_epoch_and_whole_batches() {
        let mut log = Log::default();
        log.append(idempotent(0, 0, 0, 2));
        log.append(idempotent(2, 0, 2, 1));
        log.append(idempotent(3, 0, 3, 1));
        assert_eq!(log.check_sequence(stamp(0, 0), 2), SequenceCheck::Duplicate(Offset(0)), "a retry of an older in-flight batch");
        assert_eq!(log.check_sequence(stamp(0, 0), 1), SequenceCheck::OutOfOrder, "same first sequence, other batch");
        assert_eq!(log.check_sequence(stamp(0, 1), 1), SequenceCheck::OutOfOrder, "same last sequence, other batch");
        assert_eq!(log.check_sequence(stamp(2, 0), 1), SequenceCheck::Append);
        assert_eq!(log.check_sequence(stamp(2, 4), 1), SequenceCheck::OutOfOrder);
        log.append(idempotent(4, 2, 0, 1));
        assert_eq!(log.producer_epoch(ProducerId(7)), Some(2));
        assert_eq!(log.producer_epoch(ProducerId(8)), None);
        assert_eq!(log.check_sequence(stamp(0, 4), 1), SequenceCheck::ProducerFenced);
        assert_eq!(log.check_sequence(stamp(2, 1), 1), SequenceCheck::Append);
    }

    /// KIP-98: the producer-state table is derived from the batches, so a log
    /// rebuilt after a restart, or a follower's log built from replicated
    /// batches, still recognises a retried batch as a duplicate.
    #[test]
    fn recovered_and_replicated_logs_keep_recognising_retries() {
        let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: Sequence(0), transactional: false };
        let records = vec![Record { key: None, value: Bytes::from_static(b"a"), headers: None }];
        let batches = vec![batch(0, 0, 2), Arc::new(RecordBatch::new(Offset(2), LeaderEpoch(0), Some(stamp), records.into()))];
        let (recovered, cut) = Log::recover(&batches);
        assert_eq!(cut, None);
        assert_eq!(recovered.check_sequence(stamp, 1), SequenceCheck::Duplicate(Offset(2)));
        let mut follower = Log::default();
        for batch in &batches {
            follower.append(batch.clone());
        }
        assert_eq!(follower.check_sequence(stamp, 1), SequenceCheck::Duplicate(Offset(2)));
        follower.truncate_to(Offset(2));
        assert_eq!(follower.check_sequence(stamp, 1), SequenceCheck::Append, "a truncated batch is forgotten");
    }
}
