//! One simulated run of a scenario, inside a madsim runtime: build the nodes,
//! let the nemesis loose for the fault phase, heal, drain, snapshot.

use crate::context::{NodeRole, RunContext};
use crate::final_state::{ConsumerSnapshot, FinalState, GroupSnapshot, PartitionSnapshot, ReplicaSnapshot};
use crate::history::{History, OpBody, OpType};
use crate::faults::nemesis::{AppliedFaults, Nemesis};
use crate::replica_records::DecodedBatches;
use crate::node::broker::BrokerNode;
use crate::node::consumer::ConsumerNode;
use crate::node::controller::ControllerNode;
use crate::node::drive;
use crate::node::live::LiveNodes;
use crate::node::pipeline::PipelineNode;
use crate::node::producer::ProducerNode;
use crate::scenario::Scenario;
use kafsim_model::broker::QuorumSetup;
use kafsim_model::controller::{ControllerConfig, TopicSpec};
use kafsim_model::coordinator::{internal_topics, is_internal_topic};
use kafsim_model::coordinator::group::protocol::Generation;
use kafsim_model::{Instant, NodeId, Offset};
use madsim::runtime::Handle;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the drain phase checks whether the workload is done.
const DRAIN_POLL: Duration = Duration::from_millis(100);

pub struct SimulationResult {
    pub final_state: FinalState,
    pub messages: u64,
    pub sim_micros: u64,
}

/// Runs one scenario to its end. `history` and `applied` outlive the run, so
/// a run that panics still leaves what it did.
pub async fn simulate(scenario: Arc<Scenario>, history: Arc<Mutex<History>>, applied: AppliedFaults) -> SimulationResult {
    let ctx = Arc::new(RunContext::new(scenario.clone(), history));
    crate::app::session::AppSession::clear_all();
    let handle = Handle::current();
    crate::faults::buggify::set_enabled(scenario.faults.buggify);
    if scenario.faults.buggify {
        ctx.record(&"nemesis".into(), OpType::Info, OpBody::Fault { description: "buggify on: slow flushes, delayed fetch responses, dropped responses, lagging followers".into() });
    }
    let live: Arc<Mutex<LiveNodes>> = Arc::default();
    let mut ids = BTreeMap::new();
    for entry in ctx.roster.entries.clone() {
        let node_ctx = ctx.clone();
        let node_live = live.clone();
        let node = handle
            .create_node()
            .name(entry.name.to_string())
            .ip(entry.ip)
            .init(move || start_node(node_ctx.clone(), node_live.clone(), entry.id, entry.role))
            .build();
        ids.insert(entry.id, node.id());
    }
    let mut nemesis = Nemesis::new(ctx.clone(), live.clone(), ids, applied);
    nemesis.run_until(Instant::ZERO + scenario.duration).await;
    ctx.stop_producing.store(true, Ordering::Relaxed);
    ctx.record(&"nemesis".into(), OpType::Info, OpBody::Heal);
    let drain_end = ctx.now() + scenario.drain;
    while ctx.now() < drain_end && !drained(&ctx, &live.lock().expect("live lock")) {
        madsim::time::sleep(DRAIN_POLL).await;
    }
    let final_state = snapshot(&ctx, &live.lock().expect("live lock"));
    if scenario.faults.buggify {
        ctx.record(&"nemesis".into(), OpType::Info, OpBody::Fault { description: format!("buggify fired: {}", crate::faults::buggify::fired_summary()) });
    }
    // Killing every node closes its sockets, which breaks the reference cycle
    // between madsim's network (mailboxes holding wakers of tasks that hold the
    // endpoints) and would otherwise keep each finished run in memory.
    for id in nemesis.node_ids() {
        handle.kill(id);
    }
    SimulationResult { final_state, messages: ctx.message_count(), sim_micros: ctx.now().as_micros() }
}

