//! Configuration under Kafka's own property names, with Kafka's defaults.
//!
//! Scenario files give properties as a table of name -> value; each config type
//! reads the names it knows and refuses the rest, so a misspelt key is an error
//! rather than a silently ignored setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A property value as written in a scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

pub type Properties = BTreeMap<String, PropertyValue>;

/// A property that is unknown or has a value of the wrong shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\": expected {}", self.key, self.expected)
    }
}

/// Reads typed values out of a property table, remembering which keys were used.
struct Reader<'a> {
    properties: &'a Properties,
    known: &'static [&'static str],
}

impl<'a> Reader<'a> {
    fn new(properties: &'a Properties, known: &'static [&'static str]) -> Result<Reader<'a>, ConfigError> {
        if let Some(key) = properties.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(ConfigError { key: key.clone(), expected: format!("one of the supported properties: {}", known.join(", ")) });
        }
        Ok(Reader { properties, known })
    }

    fn integer(&self, key: &'static str, default: i64, min: i64) -> Result<i64, ConfigError> {
        debug_assert!(self.known.contains(&key));
        let expected = || ConfigError { key: key.to_string(), expected: format!("an integer >= {min}") };
        match self.properties.get(key) {
            None => Ok(default),
            Some(PropertyValue::Int(value)) if *value >= min => Ok(*value),
            Some(PropertyValue::Text(text)) => text.trim().parse::<i64>().ok().filter(|value| *value >= min).ok_or_else(expected),
            Some(_) => Err(expected()),
        }
    }

    /// An integer from `min` to `max`, for settings that name a version or level.
    fn integer_between(&self, key: &'static str, default: i64, min: i64, max: i64, meaning: &str) -> Result<i64, ConfigError> {
        let expected = || ConfigError { key: key.to_string(), expected: format!("an integer from {min} to {max} ({meaning})") };
        let value = match self.properties.get(key) {
            None => return Ok(default),
            Some(PropertyValue::Int(value)) => Some(*value),
            Some(PropertyValue::Text(text)) => text.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        value.filter(|value| (min..=max).contains(value)).ok_or_else(expected)
    }

    fn millis(&self, key: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.integer(key, default as i64, 0)? as u64))
    }

    fn boolean(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.properties.get(key) {
            None => Ok(default),
            Some(PropertyValue::Bool(value)) => Ok(*value),
            Some(PropertyValue::Text(text)) if text == "true" || text == "false" => Ok(text == "true"),
            Some(_) => Err(ConfigError { key: key.to_string(), expected: "true or false".to_string() }),
        }
    }

