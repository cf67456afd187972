//! What the nodes of one simulated run share: the roster of names and addresses,
//! the history every operation is recorded in, the simulated disks that outlive
//! node restarts, and what each client's workload carries across its restarts.

use crate::faults::disk::SharedDisk;
use crate::history::{History, OpBody, OpType};
use crate::workload::pipeline::PipelineProgress;
use crate::workload::producer::ProducerProgress;
use crate::scenario::Scenario;
use kafsim_model::{Instant, NodeId};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    Controller,
    Broker,
    /// `spec` indexes `[[producers]]`; `number` counts producers from 1 across blocks.
    Producer { spec: usize, number: u32 },
    Consumer { spec: usize, number: u32 },
    /// `spec` indexes `[[pipelines]]`; `number` counts pipeline members from 1 across blocks.
    Pipeline { spec: usize, number: u32 },
    /// An instance of a user's application (`crate::app`), numbered from 1.
    App { number: u32 },
}

#[derive(Clone, Debug)]
pub struct RosterEntry {
    pub id: NodeId,
    pub name: Arc<str>,
    pub role: NodeRole,
    pub ip: IpAddr,
    /// For a successor (`replace`), the client it takes over from: same role,
    /// same number, so the same `transactional.id` and group.
    pub predecessor: Option<NodeId>,
}

impl RosterEntry {
    /// The producer number in the values this client sends: a successor's own,
    /// so its values never collide with those of its predecessor, which may
    /// still be alive.
    pub fn value_number(&self, number: u32) -> u32 {
        match self.predecessor {
            Some(_) => SUCCESSOR_VALUE_BASE + number,
            None => number,
        }
    }
}

/// Every node of a run, named as DESIGN §1 says: controller-1, broker-1, producer-1, consumer-1.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    pub entries: Vec<RosterEntry>,
}

/// Controller `n` is node 1000 + n - 1, so a one-controller cluster's is 1000.
const CONTROLLER_BASE: u32 = 1000;
/// Pipeline member `n` is node 4000 + n (its successor 4500 + n); its
/// producer's endpoint is 2000 above.
const PIPELINE_PRODUCER_OFFSET: u32 = 2000;
/// A client's successor is its node id plus this; clients number below it.
const SUCCESSOR_OFFSET: u32 = 500;
/// A successor producer's values are `(SUCCESSOR_VALUE_BASE + n):s`, below
/// the pipelines' outputs (`PIPELINE_OUTPUT_BASE`).
pub const SUCCESSOR_VALUE_BASE: u32 = 100_000;

pub fn pipeline_producer_endpoint(member: NodeId) -> NodeId {
    NodeId(member.0 + PIPELINE_PRODUCER_OFFSET)
}

impl Roster {
    pub fn for_scenario(scenario: &Scenario) -> Roster {
        let entry = |id: NodeId, name: String, role: NodeRole, ip: IpAddr| RosterEntry { id, name: name.into(), role, ip, predecessor: None };
        let mut entries: Vec<RosterEntry> = (1..=scenario.cluster.controllers)
            .map(|index| entry(NodeId(CONTROLLER_BASE + index - 1), format!("controller-{index}"), NodeRole::Controller, ip(1, index)))
            .collect();
        for index in 1..=scenario.cluster.brokers {
            entries.push(entry(NodeId(index), format!("broker-{index}"), NodeRole::Broker, ip(2, index)));
        }
        let mut number = 0;
        for (spec, producers) in scenario.producers.iter().enumerate() {
            for _ in 0..producers.count {
                number += 1;
                let id = NodeId(2000 + number);
                entries.push(entry(id, format!("producer-{number}"), NodeRole::Producer { spec, number }, ip(3, number)));
            }
        }
        let mut number = 0;
        for (spec, consumers) in scenario.consumers.iter().enumerate() {
            for _ in 0..consumers.count {
                number += 1;
                let id = NodeId(3000 + number);
                entries.push(entry(id, format!("consumer-{number}"), NodeRole::Consumer { spec, number }, ip(4, number)));
            }
        }
        let mut number = 0;
        for (spec, pipelines) in scenario.pipelines.iter().enumerate() {
            for _ in 0..pipelines.count {
                number += 1;
                let id = NodeId(4000 + number);
                entries.push(entry(id, format!("pipeline-{number}"), NodeRole::Pipeline { spec, number }, ip(5, number)));
            }
        }
        if let Some(app) = &scenario.app {
            for number in 1..=app.instances {
                let id = NodeId(crate::app::node::APP_NODE_BASE + number);
                entries.push(entry(id, format!("app-{number}"), NodeRole::App { number }, ip(6, number)));
            }
        }
        // Successors exist only where a fault may start them: other runs keep
        // their nodes, and with them their traces.
        if scenario.uses_replace() {
            let successors: Vec<RosterEntry> = entries
                .iter()
                .filter(|entry| matches!(entry.role, NodeRole::Producer { .. } | NodeRole::Consumer { .. } | NodeRole::Pipeline { .. }))
                .map(|entry| {
                    let id = NodeId(entry.id.0 + SUCCESSOR_OFFSET);
                    let IpAddr::V4(address) = entry.ip else { unreachable!("roster addresses are IPv4") };
                    let [a, b, _, _] = address.octets();
                    RosterEntry { id, name: format!("{}-successor", entry.name).into(), role: entry.role, ip: IpAddr::V4(Ipv4Addr::new(a, b + 100, 0, (entry.id.0 % 256) as u8)), predecessor: Some(entry.id) }
                })
                .collect();
            entries.extend(successors);
        }
        Roster { entries }
    }

