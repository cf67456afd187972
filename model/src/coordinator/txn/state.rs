//! One transactional id's state on its coordinator (Kafka's TransactionMetadata)
//! and the phases a transaction moves through (KIP-98):
//!
//! ```text
//! Empty --AddPartitions--> Ongoing --EndTxn(commit)--> PrepareCommit --markers written--> CompleteCommit
//!                             |    --EndTxn(abort), timeout, new producer--> PrepareAbort --markers--> CompleteAbort
//! Complete* --AddPartitions--> Ongoing ...      Empty/Complete* --InitProducerId--> Empty (epoch bumped)
//! ```
//!
//! As in rustls, every transition consumes the old state and returns the new one
//! or the protocol error that refuses it; the coordinator writes the returned
//! state to `__transaction_state` and adopts it only once the write committed.
//!
//! Epochs: InitProducerId bumps the producer epoch (fencing zombies, KIP-98).
//! Ending a transaction bumps it twice (KIP-890 part 2 bumps it once): the
//! markers carry epoch E+1 and the producer's next transaction uses E+2, so a
//! late data batch of the ended transaction (epoch E) is fenced by the marker,
//! and a late duplicate marker (E+1) is fenced by the next transaction's data
//! instead of ending that transaction early.

use crate::error::ErrorCode;
use crate::types::{ProducerId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnPhase {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnPhase {
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnPhase::PrepareCommit | TxnPhase::PrepareAbort)
    }

    /// No transaction in progress: a new one may begin.
    pub fn is_idle(self) -> bool {
        matches!(self, TxnPhase::Empty | TxnPhase::CompleteCommit | TxnPhase::CompleteAbort)
    }
}

/// What `__transaction_state` holds for one transactional id: each record is the
/// whole state after a transition, and the last one wins on load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: ProducerId,
    /// The epoch the producer uses now.
    pub producer_epoch: u16,
    /// The producer's epoch before the bump at the last transaction's end, so a
    /// retried EndTxn whose answer was lost is recognised.
    pub last_producer_epoch: Option<u16>,
    pub timeout_ms: u64,
    pub phase: TxnPhase,
    pub partitions: BTreeSet<TopicPartition>,
}

