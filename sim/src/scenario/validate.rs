//! From the raw structs to a typed `Scenario`: defaults, ranges and cross
//! references (topics named by clients, nodes and partitions named by scripted
//! faults, checker names in `expect`). Each check names the key it is about.

use super::duration::format_duration;
use super::error::{child_key, did_you_mean, Problem};
use super::raw::{RawCluster, RawConsumer, RawExpect, RawFaults, RawPipeline, RawProducer, RawScenario, RawScheduledFault, RawTopic};
use super::{Action, Cluster, ConsumerSpec, Delivery, Expect, FaultKind, Faults, PipelineSpec, ProducerSpec, Scenario, ScheduledFault, Target, Topic};
use kafsim_model::config::{Properties, PropertyValue};
use crate::check::CheckerKind;
use kafsim_model::config::{BrokerConfig, ConfigError, ConsumerConfig, ProducerConfig, BROKER_PROPERTIES, CONSUMER_PROPERTIES, PRODUCER_PROPERTIES};
use kafsim_model::TopicPartition;
use std::path::Path;
use std::time::Duration;

const BROKER_COUNT_MAX: i64 = 9;
const REPLICATION_FACTOR_MAX: i64 = 5;
/// Far beyond what a run can simulate in reasonable time; a guard against typos.
const PARTITION_COUNT_MAX: i64 = 10_000;
/// Producers (and, separately, consumers) across all blocks of a scenario.
const CLIENT_COUNT_MAX: i64 = 1_000;
const MAX_CONCURRENT_MAX: i64 = 1_000;
/// Simulated time beyond a year is surely a typo, and keeps sums from overflowing.
const DURATION_MAX: Duration = Duration::from_secs(365 * 24 * 3_600);
const NAME_LENGTH_MAX: usize = 249;

const SEEDS_DEFAULT: u64 = 200;
/// The least default drain: longer than Kafka's request.timeout.ms (30s), so a
/// request lost just before the heal can time out and be retried within it.
const DRAIN_MIN_DEFAULT: Duration = Duration::from_secs(60);
/// Added to duration + drain for the default time limit.
const TIME_LIMIT_MARGIN: Duration = Duration::from_secs(60);
const INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
const LOSS_RATE_DEFAULT: f64 = 0.1;
const LATENCY_DEFAULT: Duration = Duration::from_millis(50);

pub(super) fn build(raw: RawScenario, path: &Path) -> Result<Scenario, Problem> {
    let name = scenario_name(raw.name, path)?;
    let duration = bounded_duration("duration", raw.duration.0)?;
    let seeds = match raw.seeds {
        None => SEEDS_DEFAULT,
        Some(seeds) => integer_in("seeds", seeds, 1, i64::MAX)? as u64,
    };
    let cluster = build_cluster(raw.cluster)?;
    let topics = build_topics(raw.topics, &cluster)?;
    let producers = build_producers(raw.producers, &topics)?;
    let consumers = build_consumers(raw.consumers, &topics)?;
    let pipelines = build_pipelines(raw.pipelines, &topics)?;
    let drain = match raw.drain {
        Some(drain) => bounded_duration("drain", drain.0)?,
        None => default_drain(&producers, &consumers, &pipelines),
    };
    let time_limit = time_limit(raw.time_limit.map(|limit| limit.0), duration, drain)?;
    let mut scenario = Scenario {
        name,
        description: raw.description.unwrap_or_default(),
        path: path.to_path_buf(),
        duration,
        drain,
        time_limit,
        seeds,
        cluster,
        topics,
        producers,
        consumers,
        pipelines,
        faults: Faults::default(),
        expect: Expect::default(),
        app: None,
    };
    scenario.faults = build_faults(raw.faults, &scenario)?;
    scenario.expect = build_expect(raw.expect)?;
    Ok(scenario)
}

