//! A pipeline member's batch, step by step, against one scripted broker that
//! leads both topics and hosts both coordinators. Each test plays the sequence
//! of a bug that whole runs once found, at the moment that matters, so it fails
//! whenever the bug comes back (a pinned seed stops reproducing once traces drift).

use super::*;
use crate::history::History;
use crate::scenario::Scenario;
use kafsim_model::coordinator::group::protocol::{GroupMessage, JoinResult};
use kafsim_model::coordinator::txn::protocol::TxnMessage;
use kafsim_model::net::{ConnectionCommand, ConnectionEvent};
use kafsim_model::protocol::{ClusterMetadata, FetchedData, Message, PartitionState, Send};
use kafsim_model::record::{Record, RecordBatch};
use kafsim_model::{LeaderEpoch, PartitionEpoch, ProducerId};
use std::path::Path;
use std::time::Duration;

const BROKER: NodeId = NodeId(1);
const CONSUMER: NodeId = NodeId(4001);
const MEMBER_ID: &str = "pipeline-1-member";

fn input() -> TopicPartition {
    TopicPartition::new("events", 0)
}

/// Plays broker 1: leader of `events/0` (holding `inputs`) and `copies/0`, and
/// coordinator of the group and of the member's transactional id. It answers
/// every request at once, except a fetch at the log's end, which it parks as a
/// broker parks a fetch with nothing to return. Commits in an older generation
/// are fenced, as the group coordinator fences them (KIP-447).
struct Broker {
    inputs: Vec<Value>,
    generation: Generation,
    /// The next heartbeat is answered RebalanceInProgress: another member joined.
    rebalance_due: bool,
    output_offset: Offset,
    /// Every TxnOffsetCommit's generation, in arrival order.
    txn_offset_commits: Vec<Generation>,
    /// AddOffsetsToTxn is answered ProducerFenced: the coordinator aborted
    /// the transaction at its timeout and bumped the epoch.
    fence_add_offsets: bool,
}

impl Broker {
    fn new(inputs: u64) -> Broker {
        let inputs = (0..inputs).map(|sequence| Value { producer: 1, sequence }).collect();
        Broker { inputs, generation: Generation(0), rebalance_due: false, output_offset: Offset(0), txn_offset_commits: Vec::new(), fence_add_offsets: false }
    }

    fn metadata() -> Arc<ClusterMetadata> {
        let state = PartitionState { replicas: vec![BROKER], leader: Some(BROKER), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![BROKER], elr: Vec::new(), last_known_elr: Vec::new() };
        let partitions = [input(), TopicPartition::new("copies", 0)].into_iter().map(|tp| (tp, state.clone())).collect();
        Arc::new(ClusterMetadata { version: 1, brokers: vec![BROKER], partitions })
    }

