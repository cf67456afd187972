//! The simulated disk: what a node wrote, split into the durable part (flushed)
//! and the part still in the operating system's page cache.
//!
//! Faults it models: a process crash keeps everything (the page cache survives
//! the process); a power loss keeps only what was flushed, and may keep a prefix
//! of the unflushed writes with the last kept batch torn (its checksum broken),
//! which recovery must detect and cut. Checkpoints are atomic and durable.
//! With buggify on (`crate::faults::buggify`), a flush may be slow: its writes become
//! durable only when the node's loop has stalled for the flush's duration.

use kafsim_model::record::{RecordBatch, SharedBatch};
use kafsim_model::storage::{Checkpoint, DiskOp, DurableState};
use kafsim_model::partition_map::PartitionMap;
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
enum PendingWrite {
    Append(SharedBatch),
    Truncate(Offset),
}

#[derive(Clone, Debug, Default)]
struct LogFile {
    durable: Vec<SharedBatch>,
    pending: Vec<PendingWrite>,
}

fn apply(batches: &mut Vec<SharedBatch>, write: &PendingWrite) {
    match write {
        PendingWrite::Append(batch) => batches.push(batch.clone()),
        PendingWrite::Truncate(offset) => {
            let keep = batches.partition_point(|batch| batch.next_offset() <= *offset);
            let straddling = batches.get(keep).and_then(|batch| batch.truncated_before(*offset));
            batches.truncate(keep);
            if let Some(part) = straddling {
                batches.push(Arc::new(part));
            }
        }
    }
}

impl LogFile {
    fn flush(&mut self) {
        for write in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &write);
        }
    }

    /// Makes the first `count` pending writes durable (a slow flush returning).
    fn flush_first(&mut self, count: usize) {
        let count = count.min(self.pending.len());
        for write in self.pending.drain(..count).collect::<Vec<_>>() {
            apply(&mut self.durable, &write);
        }
    }

    /// What a process sees after a restart: durable writes plus the page cache.
    fn page_cache_view(&self) -> Vec<SharedBatch> {
        let mut batches = self.durable.clone();
        for write in &self.pending {
            apply(&mut batches, write);
        }
        batches
    }
}

/// One node's disk.
#[derive(Debug, Default)]
pub struct NodeDisk {
    /// Looked up on every append the node makes, so not a `BTreeMap` (see `PartitionMap`).
    logs: PartitionMap<LogFile>,
    checkpoints: BTreeMap<String, Checkpoint>,
    /// Slow flushes still running: the log and how many of its pending writes they cover.
    slow_flushes: Vec<(TopicPartition, usize)>,
    /// How long the node's loop must stall for the slow flushes, in microseconds.
    stall_micros: u64,
    /// A controller's quorum state and metadata log (KIP-595).
    quorum: Option<kafsim_model::quorum::QuorumDurable>,
    /// The test-only switch `kafsim.test.mutation = "no-quorum-fsync"`: the
    /// quorum state stays in the page cache, and a power loss takes it all.
    quorum_unflushed: bool,
}

impl NodeDisk {
    pub fn apply(&mut self, op: DiskOp) {
        match op {
            DiskOp::Append { partition, batch } => self.logs.get_or_insert_with(&partition, LogFile::default).pending.push(PendingWrite::Append(batch)),
            DiskOp::Truncate { partition, offset } => self.logs.get_or_insert_with(&partition, LogFile::default).pending.push(PendingWrite::Truncate(offset)),
            DiskOp::Flush { partition } if crate::faults::buggify::fires(crate::faults::buggify::Point::SlowFlush) => {
                let covered = self.logs.get_or_insert_with(&partition, LogFile::default).pending.len();
                self.slow_flushes.push((partition, covered));
                self.stall_micros = self.stall_micros.max(crate::faults::buggify::draw_micros(20, 2_000));
            }
            DiskOp::Flush { partition } => self.logs.get_or_insert_with(&partition, LogFile::default).flush(),
            DiskOp::Checkpoint(checkpoint) => {
                self.checkpoints.insert(checkpoint.file_name(), checkpoint);
            }
            DiskOp::Quorum(state) => self.quorum = Some(*state),
        }
    }