/// Without a `drain` key, the drain is long enough for Kafka, configured as the
/// scenario configures it, to converge from the worst state a fault leaves at
/// the heal; a run that converges sooner ends its drain sooner.
/// - A send outstanding at the heal completes (or fails) within
///   `delivery.timeout.ms` (KIP-91).
/// - A group member whose JoinGroup is parked at a coordinator that lost power
///   hears nothing (no reset, no heartbeats while joining) until the JoinGroup
///   times out, `max.poll.interval.ms` + 5 s later (AbstractCoordinator); it
///   then finds the new coordinator, whose loaded members may need a session
///   timeout to expire, and a member that crashed with its JoinGroup parked
///   counts as joined (the classic coordinator keeps a member awaiting join),
///   so it is given partitions and expires a session timeout after that.
/// - A transaction its producer abandoned is aborted `transaction.timeout.ms`
///   after it began, and its markers then need a request timeout.
fn default_drain(producers: &[ProducerSpec], consumers: &[ConsumerSpec], pipelines: &[PipelineSpec]) -> Duration {
    let producer_configs = producers.iter().map(|producer| &producer.config).chain(pipelines.iter().map(|pipeline| &pipeline.producer_config));
    let group_configs = consumers.iter().filter(|consumer| consumer.group.is_some()).map(|consumer| &consumer.config).chain(pipelines.iter().map(|pipeline| &pipeline.consumer_config));
    let sends = producer_configs.clone().map(|config| config.delivery_timeout);
    let transactions = producer_configs.filter(|config| config.transactional_id.is_some()).map(|config| config.transaction_timeout + config.request_timeout);
    let groups = group_configs.map(|config| config.max_poll_interval + Duration::from_secs(5) + config.session_timeout * 2);
    sends.chain(transactions).chain(groups).fold(DRAIN_MIN_DEFAULT, Duration::max)
}

pub(super) fn node_names(controllers: u32, brokers: u32, producers: u32, consumers: u32, pipelines: u32) -> Vec<String> {
    let kinds = [("controller", controllers), ("broker", brokers), ("producer", producers), ("consumer", consumers), ("pipeline", pipelines)];
    kinds.iter().flat_map(|(kind, count)| (1..=*count).map(move |number| format!("{kind}-{number}"))).collect()
}

/// Checks an integer key against an inclusive range.
fn integer_in(key: &str, value: i64, min: i64, max: i64) -> Result<i64, Problem> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    let wanted = if max == i64::MAX { format!("an integer >= {min}") } else { format!("an integer from {min} to {max}") };
    Err(Problem::new(key, format!("expected {wanted}, got {value}")))
}

fn bounded_duration(key: &str, duration: Duration) -> Result<Duration, Problem> {
    if duration > DURATION_MAX {
        return Err(Problem::new(key, format!("expected at most {}, got {}", format_duration(DURATION_MAX), format_duration(duration))));
    }
    Ok(duration)
}

fn time_limit(given: Option<Duration>, duration: Duration, drain: Duration) -> Result<Duration, Problem> {
    let needed = duration + drain;
    let Some(limit) = given else {
        return Ok(needed + TIME_LIMIT_MARGIN);
    };
    let limit = bounded_duration("time_limit", limit)?;
    if limit < needed {
        let message = format!(
            "expected at least duration + drain (\"{}\") so a run can finish its fault phase and drain, got \"{}\"",
            format_duration(needed),
            format_duration(limit)
        );
        return Err(Problem::new("time_limit", message));
    }
    Ok(limit)
}

/// Names used in reports and file names: letters, digits, '.', '_' and '-'.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_LENGTH_MAX && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn scenario_name(given: Option<String>, path: &Path) -> Result<String, Problem> {
    let from_file = given.is_none();
    let name = given.unwrap_or_else(|| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default());
    if is_plain_name(&name) && name != "." && name != ".." {
        return Ok(name);
    }
    let origin = if from_file { " (taken from the file name; set name = \"...\" in the file)" } else { "" };
    Err(Problem::new("name", format!("expected a name of letters, digits, '.', '_' and '-', got {name:?}{origin}")))
}

