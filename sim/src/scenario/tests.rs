//! Scenario parsing: the example of DESIGN §4, every error naming its key on
//! one line, defaults, and no panic on any input.

use super::*;
use crate::check::CheckerKind;
use kafsim_model::config::Acks;
use proptest::prelude::*;

/// DESIGN §4's example, without its `[[pipelines]]` block.
const DESIGN_EXAMPLE: &str = r#"
name = "acks-all-leader-crash"
description = "RF=3, acks=all, min ISR 2: crashing leaders loses no acknowledged write"
duration = "60s"                      # fault phase, simulated; then heal, drain, check

[cluster]
brokers = 3
[cluster.config]                      # broker config, Kafka names
"min.insync.replicas" = 2
"unclean.leader.election.enable" = false
"log.flush.interval.messages" = 9223372036854775807   # Kafka default: never fsync

[[topics]]
name = "events"
partitions = 3
replication_factor = 3

[[producers]]
count = 2
topic = "events"
messages = 2000
rate = 200                            # per simulated second, per producer
keys = 16                             # 0 = null keys
[producers.config]
acks = "all"
"enable.idempotence" = true

[[consumers]]
count = 2
topic = "events"
delivery = "at-least-once"            # at-most-once | at-least-once | exactly-once
[consumers.config]
"isolation.level" = "read_committed"

[faults]
kinds = ["crash", "power-loss", "client-crash", "partition", "pause", "packet-loss", "latency"]
interval = "5s"                        # mean time between faults (random mode)
[[faults.schedule]]                   # scripted faults, optional
at = "10s"
action = "crash"                      # crash | power-loss | restart | pause | resume | isolate | partition | heal | loss | latency
target = "leader(events/0)"           # broker-2 | leader(T/P) | controller | random

[expect]
never = ["lost-write", "duplicate", "nonmonotonic-send", "replica-divergence"]   # must appear in no seed
finds = []                            # must appear in at least one seed (unsafe configurations)
"#;

const PIPELINES_BLOCK: &str = r#"
[[pipelines]]                         # consume-transform-produce, optional
count = 2
from = "events"
to = "copies"
group = "copier"
transactional = true                  # offsets and output in one transaction: exactly-once
"#;

const MINIMAL: &str = r#"
duration = "20s"
[cluster]
brokers = 1
"#;

fn file() -> &'static Path {
    Path::new("scenarios/x.toml")
}

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, file())
}

/// Parses text that must fail, and checks the error's shape: one line, in
/// the form `file: key: message`, naming `key`.
fn error_of(text: &str, key: &str) -> ScenarioError {
    let error = parse(text).expect_err("the text should not parse");
    let shown = error.to_string();
    assert!(!shown.contains('\n'), "not one line: {shown}");
    assert_eq!(error.key, key, "wrong key in: {shown}");
    assert!(shown.starts_with(&format!("scenarios/x.toml: {key}: ")), "bad form: {shown}");
    error
}

/// The design example with one more line right after a table header.
fn example_with(table_header: &str, line: &str) -> String {
    example_with_text(DESIGN_EXAMPLE, table_header, line)
}

/// `text` with one more line right after the first line that starts with `table_header`.
fn example_with_text(text: &str, table_header: &str, line: &str) -> String {
    let start = text.find(&format!("\n{table_header}")).unwrap_or_else(|| panic!("no {table_header} in the text"));
    let end = start + 1 + text[start + 1..].find('\n').expect("headers end their line");
    format!("{}\n{line}{}", &text[..end], &text[end..])
}

