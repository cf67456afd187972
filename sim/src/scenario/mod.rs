//! Scenario files (DESIGN §4): one fault-injection experiment each, in TOML.
//!
//! Reading a file has two steps. First serde reads the text into the `raw`
//! structs, which mirror the file and refuse unknown keys; `serde_path_to_error`
//! remembers where in the document a failure happened, so every error names its
//! full dotted key (`producers[0].ratee`). Then `validate` turns the raw structs
//! into the typed `Scenario` below, checking ranges and cross references (topics
//! named by producers, nodes named by scripted faults, checker names). Every
//! error is a `ScenarioError` that prints as one line, `file: key: message`;
//! no input makes this module panic.

mod duration;
mod error;
mod keyword;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

pub use duration::parse_duration;
pub use error::ScenarioError;

use crate::check::CheckerKind;
use kafsim_model::config::{BrokerConfig, ConsumerConfig, ProducerConfig};
use kafsim_model::TopicPartition;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One scenario file, parsed and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    /// The fault phase (`duration`), in simulated time.
    pub duration: Duration,
    /// After the cluster is healed, the time the workload has to finish (`drain`).
    pub drain: Duration,
    /// The simulated-time limit of one run (`time_limit`).
    pub time_limit: Duration,
    /// How many seeds `kafsim run` tries when no seed flag is given (`seeds`).
    pub seeds: u64,
    pub cluster: Cluster,
    pub topics: Vec<Topic>,
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub faults: Faults,
    pub expect: Expect,
    /// A user's application (`crate::app::Harness`): never from a file.
    pub app: Option<crate::app::AppSpec>,
}

impl Scenario {
    /// Whether any client joins a consumer group, so `__consumer_offsets` is needed.
    pub fn uses_groups(&self) -> bool {
        self.consumers.iter().any(|consumer| consumer.group.is_some()) || !self.pipelines.is_empty() || self.app.is_some()
    }

    /// Whether a fault may replace a client by a successor, so the roster holds
    /// a successor for every client.
    pub fn uses_replace(&self) -> bool {
        self.faults.kinds.contains(&FaultKind::Replace) || self.faults.schedule.iter().any(|fault| fault.action == Action::Replace)
    }

    /// Whether any client uses transactions, so `__transaction_state` is needed.
    pub fn uses_transactions(&self) -> bool {
        // An application may use transactions; whether it will is not known before it runs.
        self.producers.iter().any(|producer| producer.config.transactional_id.is_some()) || self.pipelines.iter().any(|pipeline| pipeline.transactional) || self.app.is_some()
    }
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// 1..=9.
    pub brokers: u32,
    /// The controller quorum's voters (KIP-595): 1, 3 or 5.
    pub controllers: u32,
    /// `[cluster.config]`, under Kafka's broker property names.
    pub config: BrokerConfig,
}

/// One `[[topics]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

/// One `[[producers]]` block: `count` producers with the same settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ProducerSpec {
    pub count: u32,
    pub topic: String,
    /// Messages each producer sends.
    pub messages: u64,
    /// Messages per simulated second, per producer.
    pub rate: f64,
    /// How many distinct keys the producer cycles through; 0 means null keys.
    pub keys: u32,
    /// Transactional producers (`transactional.id` set): values per transaction.
    pub transaction_size: u32,
    /// Transactional producers: the fraction of transactions aborted on purpose.
    pub abort_ratio: f64,
    /// `[producers.config]`; with `transactional.id`, each producer appends its number.
    pub config: ProducerConfig,
}

/// One `[[consumers]]` block: `count` consumers with the same settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerSpec {
    pub count: u32,
    pub topic: String,
    /// A consumer group to subscribe with; absent, each consumer assigns itself
    /// every partition of the topic.
    pub group: Option<String>,
    /// Never `ExactlyOnce`: validation refuses it for a plain consumer.
    pub delivery: Delivery,
    /// `[consumers.config]`; auto.offset.reset defaults to "earliest" here.
    pub config: ConsumerConfig,
}

/// One `[[pipelines]]` block: `count` consume-transform-produce members of one
/// group, reading `from` and writing each record's value, transformed, to `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    pub count: u32,
    pub from: String,
    pub to: String,
    pub group: String,
    /// Offsets and output in one transaction (KIP-98, KIP-447): exactly-once.
    /// Otherwise outputs are acknowledged first, then offsets committed: at-least-once.
    pub transactional: bool,
    /// `[pipelines.config]`'s consumer properties; `isolation.level` is
    /// read_committed when transactional.
    pub consumer_config: ConsumerConfig,
    /// `[pipelines.config]`'s producer properties; acks=all and idempotence always,
    /// and `transactional.id` = `<group>-pipeline-<number>` when transactional.
    pub producer_config: ProducerConfig,
}