/// Maps a model config error to the key it names in the file.
fn config_problem(table: &str, error: ConfigError, known: &[&str]) -> Problem {
    let key = child_key(table, &error.key);
    if known.contains(&error.key.as_str()) {
        return Problem::new(key, format!("expected {}", error.expected));
    }
    let message = format!("unknown property{}; the supported properties are: {}", did_you_mean(&error.key, known), known.join(", "));
    Problem::new(key, message)
}

/// Kafka 4 runs KRaft, and a production cluster three controllers: the
/// smallest quorum that survives the loss of one.
pub const DEFAULT_CONTROLLERS: i64 = 3;

fn build_cluster(raw: RawCluster) -> Result<Cluster, Problem> {
    let brokers = integer_in("cluster.brokers", raw.brokers, 1, BROKER_COUNT_MAX)? as u32;
    let controllers = raw.controllers.unwrap_or(DEFAULT_CONTROLLERS);
    // A KRaft quorum of 1, 3 or 5 voters (KIP-595): an even count adds a
    // voter without tolerating one more failure.
    if ![1, 3, 5].contains(&controllers) {
        return Err(Problem::new("cluster.controllers", format!("expected 1, 3 or 5 (the controller quorum's voters), got {controllers}")));
    }
    let config = BrokerConfig::from_properties(&raw.config).map_err(|error| config_problem("cluster.config", error, BROKER_PROPERTIES))?;
    Ok(Cluster { brokers, controllers: controllers as u32, config })
}

/// Kafka's rule for topic names, and ours: a leading "__" is left to Kafka's
/// internal topics (__consumer_offsets, __transaction_state).
fn topic_name_problem(name: &str) -> Option<String> {
    if !is_plain_name(name) || name == "." || name == ".." {
        return Some(format!("expected a topic name of 1 to {NAME_LENGTH_MAX} letters, digits, '.', '_' and '-', got {name:?}"));
    }
    if name.starts_with("__") {
        return Some(format!("names starting with \"__\" are reserved for Kafka's internal topics, got {name:?}"));
    }
    None
}

fn build_topics(raw: Vec<RawTopic>, cluster: &Cluster) -> Result<Vec<Topic>, Problem> {
    let mut topics: Vec<Topic> = Vec::with_capacity(raw.len());
    for (index, topic) in raw.into_iter().enumerate() {
        let key = format!("topics[{index}]");
        if let Some(message) = topic_name_problem(&topic.name) {
            return Err(Problem::new(format!("{key}.name"), message));
        }
        if topics.iter().any(|earlier| earlier.name == topic.name) {
            return Err(Problem::new(format!("{key}.name"), format!("topic {:?} is defined twice", topic.name)));
        }
        let partitions = integer_in(&format!("{key}.partitions"), topic.partitions, 1, PARTITION_COUNT_MAX)? as u32;
        let replication_factor_max = REPLICATION_FACTOR_MAX.min(i64::from(cluster.brokers));
        let replication_factor = topic.replication_factor;
        if !(1..=replication_factor_max).contains(&replication_factor) {
            let message = format!(
                "expected an integer from 1 to {replication_factor_max} (at most cluster.brokers = {}, and at most {REPLICATION_FACTOR_MAX}), got {replication_factor}",
                cluster.brokers
            );
            return Err(Problem::new(format!("{key}.replication_factor"), message));
        }
        topics.push(Topic { name: topic.name, partitions, replication_factor: replication_factor as u32 });
    }
    Ok(topics)
}

/// Checks that a client's `topic` names a `[[topics]]` entry.
fn topic_reference(key: &str, name: &str, topics: &[Topic]) -> Result<(), Problem> {
    if topics.iter().any(|topic| topic.name == name) {
        return Ok(());
    }
    Err(Problem::new(key, unknown_topic_message(name, topics)))
}

fn unknown_topic_message(name: &str, topics: &[Topic]) -> String {
    let names: Vec<&str> = topics.iter().map(|topic| topic.name.as_str()).collect();
    if names.is_empty() {
        return format!("no [[topics]] entry is named {name:?}: the scenario defines no topics");
    }
    format!("no [[topics]] entry is named {name:?}{}; the topics are: {}", did_you_mean(name, &names), names.join(", "))
}