/// DESIGN §4's example has `group = "g1"`: the consumers subscribe as one group,
/// the cluster gets `__consumer_offsets`, and `delivery` says when they commit.
#[test]
fn a_consumer_group_subscribes_and_needs_the_offsets_topic() {
    let with_group = DESIGN_EXAMPLE.replace("delivery = \"at-least-once\"", "group = \"g1\"\ndelivery = \"at-most-once\"");
    let scenario = parse(&with_group).expect("a group parses");
    let consumer = &scenario.consumers[0];
    assert_eq!((consumer.group.as_deref(), consumer.delivery), (Some("g1"), Delivery::AtMostOnce));
    assert!(scenario.uses_groups());
    assert!(!parse(DESIGN_EXAMPLE).expect("parses").uses_groups());
    let blank = DESIGN_EXAMPLE.replace("delivery = \"at-least-once\"", "group = \" \"\ndelivery = \"at-least-once\"");
    error_of(&blank, "consumers[0].group");
    let bad_assignor = example_with_text(&with_group, "[consumers.config]", "\"partition.assignment.strategy\" = \"fair\"");
    error_of(&bad_assignor, "consumers[0].config.\"partition.assignment.strategy\"");
}

#[test]
fn design_example_parses() {
    let scenario = parse(DESIGN_EXAMPLE).expect("the design example parses");
    assert_eq!(scenario.name, "acks-all-leader-crash");
    assert_eq!(scenario.path, file());
    assert_eq!(scenario.duration, Duration::from_secs(60));
    assert_eq!(scenario.cluster.brokers, 3);
    assert_eq!(scenario.cluster.controllers, 3, "a KRaft quorum of three by default");
    assert_eq!(scenario.cluster.config.min_insync_replicas, 2);
    assert_eq!(scenario.cluster.config.log_flush_interval_messages, i64::MAX as u64);
    assert_eq!(scenario.topics, vec![Topic { name: "events".into(), partitions: 3, replication_factor: 3 }]);

    let producer = &scenario.producers[0];
    assert_eq!((producer.count, producer.topic.as_str(), producer.messages, producer.rate, producer.keys), (2, "events", 2000, 200.0, 16));
    assert_eq!(producer.config.acks, Acks::All);
    assert!(producer.config.enable_idempotence);

    let consumer = &scenario.consumers[0];
    assert_eq!((consumer.count, consumer.group.as_deref(), consumer.delivery), (2, None, Delivery::AtLeastOnce));
    assert!(consumer.config.read_committed);

    let faults = &scenario.faults;
    assert_eq!(faults.kinds.len(), 7);
    assert_eq!(faults.kinds[1], FaultKind::PowerLoss);
    assert_eq!(faults.interval, Duration::from_secs(5));
    let fault = &faults.schedule[0];
    assert_eq!((fault.at, fault.action), (Duration::from_secs(10), Action::Crash));
    assert_eq!(fault.target, Target::Leader(TopicPartition::new("events", 0)));
    assert_eq!((fault.duration, fault.rate, fault.latency), (None, None, None));

    let never = [CheckerKind::LostWrite, CheckerKind::Duplicate, CheckerKind::NonmonotonicSend, CheckerKind::ReplicaDivergence];
    assert_eq!(scenario.expect, Expect { never: never.to_vec(), finds: Vec::new() });
    assert_eq!(
        scenario.node_names(),
        ["controller-1", "controller-2", "controller-3", "broker-1", "broker-2", "broker-3", "producer-1", "producer-2", "consumer-1", "consumer-2"]
    );
}

const COPIES_TOPIC: &str = r#"
[[topics]]
name = "copies"
partitions = 3
replication_factor = 3
"#;

/// DESIGN §4's example with its `[[pipelines]]` block and the topic it writes to.
fn design_with_pipelines(extra: &str) -> String {
    let (head, tail) = DESIGN_EXAMPLE.split_at(DESIGN_EXAMPLE.find("[[producers]]").expect("the example has producers"));
    format!("{head}{COPIES_TOPIC}{tail}{PIPELINES_BLOCK}{extra}")
}