    fn choice(&self, key: &'static str, default: &'static str, choices: &[&'static str]) -> Result<&'static str, ConfigError> {
        let text = match self.properties.get(key) {
            None => return Ok(default),
            Some(PropertyValue::Text(text)) => text.clone(),
            Some(PropertyValue::Int(value)) => value.to_string(),
            Some(_) => String::new(),
        };
        choices
            .iter()
            .find(|choice| **choice == text)
            .copied()
            .ok_or_else(|| ConfigError { key: key.to_string(), expected: format!("one of {}", choices.join(", ")) })
    }

    fn is_set(&self, key: &'static str) -> bool {
        self.properties.contains_key(key)
    }
}

/// Broker properties (`[cluster.config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    pub min_insync_replicas: usize,
    pub unclean_leader_election_enable: bool,
    /// KIP-966's eligible leader replicas: 0 is off (Kafka's behaviour before
    /// it), 1 on. In Kafka a feature version (`eligible.leader.replicas.version`,
    /// set with `kafka-features`); here a cluster config key.
    pub eligible_leader_replicas_version: u8,
    /// Flush (fsync) a partition after this many appended messages. Kafka's default
    /// is Long.MAX_VALUE: never, leaving durability to replication.
    pub log_flush_interval_messages: u64,
    pub replica_lag_time_max: Duration,
    pub replica_fetch_wait_max: Duration,
    pub replica_fetch_backoff: Duration,
    pub broker_heartbeat_interval: Duration,
    pub broker_session_timeout: Duration,
    pub high_watermark_checkpoint_interval: Duration,
    /// Test-only switch: truncate a new follower to its high watermark, as Kafka did
    /// before KIP-101, instead of asking the leader where the epochs diverge.
    pub legacy_high_watermark_truncation: bool,
    pub offsets_topic_num_partitions: u32,
    pub offsets_topic_replication_factor: u32,
    pub transaction_state_log_num_partitions: u32,
    pub transaction_state_log_replication_factor: u32,
    /// How long the group coordinator waits for more members before the first
    /// rebalance of an empty group completes (KIP-134).
    pub group_initial_rebalance_delay: Duration,
    pub group_min_session_timeout: Duration,
    pub group_max_session_timeout: Duration,
    /// How long a broker waits for another broker's (or the controller's)
    /// answer before it closes the connection: Kafka's `request.timeout.ms`,
    /// which the replica fetchers and the transaction markers use.
    pub request_timeout: Duration,
    pub network: NetworkConfig,
    /// A deliberately injected bug behind a test-only switch
    /// (`kafsim.test.panic.on.restart`): a broker panics when it restarts, so
    /// tests can show a panic is reported with its seed and shrinks to its crash.
    pub panic_on_restart: bool,
    /// A deliberately injected replication bug behind a test-only switch
    /// (`kafsim.test.mutation`), so tests can show the simulator's run-time
    /// invariants catch it.
    pub mutation: Option<BrokerMutation>,
    /// The controller quorum's timing (KIP-595), under Kafka's names.
    pub quorum_fetch_timeout: Duration,
    pub quorum_election_timeout: Duration,
    pub quorum_election_backoff_max: Duration,
    pub quorum_request_timeout: Duration,
    /// KIP-996's pre-vote (`kafsim.quorum.pre.vote`, off by default).
    pub quorum_pre_vote: bool,
}

/// The bugs `kafsim.test.mutation` injects into a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerMutation {
    /// After each commit it asked for succeeds, the consumer seeks the
    /// committed partitions back to offset 0, so its next commit goes back
    /// within the generation (trips the simulator's run-time invariant).
    RewindAfterCommit,
    /// A revoked partition keeps its position and is still fetched and
    /// returned by polls (trips `group-overlap`).
    FetchRevoked,
}

/// The bugs `kafsim.test.mutation` injects into a broker, each tripping one
/// of the simulator's run-time invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerMutation {
    /// A follower takes its leader's high watermark even past its own log end
    /// (trips "LSO <= HW <= LEO").
    FollowerHighWatermarkPastLogEnd,
    /// A leader recomputes its high watermark from its followers' ends, and
    /// lowers it when one is behind (trips "HW never back on a leader").
    LeaderHighWatermarkRegress,
    /// A new follower fetches on from its log end without truncating to where
    /// it diverges from the leader (trips "replicas agree below the HW").
    FollowerSkipsTruncation,
    /// No producer-epoch fencing: the transaction coordinator, KIP-890's
    /// verification and the leaders' produce and marker paths take any epoch
    /// of a producer id, so a zombie's requests go through (found by
    /// `zombie-producer-unfenced`).
    NoEpochFencing,
    /// The group coordinator takes a plain OffsetCommit from any member of
    /// any generation, so a consumer that wakes after its session expired
    /// commits over its successor's offsets (found by
    /// `group-member-stall-unfenced`).
    NoGenerationFencing,
    /// Controllers grant votes without KIP-595's log-up-to-date check, so a
    /// candidate missing committed records can win and overwrite them (found
    /// by `quorum-vote-without-log-check`).
    VoteWithoutLogCheck,
    /// Controllers never fsync their quorum state and metadata log: a power
    /// loss takes what they promised and committed.
    NoQuorumFsync,
}

pub const BROKER_PROPERTIES: &[&str] = &[
    "kafsim.test.panic.on.restart",
    "kafsim.test.mutation",
    "request.timeout.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.connection.setup.timeout.max.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "eligible.leader.replicas.version",
    "log.flush.interval.messages",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.backoff.ms",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "kafsim.test.legacy.hw.truncation",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "controller.quorum.fetch.timeout.ms",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.election.backoff.max.ms",
    "controller.quorum.request.timeout.ms",
    "kafsim.quorum.pre.vote",
];

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::from_properties(&Properties::new()).expect("the defaults are valid")
    }
}

