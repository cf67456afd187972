//! Each run-time invariant (`sim/src/invariants.rs`) must catch the bug its
//! `kafsim.test.mutation` injects, as a panic naming the invariant, and stay
//! silent on the same scenario and seeds without it.

use kafsim::check::CheckerKind;
use kafsim::runner::{run_batch, BatchOptions, RunResult};
use kafsim::scenario::Scenario;
use kafsim_model::config::BrokerMutation;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SEEDS: u64 = 10;

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Scenario::load(&path).expect("the scenario parses")
}

fn run(scenario: Scenario) -> Vec<RunResult> {
    let seeds: Vec<u64> = (0..SEEDS).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    run_batch(&Arc::new(scenario), &seeds, &options, |_| {}).0
}

fn panics(runs: &[RunResult]) -> Vec<String> {
    runs.iter().flat_map(|run| &run.violations).filter(|violation| violation.kind == CheckerKind::Panic).map(|violation| violation.detail.clone()).collect()
}

/// The scenario trips `invariant` under `mutate`, and nothing panics without it.
fn assert_caught(name: &str, mutate: impl Fn(&mut Scenario), invariant: &str) {
    let sound = panics(&run(load(name)));
    assert!(sound.is_empty(), "{name} panicked without a mutation: {sound:?}");
    let mut scenario = load(name);
    mutate(&mut scenario);
    let caught = panics(&run(scenario));
    assert!(!caught.is_empty(), "{name}: no seed of {SEEDS} tripped `{invariant}`");
    assert!(caught.iter().all(|detail| detail.contains(invariant)), "{name}: another panic than `{invariant}`: {caught:?}");
}

fn broker_mutation(mutation: BrokerMutation) -> impl Fn(&mut Scenario) {
    move |scenario: &mut Scenario| scenario.cluster.config.mutation = Some(mutation)
}

#[test]
fn a_follower_high_watermark_past_its_log_end_trips_lso_hw_leo() {
    assert_caught("default.toml", broker_mutation(BrokerMutation::FollowerHighWatermarkPastLogEnd), "LSO <= HW <= LEO");
}

#[test]
fn a_leader_lowering_its_high_watermark_trips_hw_never_back() {
    assert_caught("default.toml", broker_mutation(BrokerMutation::LeaderHighWatermarkRegress), "a leader's high watermark never goes back within its epoch");
}

#[test]
fn a_follower_that_skips_truncation_trips_replicas_agree() {
    assert_caught("acks1-leader-crash.toml", broker_mutation(BrokerMutation::FollowerSkipsTruncation), "replicas agree below the high watermark");
}

#[test]
fn a_consumer_that_rewinds_after_committing_trips_commits_never_back() {
    let rewind = |scenario: &mut Scenario| {
        for consumer in &mut scenario.consumers {
            consumer.config.mutation = Some(kafsim_model::config::ConsumerMutation::RewindAfterCommit);
        }
    };
    assert_caught("group-at-least-once.toml", rewind, "a committed offset never goes back in a generation");
}
