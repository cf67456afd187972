//! Scaling out: seed ranges run apart, their --json files merged, give the same
//! runs and verdict as one run over all the seeds; bad shard files exit 2.
//! Swarm mode: each seed's fault mix is in its record and replays by seed.

use clap::Parser;
use kafsim::cli::{main_with, Cli};
use kafsim::runner::{run_batch_in_mode, run_seed_in_mode, BatchOptions};
use kafsim::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn scenario_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name).display().to_string()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kafsim-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn kafsim(args: &[&str]) -> i32 {
    main_with(Cli::parse_from(std::iter::once("kafsim").chain(args.iter().copied())))
}

/// (seed, trace hash) of every run in a --json document.
fn runs_of(path: &Path) -> Vec<(u64, String)> {
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the json exists")).expect("the json parses");
    document["scenarios"][0]["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| (run["seed"].as_u64().expect("seed"), run["trace_hash"].as_str().expect("hash").to_string()))
        .collect()
}

#[test]
fn two_seed_ranges_merge_into_the_whole() {
    let scenario = scenario_path("acks1-leader-crash.toml");
    let (a, b, whole, merged) = (temp("a.json"), temp("b.json"), temp("whole.json"), temp("merged.json"));
    let path = |path: &PathBuf| path.display().to_string();
    // acks=1 must find a lost write: shard 0..2 alone may or may not; the merge judges all four seeds.
    kafsim(&["run", &scenario, "--seed-range", "0..2", "--quiet", "--json", &path(&a)]);
    kafsim(&["run", &scenario, "--seed-range", "2..4", "--quiet", "--json", &path(&b)]);
    let whole_code = kafsim(&["run", &scenario, "--seed-range", "0..4", "--quiet", "--json", &path(&whole)]);
    let merged_code = kafsim(&["merge", &path(&a), &path(&b), "--quiet", "--json", &path(&merged)]);
    assert_eq!(runs_of(&a).iter().map(|run| run.0).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(runs_of(&merged), runs_of(&whole), "the merged shards hold the very runs of one whole run");
    assert_eq!(merged_code, whole_code, "the merged verdict is the whole run's");
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&merged).expect("merged json")).expect("parses");
    assert_eq!(document["scenarios"][0]["seeds_run"], 4);
}

#[test]
fn a_merge_of_unreadable_or_foreign_files_exits_2() {
    let missing = temp("missing.json");
    assert_eq!(kafsim(&["merge", &missing.display().to_string()]), 2);
    let foreign = temp("foreign.json");
    std::fs::write(&foreign, "{\"scenarios\": [{\"name\": 3}]}").expect("write");
    assert_eq!(kafsim(&["merge", &foreign.display().to_string()]), 2);
    let error = kafsim::merge::merge_files(&[foreign.clone()]).err().expect("refused");
    assert!(error.contains(&foreign.display().to_string()), "the error names the file: {error}");
}

#[test]
fn a_swarm_seed_records_its_mix_and_replays_it() {
    let path = scenario_path("default.toml");
    let scenario = Arc::new(Scenario::load(Path::new(&path)).expect("the scenario parses"));
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: true };
    let seeds: Vec<u64> = (0..6).collect();
    let (runs, mismatches) = run_batch_in_mode(&scenario, &seeds, &options, true, |_| {});
    assert!(mismatches.is_empty(), "swarm runs are deterministic: {mismatches:?}");
    let mixes: std::collections::BTreeSet<String> = runs.iter().map(|run| format!("{:?}", run.swarm.as_ref().expect("each run records its mix"))).collect();
    assert!(mixes.len() > 1, "seeds draw different mixes");
    let replayed = run_seed_in_mode(&scenario, runs[3].seed, true);
    assert_eq!(replayed.result.trace_hash, runs[3].trace_hash);
    assert_eq!(replayed.result.swarm, runs[3].swarm);
    let first = &replayed.history.ops[0];
    assert!(kafsim::trace::describe(first).contains("swarm mix"), "the mix is the trace's first record: {first}");
    let plain = run_seed_in_mode(&scenario, runs[3].seed, false);
    assert!(plain.result.swarm.is_none());
}
