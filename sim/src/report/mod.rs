//! Reports for failing seeds: the run's history and violations as text, and an
//! HTML page with a timeline (nodes as lanes, faults as bands, operations as marks).

mod faults;
mod html;
mod locate;
mod marks;
mod timeline;

pub use html::{escape, render_page};

use crate::runner::{run_seed, RunDetail};
use crate::scenario::Scenario;
use crate::summary::ScenarioReport;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// The history, then the violations and the trace hash, one line each.
fn render_text(detail: &RunDetail) -> String {
    let mut text = String::new();
    for op in &detail.history.ops {
        text.push_str(&format!("{op}\n"));
    }
    for violation in &detail.result.violations {
        text.push_str(&format!("violation {}: {}\n", violation.kind, violation.detail));
    }
    text.push_str(&format!("trace-hash: {:016x}\n", detail.result.trace_hash));
    text
}

/// Writes one run's report, `<scenario>-seed-<S>.txt` and `.html`; returns the
/// path of the HTML page.
pub fn write_run(dir: &Path, scenario: &Scenario, detail: &RunDetail) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("{}-seed-{}", slug(&scenario.name), detail.result.seed));
    std::fs::write(base.with_extension("txt"), render_text(detail))?;
    let page = base.with_extension("html");
    std::fs::write(&page, render_page(&scenario.name, &scenario.path, detail))?;
    Ok(page)
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

#[cfg(test)]
mod tests;