    fn fenced(&self, generation: Generation) -> Result<(), ErrorCode> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(ErrorCode::IllegalGeneration)
        }
    }

    /// The answer to `request`, or None while it stays parked.
    fn answer(&mut self, request: Message) -> Option<Message> {
        let answer = match request {
            Message::MetadataRequest { correlation_id } => Message::MetadataResponse { correlation_id, metadata: Broker::metadata() },
            Message::FindCoordinatorRequest { correlation_id, .. } => Message::FindCoordinatorResponse { correlation_id, result: Ok(BROKER) },
            Message::InitProducerIdRequest { correlation_id } => Message::InitProducerIdResponse { correlation_id, result: Ok((ProducerId(7), 0)) },
            Message::ListOffsetsRequest { correlation_id, partition, .. } => Message::ListOffsetsResponse { correlation_id, partition, result: Ok((Offset(0), LeaderEpoch(0))) },
            Message::FetchRequest { correlation_id, partitions, .. } => {
                let from = partitions.first().expect("a fetch names its partition").fetch_offset;
                if from.0 as usize >= self.inputs.len() {
                    return None;
                }
                let records: Vec<Record> = self.inputs.iter().map(|value| Record { key: None, value: value.encode(), headers: None }).collect();
                let end = Offset(self.inputs.len() as u64);
                let batch = Arc::new(RecordBatch::new(Offset(0), LeaderEpoch(0), None, records.into()));
                let data = FetchedData { high_watermark: end, log_end_offset: end, batches: vec![batch], last_stable_offset: end, aborted_transactions: Vec::new() };
                Message::FetchResponse { correlation_id, partitions: vec![(input(), Ok(data))] }
            }
            Message::ProduceRequest { correlation_id, partition, records, .. } => {
                let offset = self.output_offset;
                self.output_offset = Offset(offset.0 + records.len() as u64);
                Message::ProduceResponse { correlation_id, partition, result: Ok(offset) }
            }
            Message::Group(request) => Message::group(self.answer_group(*request)),
            Message::Txn(request) => Message::Txn(self.answer_txn(request)),
            other => panic!("the broker was not asked for {other:?}"),
        };
        Some(answer)
    }

    fn answer_group(&mut self, request: GroupMessage) -> GroupMessage {
        match request {
            GroupMessage::JoinGroupRequest { correlation_id, subscription, .. } => {
                self.generation = Generation(self.generation.0 + 1);
                let member_id: MemberId = MEMBER_ID.into();
                let members = vec![(member_id.clone(), subscription)];
                let result = JoinResult { generation: self.generation, protocol: "range".into(), leader: member_id.clone(), member_id, members };
                GroupMessage::JoinGroupResponse { correlation_id, result: Ok(result) }
            }
            GroupMessage::SyncGroupRequest { correlation_id, .. } => GroupMessage::SyncGroupResponse { correlation_id, result: Ok(vec![input()]) },
            GroupMessage::HeartbeatRequest { correlation_id, .. } => {
                let error = std::mem::take(&mut self.rebalance_due).then_some(ErrorCode::RebalanceInProgress);
                GroupMessage::HeartbeatResponse { correlation_id, error }
            }
            GroupMessage::OffsetFetchRequest { correlation_id, partitions, .. } => {
                GroupMessage::OffsetFetchResponse { correlation_id, result: Ok(partitions.into_iter().map(|tp| (tp, None)).collect()) }
            }
            GroupMessage::OffsetCommitRequest { correlation_id, generation, .. } => GroupMessage::OffsetCommitResponse { correlation_id, result: self.fenced(generation) },
            GroupMessage::TxnOffsetCommitRequest { correlation_id, generation, .. } => {
                self.txn_offset_commits.push(generation);
                GroupMessage::TxnOffsetCommitResponse { correlation_id, result: self.fenced(generation) }
            }
            other => panic!("the group coordinator was not asked for {other:?}"),
        }
    }

    fn answer_txn(&mut self, request: TxnMessage) -> TxnMessage {
        match request {
            TxnMessage::InitProducerIdRequest { correlation_id, .. } => TxnMessage::InitProducerIdResponse { correlation_id, result: Ok((ProducerId(9), 0)) },
            TxnMessage::AddPartitionsToTxnRequest { correlation_id, .. } => TxnMessage::AddPartitionsToTxnResponse { correlation_id, result: Ok(()) },
            TxnMessage::AddOffsetsToTxnRequest { correlation_id, .. } => {
                let result = if self.fence_add_offsets { Err(ErrorCode::ProducerFenced) } else { Ok(()) };
                TxnMessage::AddOffsetsToTxnResponse { correlation_id, result }
            }
            TxnMessage::EndTxnRequest { correlation_id, producer_epoch, .. } => TxnMessage::EndTxnResponse { correlation_id, result: Ok(producer_epoch + 1) },
            other => panic!("the transaction coordinator was not asked for {other:?}"),
        }
    }
}

/// Pipeline member 1 of a scenario with one, driven as its node shell drives
/// it, with the broker's answers handed straight back.
struct Member {
    workload: PipelineWorkload,
    history: Arc<Mutex<History>>,
    wire: Outbox<()>,
    now: Instant,
    /// Requests `run` was told to keep unanswered.
    held: Vec<Send>,
}

impl Member {
    fn start(transactional: bool) -> Member {
        Member::start_with(transactional, |_| {})
    }

    /// `start`, with the member's consumer configured by `configure`.
    fn start_with(transactional: bool, configure: impl FnOnce(&mut kafsim_model::config::ConsumerConfig)) -> Member {
        let text = format!(
            "name = \"pipeline-member\"\nduration = \"10s\"\n[cluster]\nbrokers = 1\n\
             [[topics]]\nname = \"events\"\npartitions = 1\nreplication_factor = 1\n\
             [[topics]]\nname = \"copies\"\npartitions = 1\nreplication_factor = 1\n\
             [[pipelines]]\ncount = 1\nfrom = \"events\"\nto = \"copies\"\ngroup = \"copier\"\ntransactional = {transactional}\n"
        );
        let scenario = Scenario::parse(&text, Path::new("pipeline-member.toml")).expect("the scenario is valid");
        let spec = &scenario.pipelines[0];
        let history: Arc<Mutex<History>> = Arc::default();
        let recorder = Recorder::new(history.clone(), "pipeline-1".into());
        let mut consumer_config = spec.consumer_config.clone();
        configure(&mut consumer_config);
        let consumer = Consumer::subscribe(consumer_config, vec!["events".into()], "copier".into(), vec![BROKER], 1, 1);
        let mut producer_config = spec.producer_config.clone();
        if let Some(id) = &mut producer_config.transactional_id {
            *id = format!("{id}-1");
        }
        let producer_endpoint = crate::context::pipeline_producer_endpoint(CONSUMER);
        let producer = Producer::new(producer_config, vec![BROKER], 1, 2);
        let workload = PipelineWorkload::start(Instant::ZERO, recorder, Arc::default(), spec, (consumer, producer), Arc::default(), (CONSUMER, producer_endpoint));
        Member { workload, history, wire: Outbox::new(CONSUMER), now: Instant::ZERO, held: Vec::new() }
    }

