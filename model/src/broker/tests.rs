//! The broker driven by hand: ISR changes, read_committed fetches, KIP-890 verification.

use super::*;
use crate::protocol::PartitionState;
use crate::types::PartitionEpoch;
use bytes::Bytes;

fn sends(out: &[Send]) -> Vec<&Message> {
    out.iter().map(|send| &send.message).collect()
}

/// KIP-497: an ISR expansion whose answer is lost may still have been
/// committed, so the leader keeps counting the new member (the maximal ISR)
/// and asks again; it must not fall back to the smaller ISR and acknowledge a
/// write the new member does not have. Found by safe-acks-all seed 1349 (under
/// an earlier nemesis generator), which lost acknowledged writes this way.
#[test]
fn an_unanswered_isr_expansion_is_retried_and_still_counted() {
    let tp = TopicPartition::new("t", 0);
    let mut broker = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
    let state = PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let mut out = Vec::new();
    broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
    assert!(broker.partitions()[&tp].is_leader());
    // The follower catches up (an empty log) and is proposed for the ISR.
    out.clear();
    let fetch = FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) };
    broker.handle_message(Instant::ZERO, NodeId(2), Message::FetchRequest { correlation_id: 1, replica_id: Some(NodeId(2)), max_wait: Duration::ZERO, partitions: vec![fetch], read_committed: false }, &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::AlterPartitionRequest { new_isr, .. } if new_isr.len() == 2)));
    // acks=all waits for the follower, whatever the controller said.
    out.clear();
    let records = Arc::new([Record { key: None, value: Bytes::from_static(b"v") }]);
    broker.handle_message(Instant::ZERO, NodeId(50), Message::ProduceRequest { correlation_id: 2, acks: Acks::All, timeout: Duration::from_secs(30), partition: tp.clone(), producer: None, records, transactional_id: None }, &mut out);
    out.clear();
    broker.handle_timeout(Instant::ZERO + INTER_BROKER_REQUEST_TIMEOUT + Duration::from_millis(1), &mut out);
    let messages = sends(&out);
    assert!(messages.iter().any(|message| matches!(message, Message::AlterPartitionRequest { .. })), "the expansion is asked for again");
    assert!(!messages.iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(_), .. })), "no acknowledgement without the new member");
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(0));
}

/// KIP-98 on the leader: an open transaction holds the last stable offset
/// back, its abort marker releases it and lists it as aborted for
/// read_committed fetches, and a late batch of the aborted epoch is fenced.
#[test]
fn read_committed_fetch_stops_at_the_last_stable_offset_and_lists_aborts() {
    let tp = TopicPartition::new("t", 0);
    let mut broker = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
    let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)] };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let mut out = Vec::new();
    broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
    let produce = |correlation_id, producer, value: &'static [u8]| Message::ProduceRequest {
        correlation_id,
        acks: Acks::All,
        timeout: Duration::from_secs(30),
        partition: tp.clone(),
        producer,
        records: Arc::new([Record { key: None, value: Bytes::from_static(value) }]),
        transactional_id: None,
    };
    broker.handle_message(Instant::ZERO, NodeId(50), produce(1, Some(stamp), b"in-txn"), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(51), produce(2, None, b"plain"), &mut out);
    let fetch = |correlation_id| Message::FetchRequest {
        correlation_id,
        replica_id: None,
        max_wait: Duration::ZERO,
        partitions: vec![FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) }],
        read_committed: true,
    };
    let fetched = |out: &[Send], wanted: u64| -> FetchedData {
        sends(out)
            .into_iter()
            .find_map(|message| match message {
                Message::FetchResponse { correlation_id, partitions } if *correlation_id == wanted => partitions[0].1.clone().ok(),
                _ => None,
            })
            .expect("a fetch response")
    };
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(60), fetch(3), &mut out);
    let data = fetched(&out, 3);
    assert_eq!((data.high_watermark, data.last_stable_offset), (Offset(2), Offset(0)));
    assert!(data.batches.is_empty(), "nothing below the last stable offset yet");
    out.clear();
    let marker = TxnMessage::WriteTxnMarkersRequest { correlation_id: 4, producer_id: ProducerId(7), producer_epoch: 1, coordinator_epoch: 0, commit: false, partition: tp.clone() };
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(marker), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::Txn(TxnMessage::WriteTxnMarkersResponse { result: Ok(()), .. }))));
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(60), fetch(5), &mut out);
    let data = fetched(&out, 5);
    assert_eq!((data.last_stable_offset, data.batches.len()), (Offset(3), 3));
    let aborted = crate::txn_index::AbortedTransaction { producer_id: ProducerId(7), first_offset: Offset(0), last_offset: Offset(2) };
    assert_eq!(data.aborted_transactions, vec![aborted]);
    out.clear();
    let late = ProducerStamp { base_sequence: crate::types::Sequence(1), ..stamp };
    broker.handle_message(Instant::ZERO, NodeId(50), produce(6, Some(late), b"late"), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Err(ErrorCode::ProducerFenced), .. })));
}


