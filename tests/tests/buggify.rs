//! Code-level fault points (`[faults] buggify = true`): they fire, a run with
//! them is still deterministic, and a scenario without the key is untouched.

use kafsim::history::OpBody;
use kafsim::runner::{run_batch, run_seed, BatchOptions};
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn load(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

fn fault_notes(scenario: &Arc<Scenario>, seed: u64) -> Vec<String> {
    run_seed(scenario, seed)
        .history
        .ops
        .iter()
        .filter_map(|op| match &op.body {
            OpBody::Fault { description } if description.starts_with("buggify") => Some(description.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_fault_points_fire_and_runs_stay_deterministic() {
    let scenario = load("buggify.toml");
    assert!(scenario.faults.buggify);
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: true };
    let seeds: Vec<u64> = (0..4).collect();
    let (_, mismatches) = run_batch(&scenario, &seeds, &options, |_| {});
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let mut fired = String::new();
    for seed in seeds {
        let notes = fault_notes(&scenario, seed);
        assert_eq!(notes.len(), 2, "on at the start, a count at the end: {notes:?}");
        fired.push_str(&notes[1]);
    }
    for point in ["slow-flush", "delayed-fetch-response", "lagging-follower"] {
        assert!(fired.contains(point), "{point} fired in none of 4 seeds: {fired}");
    }
}

#[test]
fn without_the_key_nothing_fires_and_the_run_is_the_one_it_was() {
    let buggy = load("buggify.toml");
    let mut plain = (*buggy).clone();
    plain.faults.buggify = false;
    let plain = Arc::new(plain);
    assert!(fault_notes(&plain, 1).is_empty());
    assert_ne!(run_seed(&plain, 1).result.trace_hash, run_seed(&buggy, 1).result.trace_hash);
    // A buggified run earlier on the same thread leaves nothing behind.
    let again = run_seed(&plain, 1).result.trace_hash;
    assert_eq!(again, run_seed(&plain, 1).result.trace_hash);
    assert!(!load("default.toml").faults.buggify, "the key defaults to false");
}
