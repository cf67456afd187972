//! One replica's own steps, each against a hand-built log: what the
//! replication property test (`replication_props`) does not pin down because
//! its properties are about safety only, and a replica that never truncates,
//! never appends or never flushes keeps them all.

use super::*;
use crate::record::Record;
use crate::types::{ProducerId, Sequence};
use bytes::Bytes;
use std::time::Duration;

const ME: NodeId = NodeId(1);
const FOLLOWER: NodeId = NodeId(2);

fn batch(base: u64, epoch: u32, count: usize) -> SharedBatch {
    let records: Vec<Record> = (0..count).map(|i| Record { key: None, value: Bytes::from(format!("v{}", base + i as u64)), headers: None }).collect();
    Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(epoch), None, records.into()))
}

fn replica(batches: &[SharedBatch]) -> Partition {
    let mut log = Log::default();
    for batch in batches {
        log.append(batch.clone());
    }
    let mut partition = Partition::new(TopicPartition::new("t", 0), log, Offset(0));
    partition.replicas = vec![ME, FOLLOWER];
    partition.isr = vec![ME, FOLLOWER];
    partition
}

fn at(seconds: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(seconds)
}

fn is_truncated(partition: &Partition) -> bool {
    matches!(partition.role, Role::Follower(FollowerState { truncated: true, .. }))
}

#[test]
fn only_the_leader_role_leads_and_going_offline_takes_the_new_epoch() {
    let mut partition = replica(&[]);
    assert!(!partition.is_leader());
    partition.become_leader(at(0), ME, LeaderEpoch(1), &mut Vec::new());
    assert!(partition.is_leader());
    partition.become_offline(LeaderEpoch(2));
    assert!(!partition.is_leader());
    assert_eq!(partition.leader_epoch, LeaderEpoch(2));
}

/// KIP-279: the leader has the follower's latest epoch but ended it earlier,
/// so the follower cuts its log there and is done truncating.
#[test]
fn a_follower_cuts_its_log_where_the_leader_ended_their_common_epoch() {
    let mut partition = replica(&[batch(0, 1, 3), batch(3, 2, 3)]);
    partition.become_follower(NodeId(3), LeaderEpoch(3), false, &mut Vec::new());
    let mut out = Vec::new();
    partition.truncate_to_leader_answer(EpochEndOffset { leader_epoch: Some(LeaderEpoch(2)), end_offset: Offset(4) }, &mut out);
    assert_eq!(partition.log_end_offset(), Offset(4));
    assert!(is_truncated(&partition));
    assert!(out.iter().any(|op| matches!(op, DiskOp::Truncate { offset: Offset(4), .. })));
}

fn idempotent(base: u64, base_sequence: i32, count: usize) -> SharedBatch {
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: Sequence(base_sequence), transactional: false };
    let records: Vec<Record> = (0..count).map(|i| Record { key: None, value: Bytes::from(format!("v{}", base + i as u64)), headers: None }).collect();
    Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(1), Some(stamp), records.into()))
}

/// A follower whose log ends inside one of the leader's batches (it truncated
/// there) takes the rest of that batch, then the batches after it. The rest
/// keeps its records' sequence numbers, so that the follower, once leader,
/// expects the producer's next sequence.
#[test]
fn a_fetched_batch_straddling_the_log_end_continues_the_log() {
    let mut partition = replica(&[batch(0, 1, 3), idempotent(3, 0, 3)]);
    partition.truncate_to(Offset(5), &mut Vec::new());
    partition.append_fetched(vec![idempotent(3, 0, 3)], Offset(6), u64::MAX, &mut Vec::new());
    let next = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: Sequence(3), transactional: false };
    assert_eq!(partition.log.check_sequence(next, 2), crate::log::SequenceCheck::Append);
    partition.append_fetched(vec![idempotent(3, 0, 3), idempotent(6, 3, 2)], Offset(8), u64::MAX, &mut Vec::new());
    assert_eq!(partition.log_end_offset(), Offset(8));
    assert_eq!(partition.high_watermark, Offset(8));
    let values: Vec<Bytes> = partition.log.batches().iter().flat_map(|batch| batch.records.iter().map(|record| record.value.clone())).collect();
    let expected: Vec<Bytes> = (0..8).map(|offset| Bytes::from(format!("v{offset}"))).collect();
    assert_eq!(values, expected);
}

/// `log.flush.interval.messages`: a flush once that many messages were
/// appended since the last one, counting every record of every batch.
#[test]
fn appends_ask_for_a_flush_every_flush_interval_messages() {
    let mut partition = replica(&[]);
    let flushes = |out: &Vec<DiskOp>| out.iter().filter(|op| matches!(op, DiskOp::Flush { .. })).count();
    let mut out = Vec::new();
    partition.append(batch(0, 1, 2), 3, &mut out);
    assert_eq!(flushes(&out), 0);
    partition.append(batch(2, 1, 2), 3, &mut out);
    assert_eq!(flushes(&out), 1);
    partition.append(batch(4, 1, 1), 3, &mut out);
    assert_eq!(flushes(&out), 1);
}

/// Kafka's `updateFollowerFetchState`: a follower is caught up at a fetch that
/// reaches the leader's log end, or, at the time of its previous fetch, when
/// this fetch reaches the log end the leader had then. The ISR shrinks on
/// `replica.lag.time.max.ms` since it was last caught up.
#[test]
fn a_follower_is_caught_up_when_it_reaches_the_log_end_or_the_previous_one() {
    let lag_max = Duration::from_secs(10);
    let mut partition = replica(&[]);
    partition.become_leader(at(0), ME, LeaderEpoch(1), &mut Vec::new());
    partition.append(batch(0, 1, 3), u64::MAX, &mut Vec::new());
    partition.record_follower_fetch(at(5), FOLLOWER, Offset(3));
    assert!(partition.out_of_sync_replicas(at(14), ME, lag_max).is_empty(), "caught up at 5 s, at the log end");
    partition.append(batch(3, 1, 3), u64::MAX, &mut Vec::new());
    partition.record_follower_fetch(at(8), FOLLOWER, Offset(3));
    partition.append(batch(6, 1, 3), u64::MAX, &mut Vec::new());
    partition.record_follower_fetch(at(12), FOLLOWER, Offset(6));
    // Offset 6 was the log end at the 8 s fetch: caught up as of 8 s, not 5 s.
    assert!(partition.out_of_sync_replicas(at(17), ME, lag_max).is_empty());
    // Out of sync only past the lag limit, as Kafka's strict comparison.
    assert!(partition.out_of_sync_replicas(at(18), ME, lag_max).is_empty());
    assert_eq!(partition.out_of_sync_replicas(at(19), ME, lag_max), vec![FOLLOWER]);
    partition.isr = vec![ME];
    assert!(partition.out_of_sync_replicas(at(19), ME, lag_max).is_empty(), "only ISR members can fall out of sync");
}
