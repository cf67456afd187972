//! Reports for failing seeds: the run's history and violations as text, and an
//! HTML page with a timeline (nodes as lanes, faults as bands, operations as marks).

mod escape;
mod faults;
mod html;
mod locate;
mod marks;
mod timeline;

pub use escape::escape;
pub use html::{render_page, render_page_described};

use crate::runner::{run_seed_in_mode, RunDetail};
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
    std::fs::write(&page, render_page_described(&scenario.name, &scenario.path, &scenario.description, detail))?;
    Ok(page)
}

/// Replays and writes a report for the first seed of every anomaly kind, and for
/// every seed (up to 20) that broke an expectation.
pub fn write_failing(dir: &Path, scenario: &Arc<Scenario>, report: &ScenarioReport) -> std::io::Result<()> {
    let unexpected = report.unexpected();
    let mut seeds: std::collections::BTreeSet<u64> = report.kinds().values().map(|(_, first)| *first).collect();
    seeds.extend(report.runs.iter().filter(|run| run.kinds().iter().any(|kind| unexpected.contains(kind))).take(20).map(|run| run.seed));
    for run in report.runs.iter().filter(|run| seeds.contains(&run.seed)) {
        let detail = run_seed_in_mode(scenario, run.seed, report.swarm);
        write_run(dir, scenario, &detail)?;
    }
    Ok(())
}

/// The file name `write_run` gives a seed's page.
fn page_name(scenario_name: &str, seed: u64) -> String {
    format!("{}-seed-{seed}.html", slug(scenario_name))
}

/// `DIR/summary.md`: the whole run in Markdown, one section per scenario, each
/// anomaly kind with its first seed, its replay command and a link to its page.
pub fn render_summary(dir: &Path, reports: &[ScenarioReport]) -> String {
    let mut text = String::from("# kafsim run summary\n\n");
    let failed = reports.iter().filter(|report| !report.passed()).count();
    text.push_str(&format!("{} scenarios, {} failed.\n\n", reports.len(), failed));
    text.push_str("| verdict | scenario | seeds | clean | seeds/s |\n|---|---|---:|---:|---:|\n");
    for report in reports {
        let clean = report.runs.iter().filter(|run| run.outcome == crate::runner::Outcome::Ok).count();
        let verdict = if report.passed() { "PASS" } else { "**FAIL**" };
        text.push_str(&format!("| {verdict} | `{}` | {} | {} | {:.1} |\n", report.scenario_name, report.runs.len(), clean, report.seeds_per_second()));
    }
    for report in reports {
        text.push_str(&format!("\n## {}\n\n", report.scenario_name));
        text.push_str(&format!("Scenario file `{}`{}.\n\n", report.path.display(), if report.swarm { ", swarm mode" } else { "" }));
        let kinds = report.kinds();
        let unexpected = report.unexpected();
        if kinds.is_empty() && report.missing().is_empty() {
            text.push_str("No violations.\n");
        } else {
            text.push_str("| anomaly | seeds | first seed | expectation | replay |\n|---|---:|---:|---|---|\n");
            for (kind, (count, first)) in &kinds {
                let expectation = if report.never.contains(kind) {
                    "never: **broken**"
                } else if report.finds.contains(kind) {
                    "finds: met"
                } else if unexpected.contains(kind) {
                    "**unexpected**"
                } else {
                    "not judged"
                };
                let page = page_name(&report.scenario_name, *first);
                let link = if dir.join(&page).exists() { format!(" ([report]({page}))") } else { String::new() };
                text.push_str(&format!("| `{}` | {count} | {first}{link} | {expectation} | `{}` |\n", kind.name(), report.replay_command(*first)));
            }
            for kind in report.missing() {
                text.push_str(&format!("| `{}` | 0 | - | finds: **never found** | |\n", kind.name()));
            }
        }
        for mismatch in &report.nondeterminism {
            text.push_str(&format!("\n**Nondeterminism**: seed {} gave trace hash {:016x}, then {:016x}.\n", mismatch.seed, mismatch.first, mismatch.second));
        }
    }
    text
}

/// Writes `DIR/summary.md`.
pub fn write_summary(dir: &Path, reports: &[ScenarioReport]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("summary.md");
    std::fs::write(&path, render_summary(dir, reports))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
