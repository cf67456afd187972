//! The client API inside a small simulated run: configuration errors, a
//! round trip of records with headers, commits and positions, and fencing.

use super::harness::Harness;
use crate::rdkafka::config::ClientConfig;
use crate::rdkafka::consumer::{CommitMode, StreamConsumer};
use crate::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use crate::rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use crate::rdkafka::producer::{FutureProducer, FutureRecord};
use crate::rdkafka::util::Timeout;
use crate::rdkafka::Offset;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCENARIO: &str = r#"
name = "app-unit"
duration = "3s"
seeds = 1
[cluster]
brokers = 3
[cluster.config]
"offsets.topic.num.partitions" = 1
"transaction.state.log.num.partitions" = 1
[[topics]]
name = "events"
partitions = 2
replication_factor = 3
[faults]
kinds = []
[expect]
never = ["lost-write", "duplicate", "liveness", "panic", "timeout"]
"#;

fn harness() -> Harness {
    Harness::from_toml(SCENARIO).expect("a valid scenario").seeds([1])
}

/// Lines the application wrote, for the test to read after the run.
type Notes = Arc<Mutex<Vec<String>>>;

fn note(notes: &Notes, line: impl Into<String>) {
    notes.lock().expect("notes lock").push(line.into());
}

/// An application that returned would be restarted by its supervisor: these stay.
async fn idle() {
    loop {
        madsim::time::sleep(Duration::from_secs(1)).await;
    }
}

fn notes_of(notes: &Notes) -> Vec<String> {
    notes.lock().expect("notes lock").clone()
}

#[test]
fn create_refuses_unknown_and_ill_typed_properties_and_strange_brokers() {
    let notes: Notes = Notes::default();
    let seen = notes.clone();
    harness().run(move |ctx| {
        let notes = seen.clone();
        async move {
            let bootstrap = ctx.bootstrap_servers();
            let attempts: [(&str, &str); 4] = [("linger.mss", "5"), ("linger.ms", "soon"), ("acks", "2"), ("bootstrap.servers", "broker-9:9092")];
            for (key, value) in attempts {
                let mut config = ClientConfig::new();
                config.set("bootstrap.servers", bootstrap.as_str()).set(key, value);
                match config.create::<FutureProducer>() {
                    Err(KafkaError::ClientCreation(text)) => note(&notes, text),
                    Err(other) => note(&notes, format!("unexpected error {other}")),
                    Ok(_) => note(&notes, format!("{key}={value} accepted")),
                }
            }
            // A consumer property given to a producer is ignored, as librdkafka ignores it.
            let made = ClientConfig::new().set("bootstrap.servers", bootstrap.as_str()).set("group.id", "g").create::<FutureProducer>();
            note(&notes, format!("group.id on a producer: {}", if made.is_ok() { "ignored" } else { "refused" }));
            idle().await;
        }
    });
    let notes = notes_of(&notes);
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(notes[0].contains("No such configuration property: \"linger.mss\""), "{}", notes[0]);
    assert!(notes[1].contains("\"linger.ms\": expected an integer"), "{}", notes[1]);
    assert!(notes[2].contains("\"acks\": expected one of all, -1, 1, 0"), "{}", notes[2]);
    assert!(notes[3].contains("\"broker-9:9092\" is not a broker of this cluster"), "{}", notes[3]);
    assert_eq!(notes[4], "group.id on a producer: ignored");
}

#[test]
fn records_round_trip_with_their_headers_and_commits_move_the_group() {
    let notes: Notes = Notes::default();
    let seen = notes.clone();
    harness().run(move |ctx| {
        let notes = seen.clone();
        async move {
            let bootstrap = ctx.bootstrap_servers();
            let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap.as_str()).create().expect("valid");
            let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some("abc") });
            let record = FutureRecord::to("events").key("k1").payload("hello").headers(headers);
            let (partition, offset) = producer.send(record, Timeout::Never).await.expect("delivered");
            note(&notes, format!("delivered to {partition} at {offset}"));
            let consumer: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap.as_str())
                .set("group.id", "readers")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("valid");
            consumer.subscribe(&["events"]).expect("a known topic");
            let message = consumer.recv().await.expect("a message");
            let headers = message.headers().expect("headers");
            let names: Vec<&str> = headers.iter().map(|header| header.key).collect();
            note(&notes, format!("{} {:?} {:?} {names:?}", message.offset(), message.key(), message.payload_view::<str>()));
            consumer.commit_message(&message, CommitMode::Sync).await.expect("committed");
            let position = consumer.position().expect("a position").find_partition("events", partition).map(|element| element.offset());
            note(&notes, format!("position {position:?}"));
            let bad = consumer.commit(&{
                let mut list = crate::rdkafka::TopicPartitionList::new();
                list.add_partition_offset("events", 0, Offset::End).expect("added");
                list
            }, CommitMode::Sync).await;
            note(&notes, format!("logical offset commit: {bad:?}"));
            idle().await;
        }
    });
    let notes = notes_of(&notes);
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(notes[0].starts_with("delivered to "), "{}", notes[0]);
    assert_eq!(notes[1], "0 Some([107, 49]) Some(Ok(\"hello\")) [\"trace\", \"kafsim.value\"]");
    assert_eq!(notes[2], "position Some(Offset(1))");
    assert_eq!(notes[3], format!("logical offset commit: {:?}", Err::<(), _>(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidArgument))));
}

#[test]
fn a_producer_fenced_by_a_newer_one_with_its_transactional_id_is_dead() {
    let notes: Notes = Notes::default();
    let seen = notes.clone();
    harness().run(move |ctx| {
        let notes = seen.clone();
        async move {
            let make = || ClientConfig::new().set("bootstrap.servers", ctx.bootstrap_servers()).set("transactional.id", "shared").create::<FutureProducer>().expect("valid");
            let old = make();
            old.init_transactions(Duration::from_secs(30)).await.expect("initialised");
            old.begin_transaction().expect("begun");
            let newer = make();
            newer.init_transactions(Duration::from_secs(30)).await.expect("initialised, fencing the old one");
            let sent = old.send(FutureRecord::<str, str>::to("events").payload("late"), Timeout::Never).await;
            note(&notes, format!("old send: {}", if sent.is_ok() { "ok" } else { "failed" }));
            match old.commit_transaction(Duration::from_secs(30)).await {
                Err(KafkaError::Transaction(error)) => note(&notes, format!("old commit: fatal {} code {:?}", error.is_fatal(), error.code())),
                other => note(&notes, format!("old commit: {other:?}")),
            }
            newer.begin_transaction().expect("begun");
            newer.send(FutureRecord::<str, str>::to("events").payload("fresh"), Timeout::Never).await.expect("delivered");
            note(&notes, format!("new commit: {:?}", newer.commit_transaction(Duration::from_secs(30)).await));
            idle().await;
        }
    });
    let notes = notes_of(&notes);
    assert_eq!(notes, vec!["old send: failed".to_string(), "old commit: fatal true code ProducerFenced".into(), "new commit: Ok(())".into()]);
}

/// madsim refuses OS threads inside a run (it says so on stderr): an
/// application that spawns one panics, and the run is a `panic` finding with
/// its seed, not a crash of the batch.
#[test]
fn an_application_that_spawns_a_thread_is_a_panic_finding() {
    let report = harness().never(&[]).report(|_ctx| async move {
        let _ = std::thread::spawn(|| ()).join();
    });
    assert_eq!(report.seeds_with("panic"), vec![1]);
}
