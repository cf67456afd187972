//! The broker driven by hand: ISR changes, read_committed fetches, KIP-890 verification.

use super::*;
use crate::protocol::PartitionState;
use crate::testkit::connect_all;
use crate::types::PartitionEpoch;
use bytes::Bytes;

fn sends(out: &Outbox<BrokerEvent>) -> Vec<&Message> {
    out.sends.iter().map(|send| &send.message).collect()
}

/// Broker 1, started with `config`, registered with the active controller
/// (node 1000, the quorum's one voter), with `metadata` as the cluster's
/// bootstrap and its own registration as the metadata log's one record.
fn registered(config: BrokerConfig, metadata: Arc<ClusterMetadata>) -> (Broker, Outbox<BrokerEvent>) {
    let mut out = Outbox::new(NodeId(1));
    let bootstrap = crate::controller::ControllerSnapshot { next_broker_epoch: 1, registrations: BTreeMap::new(), metadata: (*metadata).clone() };
    let quorum = QuorumSetup { config: crate::quorum::QuorumConfig::new(vec![NodeId(1000)]), bootstrap };
    let mut broker = Broker::recover(Instant::ZERO, NodeId(1), quorum, config, &DurableState::default(), 1, &mut out);
    broker.handle_timeout(Instant::ZERO, &mut out);
    connect_all(&mut broker, Instant::ZERO, &mut out);
    answer_metadata_fetches(&mut broker, &mut out);
    let correlation_id = out
        .sends
        .iter()
        .find_map(|send| if let Message::BrokerHeartbeat { correlation_id, .. } = send.message { Some(correlation_id) } else { None })
        .expect("the broker registers");
    out.sends.clear();
    let response = Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: BrokerEpoch(1), error: None };
    broker.handle_message(Instant::ZERO, NodeId(1000), response, &mut out);
    connect_all(&mut broker, Instant::ZERO, &mut out);
    assert_eq!(broker.metadata().partitions, metadata.partitions, "the broker follows the metadata log");
    (broker, out)
}

/// Answers the broker's metadata log fetches (KIP-595) with epoch 1's
/// LeaderChange and broker 1's registration, both committed.
fn answer_metadata_fetches(broker: &mut Broker, out: &mut Outbox<BrokerEvent>) {
    use crate::controller::records::MetadataRecord;
    use crate::quorum::{Entry, FetchResult, QuorumMessage};
    let registration = MetadataRecord::encode_batch(&[MetadataRecord::RegisterBroker { broker: NodeId(1), broker_epoch: BrokerEpoch(1) }]);
    let entries = [Entry { epoch: 1, record: None }, Entry { epoch: 1, record: Some(registration) }];
    for _ in 0..4 {
        let fetch = out.sends.iter().rev().find_map(|send| match &send.message {
            Message::Quorum(message) => match **message {
                QuorumMessage::Fetch { correlation_id, fetch_offset, .. } => Some((correlation_id, fetch_offset)),
                _ => None,
            },
            _ => None,
        });
        let Some((correlation_id, fetch_offset)) = fetch.filter(|(_, offset)| *offset < 2) else { return };
        out.sends.retain(|send| !matches!(send.message, Message::Quorum(_)));
        let result = FetchResult::Records { base_offset: fetch_offset, records: entries[fetch_offset as usize..].to_vec(), high_watermark: 2 };
        let response = QuorumMessage::FetchResponse { epoch: 1, leader: Some(NodeId(1000)), result, correlation_id };
        broker.handle_message(Instant::ZERO, NodeId(1000), Message::Quorum(Box::new(response)), out);
        connect_all(broker, Instant::ZERO, out);
    }
}