/// Reads a block's `count` and keeps the total across blocks within bounds.
fn client_count(key: &str, count: Option<i64>, total: &mut i64, kind: &str) -> Result<u32, Problem> {
    let count = integer_in(key, count.unwrap_or(1), 1, CLIENT_COUNT_MAX)?;
    *total += count;
    if *total > CLIENT_COUNT_MAX {
        return Err(Problem::new(key, format!("the scenario would have {total} {kind}s; at most {CLIENT_COUNT_MAX} are supported")));
    }
    Ok(count as u32)
}

fn build_producers(raw: Vec<RawProducer>, topics: &[Topic]) -> Result<Vec<ProducerSpec>, Problem> {
    let mut total = 0;
    let mut producers = Vec::with_capacity(raw.len());
    for (index, producer) in raw.into_iter().enumerate() {
        let key = format!("producers[{index}]");
        let count = client_count(&format!("{key}.count"), producer.count, &mut total, "producer")?;
        topic_reference(&format!("{key}.topic"), &producer.topic, topics)?;
        let messages = integer_in(&format!("{key}.messages"), producer.messages, 1, i64::MAX)? as u64;
        if !(producer.rate.is_finite() && producer.rate > 0.0) {
            let message = format!("expected messages per simulated second, a number greater than 0, got {}", producer.rate);
            return Err(Problem::new(format!("{key}.rate"), message));
        }
        let keys = integer_in(&format!("{key}.keys"), producer.keys.unwrap_or(0), 0, i64::from(u32::MAX))? as u32;
        let config = ProducerConfig::from_properties(&producer.config).map_err(|error| config_problem(&format!("{key}.config"), error, PRODUCER_PROPERTIES))?;
        let transactional = config.transactional_id.is_some();
        if !transactional && (producer.transaction_size.is_some() || producer.abort_ratio.is_some()) {
            return Err(Problem::new(format!("{key}.transaction_size"), "transaction_size and abort_ratio need \"transactional.id\" in the producer's config"));
        }
        let transaction_size = integer_in(&format!("{key}.transaction_size"), producer.transaction_size.unwrap_or(3), 1, 1_000)? as u32;
        let abort_ratio = producer.abort_ratio.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&abort_ratio) {
            return Err(Problem::new(format!("{key}.abort_ratio"), format!("expected a fraction from 0 to 1, got {abort_ratio}")));
        }
        producers.push(ProducerSpec { count, topic: producer.topic, messages, rate: producer.rate, keys, transaction_size, abort_ratio, config });
    }
    Ok(producers)
}

fn build_consumers(raw: Vec<RawConsumer>, topics: &[Topic]) -> Result<Vec<ConsumerSpec>, Problem> {
    let mut total = 0;
    let mut consumers = Vec::with_capacity(raw.len());
    for (index, consumer) in raw.into_iter().enumerate() {
        let key = format!("consumers[{index}]");
        let count = client_count(&format!("{key}.count"), consumer.count, &mut total, "consumer")?;
        topic_reference(&format!("{key}.topic"), &consumer.topic, topics)?;
        if consumer.group.as_deref().is_some_and(|group| group.trim().is_empty()) {
            return Err(Problem::new(format!("{key}.group"), "expected a group name; leave the key out to assign every partition instead"));
        }
        let delivery = consumer.delivery.map_or(Delivery::AtLeastOnce, |delivery| delivery.0);
        if delivery == Delivery::ExactlyOnce {
            // A plain consumer has no output to put in a transaction with its
            // offsets (KIP-98, KIP-447): that is what a transactional pipeline is.
            return Err(Problem::new(
                format!("{key}.delivery"),
                "expected at-most-once or at-least-once; exactly-once needs output written in the offsets' transaction: use [[pipelines]] with transactional = true",
            ));
        }
        let config = ConsumerConfig::from_properties(&consumer.config, "earliest")
            .map_err(|error| config_problem(&format!("{key}.config"), error, CONSUMER_PROPERTIES))?;
        consumers.push(ConsumerSpec { count, topic: consumer.topic, group: consumer.group, delivery, config });
    }
    Ok(consumers)
}

