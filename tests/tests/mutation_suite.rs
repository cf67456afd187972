//! The scenario half of the mutation suite that `cargo mutants` runs over
//! `model/` (`.cargo/mutants.toml`): a few hundred seeds of the scenarios that
//! matter, each judged as `kafsim run` judges it (`ScenarioReport::passed`), so
//! a mutant is caught exactly when some scenario's verdict changes: a `never`
//! kind appears, a `finds` kind goes missing, or a run panics (the invariants)
//! or times out.
//!
//! It only builds with the `mutation-suite` feature, so the workspace's
//! ordinary `cargo test` neither builds nor runs it. By hand:
//! `cargo test -p kafsim-tests --features mutation-suite --test mutation_suite`.
//! `KAFSIM_MUTATION_SEEDS` changes the seeds per scenario.

use kafsim::runner::{run_batch, BatchOptions};
use kafsim::scenario::Scenario;
use kafsim::summary::ScenarioReport;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 50 seeds of each of ten scenarios: 500 seeds, about 15 s on two cores in
/// the dev profile, which keeps a mutant under a minute with its build.
const SEEDS_PER_SCENARIO: u64 = 50;

fn seeds_per_scenario() -> u64 {
    match std::env::var("KAFSIM_MUTATION_SEEDS") {
        Ok(text) => text.parse().expect("KAFSIM_MUTATION_SEEDS is a number of seeds"),
        Err(_) => SEEDS_PER_SCENARIO,
    }
}

fn assert_verdict_expected(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(format!("{name}.toml"));
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let seeds: Vec<u64> = (0..seeds_per_scenario()).collect();
    // The test harness already runs one scenario per core; a mutant that spins
    // in simulated time is stopped by the run's own limit, one that spins
    // outside it by cargo-mutants' timeout, so the watchdog only needs to be
    // shorter than that timeout.
    let options = BatchOptions { jobs: 1, watchdog: Duration::from_secs(60), check_determinism: false };
    let started = Instant::now();
    let (runs, nondeterminism) = run_batch(&scenario, &seeds, &options, |_| {});
    let report = ScenarioReport::new(&scenario, runs, nondeterminism, started.elapsed());
    assert!(report.passed(), "{name}: unexpected verdict\n{}", report.render());
}

// Safe configurations: nothing they promise may break.

#[test]
fn safe_acks_all() {
    assert_verdict_expected("safe-acks-all");
}

#[test]
fn minority_power_loss() {
    assert_verdict_expected("minority-power-loss");
}

#[test]
fn epoch_truncation() {
    assert_verdict_expected("epoch-truncation");
}

#[test]
fn idempotent_producer() {
    assert_verdict_expected("idempotent-producer");
}

#[test]
fn txn_read_committed() {
    assert_verdict_expected("txn-read-committed");
}

#[test]
fn pipeline_exactly_once() {
    assert_verdict_expected("pipeline-exactly-once");
}

// Must-find configurations: a mutant that makes the model safer than Kafka
// (or its checkers blind) loses these findings. group-at-least-once is both:
// it must find `at-most-once` and never `at-least-once`.

#[test]
fn group_at_least_once() {
    assert_verdict_expected("group-at-least-once");
}

#[test]
fn acks1_leader_crash() {
    assert_verdict_expected("acks1-leader-crash");
}

#[test]
fn unclean_election() {
    assert_verdict_expected("unclean-election");
}

#[test]
fn txn_read_uncommitted() {
    assert_verdict_expected("txn-read-uncommitted");
}
