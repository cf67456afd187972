//! Reports for failing seeds: the run's history and violations as text and JSON.

use crate::runner::{run_seed, RunDetail};
use crate::scenario::Scenario;
use crate::summary::ScenarioReport;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// Writes one run's report; returns the path of its main file.
pub fn write_run(dir: &Path, scenario: &Scenario, detail: &RunDetail) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("{}-seed-{}", slug(&scenario.name), detail.result.seed));
    let mut text = String::new();
    for op in &detail.history.ops {
        text.push_str(&format!("{op}\n"));
    }
    for violation in &detail.result.violations {
        text.push_str(&format!("violation {}: {}\n", violation.kind, violation.detail));
    }
    text.push_str(&format!("trace-hash: {:016x}\n", detail.result.trace_hash));
    let path = base.with_extension("txt");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Replays and writes a report for every seed that broke an expectation.
pub fn write_failing(dir: &Path, scenario: &Arc<Scenario>, report: &ScenarioReport) -> std::io::Result<()> {
    let unexpected = report.unexpected();
    for run in report.runs.iter().filter(|run| run.kinds().iter().any(|kind| unexpected.contains(kind))).take(20) {
        let detail = run_seed(scenario, run.seed);
        write_run(dir, scenario, &detail)?;
    }
    Ok(())
}
