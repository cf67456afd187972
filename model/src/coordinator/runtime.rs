//! What the group and the transaction coordinator share: which internal
//! partitions this broker leads and at which coordinator epoch, whether each is
//! still loading, and the tokens that name their appends.
//!
//! A loaded log may end in records that were never committed and that the next
//! election could truncate; serving them (an offset a client was told failed,
//! say) would be wrong. So a freshly loaded partition serves nothing until a
//! barrier record appended after them commits, which proves them committed too.
//! KIP-848's coordinator runtime (`CoordinatorRuntime`) likewise exposes only
//! state at the high watermark. A barrier that fails is written again after a
//! backoff.

use super::{encode_record, CoordinatorEffect, WriteToken};
use crate::error::ErrorCode;
use crate::time::Instant;
use crate::types::{LeaderEpoch, Offset};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a coordinator waits before writing a failed load barrier again.
pub const BARRIER_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Where a loaded partition's barrier stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Barrier {
    InFlight(WriteToken),
    RetryAt(Instant),
}

/// How a barrier write ended, for the coordinator that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// The barrier committed: `partition` serves from now on.
    Serving(u32),
    /// It failed; it is written again after `BARRIER_RETRY_BACKOFF`.
    Retrying(u32),
}

#[derive(Debug, Default)]
pub struct CoordinatorRuntime {
    /// The internal partitions this broker leads, with the leader epoch it
    /// loaded them at (the coordinator epoch).
    loaded: BTreeMap<u32, LeaderEpoch>,
    /// Loaded partitions that serve nothing yet.
    loading: BTreeMap<u32, Barrier>,
    next_token: u64,
}

impl CoordinatorRuntime {
    /// A token for the next append.
    pub fn next_token(&mut self) -> WriteToken {
        self.next_token += 1;
        WriteToken(self.next_token)
    }

    /// The coordinator epoch of `partition`, if this broker leads it.
    pub fn epoch(&self, partition: u32) -> Option<LeaderEpoch> {
        self.loaded.get(&partition).copied()
    }

    pub fn is_loaded(&self, partition: u32) -> bool {
        self.loaded.contains_key(&partition)
    }

    /// Loaded, but its barrier has not committed yet.
    pub fn is_loading(&self, partition: u32) -> bool {
        self.loading.contains_key(&partition)
    }

    /// Whether keys on `partition` are served here, or what to answer instead.
    pub fn serves(&self, partition: u32) -> Result<(), ErrorCode> {
        if !self.is_loaded(partition) {
            Err(ErrorCode::NotCoordinator)
        } else if self.is_loading(partition) {
            Err(ErrorCode::CoordinatorLoadInProgress)
        } else {
            Ok(())
        }
    }

    /// Takes the lead of `partition` at `epoch`, and writes its barrier.
    pub fn load(&mut self, partition: u32, epoch: LeaderEpoch, out: &mut Vec<CoordinatorEffect>) {
        self.loaded.insert(partition, epoch);
        self.write_barrier(partition, out);
    }

    /// Elected again without losing the partition in between (a leader epoch
    /// bump): only the epoch changes. False if the partition was not loaded.
    pub fn bump_epoch(&mut self, partition: u32, epoch: LeaderEpoch) -> bool {
        match self.loaded.get_mut(&partition) {
            Some(loaded) => {
                *loaded = epoch;
                true
            }
            None => false,
        }
    }

    pub fn unload(&mut self, partition: u32) {
        self.loaded.remove(&partition);
        self.loading.remove(&partition);
    }

    fn write_barrier(&mut self, partition: u32, out: &mut Vec<CoordinatorEffect>) {
        let token = self.next_token();
        let epoch = self.epoch(partition).map_or(0, |epoch| epoch.0);
        out.push(CoordinatorEffect::Append { partition, records: vec![encode_record("__barrier", &epoch)], token, producer: None });
        self.loading.insert(partition, Barrier::InFlight(token));
    }

    /// The outcome of an append, if it was a barrier; None for any other write.
    pub fn barrier_completed(&mut self, now: Instant, token: WriteToken, result: &Result<Offset, ErrorCode>) -> Option<BarrierOutcome> {
        let partition = self.loading.iter().find(|(_, barrier)| **barrier == Barrier::InFlight(token)).map(|(partition, _)| *partition)?;
        match result {
            Ok(_) => {
                self.loading.remove(&partition);
                Some(BarrierOutcome::Serving(partition))
            }
            Err(_) => {
                self.loading.insert(partition, Barrier::RetryAt(now + BARRIER_RETRY_BACKOFF));
                Some(BarrierOutcome::Retrying(partition))
            }
        }
    }

    /// Writes again the barriers whose retry is due.
    pub fn retry_barriers(&mut self, now: Instant, out: &mut Vec<CoordinatorEffect>) {
        let due: Vec<u32> = self.loading.iter().filter(|(_, barrier)| matches!(barrier, Barrier::RetryAt(at) if *at <= now)).map(|(partition, _)| *partition).collect();
        for partition in due {
            self.write_barrier(partition, out);
        }
    }

    /// When the next failed barrier is due again.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.loading
            .values()
            .filter_map(|barrier| match barrier {
                Barrier::RetryAt(at) => Some(*at),
                Barrier::InFlight(_) => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier_token(out: &[CoordinatorEffect]) -> WriteToken {
        match out.last() {
            Some(CoordinatorEffect::Append { token, .. }) => *token,
            other => panic!("expected a barrier append, got {other:?}"),
        }
    }

    #[test]
    fn a_partition_serves_once_its_barrier_commits_and_retries_a_failed_one() {
        let mut runtime = CoordinatorRuntime::default();
        assert_eq!(runtime.serves(0), Err(ErrorCode::NotCoordinator));
        let mut out = Vec::new();
        runtime.load(0, LeaderEpoch(3), &mut out);
        assert_eq!(runtime.serves(0), Err(ErrorCode::CoordinatorLoadInProgress));
        let first = barrier_token(&out);
        assert_eq!(runtime.barrier_completed(Instant::ZERO, first, &Err(ErrorCode::RequestTimedOut)), Some(BarrierOutcome::Retrying(0)));
        assert_eq!(runtime.next_deadline(), Some(Instant::ZERO + BARRIER_RETRY_BACKOFF));
        runtime.retry_barriers(Instant::ZERO, &mut out);
        assert_eq!(barrier_token(&out), first, "not due yet");
        runtime.retry_barriers(Instant::ZERO + BARRIER_RETRY_BACKOFF, &mut out);
        let second = barrier_token(&out);
        assert_ne!(second, first);
        assert_eq!(runtime.barrier_completed(Instant::ZERO, first, &Ok(Offset(0))), None, "a stale barrier proves nothing");
        assert_eq!(runtime.serves(0), Err(ErrorCode::CoordinatorLoadInProgress));
        assert_eq!(runtime.barrier_completed(Instant::ZERO, second, &Ok(Offset(1))), Some(BarrierOutcome::Serving(0)));
        assert_eq!(runtime.serves(0), Ok(()));
        assert_eq!(runtime.epoch(0), Some(LeaderEpoch(3)));
        runtime.unload(0);
        assert_eq!(runtime.serves(0), Err(ErrorCode::NotCoordinator));
    }
}