async fn start_node(ctx: Arc<RunContext>, live: Arc<Mutex<LiveNodes>>, id: NodeId, role: NodeRole) {
    // A successor's machine is there from the start, idle: the `replace`
    // fault that marks its predecessor replaced restarts it into life.
    if !ctx.is_started(id) {
        return;
    }
    crate::trace::set_current_node(&ctx.roster.entry(id).name);
    let now = ctx.now();
    // Every kind runs the one `drive` loop, awaited once below.
    let node: Arc<Mutex<dyn crate::node::Machine>> = match role {
        NodeRole::Controller => {
            let config = controller_config(&ctx);
            let jitter_seed = crate::node::jitter_seed(id, now);
            let node = Arc::new(Mutex::new(ControllerNode::start(ctx.clone(), now, id, config, jitter_seed)));
            live.lock().expect("live lock").set_controller(id, &node);
            node
        }
        NodeRole::Broker => {
            let config = ctx.scenario.cluster.config.clone();
            let jitter_seed = crate::node::jitter_seed(id, now);
            let bootstrap = kafsim_model::controller::Controller::bootstrap(&controller_config(&ctx));
            let quorum = QuorumSetup { config: config.quorum_config(ctx.roster.controllers()), bootstrap };
            let node = Arc::new(Mutex::new(BrokerNode::start(ctx.clone(), now, id, quorum, config, jitter_seed)));
            live.lock().expect("live lock").set_broker(id, &node);
            node
        }
        NodeRole::Producer { spec, number } => {
            let node = Arc::new(Mutex::new(ProducerNode::start(ctx.clone(), id, spec, number)));
            live.lock().expect("live lock").set_producer(id, &node);
            node
        }
        NodeRole::Consumer { spec, number } => {
            let node = Arc::new(Mutex::new(ConsumerNode::start(ctx.clone(), id, spec, number)));
            live.lock().expect("live lock").set_consumer(id, &node);
            node
        }
        NodeRole::Pipeline { spec, number } => {
            let node = Arc::new(Mutex::new(PipelineNode::start(ctx.clone(), id, spec, number)));
            live.lock().expect("live lock").set_pipeline(id, &node);
            node
        }
        NodeRole::App { number } => {
            let node = Arc::new(Mutex::new(crate::app::node::AppNode::new(ctx.clone(), id, number)));
            live.lock().expect("live lock").set_app(id, &node);
            crate::app::start(ctx.clone(), id, number, node.clone());
            node
        }
    };
    drive(ctx, id, node).await
}

/// The controllers' view of the cluster: its brokers and topics, internal ones included.
fn controller_config(ctx: &RunContext) -> ControllerConfig {
    let topics = ctx
        .scenario
        .topics
        .iter()
        .map(|topic| TopicSpec { name: topic.name.clone(), partitions: topic.partitions, replication_factor: topic.replication_factor })
        .chain(internal_topics(&ctx.scenario.cluster.config, ctx.scenario.cluster.brokers, ctx.scenario.uses_groups(), ctx.scenario.uses_transactions()))
        .collect();
    ControllerConfig::new(ctx.roster.brokers(), topics, &ctx.scenario.cluster.config)
}

/// The committed end of every partition, once replication has settled: the
/// controller's leader leads at the controller's epoch, its high watermark has
/// reached its log end, and every in-sync replica follows that epoch with the same
/// log end. None while any partition is still converging, so the final state is
/// never captured mid-failover.
fn settled_ends(live: &LiveNodes) -> Option<BTreeMap<kafsim_model::TopicPartition, Offset>> {
    let metadata = live.active_metadata()?;
    let mut ends = BTreeMap::new();
    for (tp, state) in &metadata.partitions {
        let leader = live.broker(state.leader?)?;
        let leader = leader.lock().expect("broker lock");
        let partition = leader.broker.partitions().get(tp)?;
        let end = partition.log_end_offset();
        if !partition.is_leader() || partition.leader_epoch != state.leader_epoch || partition.high_watermark != end {
            return None;
        }
        for follower in state.isr.iter().filter(|broker| Some(**broker) != state.leader) {
            let follower = live.broker(*follower)?;
            let follower = follower.lock().expect("broker lock");
            let replica = follower.broker.partitions().get(tp)?;
            if replica.leader_epoch != state.leader_epoch || replica.is_leader() || replica.log_end_offset() != end {
                return None;
            }
        }
        ends.insert(tp.clone(), end);
    }
    Some(ends)
}