impl BrokerConfig {
    /// The controller quorum's configuration for these voters.
    pub fn quorum_config(&self, voters: Vec<crate::types::NodeId>) -> crate::quorum::QuorumConfig {
        let mut config = crate::quorum::QuorumConfig::new(voters);
        config.fetch_timeout = self.quorum_fetch_timeout;
        config.election_timeout = self.quorum_election_timeout;
        config.election_backoff_max = self.quorum_election_backoff_max;
        config.request_timeout = self.quorum_request_timeout;
        config.pre_vote = self.quorum_pre_vote;
        config.mutation = self.quorum_mutation();
        config
    }

    /// The test-only bug, if any, that breaks the controller quorum.
    pub fn quorum_mutation(&self) -> Option<crate::quorum::QuorumMutation> {
        match self.mutation {
            Some(BrokerMutation::VoteWithoutLogCheck) => Some(crate::quorum::QuorumMutation::VoteWithoutLogCheck),
            Some(BrokerMutation::NoQuorumFsync) => Some(crate::quorum::QuorumMutation::NoFsync),
            _ => None,
        }
    }

    pub fn from_properties(properties: &Properties) -> Result<BrokerConfig, ConfigError> {
        let reader = Reader::new(properties, BROKER_PROPERTIES)?;
        Ok(BrokerConfig {
            min_insync_replicas: reader.integer("min.insync.replicas", 1, 1)? as usize,
            unclean_leader_election_enable: reader.boolean("unclean.leader.election.enable", false)?,
            eligible_leader_replicas_version: reader.integer_between("eligible.leader.replicas.version", 0, 0, 1, "0 is off, 1 turns on KIP-966's eligible leader replicas")? as u8,
            log_flush_interval_messages: reader.integer("log.flush.interval.messages", i64::MAX, 1)? as u64,
            replica_lag_time_max: reader.millis("replica.lag.time.max.ms", 30_000)?,
            replica_fetch_wait_max: reader.millis("replica.fetch.wait.max.ms", 500)?,
            replica_fetch_backoff: reader.millis("replica.fetch.backoff.ms", 1_000)?,
            broker_heartbeat_interval: reader.millis("broker.heartbeat.interval.ms", 2_000)?,
            broker_session_timeout: reader.millis("broker.session.timeout.ms", 9_000)?,
            high_watermark_checkpoint_interval: reader.millis("replica.high.watermark.checkpoint.interval.ms", 5_000)?,
            legacy_high_watermark_truncation: reader.boolean("kafsim.test.legacy.hw.truncation", false)?,
            offsets_topic_num_partitions: reader.integer("offsets.topic.num.partitions", 50, 1)? as u32,
            offsets_topic_replication_factor: reader.integer("offsets.topic.replication.factor", 3, 1)? as u32,
            transaction_state_log_num_partitions: reader.integer("transaction.state.log.num.partitions", 50, 1)? as u32,
            transaction_state_log_replication_factor: reader.integer("transaction.state.log.replication.factor", 3, 1)? as u32,
            group_initial_rebalance_delay: reader.millis("group.initial.rebalance.delay.ms", 3_000)?,
            group_min_session_timeout: reader.millis("group.min.session.timeout.ms", 6_000)?,
            group_max_session_timeout: reader.millis("group.max.session.timeout.ms", 1_800_000)?,
            request_timeout: reader.millis("request.timeout.ms", 30_000)?,
            network: reader.network()?,
            panic_on_restart: reader.boolean("kafsim.test.panic.on.restart", false)?,
            quorum_fetch_timeout: reader.millis("controller.quorum.fetch.timeout.ms", 2_000)?,
            quorum_election_timeout: reader.millis("controller.quorum.election.timeout.ms", 1_000)?,
            quorum_election_backoff_max: reader.millis("controller.quorum.election.backoff.max.ms", 1_000)?,
            quorum_request_timeout: reader.millis("controller.quorum.request.timeout.ms", 2_000)?,
            quorum_pre_vote: reader.boolean("kafsim.quorum.pre.vote", false)?,
            mutation: match reader.choice(
                "kafsim.test.mutation",
                "none",
                &["none", "follower-hw-past-log-end", "leader-hw-regress", "follower-skips-truncation", "no-epoch-fencing", "no-generation-fencing", "vote-without-log-check", "no-quorum-fsync"],
            )? {
                "follower-hw-past-log-end" => Some(BrokerMutation::FollowerHighWatermarkPastLogEnd),
                "leader-hw-regress" => Some(BrokerMutation::LeaderHighWatermarkRegress),
                "follower-skips-truncation" => Some(BrokerMutation::FollowerSkipsTruncation),
                "no-epoch-fencing" => Some(BrokerMutation::NoEpochFencing),
                "no-generation-fencing" => Some(BrokerMutation::NoGenerationFencing),
                "vote-without-log-check" => Some(BrokerMutation::VoteWithoutLogCheck),
                "no-quorum-fsync" => Some(BrokerMutation::NoQuorumFsync),
                _ => None,
            },
        })
    }
}