/// KIP-497: an ISR expansion whose answer is lost may still have been
/// committed, so the leader keeps counting the new member (the maximal ISR)
/// and asks again; it must not fall back to the smaller ISR and acknowledge a
/// write the new member does not have. Found by safe-acks-all seed 1349 (under
/// an earlier nemesis generator), which lost acknowledged writes this way.
#[test]
fn an_unanswered_isr_expansion_is_retried_and_still_counted() {
    let tp = TopicPartition::new("t", 0);
    let state = PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)], elr: Vec::new(), last_known_elr: Vec::new() };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let (mut broker, mut out) = registered(BrokerConfig::default(), metadata);
    assert!(broker.partitions()[&tp].is_leader());
    // The follower catches up (an empty log) and is proposed for the ISR.
    out.sends.clear();
    let fetch = FetchPartition { partition: tp.clone(), fetch_offset: Offset(0), current_leader_epoch: LeaderEpoch(0) };
    broker.handle_message(Instant::ZERO, NodeId(2), Message::FetchRequest { correlation_id: 1, replica_id: Some(NodeId(2)), max_wait: Duration::ZERO, partitions: vec![fetch], read_committed: false }, &mut out);
    connect_all(&mut broker, Instant::ZERO, &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::AlterPartitionRequest { new_isr, .. } if new_isr.len() == 2)));
    // acks=all waits for the follower, whatever the controller said.
    out.sends.clear();
    let records = Arc::new([Record { key: None, value: Bytes::from_static(b"v"), headers: None }]);
    broker.handle_message(Instant::ZERO, NodeId(50), Message::ProduceRequest { correlation_id: 2, acks: Acks::All, timeout: Duration::from_secs(60), partition: tp.clone(), producer: None, records, transactional_id: None }, &mut out);
    out.sends.clear();
    // The controller never answers: the request times out, the connection is
    // closed, and once it is open again the expansion is asked for again.
    let mut now = Instant::ZERO;
    let mut asked_again = false;
    while now < Instant::ZERO + Duration::from_secs(40) && !asked_again {
        now = broker.next_deadline().expect("the broker always has a deadline");
        broker.handle_timeout(now, &mut out);
        connect_all(&mut broker, now, &mut out);
        let messages = sends(&out);
        assert!(!messages.iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(_), .. })), "no acknowledgement without the new member");
        asked_again = now >= Instant::ZERO + BrokerConfig::default().request_timeout && messages.iter().any(|message| matches!(message, Message::AlterPartitionRequest { .. }));
        out.sends.clear();
    }
    assert!(asked_again, "the expansion is asked for again");
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(0));
}