/// Every transaction has ended in every partition it wrote: on each leader,
/// the last stable offset (KIP-98) has reached the high watermark, so no
/// transaction is open and every marker is replicated. A transaction's commit
/// is acknowledged once the coordinator logged its decision, before the
/// markers reach the partitions, and a producer that crashed mid-transaction
/// leaves its transaction open until its coordinator aborts it; the final
/// snapshot waits for both, as a read_committed reader would.
fn transactions_ended(live: &LiveNodes) -> bool {
    live.brokers().iter().all(|(_, broker)| {
        let broker = broker.lock().expect("broker lock");
        let ended = broker.broker.partitions().values().filter(|partition| partition.is_leader()).all(|partition| partition.log.transactions().last_stable_offset(partition.high_watermark) >= partition.high_watermark);
        ended
    })
}

/// Every send has completed, replication has settled, every transaction has
/// ended and every consumer reached the committed end. A group has drained
/// when every partition of its topic is owned by a live member that reached
/// its end, and every member has processed and committed what it read.
/// Internal topics are nobody's to read.
fn drained(ctx: &RunContext, live: &LiveNodes) -> bool {
    let Some(mut ends) = settled_ends(live) else { return false };
    // Without transactional clients no log holds a transaction: the scan of
    // every partition (fifty of `__consumer_offsets` by default) is skipped.
    if ctx.scenario.uses_transactions() && !transactions_ended(live) {
        return false;
    }
    ends.retain(|tp, _| !is_internal_topic(&tp.topic));
    // A client restarted at the heal has not run yet: wait for every one to be up,
    // so a crashed producer's orphaned sends are recorded before the snapshot.
    let producers = live.producers();
    let started = |filter: fn(&NodeRole) -> bool| ctx.roster.ids(filter).into_iter().filter(|id| ctx.is_started(*id)).count();
    let clients_up = producers.len() == started(|role| matches!(role, NodeRole::Producer { .. }))
        && live.consumers().len() == started(|role| matches!(role, NodeRole::Consumer { .. }))
        && live.pipelines().len() == started(|role| matches!(role, NodeRole::Pipeline { .. }));
    let sends_done = clients_up && producers.iter().all(|(_, producer)| producer.lock().expect("producer lock").pending_count() == 0);
    let mut group_reads: BTreeMap<(&str, kafsim_model::TopicPartition), Offset> = BTreeMap::new();
    let mut groups_settled = true;
    // A member that slept through a rebalance still believes in its old
    // generation until a coordinator tells it otherwise: a group has settled
    // only when all its members are stable in one generation.
    let mut generations: BTreeMap<&str, Generation> = BTreeMap::new();
    let reads_done = live.consumers().iter().all(|(id, consumer)| {
        let node = consumer.lock().expect("consumer lock");
        let positions = node.consumer().positions();
        if let Some(group) = ctx.roster.consumer_group(*id, &ctx.scenario) {
            let member = node.consumer().group();
            groups_settled &= node.settled() && member.is_some_and(|member| member.is_stable());
            if let Some(member) = member {
                groups_settled &= *generations.entry(group).or_insert(member.generation()) == member.generation();
            }
            for (tp, position) in positions {
                let furthest = group_reads.entry((group, tp)).or_insert(position);
                *furthest = (*furthest).max(position);
            }
            return true;
        }
        // A consumer outside a group reads every partition of its own topic.
        let topic = match ctx.roster.entry(*id).role {
            NodeRole::Consumer { spec, .. } => ctx.scenario.consumers[spec].topic.as_str(),
            _ => unreachable!("live consumers are consumers"),
        };
        ends.iter()
            .filter(|(tp, _)| &*tp.topic == topic)
            .all(|(tp, end)| positions.get(tp).is_some_and(|position| position >= end) || !positions.contains_key(tp) && *end == Offset(0))
    });
    let groups_done = ctx.scenario.consumers.iter().filter_map(|spec| spec.group.as_ref().map(|group| (group, &spec.topic))).all(|(group, topic)| {
        ends.iter().filter(|(tp, _)| &*tp.topic == topic.as_str()).all(|(tp, end)| group_reads.get(&(group.as_str(), tp.clone())).is_some_and(|position| position >= end))
    });
    let pipelines_done = (0..ctx.scenario.pipelines.len()).all(|spec| pipeline_drained(ctx, live, &ends, spec));
    sends_done && reads_done && groups_done && groups_settled && pipelines_done && apps_drained(ctx, live, &ends) && !ends.is_empty()
}

