use super::*;
use crate::testkit::connect_all;
use crate::config::Properties;
use crate::protocol::{ClusterMetadata, EpochEndOffset, FetchedData, PartitionState};
use crate::record::RecordBatch;
use crate::types::PartitionEpoch;
use bytes::Bytes;

fn metadata(version: u64, leader_epoch: u32) -> Arc<ClusterMetadata> {
    let state = PartitionState {
        replicas: vec![NodeId(1)],
        leader: Some(NodeId(1)),
        leader_epoch: LeaderEpoch(leader_epoch),
        partition_epoch: PartitionEpoch(0),
        isr: vec![NodeId(1)],
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    };
    Arc::new(ClusterMetadata { version, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() })
}

/// The correlation id of the first request of kind `want` among `out`'s sends.
fn correlation_of(out: &Outbox<ConsumerEvent>, want: &str) -> u64 {
    out.sends
        .iter()
        .find_map(|send| match &send.message {
            Message::MetadataRequest { correlation_id } if want == "metadata" => Some(*correlation_id),
            Message::ListOffsetsRequest { correlation_id, .. } if want == "list" => Some(*correlation_id),
            Message::FetchRequest { correlation_id, .. } if want == "fetch" => Some(*correlation_id),
            Message::OffsetsForLeaderEpochRequest { correlation_id, .. } if want == "validate" => Some(*correlation_id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {want} request among {:?}", out.sends))
}

/// `count` records of `epoch` from `base`, all committed.
fn fetched(base: u64, count: u64, epoch: u32) -> FetchedData {
    let records = (0..count).map(|index| Record { key: None, value: Bytes::from(format!("v{}", base + index)), headers: None }).collect();
    let batch = Arc::new(RecordBatch::new(Offset(base), LeaderEpoch(epoch), None, records));
    let end = Offset(base + count);
    FetchedData { high_watermark: end, log_end_offset: end, batches: vec![batch], last_stable_offset: end, aborted_transactions: Vec::new() }
}

/// A consumer of `t/0` (leader broker 1, epoch 0) that reset to offset 0 and
/// read five records of epoch 0; its next fetch is out, in `out`.
fn consumer_at_offset_five() -> (Consumer, Outbox<ConsumerEvent>, TopicPartition) {
    let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").unwrap();
    let mut consumer = Consumer::new(config, vec!["t".into()], vec![NodeId(1)], 0, 1);
    let mut out = Outbox::new(NodeId(3001));
    let tp = TopicPartition::new("t", 0);
    consumer.handle_timeout(Instant::ZERO, &mut out);
    connect_all(&mut consumer, Instant::ZERO, &mut out);
    let id = correlation_of(&out, "metadata");
    out.sends.clear();
    consumer.handle_message(Instant::ZERO, NodeId(1), Message::MetadataResponse { correlation_id: id, metadata: metadata(1, 0) }, &mut out);
    let id = correlation_of(&out, "list");
    out.sends.clear();
    consumer.handle_message(Instant::ZERO, NodeId(1), Message::ListOffsetsResponse { correlation_id: id, partition: tp.clone(), result: Ok((Offset(0), LeaderEpoch(0))) }, &mut out);
    let id = correlation_of(&out, "fetch");
    out.sends.clear();
    consumer.handle_message(Instant::ZERO, NodeId(1), Message::FetchResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(fetched(0, 5, 0)))] }, &mut out);
    assert_eq!(consumer.positions()[&tp], Offset(5));
    (consumer, out, tp)
}

/// A new leader at epoch 1, revealed by the next metadata refresh at `now`:
/// the consumer asks to validate its position; its request is left in `out`.
fn reveal_new_leader(consumer: &mut Consumer, now: Instant, out: &mut Outbox<ConsumerEvent>) -> u64 {
    consumer.metadata.request_update();
    out.sends.clear();
    consumer.handle_timeout(now, out);
    let id = correlation_of(out, "metadata");
    out.sends.clear();
    consumer.handle_message(now, NodeId(1), Message::MetadataResponse { correlation_id: id, metadata: metadata(2, 1) }, out);
    correlation_of(out, "validate")
}

/// KIP-320: after a leader change, a consumer whose position is past the new
/// leader's log end for its epoch moves back to where the logs diverge.
#[test]
fn a_truncated_log_under_a_new_leader_moves_the_position_back() {
    let (mut consumer, mut out, tp) = consumer_at_offset_five();
    let later = Instant::from_micros(1_000_000);
    let id = reveal_new_leader(&mut consumer, later, &mut out);
    assert!(!out.sends.iter().any(|send| matches!(send.message, Message::FetchRequest { .. })), "no fetch before the position is validated");
    out.sends.clear();
    let answer = EpochEndOffset { leader_epoch: Some(LeaderEpoch(0)), end_offset: Offset(3) };
    consumer.handle_message(later, NodeId(1), Message::OffsetsForLeaderEpochResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(answer))] }, &mut out);
    assert_eq!(consumer.positions()[&tp], Offset(3));
    assert!(out.events.iter().any(|event| matches!(event, ConsumerEvent::Seek { offset: Offset(3), .. })));
}

/// KIP-320: a partition awaiting validation is not fetchable (Kafka's
/// AWAIT_VALIDATION). A fetch sent before the leader changed brings records of
/// the new epoch; they are dropped, so the validation's answer, which speaks of
/// the position it was asked for, is not read against a position that moved
/// (which would see a truncation that never happened and skip records).
#[test]
fn a_fetch_answered_during_validation_does_not_move_the_position() {
    let (mut consumer, mut out, tp) = consumer_at_offset_five();
    // The next fetch is out when a new leader at epoch 1 shows in the metadata.
    let in_flight = correlation_of(&out, "fetch");
    let later = Instant::from_micros(1_000_000);
    let validation = reveal_new_leader(&mut consumer, later, &mut out);
    out.sends.clear();
    out.events.clear();
    // The old fetch's answer, with records the new leader wrote at epoch 1.
    consumer.handle_message(later, NodeId(1), Message::FetchResponse { correlation_id: in_flight, partitions: vec![(tp.clone(), Ok(fetched(5, 5, 1)))] }, &mut out);
    assert_eq!(consumer.positions()[&tp], Offset(5), "records fetched while awaiting validation are dropped");
    // Epoch 0 ended at 5 on the new leader: the position is good.
    let answer = EpochEndOffset { leader_epoch: Some(LeaderEpoch(0)), end_offset: Offset(5) };
    consumer.handle_message(later, NodeId(1), Message::OffsetsForLeaderEpochResponse { correlation_id: validation, partitions: vec![(tp.clone(), Ok(answer))] }, &mut out);
    assert_eq!(consumer.positions()[&tp], Offset(5));
    assert!(!out.events.iter().any(|event| matches!(event, ConsumerEvent::Seek { .. })), "no truncation: {:?}", out.events);
}