/// Kafka's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    None,
    /// The leader wrote it to its own log.
    Leader,
    /// Every replica in the ISR has it, and the ISR had at least min.insync.replicas.
    All,
}

/// Producer properties (`[producers.config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub delivery_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight_requests_per_connection: usize,
    pub enable_idempotence: bool,
    pub linger: Duration,
    pub batch_size: usize,
    pub metadata_max_age: Duration,
    /// KIP-98: makes the producer transactional (and idempotent).
    pub transactional_id: Option<String>,
    pub transaction_timeout: Duration,
    pub network: NetworkConfig,
}

/// The connection settings every Kafka client shares (`NetworkConfig`).
const NETWORK_PROPERTIES: [&str; 4] = ["reconnect.backoff.ms", "reconnect.backoff.max.ms", "socket.connection.setup.timeout.ms", "socket.connection.setup.timeout.max.ms"];

pub const PRODUCER_PROPERTIES: &[&str] = &[
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.connection.setup.timeout.max.ms",
    "transactional.id",
    "transaction.timeout.ms",
    "acks",
    "retries",
    "retry.backoff.ms",
    "delivery.timeout.ms",
    "request.timeout.ms",
    "max.in.flight.requests.per.connection",
    "enable.idempotence",
    "linger.ms",
    "batch.size",
    "metadata.max.age.ms",
];

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig::from_properties(&Properties::new()).expect("the defaults are valid")
    }
}

impl ProducerConfig {
    pub fn from_properties(properties: &Properties) -> Result<ProducerConfig, ConfigError> {
        let reader = Reader::new(properties, PRODUCER_PROPERTIES)?;
        let acks = match reader.choice("acks", "all", &["all", "-1", "1", "0"])? {
            "0" => Acks::None,
            "1" => Acks::Leader,
            _ => Acks::All,
        };
        // Kafka 3.x: idempotence is on by default, but only where acks=all allows it;
        // asking for it explicitly with weaker acks is a configuration error.
        let enable_idempotence = if reader.is_set("enable.idempotence") {
            let wanted = reader.boolean("enable.idempotence", true)?;
            if wanted && acks != Acks::All {
                return Err(ConfigError { key: "enable.idempotence".into(), expected: "false unless acks = \"all\" (Kafka refuses idempotence with weaker acks)".into() });
            }
            wanted
        } else {
            acks == Acks::All
        };
        let transactional_id = match properties.get("transactional.id") {
            None => None,
            Some(PropertyValue::Text(text)) if !text.is_empty() => Some(text.clone()),
            Some(_) => return Err(ConfigError { key: "transactional.id".into(), expected: "a non-empty string".into() }),
        };
        if transactional_id.is_some() && !enable_idempotence {
            return Err(ConfigError { key: "enable.idempotence".into(), expected: "true with a transactional.id (Kafka requires idempotence for transactions)".into() });
        }
        let max_in_flight = reader.integer("max.in.flight.requests.per.connection", 5, 1)? as usize;
        if enable_idempotence && max_in_flight > 5 {
            return Err(ConfigError { key: "max.in.flight.requests.per.connection".into(), expected: "at most 5 with idempotence".into() });
        }
        Ok(ProducerConfig {
            acks,
            retries: reader.integer("retries", i32::MAX as i64, 0)?.min(u32::MAX as i64) as u32,
            retry_backoff: reader.millis("retry.backoff.ms", 100)?,
            delivery_timeout: reader.millis("delivery.timeout.ms", 120_000)?,
            request_timeout: reader.millis("request.timeout.ms", 30_000)?,
            max_in_flight_requests_per_connection: max_in_flight,
            enable_idempotence,
            linger: reader.millis("linger.ms", 5)?,
            batch_size: reader.integer("batch.size", 16_384, 1)? as usize,
            metadata_max_age: reader.millis("metadata.max.age.ms", 300_000)?,
            transactional_id,
            transaction_timeout: reader.millis("transaction.timeout.ms", 60_000)?,
            network: reader.network()?,
        })
    }
}

