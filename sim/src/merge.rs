//! `kafsim merge`: shard results (`kafsim run --seed-range A..B --json FILE` on
//! many machines) merged into one summary and one verdict.
//!
//! Runs of the same scenario (by name) are pooled and sorted by seed; a seed run
//! by two shards is kept once, and counted as nondeterminism when the two trace
//! hashes differ (the shards ran different binaries or scenario files). Shards
//! of one scenario must agree on its `expect`, or the merge is refused: the
//! verdict would otherwise depend on which shard was read first.

use crate::check::{CheckerKind, Violation};
use crate::runner::{Nondeterminism, Outcome, RunResult};
use crate::summary::ScenarioReport;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize)]
struct ShardDocument {
    scenarios: Vec<ShardScenario>,
}

#[derive(Deserialize)]
struct ShardScenario {
    name: String,
    expect: ShardExpect,
    runs: Vec<ShardRun>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    swarm: bool,
    #[serde(default)]
    wall_ms: u64,
    #[serde(default)]
    nondeterminism: Vec<ShardMismatch>,
}

#[derive(Deserialize)]
struct ShardExpect {
    never: Vec<String>,
    finds: Vec<String>,
}

#[derive(Deserialize)]
struct ShardRun {
    seed: u64,
    outcome: String,
    violations: Vec<ShardViolation>,
    trace_hash: String,
    sim_ms: u64,
    events: usize,
    #[serde(default)]
    swarm: Option<crate::scenario::SwarmMix>,
}

#[derive(Deserialize)]
struct ShardViolation {
    kind: String,
    detail: String,
}

#[derive(Deserialize)]
struct ShardMismatch {
    seed: u64,
    first: String,
    second: String,
}

fn kind(name: &str, file: &Path, at: &str) -> Result<CheckerKind, String> {
    CheckerKind::from_name(name).ok_or_else(|| format!("{}: {at}: unknown anomaly kind {name:?}", file.display()))
}

fn hash(text: &str, file: &Path, at: &str) -> Result<u64, String> {
    u64::from_str_radix(text, 16).map_err(|_| format!("{}: {at}: expected a trace hash of hex digits, got {text:?}", file.display()))
}

fn outcome(text: &str, file: &Path, at: &str) -> Result<Outcome, String> {
    match text {
        "ok" => Ok(Outcome::Ok),
        "violation" => Ok(Outcome::Violation),
        "panic" => Ok(Outcome::Panic),
        "timeout" => Ok(Outcome::Timeout),
        other => Err(format!("{}: {at}: expected outcome ok, violation, panic or timeout, got {other:?}", file.display())),
    }
}

/// Reads one `--json` document (DESIGN §3) back into judged reports.
pub fn parse_document(text: &str, file: &Path) -> Result<Vec<ScenarioReport>, String> {
    let document: ShardDocument =
        serde_json::from_str(text).map_err(|error| format!("{}: not a kafsim --json document ({error})", file.display()))?;
    let mut reports = Vec::new();
    for (index, scenario) in document.scenarios.into_iter().enumerate() {
        let at = format!("scenarios[{index}]");
        let kinds = |names: &[String], key: &str| names.iter().map(|name| kind(name, file, &format!("{at}.expect.{key}"))).collect::<Result<Vec<_>, _>>();
        let never = kinds(&scenario.expect.never, "never")?;
        let finds = kinds(&scenario.expect.finds, "finds")?;
        let mut runs = Vec::with_capacity(scenario.runs.len());
        for (run_index, run) in scenario.runs.into_iter().enumerate() {
            let at = format!("{at}.runs[{run_index}]");
            let violations = run
                .violations
                .into_iter()
                .map(|violation| Ok(Violation::new(kind(&violation.kind, file, &format!("{at}.violations"))?, violation.detail)))
                .collect::<Result<Vec<_>, String>>()?;
            runs.push(RunResult {
                seed: run.seed,
                outcome: outcome(&run.outcome, file, &at)?,
                violations,
                trace_hash: hash(&run.trace_hash, file, &format!("{at}.trace_hash"))?,
                sim_ms: run.sim_ms,
                events: run.events,
                swarm: run.swarm,
                messages: 0,
                wall: Duration::ZERO,
            });
        }
        let nondeterminism = scenario
            .nondeterminism
            .iter()
            .map(|mismatch| {
                let at = format!("{at}.nondeterminism");
                Ok(Nondeterminism { seed: mismatch.seed, first: hash(&mismatch.first, file, &at)?, second: hash(&mismatch.second, file, &at)? })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let path = scenario.path.map_or_else(|| PathBuf::from(format!("scenarios/{}.toml", scenario.name)), PathBuf::from);
        reports.push(ScenarioReport {
            scenario_name: scenario.name,
            path,
            swarm: scenario.swarm,
            never,
            finds,
            runs,
            nondeterminism,
            wall: Duration::from_millis(scenario.wall_ms),
        });
    }
    Ok(reports)
}

/// Reads every file and merges its scenarios; errors name the file.
pub fn merge_files(files: &[PathBuf]) -> Result<Vec<ScenarioReport>, String> {
    let mut shards = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|error| format!("{}: cannot read the file: {error}", file.display()))?;
        shards.push((file.clone(), parse_document(&text, file)?));
    }
    merge(shards)
}

