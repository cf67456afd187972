//! `kafsim shrink` keeps the violation while it drops faults, and the file it
//! writes is a scenario that replays to the same violation.

use kafsim::check::CheckerKind;
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use kafsim::shrink::shrink;
use std::path::Path;
use std::sync::Arc;

#[test]
fn a_lost_write_shrinks_to_fewer_faults_and_the_shrunk_file_replays_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("acks1-leader-crash.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let seed = (0..20)
        .find(|seed| run_seed(&scenario, *seed).result.kinds().contains(&CheckerKind::LostWrite))
        .expect("acks=1 with crashing leaders loses a write within 20 seeds");
    let shrunk = shrink(&scenario, seed, |_| {}).expect("the lost write shrinks");
    assert_eq!(shrunk.kind, CheckerKind::LostWrite);
    assert!(!shrunk.minimal.is_empty() && shrunk.minimal.len() < shrunk.original.len(), "{} of {}", shrunk.minimal.len(), shrunk.original.len());
    let out = std::env::temp_dir().join(format!("kafsim-shrunk-{}.toml", std::process::id()));
    std::fs::write(&out, &shrunk.toml).expect("write the shrunk scenario");
    let replayed = Arc::new(Scenario::load(&out).expect("the shrunk scenario parses"));
    assert!(replayed.faults.kinds.is_empty());
    assert_eq!(replayed.faults.schedule.len(), shrunk.minimal.len());
    assert!(run_seed(&replayed, seed).result.kinds().contains(&CheckerKind::LostWrite));
}

/// The workload shrinks too, and the faults get shorter or later; the file's
/// replay fails every time with the same trace.
#[test]
fn the_workload_and_the_faults_shrink_and_the_file_fails_every_time() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("acks1-leader-crash.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    // Some failing seeds need their whole workload (the fault that matters comes
    // late); most shrink it. The first of those within ten seeds.
    let (seed, shrunk) = (0..10)
        .filter(|seed| !run_seed(&scenario, *seed).result.violations.is_empty())
        .map(|seed| (seed, shrink(&scenario, seed, |_| {}).expect("a failing seed shrinks")))
        .find(|(_, shrunk)| shrunk.after.messages < shrunk.before.messages)
        .expect("a failing seed among the first ten shrinks its workload");
    let (before, after) = (&shrunk.before, &shrunk.after);
    assert!(after.producers <= before.producers && after.partitions <= before.partitions);
    assert!(after.fault_time < before.fault_time, "shorter faults: {before} -> {after}");
    let out = std::env::temp_dir().join(format!("kafsim-shrunk-workload-{}.toml", std::process::id()));
    std::fs::write(&out, &shrunk.toml).expect("write the shrunk scenario");
    let replayed = Arc::new(Scenario::load(&out).expect("the shrunk scenario parses"));
    let first = run_seed(&replayed, seed).result;
    let second = run_seed(&replayed, seed).result;
    assert!(first.kinds().contains(&shrunk.kind) && second.kinds().contains(&shrunk.kind));
    assert_eq!(first.trace_hash, second.trace_hash);
    let messages: u64 = replayed.producers.iter().map(|block| block.messages * u64::from(block.count)).sum();
    assert_eq!(messages, after.messages, "the file holds the shrunk workload");
}

/// The nemesis draws from its own generator, so a run's random faults replayed
/// as a schedule leave everything else as it was: the very same run.
#[test]
fn random_faults_replayed_as_a_schedule_give_the_same_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("default.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let mut same = 0;
    for seed in 0..10 {
        let random = run_seed(&scenario, seed);
        let mut scripted = (*scenario).clone();
        scripted.faults.kinds.clear();
        scripted.faults.schedule = random.faults.clone();
        let replayed = run_seed(&Arc::new(scripted), seed);
        if replayed.result.trace_hash == random.result.trace_hash {
            same += 1;
        }
    }
    assert!(same >= 9, "only {same} of 10 seeds replayed identically from their schedule");
}