    /// Turns off the quorum's fsync (a test-only switch), for this disk's life.
    pub fn skip_quorum_fsync(&mut self) {
        self.quorum_unflushed = true;
    }

    /// Takes the stall the slow flushes need (zero when there are none); the
    /// node's loop stalls that long, then calls `complete_slow_flushes`.
    pub fn take_stall(&mut self) -> std::time::Duration {
        std::time::Duration::from_micros(std::mem::take(&mut self.stall_micros))
    }

    /// The slow flushes return: what they covered is durable.
    pub fn complete_slow_flushes(&mut self) {
        for (partition, covered) in std::mem::take(&mut self.slow_flushes) {
            if let Some(file) = self.logs.get_mut(&partition) {
                file.flush_first(covered);
            }
        }
    }

    /// The state a restarted process recovers from.
    pub fn durable_state(&self) -> DurableState {
        DurableState {
            logs: self.logs.iter().map(|(tp, file)| (tp.clone(), file.page_cache_view())).collect(),
            checkpoints: self.checkpoints.clone(),
            quorum: self.quorum.clone(),
        }
    }

    /// The machine lost power. For each log, `keep(pending_count)` says how many of
    /// the unflushed writes reached the platter, and whether the last one is torn.
    pub fn power_loss(&mut self, mut keep: impl FnMut(usize) -> (usize, bool)) {
        // A flush still running when the power goes never returned.
        self.slow_flushes.clear();
        self.stall_micros = 0;
        if self.quorum_unflushed {
            self.quorum = None;
        }
        for file in self.logs.values_mut() {
            let (kept, torn) = keep(file.pending.len());
            let pending = std::mem::take(&mut file.pending);
            for (index, write) in pending.iter().take(kept).enumerate() {
                match write {
                    PendingWrite::Append(batch) if torn && index + 1 == kept => {
                        let mut broken: RecordBatch = (**batch).clone();
                        broken.crc ^= 0xdead_beef;
                        file.durable.push(Arc::new(broken));
                    }
                    write => apply(&mut file.durable, write),
                }
            }
        }
    }
}