/// KIP-98 on the leader: an open transaction holds the last stable offset
/// back, its abort marker releases it and lists it as aborted for
/// read_committed fetches, and a late batch of the aborted epoch is fenced.
#[test]
fn read_committed_fetch_stops_at_the_last_stable_offset_and_lists_aborts() {
    let tp = TopicPartition::new("t", 0);
    let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)], elr: Vec::new(), last_known_elr: Vec::new() };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let (mut broker, mut out) = registered(BrokerConfig::default(), metadata);
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
    let produce = |correlation_id, producer, value: &'static [u8]| Message::ProduceRequest {
        correlation_id,
        acks: Acks::All,
        timeout: Duration::from_secs(30),
        partition: tp.clone(),
        producer,
        records: Arc::new([Record { key: None, value: Bytes::from_static(value), headers: None }]),
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
    let fetched = |out: &Outbox<BrokerEvent>, wanted: u64| -> FetchedData {
        sends(out)
            .into_iter()
            .find_map(|message| match message {
                Message::FetchResponse { correlation_id, partitions } if *correlation_id == wanted => partitions[0].1.clone().ok(),
                _ => None,
            })
            .expect("a fetch response")
    };
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(60), fetch(3), &mut out);
    let data = fetched(&out, 3);
    assert_eq!((data.high_watermark, data.last_stable_offset), (Offset(2), Offset(0)));
    assert!(data.batches.is_empty(), "nothing below the last stable offset yet");
    out.sends.clear();
    let marker = TxnMessage::WriteTxnMarkersRequest { correlation_id: 4, producer_id: ProducerId(7), producer_epoch: 1, coordinator_epoch: 0, commit: false, partition: tp.clone() };
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(marker), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::Txn(TxnMessage::WriteTxnMarkersResponse { result: Ok(()), .. }))));
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(60), fetch(5), &mut out);
    let data = fetched(&out, 5);
    assert_eq!((data.last_stable_offset, data.batches.len()), (Offset(3), 3));
    let aborted = crate::txn_index::AbortedTransaction { producer_id: ProducerId(7), first_offset: Offset(0), last_offset: Offset(2) };
    assert_eq!(data.aborted_transactions, vec![aborted]);
    out.sends.clear();
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
    let state_of = |leader: u32| PartitionState { replicas: vec![NodeId(leader)], leader: Some(NodeId(leader)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(leader)], elr: Vec::new(), last_known_elr: Vec::new() };
    let partitions = [(tp.clone(), state_of(1)), (TopicPartition::new(crate::protocol::TRANSACTION_STATE_TOPIC, 0), state_of(2))].into_iter().collect();
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions });
    let (mut broker, mut out) = registered(BrokerConfig::default(), metadata);
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
    let produce = |correlation_id| Message::ProduceRequest {
        correlation_id,
        acks: Acks::Leader,
        timeout: Duration::from_secs(30),
        partition: tp.clone(),
        producer: Some(stamp),
        records: Arc::new([Record { key: None, value: Bytes::from_static(b"v"), headers: None }]),
        transactional_id: Some("tx".into()),
    };
    let verification = |out: &Outbox<BrokerEvent>| {
        sends(out)
            .into_iter()
            .find_map(|message| match message {
                Message::Txn(TxnMessage::AddPartitionsToTxnRequest { correlation_id, verify_only: true, .. }) => Some(*correlation_id),
                _ => None,
            })
            .expect("the leader asks the coordinator")
    };
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(50), produce(1), &mut out);
    connect_all(&mut broker, Instant::ZERO, &mut out);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(1), &mut out);
    let asked = verification(&out);
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Err(ErrorCode::InvalidTxnState) }), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Err(ErrorCode::InvalidTxnState), .. })));
    assert_eq!(broker.partitions()[&tp].log_end_offset(), Offset(0), "a refused batch is not written");
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(50), produce(2), &mut out);
    let asked = verification(&out);
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(TxnMessage::AddPartitionsToTxnResponse { correlation_id: asked, result: Ok(()) }), &mut out);
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { result: Ok(Offset(0)), .. })));
    assert!(broker.partitions()[&tp].log.transactions().is_ongoing(ProducerId(7)));
}

/// `next_deadline` keeps the coordinators' deadline between calls; whatever
/// changes it must make it look again. (In test builds `next_deadline` also
/// checks the cached part against a fresh walk, so every call here checks the cache.)
#[test]
fn next_deadline_follows_coordinator_loads() {
    let tp = TopicPartition::new("t", 0);
    let offsets = TopicPartition::new(crate::protocol::CONSUMER_OFFSETS_TOPIC, 0);
    let state = |isr: Vec<NodeId>, partition_epoch| PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(partition_epoch), isr, elr: Vec::new(), last_known_elr: Vec::new() };
    let config = BrokerConfig { offsets_topic_num_partitions: 1, ..BrokerConfig::default() };
    let partitions = [(tp.clone(), state(vec![NodeId(1)], 0)), (offsets.clone(), state(vec![NodeId(1)], 0))].into_iter().collect();
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions });
    let (mut broker, mut out) = registered(config, metadata);
    assert!(broker.next_deadline().is_some());
    let asked_at = Instant::ZERO + Duration::from_millis(100);
    // A group joins: the coordinator's deadlines move, and the broker sees it.
    out.sends.clear();
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