/// `[[pipelines]]`: both topics declared, a group, and `config` split between
/// the consumer and the producer by property name.
fn build_pipelines(raw: Vec<RawPipeline>, topics: &[Topic]) -> Result<Vec<PipelineSpec>, Problem> {
    let mut total = 0;
    let mut pipelines = Vec::with_capacity(raw.len());
    for (index, pipeline) in raw.into_iter().enumerate() {
        let key = format!("pipelines[{index}]");
        let count = client_count(&format!("{key}.count"), pipeline.count, &mut total, "pipeline member")?;
        topic_reference(&format!("{key}.from"), &pipeline.from, topics)?;
        topic_reference(&format!("{key}.to"), &pipeline.to, topics)?;
        if pipeline.from == pipeline.to {
            return Err(Problem::new(format!("{key}.to"), format!("expected a topic other than from = {:?}: a pipeline reading its own output never drains", pipeline.from)));
        }
        if pipeline.group.trim().is_empty() || !is_plain_name(&pipeline.group) {
            return Err(Problem::new(format!("{key}.group"), format!("expected a group name of letters, digits, '.', '_' and '-', got {:?}", pipeline.group)));
        }
        let transactional = pipeline.transactional.unwrap_or(false);
        let config_key = format!("{key}.config");
        let mut consumer_properties = Properties::new();
        let mut producer_properties = Properties::new();
        for (name, value) in &pipeline.config {
            let for_consumer = CONSUMER_PROPERTIES.contains(&name.as_str());
            let for_producer = PRODUCER_PROPERTIES.contains(&name.as_str());
            if !for_consumer && !for_producer {
                let known: Vec<&str> = CONSUMER_PROPERTIES.iter().chain(PRODUCER_PROPERTIES).copied().collect();
                let message = format!("unknown property{}; the supported properties are: {}", did_you_mean(name, &known), known.join(", "));
                return Err(Problem::new(child_key(&config_key, name), message));
            }
            if matches!(name.as_str(), "transactional.id" | "isolation.level" | "enable.idempotence" | "acks") {
                let message = "is set by the pipeline itself (acks=all, idempotence, and with transactional = true a transactional.id per member and read_committed)";
                return Err(Problem::new(child_key(&config_key, name), message));
            }
            if for_consumer {
                consumer_properties.insert(name.clone(), value.clone());
            }
            if for_producer {
                producer_properties.insert(name.clone(), value.clone());
            }
        }
        let isolation = if transactional { "read_committed" } else { "read_uncommitted" };
        consumer_properties.insert("isolation.level".into(), PropertyValue::Text(isolation.into()));
        let consumer_config =
            ConsumerConfig::from_properties(&consumer_properties, "earliest").map_err(|error| config_problem(&config_key, error, CONSUMER_PROPERTIES))?;
        producer_properties.insert("acks".into(), PropertyValue::Text("all".into()));
        producer_properties.insert("enable.idempotence".into(), PropertyValue::Bool(true));
        if transactional {
            producer_properties.insert("transactional.id".into(), PropertyValue::Text(format!("{}-pipeline", pipeline.group)));
        }
        let producer_config = ProducerConfig::from_properties(&producer_properties).map_err(|error| config_problem(&config_key, error, PRODUCER_PROPERTIES))?;
        pipelines.push(PipelineSpec { count, from: pipeline.from, to: pipeline.to, group: pipeline.group, transactional, consumer_config, producer_config });
    }
    Ok(pipelines)
}