#[test]
fn pipelines_are_accepted_with_their_meaning() {
    let scenario = parse(&design_with_pipelines("")).expect("DESIGN's pipelines block parses");
    let pipeline = &scenario.pipelines[0];
    assert_eq!((pipeline.count, pipeline.from.as_str(), pipeline.to.as_str(), pipeline.group.as_str()), (2, "events", "copies", "copier"));
    assert!(pipeline.transactional);
    assert!(pipeline.consumer_config.read_committed, "a transactional pipeline reads committed records only");
    assert_eq!(pipeline.producer_config.acks, Acks::All);
    assert!(pipeline.producer_config.enable_idempotence);
    assert_eq!(pipeline.producer_config.transactional_id.as_deref(), Some("copier-pipeline"));
    assert!(scenario.uses_groups() && scenario.uses_transactions());
    assert_eq!(
        scenario.node_names(),
        ["controller-1", "controller-2", "controller-3", "broker-1", "broker-2", "broker-3", "producer-1", "producer-2", "consumer-1", "consumer-2", "pipeline-1", "pipeline-2"]
    );
    parse(&format!("pipelines = []\n{MINIMAL}")).expect("an empty pipelines list is accepted");
}

#[test]
fn a_plain_pipeline_defaults_to_at_least_once_and_takes_client_properties() {
    let text = design_with_pipelines("").replace("transactional = true", "[pipelines.config]\n\"max.poll.records\" = 7\n\"linger.ms\" = 3");
    let scenario = parse(&text).expect("a non-transactional pipeline parses");
    let pipeline = &scenario.pipelines[0];
    assert!(!pipeline.transactional && !pipeline.consumer_config.read_committed);
    assert_eq!(pipeline.consumer_config.max_poll_records, 7);
    assert_eq!(pipeline.producer_config.transactional_id, None);
    assert!(scenario.uses_groups() && !scenario.uses_transactions());
    let scripted = format!("{text}\n[[faults.schedule]]\nat = \"5s\"\naction = \"crash\"\ntarget = \"pipeline-2\"\n");
    let scenario = parse(&scripted).expect("pipeline-2 is a fault target");
    assert_eq!(scenario.faults.schedule[0].target, Target::Node("pipeline-2".into()));
}

#[test]
fn bad_pipelines_name_their_key() {
    let error = error_of(&design_with_pipelines("").replace("to = \"copies\"", "to = \"copys\""), "pipelines[0].to");
    assert!(error.message.contains("\"copies\""), "{}", error.message);
    error_of(&design_with_pipelines("").replace("from = \"events\"", "from = \"nope\""), "pipelines[0].from");
    error_of(&design_with_pipelines("").replace("to = \"copies\"", "to = \"events\""), "pipelines[0].to");
    error_of(&design_with_pipelines("").replace("group = \"copier\"\n", ""), "pipelines[0].group");
    error_of(&design_with_pipelines("").replace("group = \"copier\"", "group = \" \""), "pipelines[0].group");
    error_of(&design_with_pipelines("").replace("count = 2\nfrom", "count = 0\nfrom"), "pipelines[0].count");
    error_of(&design_with_pipelines("").replace("transactional = true", "transactional = \"yes\""), "pipelines[0].transactional");
    error_of(&design_with_pipelines("").replace("transactional = true", "colour = 1"), "pipelines[0].colour");
    error_of(&design_with_pipelines("[pipelines.config]\n\"max.pol.records\" = 3\n"), "pipelines[0].config.\"max.pol.records\"");
    error_of(&design_with_pipelines("[pipelines.config]\n\"transactional.id\" = \"t\"\n"), "pipelines[0].config.\"transactional.id\"");
    error_of(&design_with_pipelines("[pipelines.config]\n\"max.poll.records\" = \"many\"\n"), "pipelines[0].config.\"max.poll.records\"");
    let scripted = design_with_pipelines("").replace("target = \"leader(events/0)\"", "target = \"pipeline-3\"");
    let error = error_of(&scripted, "faults.schedule[0].target");
    assert!(error.message.contains("pipeline-1..pipeline-2"), "{}", error.message);
}