/// When a consumer commits its position, relative to processing a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Delivery {
    /// Commit before processing.
    AtMostOnce,
    /// Commit after processing (the default).
    AtLeastOnce,
    /// Offsets and output in one transaction.
    ExactlyOnce,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::AtMostOnce, Delivery::AtLeastOnce, Delivery::ExactlyOnce];

    pub fn name(self) -> &'static str {
        match self {
            Delivery::AtMostOnce => "at-most-once",
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        }
    }

    pub fn from_name(name: &str) -> Option<Delivery> {
        Delivery::ALL.into_iter().find(|delivery| delivery.name() == name)
    }
}

/// `[faults]`: the random nemesis (`kinds`, `interval`, `max_concurrent`) and
/// the scripted one (`[[faults.schedule]]`). Both may be used together.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Fault kinds the random nemesis draws from; empty means no random faults.
    pub kinds: Vec<FaultKind>,
    /// Mean time between random faults.
    pub interval: Duration,
    /// At most this many random faults are active at once.
    pub max_concurrent: usize,
    /// Scripted faults, sorted by `at` (file order among equal times).
    pub schedule: Vec<ScheduledFault>,
    /// `buggify`: code-level fault points in the node shells (slow flushes,
    /// delayed fetch responses, lost responses, lagging followers). Off by default.
    pub buggify: bool,
    /// `swarm_interval`: the inclusive range `kafsim run --swarm` draws each
    /// seed's interval from (default: half to twice `interval`).
    pub swarm_interval: (Duration, Duration),
    /// `swarm_max_concurrent`: the inclusive range `--swarm` draws each seed's
    /// max_concurrent from (default: 1 to `max_concurrent`).
    pub swarm_max_concurrent: (usize, usize),
    /// In swarm mode, the mix this run drew (and now runs with); None otherwise.
    pub swarm: Option<SwarmMix>,
}

/// The fault mix one seed drew.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwarmMix {
    /// Fault kind names, in the scenario's order.
    pub kinds: Vec<String>,
    pub interval_ms: u64,
    pub max_concurrent: usize,
}

impl std::fmt::Display for SwarmMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "swarm mix: kinds [{}] interval {}ms max_concurrent {}", self.kinds.join(","), self.interval_ms, self.max_concurrent)
    }
}

impl Default for Faults {
    fn default() -> Faults {
        let interval = Duration::from_secs(5);
        Faults {
            kinds: Vec::new(),
            interval,
            max_concurrent: 1,
            schedule: Vec::new(),
            buggify: false,
            swarm_interval: (interval / 2, interval * 2),
            swarm_max_concurrent: (1, 1),
            swarm: None,
        }
    }
}