pub type SharedDisk = Arc<Mutex<NodeDisk>>;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafsim_model::record::Record;
    use kafsim_model::LeaderEpoch;

    fn batch(base: u64) -> SharedBatch {
        Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(0), None, Arc::new([Record { key: None, value: Bytes::from_static(b"x"), headers: None }])))
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    #[test]
    fn a_crash_keeps_the_page_cache_and_a_power_loss_drops_it() {
        let mut disk = NodeDisk::default();
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(0) });
        disk.apply(DiskOp::Flush { partition: tp() });
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(1) });
        assert_eq!(disk.durable_state().logs[&tp()].len(), 2, "a process crash keeps unflushed writes");
        disk.power_loss(|_| (0, false));
        assert_eq!(disk.durable_state().logs[&tp()].len(), 1, "a power loss keeps only flushed writes");
    }

    #[test]
    fn a_torn_write_leaves_a_batch_that_fails_its_checksum() {
        let mut disk = NodeDisk::default();
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(0) });
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(1) });
        disk.power_loss(|pending| (pending, true));
        let logs = disk.durable_state().logs;
        assert!(logs[&tp()][0].is_valid());
        assert!(!logs[&tp()][1].is_valid());
    }

    mod properties {
        use super::*;
        use kafsim_model::log::Log;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Step {
            Append,
            Truncate(u64),
            Flush,
            Crash,
            PowerLoss { kept: usize, torn: bool },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => Just(Step::Append),
                1 => (0u64..12).prop_map(Step::Truncate),
                1 => Just(Step::Flush),
                1 => Just(Step::Crash),
                1 => (0usize..6, any::<bool>()).prop_map(|(kept, torn)| Step::PowerLoss { kept, torn }),
            ]
        }

        proptest! {
            /// Whatever interleaving of appends, truncations, flushes, crashes and
            /// power losses, what a broker recovers is a log that continues from 0
            /// without gaps, holds everything that was flushed and not truncated
            /// before the flush, and after a plain crash holds everything written.
            #[test]
            fn recovery_keeps_the_flushed_prefix(steps in proptest::collection::vec(step(), 1..60)) {
                let mut disk = NodeDisk::default();
                let mut written: Vec<SharedBatch> = Vec::new();
                let mut flushed_len = 0usize;
                for step in steps {
                    match step {
                        Step::Append => {
                            let batch = batch(written.len() as u64);
                            written.push(batch.clone());
                            disk.apply(DiskOp::Append { partition: tp(), batch });
                        }
                        Step::Truncate(offset) => {
                            if (offset as usize) < written.len() {
                                written.truncate(offset as usize);
                                flushed_len = flushed_len.min(written.len());
                                disk.apply(DiskOp::Truncate { partition: tp(), offset: Offset(offset) });
                            }
                        }
                        Step::Flush => {
                            disk.apply(DiskOp::Flush { partition: tp() });
                            flushed_len = written.len();
                        }
                        Step::Crash => {
                            let logs = disk.durable_state().logs;
                            let (log, _) = Log::recover(logs.get(&tp()).map_or(&[][..], |batches| &batches[..]));
                            prop_assert_eq!(log.log_end_offset().0 as usize, written.len(), "a crash loses nothing");
                        }
                        Step::PowerLoss { kept, torn } => {
                            disk.power_loss(|pending| (kept.min(pending), torn));
                            let logs = disk.durable_state().logs;
                            let (log, _) = Log::recover(logs.get(&tp()).map_or(&[][..], |batches| &batches[..]));
                            let end = log.log_end_offset().0 as usize;
                            prop_assert!(end >= flushed_len, "flushed records survive: {} < {}", end, flushed_len);
                            prop_assert!(log.batches().iter().take(flushed_len).zip(&written).all(|(got, wrote)| got == wrote), "the flushed prefix is intact");
                            // The broker continues from what it recovered, which may hold
                            // records an unflushed truncation had removed.
                            written = log.batches().to_vec();
                            disk.apply(DiskOp::Truncate { partition: tp(), offset: Offset(end as u64) });
                            disk.apply(DiskOp::Flush { partition: tp() });
                            flushed_len = end;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_slow_flush_is_durable_only_when_it_returns() {
        let mut disk = NodeDisk::default();
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(0) });
        // As a slow flush leaves it: covering the one pending write, not yet returned.
        disk.slow_flushes.push((tp(), 1));
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(1) });
        disk.complete_slow_flushes();
        disk.power_loss(|_| (0, false));
        assert_eq!(disk.durable_state().logs[&tp()].len(), 1, "the returned flush covers the write before it, not the one after");
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(1) });
        disk.slow_flushes.push((tp(), 1));
        disk.power_loss(|_| (0, false));
        disk.complete_slow_flushes();
        assert_eq!(disk.durable_state().logs[&tp()].len(), 1, "a flush running at the power loss never returns");
    }

    #[test]
    fn an_unflushed_truncation_is_undone_by_a_power_loss() {
        let mut disk = NodeDisk::default();
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(0) });
        disk.apply(DiskOp::Append { partition: tp(), batch: batch(1) });
        disk.apply(DiskOp::Flush { partition: tp() });
        disk.apply(DiskOp::Truncate { partition: tp(), offset: Offset(1) });
        assert_eq!(disk.durable_state().logs[&tp()].len(), 1);
        disk.power_loss(|_| (0, false));
        assert_eq!(disk.durable_state().logs[&tp()].len(), 2);
    }
}
