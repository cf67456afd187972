//! The nemesis: turns the scenario's `[faults]` into a timed schedule and applies
//! it, recording every fault and every undo in the history.
//!
//! Faults it can inject: process crash (page cache survives; peers' connections
//! are reset), power loss (only flushed writes survive, the last may be torn;
//! nothing tells the peers), pause (a stalled process that wakes still believing
//! what it believed), node isolation, a split of the cluster in two (clients
//! land on either side), one-way links (a node that hears but cannot speak),
//! packet loss (retransmission latency: TCP loses nothing), added latency, and
//! power loss of every replica of one partition at once. What each does to
//! connections is `network`'s. Random mode draws kind, target, time and
//! duration from the seed; scripted mode follows `[[faults.schedule]]`.

use crate::context::{NodeRole, RunContext};
use crate::history::{OpBody, OpType};
use crate::node::live::LiveNodes;
use crate::scenario::{Action, FaultKind, ScheduledFault, Target};
use kafsim_model::{Instant, NodeId, TopicPartition};
use madsim::runtime::Handle;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fault in effect, with what undoing it takes.
#[derive(Clone, Debug)]
enum Applied {
    Down { nodes: Vec<NodeId>, power_loss: bool },
    Paused(Vec<NodeId>),
    /// A client stalled while its successor took over; undone, it wakes as a zombie.
    Replaced { zombie: NodeId },
    /// A split: `side` against the rest, cut along `links` (each direction).
    Links { side: Vec<NodeId>, links: Vec<(NodeId, NodeId)> },
    Isolated { node: NodeId, links: Vec<(NodeId, NodeId)> },
    SilencedOutbound { node: NodeId, links: Vec<(NodeId, NodeId)> },
    Loss(f64),
    Latency(Duration),
}

/// A fault in effect: when it is due to be undone, and where it stands in the
/// record of applied faults.
struct Active {
    undo_at: Option<Instant>,
    applied: Applied,
    record: usize,
}

/// The faults a run applied so far, as a schedule that replays them.
pub type AppliedFaults = Arc<Mutex<Vec<ScheduledFault>>>;

pub struct Nemesis {
    ctx: Arc<RunContext>,
    /// The running nodes, read to aim at a partition's leader or replicas.
    live: Arc<Mutex<LiveNodes>>,
    ids: BTreeMap<NodeId, madsim::task::NodeId>,
    active: Vec<Active>,
    /// Every fault applied, in concrete scripted form (for `kafsim shrink`).
    /// Shared with the runner, so a run that panics still tells which faults led there.
    applied: AppliedFaults,
    /// The nemesis draws from its own generator, seeded from the run seed, so
    /// its choices leave madsim's generator (which also orders tasks) untouched:
    /// the same faults replayed as a schedule then give the very same run.
    rng: ChaCha8Rng,
    seed: u64,
    name: Arc<str>,
}