#[test]
fn defaults_are_applied() {
    let scenario = Scenario::parse(MINIMAL, Path::new("scenarios/quiet-cluster.toml")).expect("minimal parses");
    assert_eq!(scenario.name, "quiet-cluster");
    assert_eq!(scenario.description, "");
    assert_eq!(scenario.drain, Duration::from_secs(60));
    assert_eq!(scenario.time_limit, Duration::from_secs(20 + 60 + 60));
    assert_eq!(scenario.seeds, 200);
    assert_eq!(scenario.cluster.controllers, 3);
    assert_eq!(scenario.cluster.config, BrokerConfig::default());
    assert!(scenario.topics.is_empty() && scenario.producers.is_empty() && scenario.consumers.is_empty());
    assert_eq!(scenario.faults, Faults::default());
    assert_eq!(scenario.faults.interval, Duration::from_secs(5));
    assert_eq!(scenario.faults.max_concurrent, 1);
    assert_eq!(scenario.expect, Expect::default());
    assert_eq!(scenario.node_names(), ["controller-1", "controller-2", "controller-3", "broker-1"]);

    let text = r#"
duration = "20s"
[cluster]
brokers = 3
[[topics]]
name = "t"
partitions = 2
replication_factor = 2
[[producers]]
topic = "t"
messages = 10
rate = 1.5
[[producers]]
count = 2
topic = "t"
messages = 10
rate = 3
[[consumers]]
topic = "t"
[faults]
[[faults.schedule]]
at = "5s"
action = "loss"
target = "broker-3"
[[faults.schedule]]
at = "1s"
action = "latency"
target = "random"
"#;
    let scenario = parse(text).expect("defaults parse");
    assert_eq!((scenario.producers[0].count, scenario.producers[0].keys), (1, 0));
    assert_eq!(scenario.producers[0].config, ProducerConfig::default());
    let consumer = &scenario.consumers[0];
    assert_eq!((consumer.count, consumer.group.as_ref(), consumer.delivery), (1, None, Delivery::AtLeastOnce));
    assert_eq!(consumer.config.auto_offset_reset, kafsim_model::config::OffsetReset::Earliest);
    // Sorted by time; each action gets its own defaults and no others.
    let schedule = &scenario.faults.schedule;
    assert_eq!((schedule[0].action, schedule[0].latency, schedule[0].rate), (Action::Latency, Some(Duration::from_millis(50)), None));
    assert_eq!((schedule[1].action, schedule[1].rate, schedule[1].latency), (Action::Loss, Some(0.1), None));
    assert_eq!(scenario.node_names()[6..], ["producer-1", "producer-2", "producer-3", "consumer-1"]);
}

#[test]
fn unknown_top_level_key() {
    let error = error_of(&format!("colour = \"blue\"\n{DESIGN_EXAMPLE}"), "colour");
    assert!(error.message.contains("unknown key \"colour\""), "{error}");
    assert!(error.message.contains("duration"), "lists the allowed keys: {error}");
}

#[test]
fn unknown_nested_keys() {
    let error = error_of(&example_with("[[producers]]", "ratee = 3"), "producers[0].ratee");
    assert!(error.message.contains("did you mean \"rate\""), "{error}");
    error_of(&example_with("[cluster]", "replicas = 3"), "cluster.replicas");
    error_of(&example_with("[faults]", "intervals = \"1s\""), "faults.intervals");
    error_of(&example_with("[[faults.schedule]]", "when = \"1s\""), "faults.schedule[0].when");
    error_of(&example_with("[expect]", "sometimes = []"), "expect.sometimes");
    error_of(&example_with("[[topics]]", "\"retention.ms\" = 5"), "topics[0].\"retention.ms\"");
}

#[test]
fn bad_durations() {
    let text = DESIGN_EXAMPLE.replace("interval = \"5s\"", "interval = \"5 sec\"");
    let error = error_of(&text, "faults.interval");
    assert_eq!(error.to_string(), "scenarios/x.toml: faults.interval: expected a duration such as \"250ms\" or \"10s\", got \"5 sec\"");
    let error = error_of(&DESIGN_EXAMPLE.replace("duration = \"60s\"", "duration = 60"), "duration");
    assert!(error.message.contains("\"60s\""), "says to write a string: {error}");
    error_of(&DESIGN_EXAMPLE.replace("at = \"10s\"", "at = \"90s\""), "faults.schedule[0].at");
    error_of(&MINIMAL.replace("duration = \"20s\"", "duration = \"20s\"\ntime_limit = \"30s\""), "time_limit");
    error_of(&MINIMAL.replace("duration = \"20s\"", "drain = \"1s\""), "duration");
}