/// KIP-890 part 1: a producer's first transactional batch on a partition is
/// appended only once its coordinator confirms the partition is in the
/// ongoing transaction; refused, it is answered InvalidTxnState and not written.
#[test]
fn a_transactional_produce_is_verified_with_the_coordinator() {
    let tp = TopicPartition::new("t", 0);
    let state_of = |leader: u32| PartitionState { replicas: vec![NodeId(leader)], leader: Some(NodeId(leader)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(leader)] };
    let partitions = [(tp.clone(), state_of(1)), (TopicPartition::new(crate::coordinator::TRANSACTION_STATE_TOPIC, 0), state_of(2))].into_iter().collect();
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions });
    let mut broker = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), BrokerConfig::default(), &DurableState::default());
    let mut out = Vec::new();
    broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
    let produce = |correlation_id| Message::ProduceRequest {
        correlation_id,
        acks: Acks::Leader,
        timeout: Duration::from_secs(30),
        partition: tp.clone(),
        producer: Some(stamp),
        records: Arc::new([Record { key: None, value: Bytes::from_static(b"v") }]),
        transactional_id: Some("tx".into()),
    };
    let verification = |out: &[Send]| {
        sends(out)
            .into_iter()
            .find_map(|message| match message {
                Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, verify_only: true, .. }) => Some(*correlation_id),
                _ => None,
            })
            .expect("the leader asks the coordinator")
    };
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(50), produce(1), &mut out);
    let asked = verification(&out);
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Err(ErrorCode::InvalidTxnState) }), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Err(ErrorCode::InvalidTxnState), .. })));
    assert_eq!(broker.partitions()[&tp].log_end_offset(), Offset(0), "a refused batch is not written");
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(50), produce(2), &mut out);
    let asked = verification(&out);
    out.clear();
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Ok(()) }), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(Offset(0)), .. })));
    assert!(broker.partitions()[&tp].log.transactions().is_ongoing(ProducerId(7)));
}

/// `next_deadline` keeps the coordinators' deadline and the AlterPartition
/// timeout between calls; whatever changes them must make it look again. (In
/// test builds `next_deadline` also checks each cached part against a fresh
/// walk, so every call here checks the cache.)
#[test]
fn next_deadline_follows_isr_changes_and_coordinator_loads() {
    let tp = TopicPartition::new("t", 0);
    let offsets = TopicPartition::new(crate::coordinator::CONSUMER_OFFSETS_TOPIC, 0);
    let state = |isr: Vec<NodeId>, partition_epoch| PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(partition_epoch), isr };
    let config = BrokerConfig { offsets_topic_num_partitions: 1, ..BrokerConfig::default() };
    let mut broker = Broker::recover(Instant::ZERO, NodeId(1), NodeId(1000), config, &DurableState::default());
    let partitions = [(tp.clone(), state(vec![NodeId(1)], 0)), (offsets.clone(), state(vec![NodeId(1)], 0))].into_iter().collect();
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions });
    let mut out = Vec::new();
    let before = broker.next_deadline();
    broker.handle_message(Instant::ZERO, NodeId(1000), Message::BrokerHeartbeatResponse { broker_epoch: BrokerEpoch(1), metadata: Some(metadata), error: None }, &mut out);
    let loaded = broker.next_deadline();
    assert!(before.is_some() && loaded.is_some());
    // The follower catches up: the leader asks to expand the ISR and waits at
    // most INTER_BROKER_REQUEST_TIMEOUT for the answer.
    let asked_at = Instant::ZERO + Duration::from_millis(100);
    let fetch = FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) };
    out.clear();
    broker.handle_message(asked_at, NodeId(2), Message::FetchRequest { correlation_id: 1, replica_id: Some(NodeId(2)), max_wait: Duration::ZERO, partitions: vec![fetch], read_committed: false }, &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::AlterPartitionRequest { partition, .. } if *partition == tp)));
    let pending = broker.next_deadline().expect("a deadline");
    assert!(pending <= asked_at + INTER_BROKER_REQUEST_TIMEOUT);
    assert_eq!(broker.pending_isr_deadline(), Some(asked_at + INTER_BROKER_REQUEST_TIMEOUT));
    // The controller's answer clears the pending ISR, and its timeout with it.
    out.clear();
    broker.handle_message(asked_at, NodeId(1000), Message::AlterPartitionResponse { partition: tp.clone(), result: Ok(state(vec![NodeId(1), NodeId(2)], 1)) }, &mut out);
    assert_eq!(broker.pending_isr_deadline(), None);
    broker.next_deadline();
    // A group joins: the coordinator's deadlines move, and the broker sees it.
    out.clear();
    let join = crate::coordinator::group::protocol::GroupMessage::JoinGroupRequest {
        correlation_id: 2,
        group_id: "g".into(),
        member_id: None,
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocols: vec!["range".into()],
        subscription: crate::coordinator::group::protocol::Subscription { topics: vec!["t".into()], owned_partitions: Vec::new(), generation: crate::coordinator::group::protocol::Generation(-1) },
    };
    broker.handle_message(asked_at, NodeId(50), Message::group(join), &mut out);
    broker.next_deadline();
    broker.handle_timeout(asked_at + Duration::from_secs(1), &mut out);
    broker.next_deadline();
}