/// A follower whose leader's process crashed: the reset fails its fetch, which
/// waits replica.fetch.backoff.ms (AbstractFetcherThread), then reconnects and
/// fetches again.
#[test]
fn a_reset_fetch_connection_backs_off_and_fetches_again() {
    let tp = TopicPartition::new("t", 0);
    let state = PartitionState { replicas: vec![NodeId(2), NodeId(1)], leader: Some(NodeId(2)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(2), NodeId(1)], elr: Vec::new(), last_known_elr: Vec::new() };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let (mut broker, mut out) = registered(BrokerConfig::default(), metadata);
    let fetches = |out: &Outbox<BrokerEvent>| out.sends.iter().filter(|send| send.to == NodeId(2) && matches!(send.message, Message::FetchRequest { .. })).count();
    assert_eq!(fetches(&out), 1, "the follower fetches from its leader");
    out.sends.clear();
    let reset = Instant::ZERO + Duration::from_millis(10);
    broker.handle_connection(reset, Destination::new(NodeId(2), Channel::Default), ConnectionEvent::Closed(crate::net::CloseReason::Reset), &mut out);
    assert_eq!(fetches(&out), 0, "nothing goes during the backoff");
    let mut now = reset;
    while fetches(&out) == 0 {
        now = broker.next_deadline().expect("a deadline");
        broker.handle_timeout(now, &mut out);
        connect_all(&mut broker, now, &mut out);
    }
    assert!(now.saturating_since(reset) >= BrokerConfig::default().replica_fetch_backoff, "waited out the fetch backoff");
    assert!(now.saturating_since(reset) < BrokerConfig::default().replica_fetch_backoff + Duration::from_millis(500));
}

fn single_replica_leader(tp: &TopicPartition) -> (Broker, Outbox<BrokerEvent>) {
    let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)], elr: Vec::new(), last_known_elr: Vec::new() };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(tp.clone(), state)].into_iter().collect() });
    registered(BrokerConfig::default(), metadata)
}

/// Broker 1 leading `t/0` at `leader_epoch` for replicas 1 and 2, with `isr`.
fn two_replica_leader(config: BrokerConfig, leader_epoch: u32, isr: Vec<NodeId>) -> (Broker, Outbox<BrokerEvent>, TopicPartition) {
    let tp = TopicPartition::new("t", 0);
    let state = PartitionState { replicas: vec![NodeId(1), NodeId(2)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(leader_epoch), partition_epoch: PartitionEpoch(0), isr, elr: Vec::new(), last_known_elr: Vec::new() };
    let metadata = Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1), NodeId(2)], partitions: [(tp.clone(), state)].into_iter().collect() });
    let (broker, out) = registered(config, metadata);
    (broker, out, tp)
}

/// A produce of one record `value` to `tp`.
fn produce(tp: &TopicPartition, correlation_id: u64, acks: Acks, producer: Option<ProducerStamp>, value: &'static [u8]) -> Message {
    let records = Arc::new([Record { key: None, value: Bytes::from_static(value), headers: None }]);
    Message::ProduceRequest { correlation_id, acks, timeout: Duration::from_secs(30), partition: tp.clone(), producer, records, transactional_id: None }
}

/// A consumer's fetch of `tp` at epoch 0, long polling for up to 500 ms.
fn consumer_fetch(tp: &TopicPartition, correlation_id: u64, fetch_offset: u64, read_committed: bool) -> Message {
    let partitions = vec![FetchPartition { partition: tp.clone(), fetch_offset: Offset(fetch_offset), current_leader_epoch: LeaderEpoch(0) }];
    Message::FetchRequest { correlation_id, replica_id: None, max_wait: Duration::from_millis(500), partitions, read_committed }
}

/// Follower 2's fetch of `tp`, answered at once.
fn follower_fetch(tp: &TopicPartition, correlation_id: u64, fetch_offset: u64, current_leader_epoch: u32) -> Message {
    let partitions = vec![FetchPartition { partition: tp.clone(), fetch_offset: Offset(fetch_offset), current_leader_epoch: LeaderEpoch(current_leader_epoch) }];
    Message::FetchRequest { correlation_id, replica_id: Some(NodeId(2)), max_wait: Duration::ZERO, partitions, read_committed: false }
}