#[test]
fn out_of_range_numbers() {
    let error = error_of(&DESIGN_EXAMPLE.replace("replication_factor = 3", "replication_factor = 4"), "topics[0].replication_factor");
    assert!(error.message.contains("cluster.brokers = 3"), "{error}");
    error_of(&DESIGN_EXAMPLE.replace("replication_factor = 3", "replication_factor = 0"), "topics[0].replication_factor");
    error_of(&DESIGN_EXAMPLE.replace("brokers = 3", "brokers = 10"), "cluster.brokers");
    error_of(&DESIGN_EXAMPLE.replace("partitions = 3", "partitions = 0"), "topics[0].partitions");
    error_of(&DESIGN_EXAMPLE.replace("rate = 200", "rate = 0"), "producers[0].rate");
    error_of(&DESIGN_EXAMPLE.replace("rate = 200", "rate = nan"), "producers[0].rate");
    error_of(&DESIGN_EXAMPLE.replace("count = 2\ntopic = \"events\"\nmessages", "count = -1\ntopic = \"events\"\nmessages"), "producers[0].count");
    let error = error_of(&example_with("[cluster]", "controllers = 2"), "cluster.controllers");
    assert!(error.message.contains("expected 1, 3 or 5"), "{error}");
    let error = error_of(&example_with("[cluster]", "controllers = 1").replace("\"crash\", \"power-loss\"", "\"quorum-split\", \"power-loss\""), "faults.kinds[0]");
    assert!(error.message.contains("controller quorum of 3 or 5"), "{error}");
}

#[test]
fn unknown_names() {
    let error = error_of(&DESIGN_EXAMPLE.replace("\"duplicate\"", "\"duplicates\""), "expect.never[1]");
    assert!(error.message.contains("unknown checker \"duplicates\""), "{error}");
    assert!(error.message.contains("lost-write, duplicate, inconsistent-offsets"), "lists the known checkers: {error}");
    let error = error_of(&DESIGN_EXAMPLE.replace("\"pause\", ", "\"stall\", "), "faults.kinds[4]");
    assert!(error.message.contains("unknown fault kind \"stall\"") && error.message.contains("replica-power-loss"), "{error}");
    error_of(&DESIGN_EXAMPLE.replace("action = \"crash\"", "action = \"explode\""), "faults.schedule[0].action");
    error_of(&DESIGN_EXAMPLE.replace("\"at-least-once\"", "\"twice\""), "consumers[0].delivery");
}

/// A plain consumer cannot be exactly-once (it has no output to put in its
/// offsets' transaction): refused, pointing to transactional pipelines.
#[test]
fn exactly_once_on_a_plain_consumer_is_refused() {
    let error = error_of(&DESIGN_EXAMPLE.replace("delivery = \"at-least-once\"", "delivery = \"exactly-once\""), "consumers[0].delivery");
    assert!(error.message.contains("[[pipelines]] with transactional = true"), "{error}");
}

#[test]
fn config_properties() {
    let error = error_of(&DESIGN_EXAMPLE.replace("\"min.insync.replicas\"", "\"min.insync.replica\""), "cluster.config.\"min.insync.replica\"");
    assert!(error.message.contains("did you mean \"min.insync.replicas\""), "{error}");
    error_of(&DESIGN_EXAMPLE.replace("\"min.insync.replicas\" = 2", "\"min.insync.replicas\" = \"two\""), "cluster.config.\"min.insync.replicas\"");
    error_of(&DESIGN_EXAMPLE.replace("acks = \"all\"", "acks = \"1\""), "producers[0].config.\"enable.idempotence\"");
    error_of(&DESIGN_EXAMPLE.replace("\"read_committed\"", "\"serializable\""), "consumers[0].config.\"isolation.level\"");
    error_of(&DESIGN_EXAMPLE.replace("\"min.insync.replicas\" = 2", "\"min.insync.replicas\" = [2]"), "cluster.config.\"min.insync.replicas\"");
}