/// Users' applications have drained when every instance runs, no
/// application producer has a send or a transaction in flight, and every
/// group an application subscribed with has committed the end of every
/// partition of its topics. (What an application holds unprocessed is its
/// own business; a group that committed everything is done with it.)
fn apps_drained(ctx: &RunContext, live: &LiveNodes, ends: &BTreeMap<kafsim_model::TopicPartition, Offset>) -> bool {
    let Some(app) = &ctx.scenario.app else { return true };
    if live.apps().len() != app.instances as usize || ctx.apps.producers_busy() {
        return false;
    }
    let registry = ctx.apps.registry.lock().expect("registry lock");
    let brokers = live.brokers();
    registry.group_topics.iter().all(|(group, topics)| {
        // What the group's coordinator holds: a member may have died before
        // it learned that its last commit went through.
        let coordinator_offsets: BTreeMap<kafsim_model::TopicPartition, Offset> = brokers
            .iter()
            .find_map(|(_, broker)| broker.lock().expect("broker lock").broker.group_coordinator().committed_offsets(group).cloned())
            .unwrap_or_default();
        ends.iter().filter(|(tp, _)| topics.contains(&tp.topic)).all(|(tp, end)| {
            let learned = registry.committed.get(&(group.clone(), tp.clone())).copied();
            *end == Offset(0) || learned.max(coordinator_offsets.get(tp).copied()).is_some_and(|committed| committed >= *end)
        })
    })
}

/// A pipeline block has drained when every member is up, settled (nothing polled
/// is unprocessed, no send or transaction pending) and stable, and its members'
/// positions reach the committed end of every partition of `from`.
fn pipeline_drained(ctx: &RunContext, live: &LiveNodes, ends: &BTreeMap<kafsim_model::TopicPartition, Offset>, spec: usize) -> bool {
    let members: Vec<NodeId> =
        ctx.roster.ids(|role| matches!(role, NodeRole::Pipeline { spec: member_spec, .. } if *member_spec == spec)).into_iter().filter(|id| ctx.is_started(*id)).collect();
    let running: BTreeMap<NodeId, _> = live.pipelines().into_iter().filter(|(id, _)| members.contains(id)).collect();
    if running.len() != members.len() {
        return false;
    }
    let mut reached: BTreeMap<kafsim_model::TopicPartition, Offset> = BTreeMap::new();
    let mut generation = None;
    for node in running.values() {
        let node = node.lock().expect("pipeline lock");
        // A zombie fenced by its successor has exited: nothing is left to it.
        if node.exited() {
            continue;
        }
        if !node.settled() || !node.workload.is_stable() {
            return false;
        }
        // Stable in one generation, as a consumer group's members (see `drained`).
        let member_generation = node.consumer().group().map(|member| member.generation());
        if *generation.get_or_insert(member_generation) != member_generation {
            return false;
        }
        for (tp, position) in node.consumer().positions() {
            let furthest = reached.entry(tp).or_insert(position);
            *furthest = (*furthest).max(position);
        }
    }
    let from = ctx.scenario.pipelines[spec].from.as_str();
    ends.iter().filter(|(tp, _)| &*tp.topic == from).all(|(tp, end)| reached.get(tp).is_some_and(|position| position >= end))
}