fn build_faults(raw: Option<RawFaults>, scenario: &Scenario) -> Result<Faults, Problem> {
    let Some(raw) = raw else {
        return Ok(Faults::default());
    };
    let mut kinds: Vec<FaultKind> = Vec::with_capacity(raw.kinds.len());
    for (index, kind) in raw.kinds.iter().map(|kind| kind.0).enumerate() {
        let key = format!("faults.kinds[{index}]");
        if kinds.contains(&kind) {
            return Err(Problem::new(key, format!("{:?} is listed twice", kind.name())));
        }
        if matches!(kind, FaultKind::ClientCrash | FaultKind::Replace) && scenario.producers.is_empty() && scenario.consumers.is_empty() && scenario.pipelines.is_empty() {
            return Err(Problem::new(key, format!("{:?} needs a producer, a consumer or a pipeline to act on, and the scenario has none", kind.name())));
        }
        if matches!(kind, FaultKind::QuorumSplit) && scenario.cluster.controllers < 3 {
            return Err(Problem::new(key, format!("\"quorum-split\" needs a controller quorum of 3 or 5 ([cluster] controllers), and the scenario has {}", scenario.cluster.controllers)));
        }
        if kind == FaultKind::ReplicaPowerLoss && scenario.topics.is_empty() {
            return Err(Problem::new(key, "\"replica-power-loss\" needs a partition, and the scenario defines no topics"));
        }
        kinds.push(kind);
    }
    let interval = bounded_duration("faults.interval", raw.interval.map_or(INTERVAL_DEFAULT, |interval| interval.0))?;
    if !kinds.is_empty() && interval.is_zero() {
        return Err(Problem::new("faults.interval", "expected a duration greater than 0 when faults.kinds is not empty"));
    }
    let max_concurrent = integer_in("faults.max_concurrent", raw.max_concurrent.unwrap_or(1), 1, MAX_CONCURRENT_MAX)? as usize;
    let mut schedule = Vec::with_capacity(raw.schedule.len());
    for (index, fault) in raw.schedule.into_iter().enumerate() {
        schedule.push(build_scheduled_fault(&format!("faults.schedule[{index}]"), fault, scenario)?);
    }
    // Stable: faults at the same time keep their order in the file.
    schedule.sort_by_key(|fault: &ScheduledFault| fault.at);
    let swarm_interval = match raw.swarm_interval {
        None => (interval / 2, interval * 2),
        Some(range) => {
            let range: Vec<Duration> = range.iter().map(|duration| duration.0).collect();
            match range[..] {
                [low, high] if !low.is_zero() && low <= high => (bounded_duration("faults.swarm_interval", low)?, bounded_duration("faults.swarm_interval", high)?),
                _ => return Err(Problem::new("faults.swarm_interval", "expected two durations [low, high] with 0 < low <= high, such as [\"1s\", \"20s\"]")),
            }
        }
    };
    let swarm_max_concurrent = match raw.swarm_max_concurrent {
        None => (1, max_concurrent),
        Some(range) => match range[..] {
            [low, high] if (1..=MAX_CONCURRENT_MAX).contains(&low) && (low..=MAX_CONCURRENT_MAX).contains(&high) => (low as usize, high as usize),
            _ => {
                let message = format!("expected two integers [low, high] with 1 <= low <= high <= {MAX_CONCURRENT_MAX}, such as [1, 3], got {range:?}");
                return Err(Problem::new("faults.swarm_max_concurrent", message));
            }
        },
    };
    Ok(Faults { kinds, interval, max_concurrent, schedule, buggify: raw.buggify.unwrap_or(false), swarm_interval, swarm_max_concurrent, swarm: None })
}

