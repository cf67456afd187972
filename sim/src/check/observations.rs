//! Observations of a value at a partition offset: who saw it there (`Witness`),
//! and each partition's committed log as a slice sorted by offset. The shared
//! per-run views built on them are in `views.rs`.

use super::findings::seconds;
use crate::final_state::PartitionSnapshot;
use crate::history::{Op, Value};
use kafsim_model::Offset;
use std::fmt;

/// Where a checker saw a value stand at a partition offset, for violation details.
/// It keeps the op and reads it only when a violation is written: a checker
/// makes a witness for every value it meets and reports a few, and reading the
/// op of each would walk the whole history again.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Witness<'a> {
    /// A producer's send completed `ok` with this position.
    Acknowledged(&'a Op),
    /// A consumer's poll returned it.
    Polled(&'a Op),
    /// The final committed log holds it.
    CommittedLog,
}

impl Witness<'_> {
    pub(crate) fn acknowledged(op: &Op) -> Witness<'_> {
        Witness::Acknowledged(op)
    }

    pub(crate) fn polled(op: &Op) -> Witness<'_> {
        Witness::Polled(op)
    }
}

impl fmt::Display for Witness<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Witness::Acknowledged(op) => write!(f, "acknowledged to {} at {}", op.node, seconds(op.time)),
            Witness::Polled(op) => write!(f, "polled by {} at {}", op.node, seconds(op.time)),
            Witness::CommittedLog => f.write_str("in the committed log"),
        }
    }
}

/// A partition's committed log: the records of `committed()` below its high
/// watermark, exactly what `PartitionSnapshot::committed_records` yields, as a
/// slice. A log's records are sorted by offset, so the slice can be binary searched.
pub(crate) fn committed_log(snapshot: &PartitionSnapshot) -> &[(Offset, Value)] {
    let Some(replica) = snapshot.committed() else {
        return &[];
    };
    let count = replica.records.iter().take_while(|(offset, _)| *offset < replica.high_watermark).count();
    &replica.records[..count]
}

/// The value a sorted log holds at `offset`, if any.
pub(crate) fn value_at(log: &[(Offset, Value)], offset: Offset) -> Option<Value> {
    // Offsets strictly increase along a log, so the record at `offset` lies at
    // most `offset - first` records in; a log without gaps (no control batches,
    // no unparseable records) holds it exactly there, so try that index first.
    let first = log.first()?.0;
    let guess = usize::try_from(offset.0.checked_sub(first.0)?).unwrap_or(usize::MAX);
    if let Some(&(found, value)) = log.get(guess) {
        if found == offset {
            return Some(value);
        }
    }
    let candidates = &log[..log.len().min(guess.saturating_add(1))];
    candidates.binary_search_by_key(&offset, |(record_offset, _)| *record_offset).ok().map(|index| candidates[index].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn committed_log_matches_committed_records() {
        let snapshot = partition_snapshot(1, &[1, 2], 2, &[(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))]);
        let slice: Vec<_> = committed_log(&snapshot).to_vec();
        let iterated: Vec<_> = snapshot.committed_records().copied().collect();
        assert_eq!(slice, iterated);
        assert_eq!(slice.len(), 2);
        assert_eq!(value_at(&slice, Offset(1)), Some(value(1, 1)));
        assert_eq!(value_at(&slice, Offset(2)), None);
    }

    #[test]
    fn value_at_finds_records_of_a_log_with_gaps() {
        let log: Vec<(Offset, Value)> = [3, 4, 6, 9, 10].iter().map(|&offset| (Offset(offset), value(1, offset))).collect();
        for offset in 0..13 {
            let expected = log.iter().find(|(found, _)| found.0 == offset).map(|(_, value)| *value);
            assert_eq!(value_at(&log, Offset(offset)), expected, "offset {offset}");
        }
        assert_eq!(value_at(&log, Offset(u64::MAX)), None);
        assert_eq!(value_at(&[], Offset(0)), None);
    }
}
