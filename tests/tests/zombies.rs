//! Zombie fencing, each defence shown necessary. A `replace` fault stalls a
//! client and starts its successor with the same `transactional.id` (and
//! group) at once; the stalled process later wakes as a zombie. A group
//! member stalled past its session wakes still believing it owns its
//! partitions (the Java client's HeartbeatThread only marks the coordinator
//! unknown). With Kafka's fencing the zombie is refused; with a test-only
//! switch turning that fencing off, the checkers see what it prevents.

use kafsim::check::CheckerKind;
use kafsim::history::OpBody;
use kafsim::runner::{run_batch, run_seed, BatchOptions, RunResult};
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn load(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

fn run(name: &str, seeds: u64) -> Vec<RunResult> {
    let scenario = load(name);
    let seeds: Vec<u64> = (0..seeds).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    run_batch(&scenario, &seeds, &options, |_| {}).0
}

/// No run breaks what the scenario's `[expect] never` forbids. (An
/// at-most-once group may skip records: `at-least-once` is not promised.)
fn assert_clean(name: &str, seeds: u64) {
    let never = load(name).expect.never.clone();
    assert!(!never.is_empty(), "{name} forbids nothing");
    for run in run(name, seeds) {
        let broken: Vec<_> = run.violations.iter().filter(|violation| never.contains(&violation.kind) || violation.kind == CheckerKind::Panic).collect();
        assert!(broken.is_empty(), "{name} seed {}: {broken:?}", run.seed);
    }
}

/// Whether `node` recorded anything `error` mentions `text` in.
fn recorded(name: &str, seed: u64, node: &str, text: &str) -> bool {
    let detail = run_seed(&load(name), seed);
    detail.history.ops.iter().filter(|op| &*op.node == node).any(|op| match &op.body {
        OpBody::Send { error: Some(error), .. } | OpBody::Txn { error: Some(error), .. } | OpBody::Commit { error: Some(error), .. } => error.contains(text),
        _ => false,
    })
}

/// `kind` shows in at least `at_least` of the runs, and no run panics.
fn assert_finds(name: &str, seeds: u64, kind: CheckerKind, at_least: usize) {
    let runs = run(name, seeds);
    let found = runs.iter().filter(|run| run.kinds().contains(&kind)).count();
    assert!(found >= at_least, "{name}: {kind} in {found} of {seeds} seeds, expected at least {at_least}");
    assert!(runs.iter().all(|run| !run.kinds().contains(&CheckerKind::Panic)), "{name}: a run panicked");
}

#[test]
fn a_zombie_producer_is_fenced_by_its_successors_epoch() {
    assert_clean("zombie-producer.toml", 40);
    // The zombie was there and was refused: its transaction's end is fenced
    // (PRODUCER_FENCED), or its producer learned it was fenced and exited.
    assert!(["ProducerFenced", "fenced by its successor"].iter().any(|text| recorded("zombie-producer.toml", 3, "producer-1", text)));
}

#[test]
fn without_epoch_fencing_a_zombie_producer_breaks_its_transactions() {
    assert_finds("zombie-producer-unfenced.toml", 20, CheckerKind::LostWrite, 10);
}

#[test]
fn a_zombie_pipeline_member_is_fenced_and_every_input_still_yields_one_output() {
    assert_clean("zombie-pipeline.toml", 20);
}

#[test]
fn without_epoch_fencing_two_instances_of_one_transactional_id_break_exactly_once() {
    assert_finds("zombie-pipeline-unfenced.toml", 20, CheckerKind::EosViolation, 3);
}

#[test]
fn a_consumer_waking_after_its_session_expired_has_its_commit_fenced() {
    assert_clean("group-member-stall.toml", 20);
    // The zombie did commit, in its old generation, and was refused.
    assert!(recorded("group-member-stall.toml", 0, "consumer-1", "UnknownMemberId"));
}

#[test]
fn without_generation_fencing_a_woken_consumer_commits_and_processes_twice() {
    assert_finds("group-member-stall-unfenced.toml", 20, CheckerKind::AtMostOnce, 5);
}
