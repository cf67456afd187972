//! Judging a batch of runs against a scenario's `[expect]`, and the summary
//! table and JSON document (DESIGN §3) that report it.

use crate::check::CheckerKind;
use crate::runner::{Nondeterminism, Outcome, RunResult};
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One scenario's batch, judged.
pub struct ScenarioReport {
    pub scenario_name: String,
    /// The scenario file, for replay commands.
    pub path: PathBuf,
    /// Whether the seeds ran in swarm mode (each its own fault mix).
    pub swarm: bool,
    pub never: Vec<CheckerKind>,
    pub finds: Vec<CheckerKind>,
    pub runs: Vec<RunResult>,
    pub nondeterminism: Vec<Nondeterminism>,
    pub wall: Duration,
}

impl ScenarioReport {
    pub fn new(scenario: &Scenario, runs: Vec<RunResult>, nondeterminism: Vec<Nondeterminism>, wall: Duration) -> ScenarioReport {
        ScenarioReport {
            scenario_name: scenario.name.clone(),
            path: scenario.path.clone(),
            swarm: false,
            never: scenario.expect.never.clone(),
            finds: scenario.expect.finds.clone(),
            runs,
            nondeterminism,
            wall,
        }
    }

    /// Seeds showing each kind, with the first such seed.
    pub fn kinds(&self) -> BTreeMap<CheckerKind, (usize, u64)> {
        let mut kinds: BTreeMap<CheckerKind, (usize, u64)> = BTreeMap::new();
        for run in &self.runs {
            for kind in run.kinds() {
                let entry = kinds.entry(kind).or_insert((0, run.seed));
                entry.0 += 1;
            }
        }
        kinds
    }

    /// Kinds that broke the expectation: a `never` kind that appeared, or a panic
    /// or timeout (always a failure unless the scenario expects to find it).
    pub fn unexpected(&self) -> Vec<CheckerKind> {
        self.kinds()
            .into_keys()
            .filter(|kind| self.never.contains(kind) || (matches!(kind, CheckerKind::Panic | CheckerKind::Timeout) && !self.finds.contains(kind)))
            .collect()
    }

    /// `finds` kinds no seed showed.
    pub fn missing(&self) -> Vec<CheckerKind> {
        let kinds = self.kinds();
        self.finds.iter().copied().filter(|kind| !kinds.contains_key(kind)).collect()
    }

    pub fn passed(&self) -> bool {
        self.unexpected().is_empty() && self.missing().is_empty() && self.nondeterminism.is_empty()
    }

    pub fn first_failing_seed(&self) -> Option<u64> {
        self.runs.iter().find(|run| run.outcome != Outcome::Ok).map(|run| run.seed)
    }

    /// Bug-finding speed: starting from each seed of the batch in turn, how many
    /// seeds it takes until one shows `kind`; the median over starting points
    /// that reach one. None when no seed shows it.
    pub fn median_seeds_to_find(&self, kind: CheckerKind) -> Option<u64> {
        let showing: Vec<usize> = self.runs.iter().enumerate().filter(|(_, run)| run.kinds().contains(&kind)).map(|(index, _)| index).collect();
        let mut distances: Vec<u64> = (0..self.runs.len())
            .filter_map(|start| showing.iter().find(|index| **index >= start).map(|index| (index - start + 1) as u64))
            .collect();
        if distances.is_empty() {
            return None;
        }
        distances.sort_unstable();
        Some(distances[distances.len() / 2])
    }

    /// The command that replays `seed` of this batch with its full trace.
    pub fn replay_command(&self, seed: u64) -> String {
        let swarm = if self.swarm { " --swarm" } else { "" };
        format!("kafsim replay {} --seed {seed}{swarm} --trace", self.path.display())
    }