impl TxnMetadata {
    pub fn new(transactional_id: &str, producer_id: ProducerId, timeout_ms: u64) -> TxnMetadata {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: None,
            timeout_ms,
            phase: TxnPhase::Empty,
            partitions: BTreeSet::new(),
        }
    }

    /// The epoch the markers of the transaction being completed carry.
    pub fn marker_epoch(&self) -> u16 {
        self.producer_epoch.saturating_sub(1)
    }

    /// KIP-98: a producer (re)starting with this transactional id. A transaction
    /// left open must be aborted first (`abort`), so the caller answers
    /// ConcurrentTransactions and the producer asks again.
    pub fn init_producer_id(self, timeout_ms: u64) -> Result<TxnMetadata, ErrorCode> {
        if !self.phase.is_idle() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let producer_epoch = self.producer_epoch.checked_add(1).ok_or(ErrorCode::InvalidProducerEpoch)?;
        Ok(TxnMetadata { producer_epoch, last_producer_epoch: None, timeout_ms, phase: TxnPhase::Empty, partitions: BTreeSet::new(), ..self })
    }

    fn check_producer(&self, producer_id: ProducerId, producer_epoch: u16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn: the first add begins the transaction.
    pub fn add_partitions(self, producer_id: ProducerId, producer_epoch: u16, partitions: &[TopicPartition]) -> Result<TxnMetadata, ErrorCode> {
        self.check_producer(producer_id, producer_epoch)?;
        let mut next = match self.phase {
            TxnPhase::Ongoing => self,
            phase if phase.is_idle() => TxnMetadata { phase: TxnPhase::Ongoing, partitions: BTreeSet::new(), ..self },
            // The previous transaction's markers are still being written.
            _ => return Err(ErrorCode::ConcurrentTransactions),
        };
        next.partitions.extend(partitions.iter().cloned());
        Ok(next)
    }

    /// EndTxn. Ok(None) means the request is a retry of the completion already
    /// decided, to be answered with the current epoch and nothing written.
    pub fn end(self, producer_id: ProducerId, producer_epoch: u16, commit: bool) -> Result<Option<TxnMetadata>, ErrorCode> {
        if producer_id != self.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        let decided = match self.phase {
            TxnPhase::PrepareCommit | TxnPhase::CompleteCommit => Some(true),
            TxnPhase::PrepareAbort | TxnPhase::CompleteAbort => Some(false),
            _ => None,
        };
        if Some(producer_epoch) == self.last_producer_epoch && decided.is_some() {
            return if decided == Some(commit) { Ok(None) } else { Err(ErrorCode::InvalidTxnState) };
        }
        self.check_producer(producer_id, producer_epoch)?;
        if self.phase != TxnPhase::Ongoing {
            return Err(if self.phase.is_prepare() { ErrorCode::ConcurrentTransactions } else { ErrorCode::InvalidTxnState });
        }
        Ok(Some(self.prepare(commit)?))
    }

    /// Abort an open transaction without its producer: it timed out, or a new
    /// producer with this transactional id arrived (KIP-98 zombie fencing).
    pub fn abort(self) -> Result<TxnMetadata, ErrorCode> {
        if self.phase != TxnPhase::Ongoing {
            return Err(ErrorCode::InvalidTxnState);
        }
        self.prepare(false)
    }

    fn prepare(self, commit: bool) -> Result<TxnMetadata, ErrorCode> {
        let producer_epoch = self.producer_epoch.checked_add(2).ok_or(ErrorCode::InvalidProducerEpoch)?;
        let phase = if commit { TxnPhase::PrepareCommit } else { TxnPhase::PrepareAbort };
        Ok(TxnMetadata { producer_epoch, last_producer_epoch: Some(self.producer_epoch), phase, ..self })
    }

    /// Every marker is written: the transaction is complete.
    pub fn complete(self) -> Result<TxnMetadata, ErrorCode> {
        let phase = match self.phase {
            TxnPhase::PrepareCommit => TxnPhase::CompleteCommit,
            TxnPhase::PrepareAbort => TxnPhase::CompleteAbort,
            _ => return Err(ErrorCode::InvalidTxnState),
        };
        Ok(TxnMetadata { phase, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(index: u32) -> TopicPartition {
        TopicPartition::new("t", index)
    }

    #[test]
    fn a_transaction_runs_through_its_phases_and_bumps_the_epoch() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).init_producer_id(1000).unwrap();
        assert_eq!(meta.producer_epoch, 1);
        let meta = meta.add_partitions(ProducerId(9), 1, &[tp(0)]).unwrap();
        assert_eq!(meta.phase, TxnPhase::Ongoing);
        let meta = meta.end(ProducerId(9), 1, true).unwrap().unwrap();
        assert_eq!((meta.phase, meta.producer_epoch, meta.marker_epoch()), (TxnPhase::PrepareCommit, 3, 2));
        // A retry of the same EndTxn is recognised; the opposite decision is refused.
        assert_eq!(meta.clone().end(ProducerId(9), 1, true), Ok(None));
        assert_eq!(meta.clone().end(ProducerId(9), 1, false), Err(ErrorCode::InvalidTxnState));
        // No new transaction while markers are written.
        assert_eq!(meta.clone().add_partitions(ProducerId(9), 3, &[tp(1)]), Err(ErrorCode::ConcurrentTransactions));
        let meta = meta.complete().unwrap();
        assert_eq!(meta.phase, TxnPhase::CompleteCommit);
        // The old epoch is fenced.
        assert_eq!(meta.clone().add_partitions(ProducerId(9), 1, &[tp(1)]), Err(ErrorCode::ProducerFenced));
        let meta = meta.add_partitions(ProducerId(9), 3, &[tp(1)]).unwrap();
        assert_eq!(meta.partitions.iter().cloned().collect::<Vec<_>>(), vec![tp(1)]);
    }

    #[test]
    fn partitions_added_during_a_transaction_join_it() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).add_partitions(ProducerId(9), 0, &[tp(0)]).unwrap();
        let meta = meta.add_partitions(ProducerId(9), 0, &[tp(1)]).unwrap();
        assert_eq!(meta.phase, TxnPhase::Ongoing);
        assert_eq!(meta.partitions.iter().cloned().collect::<Vec<_>>(), vec![tp(0), tp(1)]);
    }

    /// An abort is retried as a commit is: the producer whose EndTxn answer was
    /// lost must learn its abort went through, not that it is fenced.
    #[test]
    fn a_retried_abort_is_recognised() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).add_partitions(ProducerId(9), 0, &[tp(0)]).unwrap();
        let meta = meta.end(ProducerId(9), 0, false).unwrap().unwrap();
        assert_eq!(meta.phase, TxnPhase::PrepareAbort);
        assert_eq!(meta.clone().end(ProducerId(9), 0, false), Ok(None));
        assert_eq!(meta.clone().end(ProducerId(9), 0, true), Err(ErrorCode::InvalidTxnState));
        let meta = meta.complete().unwrap();
        assert_eq!(meta.clone().end(ProducerId(9), 0, false), Ok(None));
    }

    /// Only the previous epoch's EndTxn is a retry, and only while its outcome
    /// stands: the current epoch ending a transaction while markers are being
    /// written must retry later, and the previous epoch's EndTxn arriving during
    /// the next transaction is a zombie's.
    #[test]
    fn an_end_is_a_retry_only_from_the_previous_epoch_of_a_decided_transaction() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).add_partitions(ProducerId(9), 0, &[tp(0)]).unwrap();
        let meta = meta.end(ProducerId(9), 0, true).unwrap().unwrap();
        assert_eq!(meta.clone().end(ProducerId(9), 2, true), Err(ErrorCode::ConcurrentTransactions));
        let next = meta.complete().unwrap().add_partitions(ProducerId(9), 2, &[tp(1)]).unwrap();
        assert_eq!(next.end(ProducerId(9), 0, true), Err(ErrorCode::ProducerFenced));
    }

    /// InitProducerId starts the id afresh (Kafka's Empty state): the new
    /// producer's timeout, no partitions and no previous EndTxn to recognise.
    #[test]
    fn init_producer_id_after_a_transaction_starts_clean() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).add_partitions(ProducerId(9), 0, &[tp(0)]).unwrap();
        let completed = meta.end(ProducerId(9), 0, true).unwrap().unwrap().complete().unwrap();
        let restarted = completed.init_producer_id(5000).unwrap();
        let expected = TxnMetadata { producer_epoch: 3, ..TxnMetadata::new("tx", ProducerId(9), 5000) };
        assert_eq!(restarted, expected);
    }

    #[test]
    fn a_new_producer_cannot_start_over_an_open_transaction() {
        let meta = TxnMetadata::new("tx", ProducerId(9), 1000).add_partitions(ProducerId(9), 0, &[tp(0)]).unwrap();
        assert_eq!(meta.clone().init_producer_id(1000), Err(ErrorCode::ConcurrentTransactions));
        let aborted = meta.abort().unwrap();
        assert_eq!(aborted.phase, TxnPhase::PrepareAbort);
        let ready = aborted.complete().unwrap().init_producer_id(1000).unwrap();
        assert_eq!(ready.producer_epoch, 3);
    }
}