fn snapshot(ctx: &RunContext, live: &LiveNodes) -> FinalState {
    let mut partitions: BTreeMap<_, PartitionSnapshot> = BTreeMap::new();
    if let Some(metadata) = live.active_metadata() {
        for (tp, state) in &metadata.partitions {
            partitions.insert(tp.clone(), PartitionSnapshot { leader: state.leader, leader_epoch: state.leader_epoch, isr: state.isr.clone(), elr: state.elr.clone(), last_known_elr: state.last_known_elr.clone(), replicas: BTreeMap::new() });
        }
    }
    // Per partition, the replica decoded last and its batches.
    let mut decoded: BTreeMap<kafsim_model::TopicPartition, (NodeId, DecodedBatches)> = BTreeMap::new();
    for (id, broker) in live.brokers() {
        let broker = broker.lock().expect("broker lock");
        for (tp, partition) in broker.broker.partitions() {
            let (previous_id, batches) = decoded.entry(tp.clone()).or_insert_with(|| (id, DecodedBatches::default()));
            let previous = partitions.get(tp).and_then(|snapshot| snapshot.replicas.get(previous_id)).map_or(&[][..], |replica| &replica.records[..]);
            let records = batches.decode(partition.log.batches().iter(), previous, partition.log_end_offset().0 as usize);
            *previous_id = id;
            // Records of aborted transactions stay in the log, as in Kafka; the
            // checkers read each one's fate here instead of guessing it.
            let transactions = crate::transaction_fates::transaction_fates(partition.log.batches().iter().map(|batch| &**batch));
            let replica = ReplicaSnapshot {
                broker: id,
                records,
                high_watermark: partition.high_watermark,
                log_end_offset: partition.log_end_offset(),
                leader_epoch: partition.leader_epoch,
                is_leader: partition.is_leader(),
                transactions,
            };
            partitions.entry(tp.clone()).or_default().replicas.insert(id, replica);
        }
    }
    let consumers: BTreeMap<String, ConsumerSnapshot> = live
        .consumers()
        .into_iter()
        .map(|(id, consumer)| {
            let positions = consumer.lock().expect("consumer lock").consumer().positions();
            (ctx.roster.entry(id).name.to_string(), ConsumerSnapshot { positions })
        })
        .collect();
    let drained = !consumers.is_empty();
    let mut groups: BTreeMap<String, GroupSnapshot> = BTreeMap::new();
    for entry in &ctx.roster.entries {
        if let Some(group) = ctx.roster.consumer_group(entry.id, &ctx.scenario) {
            let NodeRole::Consumer { spec, .. } = entry.role else { continue };
            let snapshot = groups.entry(group.to_string()).or_insert_with(|| GroupSnapshot { topic: ctx.scenario.consumers[spec].topic.clone(), members: Vec::new() });
            // Only members alive at the end own anything.
            if consumers.contains_key(&*entry.name) {
                snapshot.members.push(entry.name.to_string());
            }
        }
    }
    let pipelines = (0..ctx.scenario.pipelines.len())
        .map(|spec| {
            let pipeline = &ctx.scenario.pipelines[spec];
            let ends = settled_ends(live);
            let drained = ends.is_some_and(|ends| pipeline_drained(ctx, live, &ends, spec));
            crate::final_state::PipelineSnapshot { group: pipeline.group.clone(), from: pipeline.from.clone(), to: pipeline.to.clone(), drained }
        })
        .chain(app_pipelines(ctx, live))
        .collect();
    FinalState { partitions, consumers, drained, groups, pipelines }
}

/// The pipelines users' applications made (`AppContext::derived_from`), for `eos-violation`.
fn app_pipelines(ctx: &RunContext, live: &LiveNodes) -> Vec<crate::final_state::PipelineSnapshot> {
    if ctx.scenario.app.is_none() {
        return Vec::new();
    }
    let drained = settled_ends(live).is_some_and(|ends| apps_drained(ctx, live, &ends));
    let pipelines = ctx.apps.registry.lock().expect("registry lock").pipelines.clone();
    pipelines
        .into_iter()
        .map(|(group, from, to)| crate::final_state::PipelineSnapshot { group: group.to_string(), from: from.to_string(), to: to.to_string(), drained })
        .collect()
}