/// Whether the fetch `wanted` was answered among `out`'s sends.
fn fetch_answered(out: &Outbox<BrokerEvent>, wanted: u64) -> bool {
    sends(out).iter().any(|message| matches!(message, Message::FetchResponse { correlation_id, .. } if *correlation_id == wanted))
}

/// Long polling: a consumer's fetch with nothing to read waits in purgatory
/// until a write moves the high watermark or its max_wait passes, and not a
/// moment longer or shorter.
#[test]
fn a_long_polling_fetch_waits_for_data_or_its_max_wait() {
    let tp = TopicPartition::new("t", 0);
    let (mut broker, mut out) = single_replica_leader(&tp);
    let at = |millis| Instant::ZERO + Duration::from_millis(millis);
    let fetch = |correlation_id, fetch_offset| consumer_fetch(&tp, correlation_id, fetch_offset, false);
    out.sends.clear();
    broker.handle_message(at(0), NodeId(60), fetch(1, 0), &mut out);
    assert!(!fetch_answered(&out, 1), "nothing to read: the fetch waits");
    broker.handle_message(at(100), NodeId(50), produce(&tp, 2, Acks::All, None, b"v"), &mut out);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(1));
    assert!(sends(&out).iter().any(|message| matches!(message, Message::ProduceResponse { correlation_id: 2, result: Ok(Offset(0)), .. })), "acks=all, the whole ISR has it");
    assert!(fetch_answered(&out, 1), "the write wakes the waiting fetch");
    out.sends.clear();
    broker.handle_message(at(200), NodeId(60), fetch(3, 1), &mut out);
    assert!(broker.next_deadline().is_some_and(|deadline| deadline <= at(700)), "the broker wakes up for the fetch's max_wait");
    broker.handle_timeout(at(699), &mut out);
    assert!(!fetch_answered(&out, 3), "answered before its max_wait");
    broker.handle_timeout(at(700), &mut out);
    assert!(fetch_answered(&out, 3), "still waiting after its max_wait");
}

/// KIP-320: a request names the leader epoch it expects; an older one is
/// fenced, a newer one is not known here yet, and only the leader serves.
#[test]
fn requests_are_served_only_by_the_leader_of_the_epoch_they_name() {
    let mut partition = Partition::new(TopicPartition::new("t", 0), Log::default(), Offset(0));
    partition.become_leader(Instant::ZERO, NodeId(1), LeaderEpoch(5), &mut Vec::new());
    assert_eq!(fetch::check_leader(&partition, LeaderEpoch(5)), Ok(()));
    assert_eq!(fetch::check_leader(&partition, LeaderEpoch(4)), Err(ErrorCode::FencedLeaderEpoch));
    assert_eq!(fetch::check_leader(&partition, LeaderEpoch(6)), Err(ErrorCode::UnknownLeaderEpoch));
    partition.become_follower(NodeId(2), LeaderEpoch(6), false, &mut Vec::new());
    assert_eq!(fetch::check_leader(&partition, LeaderEpoch(6)), Err(ErrorCode::NotLeaderOrFollower));
}

/// `min.insync.replicas` refuses acks=all writes while the ISR is smaller,
/// and only those: acks=1 does not wait for followers, so it does not ask.
#[test]
fn min_insync_replicas_refuses_only_acks_all_writes() {
    let config = BrokerConfig { min_insync_replicas: 2, ..BrokerConfig::default() };
    let (mut broker, mut out, tp) = two_replica_leader(config, 0, vec![NodeId(1)]);
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 1, Acks::All, None, b"v"), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 2, Acks::Leader, None, b"v"), &mut out);
    let results: Vec<(u64, Result<Offset, ErrorCode>)> = sends(&out)
        .into_iter()
        .filter_map(|message| match message {
            Message::ProduceResponse { correlation_id, result, .. } => Some((*correlation_id, *result)),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![(1, Err(ErrorCode::NotEnoughReplicas)), (2, Ok(Offset(0)))]);
}