/// Kafka's `auto.offset.reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    None,
}

/// Consumer properties (`[consumers.config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub auto_offset_reset: OffsetReset,
    pub fetch_max_wait: Duration,
    pub max_poll_records: usize,
    pub request_timeout: Duration,
    pub retry_backoff: Duration,
    pub read_committed: bool,
    pub metadata_max_age: Duration,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Also the rebalance timeout the consumer sends in JoinGroup, as Kafka's does.
    pub max_poll_interval: Duration,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// `partition.assignment.strategy`, in preference order.
    pub assignors: Vec<crate::client::assignor::Assignor>,
    /// A deliberately injected bug behind a test-only switch
    /// (`kafsim.test.overlapping.assignment`, not a Kafka property): as group
    /// leader, this consumer gives every member every partition, so tests can
    /// show that `group-overlap` catches a broken assignment.
    pub overlapping_assignment: bool,
    /// A deliberately injected bug behind a test-only switch
    /// (`kafsim.test.mutation`), so tests can show a check catches it.
    pub mutation: Option<ConsumerMutation>,
    pub network: NetworkConfig,
}

pub const CONSUMER_PROPERTIES: &[&str] = &[
    "kafsim.test.mutation",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.connection.setup.timeout.max.ms",
    "auto.offset.reset",
    "fetch.max.wait.ms",
    "max.poll.records",
    "request.timeout.ms",
    "retry.backoff.ms",
    "isolation.level",
    "metadata.max.age.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "partition.assignment.strategy",
    "kafsim.test.overlapping.assignment",
];

impl ConsumerConfig {
    /// `default_reset` is the workload's choice when the file does not set
    /// auto.offset.reset (Kafka's own default is "latest").
    pub fn from_properties(properties: &Properties, default_reset: &'static str) -> Result<ConsumerConfig, ConfigError> {
        let reader = Reader::new(properties, CONSUMER_PROPERTIES)?;
        let auto_offset_reset = match reader.choice("auto.offset.reset", default_reset, &["earliest", "latest", "none"])? {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            _ => OffsetReset::None,
        };
        let read_committed = reader.choice("isolation.level", "read_uncommitted", &["read_uncommitted", "read_committed"])? == "read_committed";
        Ok(ConsumerConfig {
            auto_offset_reset,
            fetch_max_wait: reader.millis("fetch.max.wait.ms", 500)?,
            max_poll_records: reader.integer("max.poll.records", 500, 1)? as usize,
            request_timeout: reader.millis("request.timeout.ms", 30_000)?,
            retry_backoff: reader.millis("retry.backoff.ms", 100)?,
            read_committed,
            metadata_max_age: reader.millis("metadata.max.age.ms", 300_000)?,
            session_timeout: reader.millis("session.timeout.ms", 45_000)?,
            heartbeat_interval: reader.millis("heartbeat.interval.ms", 3_000)?,
            max_poll_interval: reader.millis("max.poll.interval.ms", 300_000)?,
            // Kafka's default is true; the workload commits as its `delivery` says,
            // so auto-commit is on only when the scenario asks for it.
            enable_auto_commit: reader.boolean("enable.auto.commit", false)?,
            auto_commit_interval: reader.millis("auto.commit.interval.ms", 5_000)?,
            assignors: reader.assignors("partition.assignment.strategy")?,
            overlapping_assignment: reader.boolean("kafsim.test.overlapping.assignment", false)?,
            mutation: match reader.choice("kafsim.test.mutation", "none", &["none", "rewind-after-commit", "fetch-revoked"])? {
                "rewind-after-commit" => Some(ConsumerMutation::RewindAfterCommit),
                "fetch-revoked" => Some(ConsumerMutation::FetchRevoked),
                _ => None,
            },
            network: reader.network()?,
        })
    }
}