    pub fn seeds_per_second(&self) -> f64 {
        self.runs.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The summary block printed after a batch.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let ok = self.runs.iter().filter(|run| run.outcome == Outcome::Ok).count();
        text.push_str(&format!(
            "{verdict}  {}  seeds {}  clean {}  {:.1} seeds/s\n",
            self.scenario_name,
            self.runs.len(),
            ok,
            self.seeds_per_second()
        ));
        let kinds = self.kinds();
        if kinds.is_empty() {
            text.push_str("      no violations\n");
        }
        for (kind, (count, first)) in &kinds {
            let found;
            let role = if self.never.contains(kind) {
                "never  (unexpected)"
            } else if self.finds.contains(kind) {
                found = format!("finds  (found; median {} seeds to find)", self.median_seeds_to_find(*kind).unwrap_or(0));
                found.as_str()
            } else if matches!(kind, CheckerKind::Panic | CheckerKind::Timeout) {
                "       (unexpected)"
            } else {
                "       (not judged)"
            };
            text.push_str(&format!("      {:<22} {:>6} seeds  first seed {:<8} {}\n", kind.name(), count, first, role));
            text.push_str(&format!("        replay: {}\n", self.replay_command(*first)));
        }
        for kind in self.missing() {
            text.push_str(&format!("      {:<22} {:>6} seeds  expected to be found, never was\n", kind.name(), 0));
        }
        for mismatch in &self.nondeterminism {
            text.push_str(&format!(
                "      NONDETERMINISM seed {}: trace hash {:016x} then {:016x}\n",
                mismatch.seed, mismatch.first, mismatch.second
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Violation;

    fn run(seed: u64, kinds: &[CheckerKind]) -> RunResult {
        RunResult {
            seed,
            outcome: if kinds.is_empty() { Outcome::Ok } else { Outcome::Violation },
            violations: kinds.iter().map(|kind| Violation::new(*kind, "x")).collect(),
            trace_hash: 0,
            sim_ms: 0,
            events: 0,
            swarm: None,
            messages: 0,
            wall: Duration::ZERO,
        }
    }

    fn report(runs: Vec<RunResult>, never: Vec<CheckerKind>, finds: Vec<CheckerKind>) -> ScenarioReport {
        ScenarioReport {
            scenario_name: "s".into(),
            path: "scenarios/s.toml".into(),
            swarm: false,
            never,
            finds,
            runs,
            nondeterminism: Vec::new(),
            wall: Duration::from_secs(1),
        }
    }

    #[test]
    fn each_kind_comes_with_the_replay_command_of_its_first_seed() {
        let runs = vec![run(0, &[]), run(3, &[CheckerKind::Duplicate]), run(5, &[CheckerKind::LostWrite]), run(9, &[CheckerKind::LostWrite])];
        let mut report = report(runs, vec![CheckerKind::LostWrite], vec![]);
        let text = report.render();
        assert!(text.contains("replay: kafsim replay scenarios/s.toml --seed 5 --trace"), "{text}");
        assert!(text.contains("replay: kafsim replay scenarios/s.toml --seed 3 --trace"), "{text}");
        assert!(!text.contains("--seed 9"), "{text}");
        report.swarm = true;
        assert!(report.render().contains("--seed 5 --swarm --trace"));
    }

    #[test]
    fn the_json_document_round_trips_through_merge() {
        let runs = vec![run(0, &[]), run(1, &[CheckerKind::LostWrite])];
        let json = to_json(&[report(runs, vec![CheckerKind::LostWrite], vec![])]);
        let shards = crate::merge::parse_document(&json, std::path::Path::new("a.json")).expect("the document parses");
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].runs.len(), 2);
        assert!(!shards[0].passed());
        assert_eq!(shards[0].path, std::path::PathBuf::from("scenarios/s.toml"));
    }

    #[test]
    fn a_never_kind_that_appears_fails_and_a_finds_kind_that_does_not_fails() {
        let runs = vec![run(0, &[]), run(1, &[CheckerKind::LostWrite])];
        assert!(!report(runs.clone(), vec![CheckerKind::LostWrite], vec![]).passed());
        assert!(report(runs.clone(), vec![], vec![CheckerKind::LostWrite]).passed());
        assert!(!report(runs, vec![], vec![CheckerKind::Duplicate]).passed());
        assert!(!report(vec![run(0, &[CheckerKind::Panic])], vec![], vec![]).passed(), "a panic always fails");
    }

    #[test]
    fn median_seeds_to_find_counts_from_every_starting_seed() {
        let kinds = [CheckerKind::LostWrite];
        let runs = vec![run(0, &[]), run(1, &[]), run(2, &kinds), run(3, &[]), run(4, &kinds)];
        // From seeds 0..=4 the next finding is 3, 2, 1, 2, 1 seeds away: median 2.
        assert_eq!(report(runs, vec![], vec![]).median_seeds_to_find(CheckerKind::LostWrite), Some(2));
    }
}

#[derive(Serialize)]
struct JsonExpect<'a> {
    never: &'a [CheckerKind],
    finds: &'a [CheckerKind],
}

#[derive(Serialize)]
struct JsonMismatch {
    seed: u64,
    first: String,
    second: String,
}

#[derive(Serialize)]
struct JsonScenario<'a> {
    name: &'a str,
    seeds_run: usize,
    expect: JsonExpect<'a>,
    verdict: &'static str,
    runs: &'a [RunResult],
    /// Beyond DESIGN §3, so that shards merge (`kafsim merge`) into the same
    /// summary: the scenario file, swarm mode, wall time and nondeterminism found.
    path: String,
    swarm: bool,
    wall_ms: u64,
    nondeterminism: Vec<JsonMismatch>,
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    scenarios: Vec<JsonScenario<'a>>,
}

/// The `--json` document of DESIGN §3.
pub fn to_json(reports: &[ScenarioReport]) -> String {
    let scenarios = reports
        .iter()
        .map(|report| JsonScenario {
            name: &report.scenario_name,
            seeds_run: report.runs.len(),
            expect: JsonExpect { never: &report.never, finds: &report.finds },
            verdict: if report.passed() { "pass" } else { "fail" },
            runs: &report.runs,
            path: report.path.display().to_string(),
            swarm: report.swarm,
            wall_ms: report.wall.as_millis() as u64,
            nondeterminism: report
                .nondeterminism
                .iter()
                .map(|mismatch| JsonMismatch { seed: mismatch.seed, first: format!("{:016x}", mismatch.first), second: format!("{:016x}", mismatch.second) })
                .collect(),
        })
        .collect();
    serde_json::to_string_pretty(&JsonDocument { scenarios }).expect("the report serializes")
}