impl Nemesis {
    pub fn new(ctx: Arc<RunContext>, live: Arc<Mutex<LiveNodes>>, ids: BTreeMap<NodeId, madsim::task::NodeId>, applied: AppliedFaults) -> Nemesis {
        let seed = Handle::current().seed();
        Nemesis { ctx, live, ids, active: Vec::new(), applied, rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321), seed, name: "nemesis".into() }
    }

    fn names_of(&self, nodes: &[NodeId]) -> Vec<String> {
        nodes.iter().map(|node| self.node_name(*node).to_string()).collect()
    }

    /// The scripted form of a fault just applied.
    fn as_scheduled(&self, now: Instant, applied: &Applied) -> ScheduledFault {
        let at = now.saturating_since(Instant::ZERO);
        let target = |nodes: &[NodeId]| match nodes {
            [single] => Target::Node(self.node_name(*single).to_string()),
            many => Target::Nodes(self.names_of(many)),
        };
        let (action, target, rate, latency) = match applied {
            Applied::Down { nodes, power_loss: true } => (Action::PowerLoss, target(nodes), None, None),
            Applied::Down { nodes, power_loss: false } => (Action::Crash, target(nodes), None, None),
            Applied::Paused(nodes) => (Action::Pause, target(nodes), None, None),
            Applied::Replaced { zombie } => (Action::Replace, target(&[*zombie]), None, None),
            Applied::Links { side, .. } => (Action::Partition, Target::Nodes(self.names_of(side)), None, None),
            Applied::Isolated { node, .. } => (Action::Isolate, target(&[*node]), None, None),
            Applied::SilencedOutbound { node, .. } => (Action::OneWay, target(&[*node]), None, None),
            Applied::Loss(rate) => (Action::Loss, Target::Random, Some(*rate), None),
            Applied::Latency(extra) => (Action::Latency, Target::Random, None, Some(*extra)),
        };
        ScheduledFault { at, action, target, duration: None, rate, latency }
    }

    fn activate(&mut self, now: Instant, undo_at: Option<Instant>, applied: Applied) {
        let scheduled = self.as_scheduled(now, &applied);
        let record = {
            let mut record = self.applied.lock().expect("applied faults lock");
            record.push(scheduled);
            record.len() - 1
        };
        self.active.push(Active { undo_at, applied, record });
    }

    pub fn node_ids(&self) -> Vec<madsim::task::NodeId> {
        self.ids.values().copied().collect()
    }

    fn record(&self, description: String) {
        self.ctx.record(&self.name, OpType::Info, OpBody::Fault { description });
    }

    fn node_name(&self, id: NodeId) -> Arc<str> {
        self.ctx.roster.entry(id).name.clone()
    }

    fn names(&self, ids: &[NodeId]) -> String {
        self.names_of(ids).join(",")
    }

    fn servers(&self) -> Vec<NodeId> {
        self.ctx.roster.ids(|role| matches!(role, NodeRole::Controller | NodeRole::Broker))
    }

    fn leader_of(&self, tp: &TopicPartition) -> Option<NodeId> {
        self.live.lock().expect("live lock").active_metadata()?.partitions.get(tp)?.leader
    }

    fn replicas_of(&self, tp: &TopicPartition) -> Vec<NodeId> {
        let Some(metadata) = self.live.lock().expect("live lock").active_metadata() else { return Vec::new() };
        metadata.partitions.get(tp).map(|state| state.replicas.clone()).unwrap_or_default()
    }

    /// The controller quorum as a majority (the active controller first, when
    /// there is one) and the minority of the rest: 2|1 of three voters.
    fn quorum_sides(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let active = self.active_controller();
        let mut voters = self.ctx.roster.controllers();
        voters.sort_by_key(|voter| (*voter != active, *voter));
        let minority = voters.split_off(voters.len() / 2 + 1);
        (voters, minority)
    }

    /// Cuts the quorum's minority off from its majority; brokers and
    /// clients still reach every controller.
    fn split_quorum(&mut self) -> Applied {
        let (majority, minority) = self.quorum_sides();
        let links: Vec<(NodeId, NodeId)> = majority.iter().flat_map(|a| minority.iter().flat_map(move |b| [(*a, *b), (*b, *a)])).collect();
        self.ctx.network.cut(&links);
        self.record(format!("quorum split [{}] | [{}]", self.names(&majority), self.names(&minority)));
        Applied::Links { side: minority, links }
    }

    /// Cuts the active controller off from every broker, not from its voters.
    fn cut_off_controller(&mut self) -> Applied {
        let active = self.active_controller();
        let links: Vec<(NodeId, NodeId)> = self.ctx.roster.brokers().into_iter().flat_map(|broker| [(active, broker), (broker, active)]).collect();
        self.ctx.network.cut(&links);
        self.record(format!("controller cutoff: {} cannot reach the brokers, still its voters", self.node_name(active)));
        Applied::Links { side: vec![active], links }
    }

    /// The active controller, or, while the quorum has none, the first.
    fn active_controller(&self) -> NodeId {
        let active = self.live.lock().expect("live lock").active_controller().map(|(id, _)| id);
        active.unwrap_or_else(|| self.ctx.roster.controllers()[0])
    }

    fn random_partition(&mut self) -> Option<TopicPartition> {
        let topics = &self.ctx.scenario.topics;
        let topic = topics.choose(&mut self.rng)?;
        let partition = self.rng.gen_range(0..topic.partitions);
        Some(TopicPartition::new(topic.name.as_str(), partition))
    }

    /// Runs random and scripted faults until `end`, then undoes everything.
    pub async fn run_until(&mut self, end: Instant) {
        let faults = self.ctx.scenario.faults.clone();
        if let Some(mix) = &faults.swarm {
            self.record(mix.to_string());
        }
        let mut schedule: Vec<ScheduledFault> = faults.schedule.clone();
        schedule.sort_by_key(|fault| fault.at);
        let mut schedule = schedule.into_iter().peekable();
        let random = !faults.kinds.is_empty() && !faults.interval.is_zero();
        let mut next_random = random.then(|| self.ctx.now() + self.exponential(faults.interval));
        loop {
            let now = self.ctx.now();
            let next_undo = self.active.iter().filter_map(|active| active.undo_at).min();
            let next_script = schedule.peek().map(|fault| Instant::ZERO + fault.at);
            // At capacity, a random fault waits for an undo rather than waking the
            // nemesis for nothing (a wake-up alone would shift madsim's generator).
            let at_capacity = self.active.len() >= faults.max_concurrent;
            let random_wake = if at_capacity { None } else { next_random };
            let next = [next_undo, next_script, random_wake, Some(end)].into_iter().flatten().min().expect("end is always there");
            if next > now {
                madsim::time::sleep(next.saturating_since(now)).await;
            }
            let now = self.ctx.now();
            if now >= end {
                break;
            }
            if next_undo.is_some_and(|at| at <= now) {
                self.undo_due(now);
            } else if next_script.is_some_and(|at| at <= now) {
                let fault = schedule.next().expect("peeked");
                self.apply_scripted(now, &fault);
            } else if !at_capacity && next_random.is_some_and(|at| at <= now) {
                next_random = Some(now + self.exponential(faults.interval));
                {
                    let kind = *faults.kinds.choose(&mut self.rng).expect("kinds is not empty");
                    let hold = self.hold_time(faults.interval);
                    if let Some(applied) = self.apply_random(kind) {
                        self.activate(now, Some(now + hold), applied);
                    }
                }
            }
        }
        self.heal_all();
    }

    fn exponential(&mut self, mean: Duration) -> Duration {
        let uniform: f64 = self.rng.gen_range(0.0001..1.0);
        Duration::from_secs_f64(-uniform.ln() * mean.as_secs_f64())
    }

    /// How long a random fault lasts before it is undone.
    fn hold_time(&mut self, interval: Duration) -> Duration {
        let max = interval.max(Duration::from_secs(2)) * 2;
        Duration::from_secs_f64(self.rng.gen_range(0.5..max.as_secs_f64()))
    }

    fn undo_due(&mut self, now: Instant) {
        self.undo_matching(|active| active.undo_at.is_some_and(|at| at <= now));
    }

    fn apply_random(&mut self, kind: FaultKind) -> Option<Applied> {
        let affected = self.nodes_down_or_paused();
        let servers: Vec<NodeId> = self.servers().into_iter().filter(|node| !affected.contains(node)).collect();
        let mut server = *servers.choose(&mut self.rng)?;
        // With a quorum, a quarter of the process and machine faults hit the
        // active controller, where a failover follows.
        let active = (self.ctx.scenario.cluster.controllers > 1).then(|| self.active_controller()).filter(|active| !affected.contains(active));
        if let Some(active) = active.filter(|_| matches!(kind, FaultKind::Crash | FaultKind::PowerLoss | FaultKind::Pause | FaultKind::Isolate)) {
            if self.rng.gen_bool(0.25) {
                server = active;
            }
        }
        match kind {
            FaultKind::QuorumSplit => Some(self.split_quorum()),
            FaultKind::ControllerCutoff => Some(self.cut_off_controller()),
            FaultKind::Crash => Some(self.crash(vec![server], false)),
            FaultKind::PowerLoss => Some(self.crash(vec![server], true)),
            FaultKind::ClientCrash => {
                let clients: Vec<NodeId> = self
                    .ctx
                    .roster
                    .ids(|role| matches!(role, NodeRole::Producer { .. } | NodeRole::Consumer { .. } | NodeRole::Pipeline { .. } | NodeRole::App { .. }))
                    .into_iter()
                    // A replaced client's supervisor would not bring it back.
                    .filter(|node| !affected.contains(node) && self.ctx.is_started(*node) && !self.ctx.is_replaced(*node))
                    .collect();
                let client = *clients.choose(&mut self.rng)?;
                Some(self.crash(vec![client], false))
            }
            FaultKind::Replace => {
                let clients: Vec<NodeId> = self.replaceable_clients().into_iter().filter(|node| !affected.contains(node)).collect();
                let client = *clients.choose(&mut self.rng)?;
                self.replace(client)
            }
            FaultKind::Pause => Some(self.pause(vec![server])),
            FaultKind::Isolate => {
                // Half the time isolate a partition leader, which is where it hurts.
                let leader = self.random_partition().and_then(|tp| self.leader_of(&tp));
                let target = match leader {
                    Some(leader) if self.rng.gen_bool(0.5) => leader,
                    _ => server,
                };
                Some(self.isolate(target))
            }
            FaultKind::Partition => Some(self.split(None, true)),
            FaultKind::OneWay => Some(self.silence_outbound(server)),
            FaultKind::PacketLoss => {
                let rate = self.rng.gen_range(0.02..0.3);
                Some(self.loss(rate))
            }
            FaultKind::Latency => {
                let extra = Duration::from_millis(self.rng.gen_range(20..200));
                Some(self.latency(extra))
            }
            FaultKind::ReplicaPowerLoss => {
                let tp = self.random_partition()?;
                let replicas: Vec<NodeId> = self.replicas_of(&tp).into_iter().filter(|node| !affected.contains(node)).collect();
                (!replicas.is_empty()).then(|| self.crash(replicas, true))
            }
        }
    }

    /// Nodes a crash, power loss or pause currently holds down.
    fn nodes_down_or_paused(&self) -> Vec<NodeId> {
        self.active
            .iter()
            .flat_map(|active| match &active.applied {
                Applied::Down { nodes, .. } | Applied::Paused(nodes) => nodes.clone(),
                Applied::Replaced { zombie } => vec![*zombie],
                _ => Vec::new(),
            })
            .collect()
    }

    fn resolve(&mut self, target: &Target) -> Vec<NodeId> {
        match target {
            Target::Node(name) => self.ctx.roster.by_name(name).map(|entry| vec![entry.id]).unwrap_or_default(),
            Target::Leader(tp) => self.leader_of(tp).into_iter().collect(),
            Target::Replicas(tp) => self.replicas_of(tp),
            Target::Controller => vec![self.active_controller()],
            Target::ControllersMajority => self.quorum_sides().0,
            Target::ControllersMinority => self.quorum_sides().1,
            Target::Random | Target::Majority | Target::Minority => self.ctx.roster.brokers().choose(&mut self.rng).copied().into_iter().collect(),
            Target::Nodes(names) => names.iter().filter_map(|name| self.ctx.roster.by_name(name)).map(|entry| entry.id).collect(),
        }
    }

    fn apply_scripted(&mut self, now: Instant, fault: &ScheduledFault) {
        let targets = self.resolve(&fault.target);
        let applied = match fault.action {
            Action::Crash => (!targets.is_empty()).then(|| self.crash(targets.clone(), false)),
            Action::PowerLoss => (!targets.is_empty()).then(|| self.crash(targets.clone(), true)),
            Action::Pause => (!targets.is_empty()).then(|| self.pause(targets.clone())),
            Action::Replace => targets.first().and_then(|target| self.replace(*target)),
            Action::Isolate => targets.first().map(|target| self.isolate(*target)),
            Action::OneWay => targets.first().map(|target| self.silence_outbound(*target)),
            Action::Partition => Some(match fault.target {
                Target::ControllersMajority | Target::ControllersMinority => self.split_quorum(),
                Target::Random | Target::Majority | Target::Minority => self.split(None, true),
                // An explicit group is one side exactly; clients named nowhere go to the other.
                Target::Nodes(_) => self.split(Some(targets.clone()), false),
                _ => self.split(Some(targets.clone()), true),
            }),
            Action::Loss => Some(self.loss(fault.rate.unwrap_or(0.1))),
            Action::Latency => Some(self.latency(fault.latency.unwrap_or(Duration::from_millis(50)))),
            Action::Restart | Action::Resume => {
                self.undo_matching(|active| match &active.applied {
                    Applied::Down { nodes, .. } | Applied::Paused(nodes) => targets.is_empty() || nodes.iter().any(|node| targets.contains(node)),
                    Applied::Replaced { zombie } => targets.is_empty() || targets.contains(zombie),
                    _ => false,
                });
                None
            }
            Action::Heal => {
                self.undo_matching(|active| {
                    matches!(active.applied, Applied::Links { .. } | Applied::Isolated { .. } | Applied::SilencedOutbound { .. } | Applied::Loss(_) | Applied::Latency(_))
                });
                None
            }
        };
        if let Some(applied) = applied {
            self.activate(now, fault.duration.map(|hold| now + hold), applied);
        } else if targets.is_empty() && !matches!(fault.action, Action::Heal | Action::Loss | Action::Latency | Action::Partition | Action::Restart | Action::Resume) {
            self.record(format!("{:?} skipped: target {:?} resolves to no node", fault.action, fault.target));
        }
    }

    /// Undoes the active faults that match, noting in the record how long each lasted.
    fn undo_matching(&mut self, matches: impl Fn(&Active) -> bool) {
        let (chosen, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active).into_iter().partition(|active| matches(active));
        self.active = rest;
        let now = self.ctx.now().saturating_since(Instant::ZERO);
        for active in chosen {
            {
                let mut applied = self.applied.lock().expect("applied faults lock");
                let record = &mut applied[active.record];
                let lasted = now.saturating_sub(record.at);
                record.duration = (!lasted.is_zero()).then_some(lasted);
            }
            self.undo(active.applied);
        }
    }

    fn crash(&mut self, nodes: Vec<NodeId>, power_loss: bool) -> Applied {
        let handle = Handle::current();
        let now = self.ctx.now();
        for node in &nodes {
            if power_loss {
                if let Some(disk) = self.ctx.disks.get(node) {
                    // What survives a power loss depends only on the run seed, the
                    // time and the node, so a replayed schedule loses the same writes.
                    let at = now.as_micros();
                    let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ at.rotate_left(17) ^ u64::from(node.0).rotate_left(41));
                    disk.lock().expect("disk lock").power_loss(|pending| {
                        if pending == 0 || rng.gen_bool(0.5) {
                            return (0, false);
                        }
                        (rng.gen_range(0..=pending), rng.gen_bool(0.5))
                    });
                }
                self.ctx.network.power_loss(*node);
            } else {
                self.ctx.network.crash(now, *node);
            }
            handle.kill(self.ids[node]);
        }
        let kind = if power_loss { "power-loss (no reset: peers notice by their timeouts)" } else { "crash (peers' connections reset)" };
        self.record(format!("{kind} {}", self.names(&nodes)));
        Applied::Down { nodes, power_loss }
    }

    fn pause(&mut self, nodes: Vec<NodeId>) -> Applied {
        for node in &nodes {
            Handle::current().pause(self.ids[node]);
        }
        self.record(format!("pause {}", self.names(&nodes)));
        Applied::Paused(nodes)
    }

    /// Clients that have a successor waiting: started, and not replaced yet.
    fn replaceable_clients(&self) -> Vec<NodeId> {
        let roster = &self.ctx.roster;
        let clients = roster.ids(|role| matches!(role, NodeRole::Producer { .. } | NodeRole::Consumer { .. } | NodeRole::Pipeline { .. }));
        clients.into_iter().filter(|client| roster.successor_of(*client).is_some() && !self.ctx.is_replaced(*client)).collect()
    }

    /// Stalls `client` and starts its successor, as a supervisor that gave up
    /// on an unresponsive process would (a Kubernetes liveness probe, say).
    /// None when `client` has no successor left to start.
    fn replace(&mut self, client: NodeId) -> Option<Applied> {
        let Some(successor) = self.ctx.roster.successor_of(client).map(|entry| entry.id) else {
            self.record(format!("replace skipped: {} has no successor", self.node_name(client)));
            return None;
        };
        if self.ctx.is_replaced(client) {
            self.record(format!("replace skipped: {} was replaced already", self.node_name(client)));
            return None;
        }
        let handle = Handle::current();
        handle.pause(self.ids[&client]);
        self.ctx.mark_replaced(client);
        handle.restart(self.ids[&successor]);
        // Two records: the stall reads as a pause on the timeline, the start as a note.
        self.record(format!("pause {}", self.node_name(client)));
        self.record(format!("start {} (replaces {}: same transactional.id and group)", self.node_name(successor), self.node_name(client)));
        Some(Applied::Replaced { zombie: client })
    }

    /// Every host but `node`.
    fn others(&self, node: NodeId) -> Vec<NodeId> {
        self.ctx.roster.entries.iter().map(|entry| entry.id).filter(|other| *other != node).collect()
    }

    fn isolate(&mut self, node: NodeId) -> Applied {
        let links: Vec<(NodeId, NodeId)> = self.others(node).into_iter().flat_map(|other| [(node, other), (other, node)]).collect();
        self.ctx.network.cut(&links);
        self.record(format!("isolate {}", self.node_name(node)));
        Applied::Isolated { node, links }
    }

    fn silence_outbound(&mut self, node: NodeId) -> Applied {
        let links: Vec<(NodeId, NodeId)> = self.others(node).into_iter().map(|other| (node, other)).collect();
        self.ctx.network.cut(&links);
        self.record(format!("one-way: {} hears but cannot send", self.node_name(node)));
        Applied::SilencedOutbound { node, links }
    }

    /// Splits the nodes in two: `side` (or a random minority of the servers) against
    /// the rest; with `scatter_clients`, each client not in `side` lands on a random side.
    fn split(&mut self, side: Option<Vec<NodeId>>, scatter_clients: bool) -> Applied {
        let mut servers = self.servers();
        let one_side = match side {
            Some(side) => side,
            None => {
                servers.shuffle(&mut self.rng);
                let minority = self.rng.gen_range(1..=(servers.len() - 1).div_ceil(2).max(1));
                servers[..minority].to_vec()
            }
        };
        let mut left = one_side.clone();
        let mut right: Vec<NodeId> = self.servers().into_iter().filter(|node| !one_side.contains(node)).collect();
        let clients = self.ctx.roster.ids(|role| matches!(role, NodeRole::Producer { .. } | NodeRole::Consumer { .. } | NodeRole::Pipeline { .. } | NodeRole::App { .. }));
        for client in clients.into_iter().filter(|client| !one_side.contains(client)) {
            if scatter_clients && self.rng.gen_bool(0.5) {
                left.push(client);
            } else {
                right.push(client);
            }
        }
        let mut links = Vec::new();
        for a in &left {
            for b in &right {
                links.push((*a, *b));
                links.push((*b, *a));
            }
        }
        self.ctx.network.cut(&links);
        self.record(format!("partition [{}] | [{}]", self.names(&left), self.names(&right)));
        Applied::Links { side: left, links }
    }

    fn loss(&mut self, rate: f64) -> Applied {
        self.ctx.network.set_loss_rate(rate);
        self.record(format!("packet loss {:.0}% (retransmitted: late, never lost)", rate * 100.0));
        Applied::Loss(rate)
    }

    fn latency(&mut self, extra: Duration) -> Applied {
        self.ctx.network.set_extra_latency(extra);
        self.record(format!("latency +{}ms", extra.as_millis()));
        Applied::Latency(extra)
    }

    fn undo(&mut self, applied: Applied) {
        let now = self.ctx.now();
        let network = self.ctx.network.clone();
        match applied {
            Applied::Down { nodes, .. } => {
                for node in &nodes {
                    // madsim's restart does not close the old incarnation's tasks;
                    // a kill does, so a node downed twice can come back once cleanly.
                    Handle::current().kill(self.ids[node]);
                    Handle::current().restart(self.ids[node]);
                }
                self.record(format!("restart {}", self.names(&nodes)));
            }
            Applied::Paused(nodes) => {
                for node in &nodes {
                    Handle::current().resume(self.ids[node]);
                }
                self.record(format!("resume {}", self.names(&nodes)));
            }
            Applied::Replaced { zombie } => {
                Handle::current().resume(self.ids[&zombie]);
                // It wakes as a zombie: its successor runs on.
                self.record(format!("resume {}", self.node_name(zombie)));
            }
            Applied::Links { links, .. } => {
                network.heal(now, &links);
                self.record("heal partition".to_string());
            }
            Applied::Isolated { node, links } => {
                network.heal(now, &links);
                self.record(format!("heal isolation of {}", self.node_name(node)));
            }
            Applied::SilencedOutbound { node, links } => {
                network.heal(now, &links);
                self.record(format!("heal one-way link of {}", self.node_name(node)));
            }
            Applied::Loss(_) => {
                network.set_loss_rate(0.0);
                self.record("packet loss over".to_string());
            }
            Applied::Latency(_) => {
                network.set_extra_latency(Duration::ZERO);
                self.record("latency back to normal".to_string());
            }
        }
    }

    /// The end of the fault phase: undo every fault still in effect.
    pub fn heal_all(&mut self) {
        self.undo_matching(|_| true);
    }
}