    /// Hands `message` to the client whose endpoint is `to`, then steps the
    /// workload, as `PipelineNode::handle_message` does.
    fn deliver(&mut self, to: NodeId, message: Message) {
        let workload = &mut self.workload;
        if to == CONSUMER {
            workload.consumer.handle_message(self.now, BROKER, message, &mut workload.consumer_out);
        } else {
            workload.producer.handle_message(self.now, BROKER, message, &mut workload.producer_out);
        }
        workload.step(self.now, &mut self.wire);
    }

    /// Completes every connect asked for, each client's own.
    fn connect(&mut self) {
        for (from, command) in std::mem::take(&mut self.wire.connections) {
            let ConnectionCommand::Connect(destination) = command else { continue };
            let workload = &mut self.workload;
            if from == CONSUMER {
                workload.consumer.handle_connection(self.now, destination, ConnectionEvent::Established, &mut workload.consumer_out);
            } else {
                workload.producer.handle_connection(self.now, destination, ConnectionEvent::Established, &mut workload.producer_out);
            }
            workload.step(self.now, &mut self.wire);
        }
    }

    /// Answers every request, at this instant, until nothing more is sent;
    /// requests `hold` picks are kept in `held` instead.
    fn run(&mut self, broker: &mut Broker, hold: &dyn Fn(&Message) -> bool) {
        for _ in 0..100 {
            self.connect();
            let sends = std::mem::take(&mut self.wire.sends);
            if sends.is_empty() && self.wire.connections.is_empty() {
                return;
            }
            for send in sends {
                if hold(&send.message) {
                    self.held.push(send);
                } else if let Some(answer) = broker.answer(send.message) {
                    self.deliver(send.from, answer);
                }
            }
        }
        panic!("the member and the broker never went quiet");
    }

    /// Moves time on to the clients' next deadline and wakes them, as the node
    /// shell's alarm does.
    fn wake(&mut self) {
        let deadline = self.workload.consumer.next_deadline().into_iter().chain(self.workload.producer.next_deadline()).min();
        self.now = deadline.expect("a client has a deadline").max(self.now);
        let workload = &mut self.workload;
        workload.consumer.handle_timeout(self.now, &mut workload.consumer_out);
        workload.producer.handle_timeout(self.now, &mut workload.producer_out);
        workload.step(self.now, &mut self.wire);
    }

    /// Runs and wakes until `done`, for at most a simulated minute.
    fn run_until(&mut self, broker: &mut Broker, hold: &dyn Fn(&Message) -> bool, done: impl Fn(&Member) -> bool) {
        let limit = self.now + Duration::from_secs(60);
        loop {
            self.run(broker, hold);
            if done(self) {
                return;
            }
            assert!(self.now < limit, "not done within a minute; history: {:#?}", self.history.lock().expect("history lock").ops);
            self.wake();
        }
    }

    /// Answers the held requests, one at a time.
    fn release_held(&mut self, broker: &mut Broker) {
        for send in std::mem::take(&mut self.held) {
            if let Some(answer) = broker.answer(send.message) {
                self.deliver(send.from, answer);
            }
        }
    }

    fn generation(&self) -> Generation {
        self.workload.consumer.group().expect("a group member").generation()
    }

    fn stable(&self) -> bool {
        self.workload.is_stable()
    }

    /// How the member's first transaction ended (ok, fail or info), once it has.
    fn first_transaction_outcome(&self) -> Option<OpType> {
        let history = self.history.lock().expect("history lock");
        history.ops.iter().find(|op| op.kind != OpType::Invoke && matches!(op.body, OpBody::Txn { number: 0, .. })).map(|op| op.kind)
    }
}

fn is_produce(message: &Message) -> bool {
    matches!(message, Message::ProduceRequest { .. })
}

fn is_offset_commit(message: &Message) -> bool {
    matches!(message, Message::Group(request) if matches!(**request, GroupMessage::OffsetCommitRequest { .. }))
}