impl Reader<'_> {
    /// Kafka's connection settings (`reconnect.backoff.ms` and kin), with their defaults.
    fn network(&self) -> Result<NetworkConfig, ConfigError> {
        let defaults = NetworkConfig::default();
        let [reconnect, reconnect_max, setup, setup_max] = NETWORK_PROPERTIES;
        Ok(NetworkConfig {
            reconnect_backoff: self.millis(reconnect, defaults.reconnect_backoff.as_millis() as u64)?,
            reconnect_backoff_max: self.millis(reconnect_max, defaults.reconnect_backoff_max.as_millis() as u64)?,
            connection_setup_timeout: self.millis(setup, defaults.connection_setup_timeout.as_millis() as u64)?,
            connection_setup_timeout_max: self.millis(setup_max, defaults.connection_setup_timeout_max.as_millis() as u64)?,
        })
    }

    /// A comma-separated list of assignors, by Kafka class name or short name.
    /// Kafka's default is `[RangeAssignor, CooperativeStickyAssignor]`, which
    /// rebalances eagerly until every member drops the range assignor (KIP-429).
    fn assignors(&self, key: &'static str) -> Result<Vec<crate::client::assignor::Assignor>, ConfigError> {
        use crate::client::assignor::Assignor;
        let text = match self.properties.get(key) {
            None => return Ok(vec![Assignor::Range, Assignor::CooperativeSticky]),
            Some(PropertyValue::Text(text)) => text.clone(),
            Some(_) => String::new(),
        };
        let expected = || ConfigError { key: key.to_string(), expected: format!("a comma-separated list of {}", Assignor::ALL.map(|assignor| assignor.name()).join(", ")) };
        let assignors: Option<Vec<Assignor>> = text.split(',').map(|name| Assignor::from_config_name(name.trim())).collect();
        assignors.filter(|assignors| !assignors.is_empty()).ok_or_else(expected)
    }
}

/// The connection settings every Kafka client and broker shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `reconnect.backoff.ms` (default 50).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms` (default 1000).
    pub reconnect_backoff_max: Duration,
    /// `socket.connection.setup.timeout.ms` (default 10000).
    pub connection_setup_timeout: Duration,
    /// `socket.connection.setup.timeout.max.ms` (default 30000).
    pub connection_setup_timeout_max: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            connection_setup_timeout: Duration::from_millis(10_000),
            connection_setup_timeout_max: Duration::from_millis(30_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, PropertyValue)]) -> Properties {
        pairs.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    }

    #[test]
    fn kafka_defaults() {
        let broker = BrokerConfig::default();
        assert_eq!(broker.min_insync_replicas, 1);
        assert_eq!(broker.log_flush_interval_messages, i64::MAX as u64);
        assert!(!broker.unclean_leader_election_enable);
        let producer = ProducerConfig::default();
        assert_eq!(producer.acks, Acks::All);
        assert!(producer.enable_idempotence);
    }

    #[test]
    fn weaker_acks_turn_default_idempotence_off_and_refuse_explicit_idempotence() {
        let producer = ProducerConfig::from_properties(&props(&[("acks", PropertyValue::Text("1".into()))])).unwrap();
        assert!(!producer.enable_idempotence);
        let error = ProducerConfig::from_properties(&props(&[("acks", PropertyValue::Int(1)), ("enable.idempotence", PropertyValue::Bool(true))])).unwrap_err();
        assert_eq!(error.key, "enable.idempotence");
    }

    #[test]
    fn unknown_and_malformed_properties_name_their_key() {
        let error = BrokerConfig::from_properties(&props(&[("min.insync.replica", PropertyValue::Int(2))])).unwrap_err();
        assert_eq!(error.key, "min.insync.replica");
        let error = BrokerConfig::from_properties(&props(&[("min.insync.replicas", PropertyValue::Text("two".into()))])).unwrap_err();
        assert_eq!(error.key, "min.insync.replicas");
        for bad in [PropertyValue::Int(2), PropertyValue::Int(-1), PropertyValue::Bool(true), PropertyValue::Text("on".into())] {
            let error = BrokerConfig::from_properties(&props(&[("eligible.leader.replicas.version", bad)])).unwrap_err();
            assert_eq!(error.key, "eligible.leader.replicas.version");
            assert!(error.expected.contains("from 0 to 1"), "{error}");
        }
        let on = BrokerConfig::from_properties(&props(&[("eligible.leader.replicas.version", PropertyValue::Int(1))])).unwrap();
        assert_eq!(on.eligible_leader_replicas_version, 1);
        assert_eq!(BrokerConfig::default().eligible_leader_replicas_version, 0);
    }
}