#[test]
fn cross_references() {
    error_of(&DESIGN_EXAMPLE.replace("count = 2\ntopic = \"events\"\ndelivery", "count = 2\ntopic = \"evnts\"\ndelivery"), "consumers[0].topic");
    let schedule_target = |target: &str| DESIGN_EXAMPLE.replace("\"leader(events/0)\"", &format!("{target:?}"));
    for good in ["broker-3", "controller", "controller-1", "producer-2", "consumer-1", "random", "replicas(events/2)"] {
        parse(&schedule_target(good)).unwrap_or_else(|error| panic!("{good}: {error}"));
    }
    for bad in ["broker-4", "broker-0", "producer-3", "leader(events/3)", "leader(other/0)", "leader(events)", "leader(events/+1)", "everyone"] {
        error_of(&schedule_target(bad), "faults.schedule[0].target");
    }
    // A majority only makes sense for a partition.
    error_of(&schedule_target("majority"), "faults.schedule[0].target");
    parse(&schedule_target("majority").replace("action = \"crash\"", "action = \"partition\"")).expect("partition majority");
    // A replacement replaces one client: a producer, consumer or pipeline.
    let replace = |target: &str| schedule_target(target).replace("action = \"crash\"", "action = \"replace\"");
    let replaced = parse(&replace("producer-2")).expect("replace a producer");
    assert!(replaced.uses_replace() && replaced.faults.schedule[0].action == Action::Replace);
    for bad in ["broker-3", "controller", "random", "leader(events/0)", "nodes(producer-1,producer-2)"] {
        let error = error_of(&replace(bad), "faults.schedule[0].target");
        assert!(error.message.contains("producer, consumer or pipeline"), "{error}");
    }
    // Keys that belong to other actions.
    error_of(&example_with("[[faults.schedule]]", "rate = 0.5"), "faults.schedule[0].rate");
    error_of(&example_with("[[faults.schedule]]", "latency = \"5ms\""), "faults.schedule[0].latency");
    let restart = DESIGN_EXAMPLE.replace("action = \"crash\"", "action = \"restart\"");
    error_of(&example_with_text(&restart, "[[faults.schedule]]", "duration = \"5s\""), "faults.schedule[0].duration");
    let crash_for_a_while = parse(&example_with("[[faults.schedule]]", "duration = \"5s\"")).expect("crash with duration");
    assert_eq!(crash_for_a_while.faults.schedule[0].duration, Some(Duration::from_secs(5)));
    let loss = DESIGN_EXAMPLE.replace("action = \"crash\"", "action = \"loss\"");
    error_of(&example_with_text(&loss, "[[faults.schedule]]", "rate = 1.5"), "faults.schedule[0].rate");
    // Random faults need time between them.
    error_of(&DESIGN_EXAMPLE.replace("interval = \"5s\"", "interval = \"0s\""), "faults.interval");
    // Expectations may not contradict each other.
    let error = error_of(&DESIGN_EXAMPLE.replace("finds = []", "finds = [\"unseen\", \"duplicate\"]"), "expect.finds[1]");
    assert!(error.message.contains("expect.never"), "{error}");
    error_of(&DESIGN_EXAMPLE.replace("finds = []", "finds = [\"unseen\", \"unseen\"]"), "expect.finds[1]");
    error_of(&example_with("[[topics]]", "").replace("name = \"events\"", "name = \"__consumer_offsets\""), "topics[0].name");
}

