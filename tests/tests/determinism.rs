//! Same seed, same binary, same scenario: the same trace hash, whichever thread
//! runs it and however many runs share the process.

use kafsim::runner::{run_batch, run_seed, BatchOptions};
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn scenario(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

#[test]
fn fifty_seeds_run_twice_give_identical_trace_hashes() {
    let scenario = scenario("default.toml");
    let seeds: Vec<u64> = (0..50).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: true };
    let (runs, mismatches) = run_batch(&scenario, &seeds, &options, |_| {});
    assert_eq!(runs.len(), 50);
    assert!(mismatches.is_empty(), "nondeterministic seeds: {mismatches:?}");
    let distinct: std::collections::BTreeSet<u64> = runs.iter().map(|run| run.trace_hash).collect();
    assert!(distinct.len() > 45, "different seeds should give different runs, got {} distinct hashes", distinct.len());
}

#[test]
fn a_seed_replays_bit_for_bit_on_another_thread() {
    let scenario = scenario("rf1-acks1-power-loss.toml");
    let here = run_seed(&scenario, 7).result;
    let there = std::thread::spawn({
        let scenario = scenario.clone();
        move || run_seed(&scenario, 7).result
    })
    .join()
    .expect("the other thread finishes");
    assert_eq!(here.trace_hash, there.trace_hash);
    assert_eq!(here.violations, there.violations);
    assert_eq!(here.events, there.events);
}

/// Groups add member ids, generations and coordinator failover: still one run per seed.
#[test]
fn group_runs_are_deterministic() {
    let scenario = scenario("group-coordinator-faults.toml");
    let seeds: Vec<u64> = (0..8).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: true };
    let (runs, mismatches) = run_batch(&scenario, &seeds, &options, |_| {});
    assert_eq!(runs.len(), 8);
    assert!(mismatches.is_empty(), "nondeterministic seeds: {mismatches:?}");
}
