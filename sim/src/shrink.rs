//! `kafsim shrink`: from a failing seed to the few faults that matter.
//!
//! The run's faults, random or scripted, are replayed as a scripted schedule with
//! the same seed; then faults are taken out, in halves and then one by one
//! (a simple delta debugging), keeping every removal after which the same kind
//! of violation still appears. The result is the original scenario file with
//! `[faults]` replaced by the minimal schedule.

use crate::check::CheckerKind;
use crate::runner::run_seed;
use crate::scenario::{Scenario, ScheduledFault};
use std::sync::Arc;
use std::time::Duration;

pub struct Shrunk {
    pub kind: CheckerKind,
    pub original: Vec<ScheduledFault>,
    pub minimal: Vec<ScheduledFault>,
    pub runs: usize,
    pub toml: String,
}

/// The violation to preserve: one the scenario forbids, or else one it expects
/// to find, or else the first one seen.
fn target_kind(scenario: &Scenario, kinds: &[CheckerKind]) -> Option<CheckerKind> {
    let unexpected = |kind: &&CheckerKind| scenario.expect.never.contains(kind) || matches!(kind, CheckerKind::Panic | CheckerKind::Timeout);
    kinds
        .iter()
        .find(unexpected)
        .or_else(|| kinds.iter().find(|kind| scenario.expect.finds.contains(kind)))
        .or_else(|| kinds.iter().find(|kind| **kind != CheckerKind::Liveness))
        .or(kinds.first())
        .copied()
}

fn with_schedule(scenario: &Scenario, faults: &[ScheduledFault]) -> Arc<Scenario> {
    let mut scripted = scenario.clone();
    scripted.faults.kinds.clear();
    scripted.faults.schedule = faults.to_vec();
    Arc::new(scripted)
}

pub fn shrink(scenario: &Arc<Scenario>, seed: u64, mut progress: impl FnMut(&str)) -> Result<Shrunk, String> {
    let original = run_seed(scenario, seed);
    let kinds = original.result.kinds();
    let kind = target_kind(scenario, &kinds).ok_or_else(|| format!("seed {seed} shows no violation: nothing to shrink"))?;
    if original.faults.is_empty() && original.final_state.is_none() {
        return Err(format!("seed {seed} panicked before its faults could be collected; replay it instead"));
    }
    let mut runs = 1;
    let mut shows = |faults: &[ScheduledFault]| {
        runs += 1;
        run_seed(&with_schedule(scenario, faults), seed).result.kinds().contains(&kind)
    };
    let all = original.faults.clone();
    progress(&format!("seed {seed} shows {kind} with {} faults; replaying them as a schedule", all.len()));
    if !shows(&all) {
        return Err(format!("seed {seed}: the {} faults replayed as a schedule no longer show {kind}; the random schedule cannot be pinned down for this seed", all.len()));
    }
    let mut current = all.clone();
    let mut chunk = current.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < current.len() {
            let end = (start + chunk).min(current.len());
            let candidate: Vec<ScheduledFault> = current[..start].iter().chain(&current[end..]).cloned().collect();
            if shows(&candidate) {
                progress(&format!("{} faults left", candidate.len()));
                current = candidate;
                removed = true;
            } else {
                start = end;
            }
        }
        if !removed {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    let toml = shrunk_file(scenario, seed, kind, &current)?;
    Ok(Shrunk { kind, original: all, minimal: current, runs, toml })
}

/// Microseconds, so the replayed schedule fires at the very instants it did.
fn duration_text(duration: Duration) -> String {
    if duration.subsec_micros().is_multiple_of(1000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}us", duration.as_micros())
    }
}

fn fault_table(fault: &ScheduledFault) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert("at".into(), duration_text(fault.at).into());
    table.insert("action".into(), fault.action.name().into());
    table.insert("target".into(), fault.target.to_string().into());
    if let Some(duration) = fault.duration {
        table.insert("duration".into(), duration_text(duration).into());
    }
    if let Some(rate) = fault.rate {
        table.insert("rate".into(), rate.into());
    }
    if let Some(latency) = fault.latency {
        table.insert("latency".into(), duration_text(latency).into());
    }
    table
}

/// The scenario file as the user wrote it, with `[faults]` replaced by the schedule.
fn shrunk_file(scenario: &Scenario, seed: u64, kind: CheckerKind, faults: &[ScheduledFault]) -> Result<String, String> {
    let text = std::fs::read_to_string(&scenario.path).map_err(|error| format!("{}: {error}", scenario.path.display()))?;
    let mut document: toml::Table = text.parse().map_err(|error| format!("{}: {error}", scenario.path.display()))?;
    document.insert("name".into(), format!("{}-seed-{seed}-shrunk", scenario.name).into());
    let description = format!("{} (shrunk from seed {seed}: the {} faults that still show {kind})", scenario.description, faults.len());
    document.insert("description".into(), description.into());
    let mut fault_section = toml::Table::new();
    let schedule: Vec<toml::Value> = faults.iter().map(|fault| toml::Value::Table(fault_table(fault))).collect();
    fault_section.insert("schedule".into(), schedule.into());
    document.insert("faults".into(), fault_section.into());
    let body = toml::to_string(&document).map_err(|error| format!("writing the shrunk scenario: {error}"))?;
    Ok(format!("# kafsim shrink {} --seed {seed}\n# replay: kafsim replay <this file> --seed {seed} --trace\n{body}", scenario.path.display()))
}