/// Pools the shards' runs per scenario name, in order of first appearance.
pub fn merge(shards: Vec<(PathBuf, Vec<ScenarioReport>)>) -> Result<Vec<ScenarioReport>, String> {
    let mut merged: Vec<(PathBuf, ScenarioReport)> = Vec::new();
    for (file, reports) in shards {
        for report in reports {
            let Some((first_file, into)) = merged.iter_mut().find(|(_, into)| into.scenario_name == report.scenario_name) else {
                merged.push((file.clone(), report));
                continue;
            };
            if into.never != report.never || into.finds != report.finds || into.swarm != report.swarm {
                return Err(format!(
                    "{}: scenario {:?} has a different [expect] or swarm mode than in {}; merge only shards of the same scenario file",
                    file.display(),
                    report.scenario_name,
                    first_file.display()
                ));
            }
            into.runs.extend(report.runs);
            into.nondeterminism.extend(report.nondeterminism);
            into.wall += report.wall;
        }
    }
    Ok(merged.into_iter().map(|(_, report)| deduplicated(report)).collect())
}

/// Sorts runs by seed and keeps each seed once; a seed whose shards disagree on
/// the trace hash is nondeterminism.
fn deduplicated(mut report: ScenarioReport) -> ScenarioReport {
    report.runs.sort_by_key(|run| run.seed);
    let mut kept: BTreeMap<u64, RunResult> = BTreeMap::new();
    for run in std::mem::take(&mut report.runs) {
        match kept.get(&run.seed) {
            None => {
                kept.insert(run.seed, run);
            }
            Some(first) if first.trace_hash != run.trace_hash && run.trace_hash != 0 && first.trace_hash != 0 => {
                report.nondeterminism.push(Nondeterminism { seed: run.seed, first: first.trace_hash, second: run.trace_hash });
            }
            Some(_) => {}
        }
    }
    report.runs = kept.into_values().collect();
    report.nondeterminism.sort_by_key(|mismatch| mismatch.seed);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::to_json;

    fn run(seed: u64, kind: Option<CheckerKind>, hash: u64) -> RunResult {
        RunResult {
            seed,
            outcome: if kind.is_some() { Outcome::Violation } else { Outcome::Ok },
            violations: kind.into_iter().map(|kind| Violation::new(kind, "detail")).collect(),
            trace_hash: hash,
            sim_ms: 1,
            events: 1,
            swarm: None,
            messages: 0,
            wall: Duration::ZERO,
        }
    }

    fn shard(runs: Vec<RunResult>, finds: Vec<CheckerKind>) -> ScenarioReport {
        ScenarioReport {
            scenario_name: "s".into(),
            path: "scenarios/s.toml".into(),
            swarm: false,
            never: vec![CheckerKind::Duplicate],
            finds,
            runs,
            nondeterminism: Vec::new(),
            wall: Duration::from_secs(1),
        }
    }

    fn through_json(report: ScenarioReport, name: &str) -> (PathBuf, Vec<ScenarioReport>) {
        let path = PathBuf::from(name);
        let reports = parse_document(&to_json(&[report]), &path).expect("to_json output parses");
        (path, reports)
    }

    #[test]
    fn a_finds_kind_shown_by_one_shard_only_passes_the_merge() {
        let finds = vec![CheckerKind::LostWrite];
        let a = through_json(shard(vec![run(0, None, 1), run(1, None, 2)], finds.clone()), "a.json");
        let b = through_json(shard(vec![run(3, Some(CheckerKind::LostWrite), 3), run(2, None, 4)], finds.clone()), "b.json");
        assert!(!a.1[0].passed(), "shard a alone misses the lost write");
        let merged = merge(vec![a, b]).expect("the shards merge");
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].runs.iter().map(|run| run.seed).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert!(merged[0].passed());
        assert_eq!(merged[0].wall, Duration::from_secs(2));
    }

    #[test]
    fn a_never_kind_in_any_shard_fails_the_merge() {
        let a = through_json(shard(vec![run(0, None, 1)], vec![]), "a.json");
        let b = through_json(shard(vec![run(1, Some(CheckerKind::Duplicate), 2)], vec![]), "b.json");
        assert!(!merge(vec![a, b]).expect("the shards merge")[0].passed());
    }

    #[test]
    fn one_seed_with_two_hashes_is_nondeterminism() {
        let a = through_json(shard(vec![run(0, None, 1)], vec![]), "a.json");
        let b = through_json(shard(vec![run(0, None, 2)], vec![]), "b.json");
        let merged = merge(vec![a, b]).expect("the shards merge");
        assert_eq!(merged[0].runs.len(), 1);
        assert_eq!(merged[0].nondeterminism.len(), 1);
        assert!(!merged[0].passed());
    }

    #[test]
    fn shards_that_disagree_on_expect_are_refused_naming_the_file() {
        let a = through_json(shard(vec![run(0, None, 1)], vec![]), "a.json");
        let b = through_json(shard(vec![run(1, None, 1)], vec![CheckerKind::LostWrite]), "b.json");
        let error = merge(vec![a, b]).err().expect("refused");
        assert!(error.starts_with("b.json:") && error.contains("a.json"), "{error}");
    }

    #[test]
    fn bad_documents_are_refused_naming_the_file_and_the_place() {
        let path = Path::new("shard.json");
        let error = parse_document("{\"scenarios\": 3}", path).err().expect("refused");
        assert!(error.starts_with("shard.json: not a kafsim --json document"), "{error}");
        let text = to_json(&[shard(vec![run(0, Some(CheckerKind::LostWrite), 1)], vec![])]).replace("lost-write", "lost-wrote");
        let error = parse_document(&text, path).err().expect("refused");
        assert!(error.contains("shard.json") && error.contains("lost-wrote"), "{error}");
    }
}
