//! `replica-divergence`: after healing, an in-sync replica disagrees with the
//! committed replica below the high watermark. Every member of the ISR must hold
//! exactly the committed records it has fetched: that is what lets any of them
//! become leader without losing data. A difference means a follower kept a record
//! the leader truncated (or the reverse), which epoch-based truncation (KIP-101,
//! KIP-279) exists to prevent.
//!
//! Each replica in the final `isr` is compared with `committed()` on every offset
//! below min(committed high watermark, that replica's log end offset); the first
//! differing offset is reported per replica. An ISR member with no snapshot is
//! skipped: there is nothing to compare.

use super::findings::Findings;
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::{FinalState, ReplicaSnapshot};
use crate::history::{History, Value};
use kafsim_model::Offset;

/// `check` as `check_all` runs it, on the views it built once.
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    check(views.history, views.final_state)
}

pub fn check(_history: &History, final_state: &FinalState) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::ReplicaDivergence);
    for (partition, snapshot) in &final_state.partitions {
        let Some(committed) = snapshot.committed() else {
            continue;
        };
        for broker in &snapshot.isr {
            if findings.is_full() {
                return findings.into_violations();
            }
            let Some(replica) = snapshot.replicas.get(broker).filter(|replica| replica.broker != committed.broker) else {
                continue;
            };
            let limit = committed.high_watermark.min(replica.log_end_offset);
            if let Some((offset, committed_value, replica_value)) = first_difference(committed, replica, limit) {
                findings.report(format!(
                    "{partition}: in-sync replica on broker {} differs from the committed replica \
                     on broker {} at offset {offset} ({} vs {})",
                    replica.broker,
                    committed.broker,
                    describe(replica_value),
                    describe(committed_value),
                ));
            }
        }
    }
    findings.into_violations()
}

/// The first offset below `limit` where the two logs differ, with each one's value
/// there (`None`: no workload record at that offset). Both logs are sorted by
/// offset, so one merge walk finds it.
fn first_difference(left: &ReplicaSnapshot, right: &ReplicaSnapshot, limit: Offset) -> Option<(Offset, Option<Value>, Option<Value>)> {
    let below_limit = |records: &[(Offset, Value)]| records.iter().take_while(|(offset, _)| *offset < limit).count();
    let (left_count, right_count) = (below_limit(&left.records), below_limit(&right.records));
    // Replicas mostly agree, and equal slices are compared faster than walked.
    if left.records[..left_count] == right.records[..right_count] {
        return None;
    }
    let mut left_records = left.records[..left_count].iter().peekable();
    let mut right_records = right.records[..right_count].iter().peekable();
    loop {
        match (left_records.peek().copied(), right_records.peek().copied()) {
            (None, None) => return None,
            (Some(&(offset, value)), None) => return Some((offset, Some(value), None)),
            (None, Some(&(offset, value))) => return Some((offset, None, Some(value))),
            (Some(&(left_offset, left_value)), Some(&(right_offset, right_value))) => {
                if left_offset < right_offset {
                    return Some((left_offset, Some(left_value), None));
                }
                if right_offset < left_offset {
                    return Some((right_offset, None, Some(right_value)));
                }
                if left_value != right_value {
                    return Some((left_offset, Some(left_value), Some(right_value)));
                }
                left_records.next();
                right_records.next();
            }
        }
    }
}

fn describe(value: Option<Value>) -> String {
    value.map_or_else(|| "no record".to_string(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use kafsim_model::NodeId;

    fn records(values: &[Value]) -> Vec<(u64, Value)> {
        values.iter().enumerate().map(|(offset, value)| (offset as u64, *value)).collect()
    }

    #[test]
    fn fires_when_an_in_sync_follower_kept_a_truncated_record() {
        let mut snapshot = partition_snapshot(1, &[1, 2, 3], 3, &records(&[value(1, 0), value(1, 1), value(1, 2)]));
        snapshot.replicas.insert(NodeId(3), replica(3, 3, &records(&[value(1, 0), value(2, 9), value(1, 2)])));
        let violations = check(&History::default(), &final_state(vec![(0, snapshot)]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::ReplicaDivergence);
        assert_eq!(
            violations[0].detail,
            "events/0: in-sync replica on broker 3 differs from the committed replica on broker 1 at offset 1 (2:9 vs 1:1)"
        );
    }

    #[test]
    fn fires_when_a_follower_misses_a_record_inside_its_log() {
        let mut snapshot = partition_snapshot(1, &[1, 2], 3, &records(&[value(1, 0), value(1, 1), value(1, 2)]));
        let mut follower = replica(2, 3, &[(0, value(1, 0)), (2, value(1, 2))]);
        follower.log_end_offset = Offset(3);
        snapshot.replicas.insert(NodeId(2), follower);
        let violations = check(&History::default(), &final_state(vec![(0, snapshot)]));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.ends_with("at offset 1 (no record vs 1:1)"));
    }

    #[test]
    fn silent_for_a_lagging_follower_a_longer_leader_and_replicas_outside_the_isr() {
        let committed = records(&[value(1, 0), value(1, 1), value(1, 2), value(1, 3)]);
        let mut snapshot = partition_snapshot(1, &[1, 2], 3, &committed);
        // Broker 2 has fetched only the first two records: nothing beyond its log end counts.
        snapshot.replicas.insert(NodeId(2), replica(2, 2, &committed[..2]));
        // Broker 3 diverges but is out of the ISR.
        snapshot.replicas.insert(NodeId(3), replica(3, 1, &records(&[value(9, 9)])));
        // Broker 2 also holds an extra record above the high watermark in another partition.
        let mut other = partition_snapshot(2, &[1, 2], 1, &records(&[value(2, 0)]));
        other.replicas.insert(NodeId(2), replica(2, 1, &records(&[value(2, 0), value(2, 1)])));
        let state = final_state(vec![(0, snapshot), (1, other)]);
        assert!(check(&History::default(), &state).is_empty());
    }
}