/// A kind of fault the random nemesis may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Kill a broker or controller process; what it wrote to the OS survives.
    Crash,
    /// Kill a broker or controller machine; unflushed writes are lost or torn.
    PowerLoss,
    /// Kill a producer or consumer process.
    ClientCrash,
    /// Split the nodes into two sides that cannot talk.
    Partition,
    /// Cut one node off from every other.
    Isolate,
    /// Drop the messages going one way between two nodes.
    OneWay,
    /// Stop a process without killing it (a long GC pause, SIGSTOP).
    Pause,
    /// Drop a fraction of messages.
    PacketLoss,
    /// Delay messages.
    Latency,
    /// Power loss of every replica of one partition at once.
    ReplicaPowerLoss,
    /// Stall a client process and start its successor (same `transactional.id`,
    /// same group) at once, as a supervisor that declared it dead would; when
    /// the fault ends, the stalled process wakes as a zombie.
    Replace,
    /// Split the controller quorum into a majority and a minority (2|1 of
    /// three voters) that cannot talk; brokers and clients reach both.
    QuorumSplit,
    /// Cut the active controller off from every broker, but not from the
    /// other controllers: it keeps leading the quorum while brokers cannot
    /// heartbeat to it.
    ControllerCutoff,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Crash,
        FaultKind::PowerLoss,
        FaultKind::ClientCrash,
        FaultKind::Partition,
        FaultKind::Isolate,
        FaultKind::OneWay,
        FaultKind::Pause,
        FaultKind::PacketLoss,
        FaultKind::Latency,
        FaultKind::ReplicaPowerLoss,
        FaultKind::Replace,
        FaultKind::QuorumSplit,
        FaultKind::ControllerCutoff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::ClientCrash => "client-crash",
            FaultKind::Partition => "partition",
            FaultKind::Isolate => "isolate",
            FaultKind::OneWay => "one-way",
            FaultKind::Pause => "pause",
            FaultKind::PacketLoss => "packet-loss",
            FaultKind::Latency => "latency",
            FaultKind::ReplicaPowerLoss => "replica-power-loss",
            FaultKind::Replace => "replace",
            FaultKind::QuorumSplit => "quorum-split",
            FaultKind::ControllerCutoff => "controller-cutoff",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One `[[faults.schedule]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledFault {
    /// When, from the start of the run; at most the scenario's `duration`.
    pub at: Duration,
    pub action: Action,
    pub target: Target,
    /// Undo the fault automatically after this long (restart, resume, heal).
    /// Only for actions that can be undone.
    pub duration: Option<Duration>,
    /// The fraction of messages dropped: set (default 0.1) exactly when the
    /// action is `loss`.
    pub rate: Option<f64>,
    /// The added delay: set (default 50ms) exactly when the action is `latency`.
    pub latency: Option<Duration>,
}

/// What a scripted fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Crash,
    PowerLoss,
    Restart,
    Pause,
    Resume,
    Isolate,
    Partition,
    OneWay,
    Heal,
    Loss,
    Latency,
    /// Stall a client and start its successor; `duration` later the stalled
    /// process wakes as a zombie (`FaultKind::Replace`).
    Replace,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::Crash,
        Action::PowerLoss,
        Action::Restart,
        Action::Pause,
        Action::Resume,
        Action::Isolate,
        Action::Partition,
        Action::OneWay,
        Action::Heal,
        Action::Loss,
        Action::Latency,
        Action::Replace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Crash => "crash",
            Action::PowerLoss => "power-loss",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Isolate => "isolate",
            Action::Partition => "partition",
            Action::OneWay => "one-way",
            Action::Heal => "heal",
            Action::Loss => "loss",
            Action::Latency => "latency",
            Action::Replace => "replace",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.name() == name)
    }

    /// Whether the fault stays until undone, so a `duration` after which it is
    /// undone makes sense. Restart, resume and heal are themselves the undoing.
    pub fn can_be_undone(self) -> bool {
        !matches!(self, Action::Restart | Action::Resume | Action::Heal)
    }
}

/// Whom a scripted fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A node by name: `broker-2`, `controller-1`, `producer-1`, `consumer-2`.
    Node(String),
    /// The broker leading this partition when the fault fires: `leader(events/0)`.
    Leader(TopicPartition),
    /// Every replica of this partition: `replicas(events/0)`.
    Replicas(TopicPartition),
    /// The active controller: `controller` or `active-controller`.
    Controller,
    /// A majority of the controller quorum's voters, the active controller
    /// among them when there is one: `controllers(majority)`.
    ControllersMajority,
    /// A minority of the voters, without the active controller: `controllers(minority)`.
    ControllersMinority,
    /// A node drawn from the seed: `random`.
    Random,
    /// A random majority of the nodes, split off from the rest (`partition`).
    Majority,
    /// A random minority of the nodes, split off from the rest (`partition`).
    Minority,
    /// Exactly these nodes: `nodes(broker-1,producer-2)`. With `partition`, they
    /// are one side and every other node the other; otherwise each is hit.
    Nodes(Vec<String>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(name) => f.write_str(name),
            Target::Leader(partition) => write!(f, "leader({partition})"),
            Target::Replicas(partition) => write!(f, "replicas({partition})"),
            Target::Controller => f.write_str("controller"),
            Target::ControllersMajority => f.write_str("controllers(majority)"),
            Target::ControllersMinority => f.write_str("controllers(minority)"),
            Target::Random => f.write_str("random"),
            Target::Majority => f.write_str("majority"),
            Target::Minority => f.write_str("minority"),
            Target::Nodes(names) => write!(f, "nodes({})", names.join(",")),
        }
    }
}

/// `[expect]`: anomaly kinds that must show in no seed (`never`) and kinds that
/// must show in at least one (`finds`, for configurations known to be unsafe).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub never: Vec<CheckerKind>,
    pub finds: Vec<CheckerKind>,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read(path).map_err(|error| error::unreadable(path, &error))?;
        let text = String::from_utf8(text)
            .map_err(|error| ScenarioError::new(path, "", format!("not UTF-8 text (invalid byte at offset {})", error.utf8_error().valid_up_to())))?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names the file in errors and
    /// gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let raw = raw::read(text).map_err(|problem| problem.in_file(path))?;
        validate::build(raw, path).map_err(|problem| problem.in_file(path))
    }

    /// Every node of a run: controller-1, broker-1..N, then producer-1..P and
    /// consumer-1..C, numbered across all `[[producers]]` (`[[consumers]]`)
    /// blocks in file order.
    pub fn node_names(&self) -> Vec<String> {
        validate::node_names(self.cluster.controllers, self.cluster.brokers, self.producer_count(), self.consumer_count(), self.pipeline_count())
    }

    /// Producers across all `[[producers]]` blocks.
    pub fn producer_count(&self) -> u32 {
        self.producers.iter().map(|producer| producer.count).sum()
    }

    /// Consumers across all `[[consumers]]` blocks.
    pub fn pipeline_count(&self) -> u32 {
        self.pipelines.iter().map(|pipeline| pipeline.count).sum()
    }

    pub fn consumer_count(&self) -> u32 {
        self.consumers.iter().map(|consumer| consumer.count).sum()
    }

    /// The `[[topics]]` entry with this name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|topic| topic.name == name)
    }
}