fn build_scheduled_fault(key: &str, raw: RawScheduledFault, scenario: &Scenario) -> Result<ScheduledFault, Problem> {
    let at = raw.at.0;
    if at > scenario.duration {
        let message =
            format!("expected a time within the fault phase (duration = \"{}\"), got \"{}\"", format_duration(scenario.duration), format_duration(at));
        return Err(Problem::new(format!("{key}.at"), message));
    }
    let action = raw.action.0;
    let target = parse_target(&format!("{key}.target"), &raw.target, scenario)?;
    let is_client = |name: &str| ["producer-", "consumer-", "pipeline-"].iter().any(|kind| name.starts_with(kind));
    if action == Action::Replace && !matches!(&target, Target::Node(name) if is_client(name)) {
        let message = format!("action \"replace\" replaces one client by its successor: expected a producer, consumer or pipeline name, got {:?}", raw.target);
        return Err(Problem::new(format!("{key}.target"), message));
    }
    if matches!(target, Target::Majority | Target::Minority) && !matches!(action, Action::Partition | Action::Heal) {
        let message = format!("target {:?} only goes with action = \"partition\" (or \"heal\"), not {:?}", raw.target, action.name());
        return Err(Problem::new(format!("{key}.target"), message));
    }
    let duration = match raw.duration {
        None => None,
        Some(_) if !action.can_be_undone() => {
            let message = format!("action {:?} is itself an undo and takes no duration", action.name());
            return Err(Problem::new(format!("{key}.duration"), message));
        }
        Some(duration) if duration.0.is_zero() => {
            return Err(Problem::new(format!("{key}.duration"), "expected a duration greater than 0; leave the key out to keep the fault until healed"));
        }
        Some(duration) => Some(bounded_duration(&format!("{key}.duration"), duration.0)?),
    };
    let rate = loss_rate(key, action, raw.rate)?;
    let latency = match (action, raw.latency) {
        (Action::Latency, latency) => Some(bounded_duration(&format!("{key}.latency"), latency.map_or(LATENCY_DEFAULT, |latency| latency.0))?),
        (_, None) => None,
        (_, Some(_)) => return Err(Problem::new(format!("{key}.latency"), format!("only action = \"latency\" takes a latency, not {:?}", action.name()))),
    };
    Ok(ScheduledFault { at, action, target, duration, rate, latency })
}

fn loss_rate(key: &str, action: Action, rate: Option<f64>) -> Result<Option<f64>, Problem> {
    let key = format!("{key}.rate");
    match (action, rate) {
        (Action::Loss, None) => Ok(Some(LOSS_RATE_DEFAULT)),
        (Action::Loss, Some(rate)) if (0.0..=1.0).contains(&rate) => Ok(Some(rate)),
        (Action::Loss, Some(rate)) => Err(Problem::new(key, format!("expected the fraction of messages dropped, from 0 to 1, got {rate}"))),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(Problem::new(key, format!("only action = \"loss\" takes a rate, not {:?}", action.name()))),
    }
}

fn parse_target(key: &str, text: &str, scenario: &Scenario) -> Result<Target, Problem> {
    match text {
        "controller" | "active-controller" => return Ok(Target::Controller),
        "controllers(majority)" => return Ok(Target::ControllersMajority),
        "controllers(minority)" => return Ok(Target::ControllersMinority),
        "random" => return Ok(Target::Random),
        "majority" => return Ok(Target::Majority),
        "minority" => return Ok(Target::Minority),
        _ => {}
    }
    if let Some(inner) = text.strip_prefix("leader(").and_then(|rest| rest.strip_suffix(')')) {
        return Ok(Target::Leader(partition_reference(key, inner, text, scenario)?));
    }
    if let Some(inner) = text.strip_prefix("replicas(").and_then(|rest| rest.strip_suffix(')')) {
        return Ok(Target::Replicas(partition_reference(key, inner, text, scenario)?));
    }
    if let Some(inner) = text.strip_prefix("nodes(").and_then(|rest| rest.strip_suffix(')')) {
        let names: Vec<String> = inner.split(',').map(|name| name.trim().to_string()).collect();
        let known = scenario.node_names();
        if let Some(unknown) = names.iter().find(|name| !known.contains(name)) {
            return Err(Problem::new(key, format!("unknown node {unknown:?} in {text:?}; the nodes of this scenario are {}", describe_nodes(scenario))));
        }
        return Ok(Target::Nodes(names));
    }
    if scenario.node_names().iter().any(|name| name == text) {
        return Ok(Target::Node(text.to_string()));
    }
    // An application's instances (`kafsim::app::Harness`) are known only when
    // it runs: a fault aimed at one it does not run misses.
    if text.strip_prefix("app-").and_then(|number| number.parse::<u32>().ok()).is_some_and(|number| number >= 1) {
        return Ok(Target::Node(text.to_string()));
    }
    let message = format!(
        "unknown target {text:?}; expected a node of this scenario ({}), nodes(NAME,...), leader(TOPIC/PARTITION), replicas(TOPIC/PARTITION), controller (or active-controller), controllers(majority), controllers(minority), random, majority or minority",
        describe_nodes(scenario)
    );
    Err(Problem::new(key, message))
}