/// KIP-966: with eligible leader replicas on, a leader whose ISR is below
/// min ISR does not move its high watermark, even for an acks=1 write it
/// holds alone, so the replicas that left the ISR for the ELR hold
/// everything below it; without ELR the mark moves as before.
#[test]
fn with_eligible_leader_replicas_the_high_watermark_stops_below_min_isr() {
    for (version, expected) in [(0, Offset(1)), (1, Offset(0))] {
        let config = BrokerConfig { min_insync_replicas: 2, eligible_leader_replicas_version: version, ..BrokerConfig::default() };
        let (mut broker, mut out, tp) = two_replica_leader(config, 0, vec![NodeId(1)]);
        broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 1, Acks::Leader, None, b"v"), &mut out);
        assert_eq!(broker.partitions()[&tp].log_end_offset(), Offset(1));
        assert_eq!(broker.partitions()[&tp].high_watermark, expected, "eligible.leader.replicas.version {version}");
    }
}

/// KIP-98 long polling under read_committed: data below the high watermark
/// but above the last stable offset is not yet readable, so the fetch waits,
/// as does a position already past the last stable offset (after a reset to
/// the high watermark); a position past the log end is answered at once
/// (with its error), and the marker that moves the last stable offset wakes
/// the waiting fetches.
#[test]
fn a_read_committed_fetch_waits_for_the_last_stable_offset() {
    let tp = TopicPartition::new("t", 0);
    let (mut broker, mut out) = single_replica_leader(&tp);
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: true };
    broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 1, Acks::All, Some(stamp), b"in-txn"), &mut out);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(1));
    let fetch = |correlation_id, fetch_offset| consumer_fetch(&tp, correlation_id, fetch_offset, true);
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(60), fetch(2, 0), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(61), fetch(3, 1), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(62), fetch(4, 5), &mut out);
    assert!(!fetch_answered(&out, 2), "below the high watermark but not stable: waits");
    assert!(!fetch_answered(&out, 3), "at the log end, past the last stable offset: waits");
    assert!(fetch_answered(&out, 4), "past the log end: answered at once");
    let marker = TxnMessage::WriteTxnMarkersRequest { correlation_id: 5, producer_id: ProducerId(7), producer_epoch: 1, coordinator_epoch: 0, commit: true, partition: tp.clone() };
    broker.handle_message(Instant::ZERO, NodeId(2), Message::Txn(marker), &mut out);
    assert!(fetch_answered(&out, 2) && fetch_answered(&out, 3), "the marker makes the data stable and wakes both");
}

/// ListOffsets: earliest is the log start (0: nothing is deleted here),
/// latest the high watermark, each with the leader epoch it was read in.
#[test]
fn list_offsets_answers_the_log_start_and_the_high_watermark() {
    let tp = TopicPartition::new("t", 0);
    let (mut broker, mut out) = single_replica_leader(&tp);
    let records = Arc::new([Record { key: None, value: Bytes::from_static(b"a"), headers: None }, Record { key: None, value: Bytes::from_static(b"b"), headers: None }]);
    let produce = Message::ProduceRequest { correlation_id: 1, acks: Acks::All, timeout: Duration::from_secs(30), partition: tp.clone(), producer: None, records, transactional_id: None };
    broker.handle_message(Instant::ZERO, NodeId(50), produce, &mut out);
    assert_eq!(broker.list_offsets(&tp, OffsetSpec::Latest, LeaderEpoch(0)), Ok((Offset(2), LeaderEpoch(0))));
    assert_eq!(broker.list_offsets(&tp, OffsetSpec::Earliest, LeaderEpoch(0)), Ok((Offset(0), LeaderEpoch(0))));
}