#[test]
fn syntax_and_type_errors_are_one_line() {
    let error = error_of(&format!("{MINIMAL}[cluster\n"), "line 5");
    assert!(error.message.starts_with("invalid TOML"), "{error}");
    error_of(&MINIMAL.replace("[cluster]", "duration = \"1s\"\n[cluster]"), "line 3");
    error_of(&MINIMAL.replace("brokers = 1", "brokers = \"3\""), "cluster.brokers");
    let error = error_of(&MINIMAL.replace("brokers = 1", ""), "cluster.brokers");
    assert_eq!(error.message, "this key is required");
    error_of("[cluster]\nbrokers = 1\n", "duration");
    error_of(&format!("{MINIMAL}[[topics]]\nname = \"t\"\npartitions = 1\n"), "topics[0].replication_factor");
    error_of(&format!("topics = 3\n{MINIMAL}"), "topics");
    error_of(&format!("{MINIMAL}[producers.config]\nacks = \"all\"\n"), "producers");
}

#[test]
fn load_reports_missing_files() {
    let error = Scenario::load(Path::new("/nonexistent/kafsim/scenario.toml")).expect_err("no such file");
    assert!(error.to_string().starts_with("/nonexistent/kafsim/scenario.toml: cannot read the file"), "{error}");
}

/// Small edits to a valid file: the kind of input a user's typo produces.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, length: usize },
    Insert { at: usize, text: String },
    SwapLines { first: usize, second: usize },
    DuplicateLine { line: usize },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, length)| Edit::Delete { at, length }),
        (any::<usize>(), "[ -~\\n]{1,12}|\\PC{1,4}").prop_map(|(at, text)| Edit::Insert { at, text }),
        (any::<usize>(), any::<usize>()).prop_map(|(first, second)| Edit::SwapLines { first, second }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<&str> = text.lines().collect();
    match edit {
        Edit::Delete { at, length } => {
            let start = at % (chars.len() + 1);
            let end = (start + length).min(chars.len());
            chars.drain(start..end);
        }
        Edit::Insert { at, text } => {
            let start = at % (chars.len() + 1);
            chars.splice(start..start, text.chars());
        }
        Edit::SwapLines { first, second } => {
            let count = lines.len();
            lines.swap(first % count, second % count);
            return lines.join("\n");
        }
        Edit::DuplicateLine { line } => {
            let line = lines[line % lines.len()];
            lines.push(line);
            return lines.join("\n");
        }
    }
    chars.into_iter().collect()
}

fn assert_one_line_if_error(text: &str) {
    if let Err(error) = parse(text) {
        let shown = error.to_string();
        assert!(!shown.contains('\n') && shown.starts_with("scenarios/x.toml: "), "{shown}");
    }
}

proptest! {
    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>()) {
        assert_one_line_if_error(&text);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        assert_one_line_if_error(&text);
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(text in "([a-z_.\"]{0,8} ?= ?([0-9.]{0,6}|\"[a-z0-9 .()/-]{0,8}\"|\\[[^\\]]{0,10}\\]|true)\n|\\[{1,2}[a-z.]{0,12}\\]{1,2}\n){0,12}") {
        assert_one_line_if_error(&text);
    }

    #[test]
    fn parse_never_panics_on_edited_example(edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let text = edits.iter().fold(format!("{DESIGN_EXAMPLE}{PIPELINES_BLOCK}"), |text, edit| apply(&text, edit));
        assert_one_line_if_error(&text);
        let text = edits.iter().fold(DESIGN_EXAMPLE.to_string(), |text, edit| apply(&text, edit));
        assert_one_line_if_error(&text);
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused_not_fatal() {
    for depth in [1_000, 100_000] {
        assert_one_line_if_error(&format!("{MINIMAL}x = {}{}\n", "[".repeat(depth), "]".repeat(depth)));
        assert_one_line_if_error(&format!("{MINIMAL}x = {}1{}\n", "{ a = ".repeat(depth), " }".repeat(depth)));
        assert_one_line_if_error(&format!("{}\n{MINIMAL}", "[a".repeat(depth)));
    }
    error_of(&MINIMAL.replace("\"20s\"", "\"18446744073709551615s\""), "duration");
    error_of(&MINIMAL.replace("\"20s\"", "\"99999999999999999999999h\""), "duration");
    let error = error_of(&MINIMAL.replace("brokers = 1", "brokers = 99999999999999999999"), "cluster.brokers");
    assert!(!error.message.contains("i128"), "{error}");
}