    /// The successor waiting to take over from `id`, if the roster has one.
    pub fn successor_of(&self, id: NodeId) -> Option<&RosterEntry> {
        self.entries.iter().find(|entry| entry.predecessor == Some(id))
    }

    pub fn entry(&self, id: NodeId) -> &RosterEntry {
        self.entries.iter().find(|entry| entry.id == id).expect("every node id comes from the roster")
    }

    /// The network endpoints a node holds, its own id first: a pipeline member
    /// runs a consumer and a producer, each with connections of its own (as a
    /// Kafka Streams application's two clients have), the producer's at
    /// `pipeline_producer_endpoint`.
    pub fn endpoints(&self, id: NodeId) -> Vec<NodeId> {
        match self.entry(id).role {
            NodeRole::Pipeline { .. } => vec![id, pipeline_producer_endpoint(id)],
            NodeRole::App { .. } => std::iter::once(id).chain((0..crate::app::node::MAX_CLIENTS).map(|index| crate::app::node::client_endpoint(id, index))).collect(),
            _ => vec![id],
        }
    }

    /// The name of the node an endpoint belongs to.
    pub fn endpoint_name(&self, endpoint: NodeId) -> Arc<str> {
        match self.entries.iter().find(|entry| entry.id == endpoint) {
            Some(entry) => entry.name.clone(),
            None if crate::app::node::endpoint_owner(endpoint).is_some() => {
                let (node, index) = crate::app::node::endpoint_owner(endpoint).expect("checked by the guard");
                format!("{} (client {index})", self.entry(node).name).into()
            }
            None => format!("{} (producer)", self.entry(NodeId(endpoint.0 - PIPELINE_PRODUCER_OFFSET)).name).into(),
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&RosterEntry> {
        self.entries.iter().find(|entry| &*entry.name == name)
    }

    /// The controller quorum's voters.
    pub fn controllers(&self) -> Vec<NodeId> {
        self.entries.iter().filter(|entry| entry.role == NodeRole::Controller).map(|entry| entry.id).collect()
    }

    pub fn brokers(&self) -> Vec<NodeId> {
        self.entries.iter().filter(|entry| entry.role == NodeRole::Broker).map(|entry| entry.id).collect()
    }

    /// The group a consumer node belongs to, if its `[[consumers]]` block names one.
    pub fn consumer_group<'a>(&self, id: NodeId, scenario: &'a Scenario) -> Option<&'a str> {
        match self.entries.iter().find(|entry| entry.id == id)?.role {
            NodeRole::Consumer { spec, .. } => scenario.consumers[spec].group.as_deref(),
            _ => None,
        }
    }

    pub fn ids(&self, filter: impl Fn(&NodeRole) -> bool) -> Vec<NodeId> {
        self.entries.iter().filter(|entry| filter(&entry.role)).map(|entry| entry.id).collect()
    }
}

fn ip(class: u8, index: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, class, (index / 256) as u8, (index % 256) as u8))
}