/// "controller-1, broker-1..broker-3, producer-1..producer-2".
fn describe_nodes(scenario: &Scenario) -> String {
    let kinds = [
        ("controller", scenario.cluster.controllers),
        ("broker", scenario.cluster.brokers),
        ("producer", scenario.producer_count()),
        ("consumer", scenario.consumer_count()),
        ("pipeline", scenario.pipeline_count()),
    ];
    let ranges = kinds.iter().filter(|(_, count)| *count > 0).map(|(kind, count)| match count {
        1 => format!("{kind}-1"),
        _ => format!("{kind}-1..{kind}-{count}"),
    });
    ranges.collect::<Vec<_>>().join(", ")
}

/// `events/0` inside leader(...) or replicas(...).
fn partition_reference(key: &str, inner: &str, text: &str, scenario: &Scenario) -> Result<TopicPartition, Problem> {
    let Some((topic_name, partition)) = inner.rsplit_once('/') else {
        return Err(Problem::new(key, format!("expected TOPIC/PARTITION inside the parentheses, such as \"leader(events/0)\", got {text:?}")));
    };
    // Internal topics may be named when they exist, so a scripted fault can hit a
    // coordinator: leader(__consumer_offsets/2), leader(__transaction_state/0).
    let partitions = match scenario.topic(topic_name) {
        Some(topic) => topic.partitions,
        None if topic_name == kafsim_model::protocol::CONSUMER_OFFSETS_TOPIC && scenario.uses_groups() => scenario.cluster.config.offsets_topic_num_partitions,
        None if topic_name == kafsim_model::protocol::TRANSACTION_STATE_TOPIC && scenario.uses_transactions() => {
            scenario.cluster.config.transaction_state_log_num_partitions
        }
        None => return Err(Problem::new(key, unknown_topic_message(topic_name, &scenario.topics))),
    };
    // Digits only: u32's parser would also take "+1".
    let number = partition.parse::<u32>().ok().filter(|_| partition.bytes().all(|byte| byte.is_ascii_digit()));
    match number {
        Some(number) if number < partitions => Ok(TopicPartition::new(topic_name, number)),
        _ => {
            let message = format!("topic {topic_name:?} has partitions 0 to {}, got {partition:?} in {text:?}", partitions - 1);
            Err(Problem::new(key, message))
        }
    }
}

fn build_expect(raw: Option<RawExpect>) -> Result<Expect, Problem> {
    let Some(raw) = raw else {
        return Ok(Expect::default());
    };
    let never = distinct_checkers("expect.never", &raw.never.iter().map(|kind| kind.0).collect::<Vec<_>>())?;
    let finds = distinct_checkers("expect.finds", &raw.finds.iter().map(|kind| kind.0).collect::<Vec<_>>())?;
    if let Some((index, kind)) = finds.iter().enumerate().find(|(_, kind)| never.contains(kind)) {
        let message = format!("{:?} is also in expect.never; a kind cannot be both forbidden and required", kind.name());
        return Err(Problem::new(format!("expect.finds[{index}]"), message));
    }
    Ok(Expect { never, finds })
}

fn distinct_checkers(key: &str, kinds: &[CheckerKind]) -> Result<Vec<CheckerKind>, Problem> {
    for (index, kind) in kinds.iter().enumerate() {
        if kinds[..index].contains(kind) {
            return Err(Problem::new(format!("{key}[{index}]"), format!("{:?} is listed twice", kind.name())));
        }
    }
    Ok(kinds.to_vec())
}