/// KIP-98 with acks=all: a retried batch the log already holds is answered
/// with its original offset, but only once the high watermark passes the
/// whole original batch, as the original's own answer would be.
#[test]
fn a_retried_duplicate_waits_for_its_original_to_replicate() {
    let (mut broker, mut out, tp) = two_replica_leader(BrokerConfig::default(), 0, vec![NodeId(1), NodeId(2)]);
    let produce = |correlation_id, producer, value| produce(&tp, correlation_id, Acks::All, producer, value);
    let follower_fetch = |correlation_id, fetch_offset| follower_fetch(&tp, correlation_id, fetch_offset, 0);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(1, None, b"a"), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(2, None, b"b"), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(3, 2), &mut out);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(2));
    let stamp = ProducerStamp { producer_id: ProducerId(7), producer_epoch: 0, base_sequence: crate::types::Sequence(0), transactional: false };
    broker.handle_message(Instant::ZERO, NodeId(51), produce(4, Some(stamp), b"c"), &mut out);
    out.sends.clear();
    broker.handle_message(Instant::ZERO, NodeId(51), produce(5, Some(stamp), b"c"), &mut out);
    let acknowledged = |out: &Outbox<BrokerEvent>, wanted: u64| sends(out).iter().any(|message| matches!(message, Message::ProduceResponse { correlation_id, result: Ok(Offset(2)), .. } if *correlation_id == wanted));
    assert!(!acknowledged(&out, 5), "the retry is acknowledged before its original replicated");
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(6, 3), &mut out);
    assert!(acknowledged(&out, 4) && acknowledged(&out, 5));
}

/// Broker 1 leading `t/0` at `leader_epoch` for replicas 1 and 2, with `isr`,
/// after two acks=1 writes.
fn leader_with_two_records(leader_epoch: u32, isr: Vec<NodeId>) -> (Broker, Outbox<BrokerEvent>, TopicPartition) {
    let (mut broker, mut out, tp) = two_replica_leader(BrokerConfig::default(), leader_epoch, isr);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 1, Acks::Leader, None, b"a"), &mut out);
    broker.handle_message(Instant::ZERO, NodeId(50), produce(&tp, 2, Acks::Leader, None, b"b"), &mut out);
    out.sends.clear();
    (broker, out, tp)
}

/// Whether the leader proposed a new ISR (sent or waiting for its connection).
fn proposes_isr(broker: &Broker, tp: &TopicPartition) -> bool {
    broker.partitions()[tp].pending_isr().is_some()
}

/// A follower's fetch counts as progress toward the high watermark and the
/// ISR only when it names the leader's epoch (KIP-320) and an offset the
/// leader has: a fetch behind the log end does count (it says what the
/// follower has), a fenced one does not. Only a follower that caught up with
/// the high watermark is proposed for the ISR.
#[test]
fn only_a_caught_up_follower_of_the_current_epoch_moves_the_high_watermark_or_joins_the_isr() {
    // In the ISR and one record behind: its fetch at offset 1 moves the high watermark to 1.
    let (mut broker, mut out, tp) = leader_with_two_records(0, vec![NodeId(1), NodeId(2)]);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(0));
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(&tp, 9, 1, 0), &mut out);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(1), "a fetch behind the log end reports the follower's progress");
    // Outside the ISR and behind the high watermark (2): not proposed.
    let (mut broker, mut out, tp) = leader_with_two_records(0, vec![NodeId(1)]);
    assert_eq!(broker.partitions()[&tp].high_watermark, Offset(2));
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(&tp, 9, 0, 0), &mut out);
    assert!(!proposes_isr(&broker, &tp), "a lagging follower is not proposed for the ISR");
    // Caught up, but naming an old leader epoch: fenced, so neither progress nor a proposal.
    let (mut broker, mut out, tp) = leader_with_two_records(1, vec![NodeId(1)]);
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(&tp, 9, 2, 0), &mut out);
    assert!(!proposes_isr(&broker, &tp), "a fenced fetch is no progress");
    // The same fetch at the current epoch is.
    broker.handle_message(Instant::ZERO, NodeId(2), follower_fetch(&tp, 9, 2, 1), &mut out);
    assert!(proposes_isr(&broker, &tp), "a caught-up follower of the current epoch is proposed");
}