pub struct RunContext {
    pub scenario: Arc<Scenario>,
    pub roster: Roster,
    pub start: madsim::time::Instant,
    /// The runtime's clock, read directly: cheaper than `Instant::now()`, which
    /// goes through madsim's `clock_gettime` hook and back.
    pub time: madsim::time::TimeHandle,
    /// The clock's elapsed time when the run began.
    start_elapsed: std::time::Duration,
    pub history: Arc<Mutex<History>>,
    pub disks: BTreeMap<NodeId, SharedDisk>,
    pub network: Arc<crate::faults::network::Network>,
    pub producer_progress: BTreeMap<NodeId, Arc<Mutex<ProducerProgress>>>,
    pub pipeline_progress: BTreeMap<NodeId, Arc<Mutex<PipelineProgress>>>,
    incarnations: Mutex<BTreeMap<NodeId, u64>>,
    /// Clients a `replace` fault stalled and gave a successor: their successor
    /// runs, and they stop for good once fenced.
    replaced: Mutex<std::collections::BTreeSet<NodeId>>,
    messages: AtomicU64,
    pub stop_producing: Arc<AtomicBool>,
    pub invariants: Arc<crate::invariants::Invariants>,
    /// What users' applications keep across their restarts (`crate::app`).
    pub apps: crate::app::shared::AppRunState,
}

impl RunContext {
    pub fn new(scenario: Arc<Scenario>, history: Arc<Mutex<History>>) -> RunContext {
        let roster = Roster::for_scenario(&scenario);
        let disks = roster.ids(|role| matches!(role, NodeRole::Controller | NodeRole::Broker)).into_iter().map(|id| (id, SharedDisk::default())).collect();
        let producer_progress = roster.ids(|role| matches!(role, NodeRole::Producer { .. })).into_iter().map(|id| (id, Arc::default())).collect();
        let pipeline_progress = roster.ids(|role| matches!(role, NodeRole::Pipeline { .. })).into_iter().map(|id| (id, Arc::default())).collect();
        let invariants = Arc::new(crate::invariants::Invariants::for_scenario(&scenario));
        let start = madsim::time::Instant::now();
        let endpoints: Vec<(NodeId, Vec<NodeId>)> = roster.entries.iter().map(|entry| (entry.id, roster.endpoints(entry.id))).collect();
        let network = Arc::new(crate::faults::network::Network::new(madsim::runtime::Handle::current().seed(), start, &endpoints));
        RunContext {
            network,
            pipeline_progress,
            scenario,
            roster,
            start,
            time: madsim::time::TimeHandle::current(),
            start_elapsed: madsim::time::TimeHandle::current().elapsed(),
            history,
            disks,
            producer_progress,
            incarnations: Mutex::new(BTreeMap::new()),
            replaced: Mutex::default(),
            messages: AtomicU64::new(0),
            stop_producing: Arc::default(),
            invariants,
            apps: Default::default(),
        }
    }

    /// Simulated time since the run began.
    pub fn now(&self) -> Instant {
        Instant::from_micros((self.time.elapsed() - self.start_elapsed).as_micros() as u64)
    }

    /// The process lifetime `id` is in: 1 for its first start.
    pub fn incarnation(&self, id: NodeId) -> u64 {
        self.incarnations.lock().expect("incarnations lock").get(&id).copied().unwrap_or(0)
    }

    pub fn next_incarnation(&self, id: NodeId) -> u64 {
        let mut incarnations = self.incarnations.lock().expect("incarnations lock");
        let next = incarnations.entry(id).or_insert(0);
        *next += 1;
        *next
    }

    pub fn mark_replaced(&self, id: NodeId) {
        self.replaced.lock().expect("replaced lock").insert(id);
    }

    /// Whether a `replace` fault gave `id` a successor.
    pub fn is_replaced(&self, id: NodeId) -> bool {
        self.replaced.lock().expect("replaced lock").contains(&id)
    }

    /// Whether the client `id` runs (or ran): every client but a successor
    /// whose predecessor was never replaced.
    pub fn is_started(&self, id: NodeId) -> bool {
        self.roster.entry(id).predecessor.is_none_or(|predecessor| self.is_replaced(predecessor))
    }

    pub fn count_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    pub fn message_count(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn record(&self, node: &Arc<str>, kind: OpType, body: OpBody) {
        self.record_at(self.now(), node, kind, body);
    }

    /// `record` for a node that was handed `now` (the clock's time, which does
    /// not move while a node steps), so the clock is not read again.
    pub fn record_at(&self, now: Instant, node: &Arc<str>, kind: OpType, body: OpBody) {
        crate::recorder::record(&self.history, now, node, kind, body);
    }

    /// A pen for `node` on this run's history.
    pub fn recorder(&self, node: Arc<str>) -> crate::recorder::Recorder {
        crate::recorder::Recorder::new(self.history.clone(), node)
    }
}