/// at-least-once: the step that takes the batch's last acknowledgement also
/// sends its offsets commit. It once waited for the member's next timer (the
/// heartbeat, seconds later), so members fell behind their producers and
/// pipeline-at-least-once runs never drained (liveness, seed 57).
#[test]
fn the_last_acknowledgement_of_a_batch_sends_its_offsets_commit_at_once() {
    let mut broker = Broker::new(3);
    let mut member = Member::start(false);
    member.run_until(&mut broker, &is_produce, |member| !member.held.is_empty());
    assert!(member.wire.sends.is_empty(), "the batch's records are out, unanswered");
    member.release_held(&mut broker);
    let commits: Vec<&Send> = member.wire.sends.iter().filter(|send| is_offset_commit(&send.message)).collect();
    assert_eq!(commits.len(), 1, "the acknowledgement's step sends the commit; it sent {:?}", member.wire.sends);
    let Message::Group(request) = &commits[0].message else { unreachable!("picked above") };
    let GroupMessage::OffsetCommitRequest { offsets, .. } = &**request else { unreachable!("picked above") };
    assert_eq!(offsets, &vec![(input(), Offset(3))], "the batch's offsets");
}

/// exactly-once (KIP-447): a batch polled in one generation and still under
/// way when the member rejoined in the next commits its offsets with the
/// generation of its poll, so the coordinator fences it and the transaction
/// aborts. It once carried the member's new generation, was accepted, and
/// the batch, read again from the old committed offset, was written twice
/// (pipeline-exactly-once seed 4: duplicate and eos-violation).
#[test]
fn a_batch_that_straddles_a_rebalance_commits_its_offsets_with_the_generation_of_its_poll() {
    let mut broker = Broker::new(3);
    // The member holds its rejoin for the open transaction at most the
    // rebalance timeout; a short one lets the rebalance overtake the batch.
    let mut member = Member::start_with(true, |config| config.max_poll_interval = Duration::from_secs(1));
    member.run_until(&mut broker, &is_produce, |member| !member.held.is_empty());
    let polled_in = member.generation();
    assert_eq!(polled_in, Generation(1));
    // While the batch's records are on their way, another member joins: the
    // next heartbeat says so, and this member rejoins in generation 2.
    broker.rebalance_due = true;
    member.run_until(&mut broker, &is_produce, |member| member.generation() == Generation(2) && member.stable());
    member.release_held(&mut broker);
    member.run_until(&mut broker, &|_| false, |member| member.first_transaction_outcome().is_some());
    assert_eq!(broker.txn_offset_commits.first(), Some(&polled_in), "TxnOffsetCommit carries the generation of the poll that read the batch");
    assert_eq!(member.first_transaction_outcome(), Some(OpType::Fail), "the fenced batch's transaction aborts");
}

/// Kafka Streams (KIP-447): an eager rebalance that revokes the partitions of
/// an open transaction lets the member finish it in onPartitionsRevoked, in
/// its generation, before it rejoins: the batch commits, nothing is read
/// twice. It once rejoined at once and the fenced transaction aborted.
#[test]
fn an_eager_revocation_commits_the_open_transaction_before_the_member_rejoins() {
    let mut broker = Broker::new(3);
    let mut member = Member::start(true);
    member.run_until(&mut broker, &is_produce, |member| !member.held.is_empty());
    assert_eq!(member.generation(), Generation(1));
    broker.rebalance_due = true;
    member.run_until(&mut broker, &is_produce, |member| member.workload.consumer.group().is_some_and(|group| group.is_revoking()));
    assert_eq!(broker.generation, Generation(1), "no JoinGroup while the revoked batch is open");
    member.release_held(&mut broker);
    member.run_until(&mut broker, &|_| false, |member| member.first_transaction_outcome().is_some() && member.stable());
    assert_eq!(broker.txn_offset_commits, vec![Generation(1)], "the offsets commit in the generation that polled them");
    assert_eq!(member.first_transaction_outcome(), Some(OpType::Ok), "the revoked batch's transaction commits");
    assert_eq!(member.generation(), Generation(2), "then the member rejoins");
}

/// A transaction whose AddOffsetsToTxn failed for good (ProducerFenced: the
/// coordinator aborted it at transaction.timeout.ms) can never take its
/// offsets: the member aborts it and reads the batch again. It once waited for
/// the offsets forever, still heartbeating, and its partitions stood still
/// (liveness under broker crashes and partitions, matrix seed 8).
#[test]
fn a_transaction_whose_offsets_cannot_join_it_is_aborted() {
    let mut broker = Broker::new(3);
    broker.fence_add_offsets = true;
    let mut member = Member::start(true);
    member.run_until(&mut broker, &|_| false, |member| member.first_transaction_outcome().is_some());
    assert_eq!(member.first_transaction_outcome(), Some(OpType::Fail), "the doomed transaction aborts");
}
