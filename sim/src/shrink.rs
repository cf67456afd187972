//! `kafsim shrink`: from a failing seed to the few faults that matter.
//!
//! The run's faults, random or scripted, are replayed as a scripted schedule with
//! the same seed; then faults are taken out, in halves and then one by one
//! (a simple delta debugging), keeping every removal after which the same kind
//! of violation still appears. Then the workload shrinks (fewer messages,
//! producers and partitions), more faults are tried out, and each fault left is
//! made shorter, later and aimed at fewer nodes. Every step is kept only if the
//! same kind of violation still appears. The result is the original scenario
//! file with `[faults]` replaced by the minimal schedule and the workload cut
//! down; it is read back and replayed once more before it is handed out, so the
//! file fails on replay every time (a run is a function of file and seed).

use crate::check::CheckerKind;
use crate::runner::run_seed;
use crate::scenario::{Scenario, ScheduledFault, Target};
use std::sync::Arc;
use std::time::Duration;

pub struct Shrunk {
    pub kind: CheckerKind,
    pub original: Vec<ScheduledFault>,
    pub minimal: Vec<ScheduledFault>,
    /// The size of the failing run before and after shrinking.
    pub before: Size,
    pub after: Size,
    pub runs: usize,
    pub toml: String,
}

/// How big a failing run is: what shrinking makes smaller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Size {
    pub faults: usize,
    /// The faults' total duration (until undone, or until the fault phase ends).
    pub fault_time: Duration,
    /// Node names the faults touch, counted once per fault.
    pub nodes_touched: usize,
    pub producers: u32,
    pub messages: u64,
    pub partitions: u32,
}

impl Size {
    pub fn of(scenario: &Scenario) -> Size {
        let faults = &scenario.faults.schedule;
        let fault_time = faults.iter().map(|fault| fault.duration.unwrap_or_else(|| scenario.duration.saturating_sub(fault.at))).sum();
        let nodes_touched = faults
            .iter()
            .map(|fault| match &fault.target {
                Target::Nodes(names) => names.len(),
                Target::Node(_) => 1,
                _ => 0,
            })
            .sum();
        Size {
            faults: faults.len(),
            fault_time,
            nodes_touched,
            producers: scenario.producer_count(),
            messages: scenario.producers.iter().map(|block| block.messages * u64::from(block.count)).sum(),
            partitions: scenario.topics.iter().map(|topic| topic.partitions).sum(),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} faults ({:.1}s of faults, {} node hits), {} producers, {} messages, {} partitions",
            self.faults,
            self.fault_time.as_secs_f64(),
            self.nodes_touched,
            self.producers,
            self.messages,
            self.partitions
        )
    }
}

/// The most runs one shrink may take; each is a whole simulated run.
const RUNS_MAX: usize = 400;

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

fn with_schedule(scenario: &Scenario, faults: &[ScheduledFault]) -> Scenario {
    let mut scripted = scenario.clone();
    scripted.faults.kinds.clear();
    scripted.faults.swarm = None;
    scripted.faults.schedule = faults.to_vec();
    scripted
}

/// Runs candidates, counting, and keeps the ones that still show the violation.
struct Trial<'a> {
    seed: u64,
    kind: CheckerKind,
    runs: usize,
    progress: &'a mut dyn FnMut(&str),
}

impl Trial<'_> {
    fn shows(&mut self, candidate: &Scenario) -> bool {
        if self.runs >= RUNS_MAX {
            return false;
        }
        self.runs += 1;
        run_seed(&Arc::new(candidate.clone()), self.seed).result.kinds().contains(&self.kind)
    }

    /// Tries `candidate`; on success it becomes `current`.
    fn attempt(&mut self, current: &mut Scenario, candidate: Scenario, what: &str) -> bool {
        if candidate == *current || !self.shows(&candidate) {
            return false;
        }
        *current = candidate;
        (self.progress)(&format!("{what}: {}", Size::of(current)));
        true
    }
}

pub fn shrink(scenario: &Arc<Scenario>, seed: u64, mut progress: impl FnMut(&str)) -> Result<Shrunk, String> {
    let original = run_seed(scenario, seed);
    let kinds = original.result.kinds();
    let kind = target_kind(scenario, &kinds).ok_or_else(|| format!("seed {seed} shows no violation: nothing to shrink"))?;
    if original.faults.is_empty() && original.final_state.is_none() {
        return Err(format!("seed {seed} shows {kind} before any fault was applied: there is no schedule to shrink; replay it instead"));
    }
    let all = original.faults.clone();
    progress(&format!("seed {seed} shows {kind} with {} faults; replaying them as a schedule", all.len()));
    let mut trial = Trial { seed, kind, runs: 1, progress: &mut progress };
    let mut current = with_schedule(scenario, &all);
    let before = Size::of(&current);
    if !trial.shows(&current) {
        return Err(format!("seed {seed}: the {} faults replayed as a schedule no longer show {kind}; the random schedule cannot be pinned down for this seed", all.len()));
    }
    drop_faults(&mut trial, &mut current);
    shrink_workload(&mut trial, &mut current);
    // A smaller workload can make more faults unnecessary.
    drop_faults(&mut trial, &mut current);
    refine_faults(&mut trial, &mut current);
    let runs = trial.runs;
    let toml = shrunk_file(scenario, &current, seed, kind)?;
    // The file is what users replay: it must fail, read back as they will read it.
    let written = Scenario::parse(&toml, &scenario.path).map_err(|error| format!("the shrunk scenario does not read back: {error}"))?;
    if !run_seed(&Arc::new(written), seed).result.kinds().contains(&kind) {
        return Err(format!("seed {seed}: the shrunk scenario, read back from its file, no longer shows {kind}"));
    }
    let after = Size::of(&current);
    Ok(Shrunk { kind, original: all, minimal: current.faults.schedule.clone(), before, after, runs: runs + 1, toml })
}

/// Delta debugging over the schedule: drop faults in halves, then one by one.
fn drop_faults(trial: &mut Trial<'_>, current: &mut Scenario) {
    let mut chunk = current.faults.schedule.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < current.faults.schedule.len() {
            let schedule = &current.faults.schedule;
            let end = (start + chunk).min(schedule.len());
            let mut candidate = current.clone();
            candidate.faults.schedule = schedule[..start].iter().chain(&schedule[end..]).cloned().collect();
            if trial.attempt(current, candidate, "fewer faults") {
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
}

/// Fewer messages, then fewer producers, then fewer partitions, each halved
/// (or decremented) while the violation stays.
fn shrink_workload(trial: &mut Trial<'_>, current: &mut Scenario) {
    for block in 0..current.producers.len() {
        while current.producers[block].messages > 1 {
            let mut candidate = current.clone();
            candidate.producers[block].messages = current.producers[block].messages / 2;
            if !trial.attempt(current, candidate, "fewer messages") {
                break;
            }
        }
    }
    for block in 0..current.producers.len() {
        while current.producers[block].count > 1 {
            let candidate = without_last_producer(current, block);
            if !trial.attempt(current, candidate, "fewer producers") {
                break;
            }
        }
    }
    for topic in 0..current.topics.len() {
        while current.topics[topic].partitions > 1 {
            let mut candidate = current.clone();
            candidate.topics[topic].partitions = current.topics[topic].partitions.div_ceil(2);
            if !trial.attempt(current, candidate, "fewer partitions") {
                break;
            }
        }
    }
}

/// The scenario with block `block` one producer smaller. Producers are numbered
/// across blocks, so later producers are renamed; faults that named the removed
/// one lose it from their targets (and go when they name no one else).
fn without_last_producer(scenario: &Scenario, block: usize) -> Scenario {
    let mut smaller = scenario.clone();
    smaller.producers[block].count -= 1;
    let removed: u32 = scenario.producers[..=block].iter().map(|producer| producer.count).sum();
    let rename = |name: &str| -> Option<String> {
        let Some(number) = name.strip_prefix("producer-").and_then(|number| number.parse::<u32>().ok()) else {
            return Some(name.to_string());
        };
        match number.cmp(&removed) {
            std::cmp::Ordering::Less => Some(name.to_string()),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(format!("producer-{}", number - 1)),
        }
    };
    smaller.faults.schedule = scenario
        .faults
        .schedule
        .iter()
        .filter_map(|fault| {
            let target = match &fault.target {
                Target::Node(name) => Target::Node(rename(name)?),
                Target::Nodes(names) => {
                    let names: Vec<String> = names.iter().filter_map(|name| rename(name)).collect();
                    if names.is_empty() {
                        return None;
                    }
                    Target::Nodes(names)
                }
                other => other.clone(),
            };
            Some(ScheduledFault { target, ..fault.clone() })
        })
        .collect();
    smaller
}

/// Each fault shorter, later, and touching fewer nodes, while the violation stays.
fn refine_faults(trial: &mut Trial<'_>, current: &mut Scenario) {
    for index in 0..current.faults.schedule.len() {
        // Shorter: halve how long it lasts (a fault with no end lasts to the heal).
        for _ in 0..4 {
            let fault = &current.faults.schedule[index];
            let lasts = fault.duration.unwrap_or_else(|| current.duration.saturating_sub(fault.at));
            if !fault.action.can_be_undone() || lasts < Duration::from_millis(200) {
                break;
            }
            let mut candidate = current.clone();
            candidate.faults.schedule[index].duration = Some(lasts / 2);
            if !trial.attempt(current, candidate, "a shorter fault") {
                break;
            }
        }
        // Later: halfway to the next fault (or the end of the fault phase), keeping the order.
        for _ in 0..3 {
            let fault = &current.faults.schedule[index];
            let bound = current.faults.schedule.get(index + 1).map_or(current.duration, |next| next.at);
            let later = fault.at + bound.saturating_sub(fault.at) / 2;
            if later.saturating_sub(fault.at) < Duration::from_millis(100) {
                break;
            }
            let mut candidate = current.clone();
            candidate.faults.schedule[index].at = Duration::from_millis(later.as_millis() as u64);
            if !trial.attempt(current, candidate, "a later fault") {
                break;
            }
        }
        // Fewer nodes: drop one name at a time from a group target.
        let mut name_index = 0;
        while let Target::Nodes(names) = &current.faults.schedule[index].target {
            if names.len() <= 1 || name_index >= names.len() {
                break;
            }
            let mut fewer = names.clone();
            fewer.remove(name_index);
            let mut candidate = current.clone();
            candidate.faults.schedule[index].target = Target::Nodes(fewer);
            if !trial.attempt(current, candidate, "a fault touching fewer nodes") {
                name_index += 1;
            }
        }
    }
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

/// The scenario file as the user wrote it, with `[faults]` replaced by the
/// schedule and the workload cut to the shrunk sizes.
fn shrunk_file(original: &Scenario, shrunk: &Scenario, seed: u64, kind: CheckerKind) -> Result<String, String> {
    let path = &original.path;
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut document: toml::Table = text.parse().map_err(|error| format!("{}: {error}", path.display()))?;
    let faults = &shrunk.faults.schedule;
    document.insert("name".into(), format!("{}-seed-{seed}-shrunk", original.name).into());
    let description = format!("{} (shrunk from seed {seed}: {} that still show {kind})", original.description, Size::of(shrunk));
    document.insert("description".into(), description.into());
    let set = |document: &mut toml::Table, list: &str, index: usize, key: &str, value: i64| {
        if let Some(table) = document.get_mut(list).and_then(|blocks| blocks.as_array_mut()).and_then(|blocks| blocks.get_mut(index)).and_then(|block| block.as_table_mut()) {
            table.insert(key.into(), value.into());
        }
    };
    for (index, (before, after)) in original.producers.iter().zip(&shrunk.producers).enumerate() {
        if before.messages != after.messages {
            set(&mut document, "producers", index, "messages", after.messages as i64);
        }
        if before.count != after.count {
            set(&mut document, "producers", index, "count", i64::from(after.count));
        }
    }
    for (index, (before, after)) in original.topics.iter().zip(&shrunk.topics).enumerate() {
        if before.partitions != after.partitions {
            set(&mut document, "topics", index, "partitions", i64::from(after.partitions));
        }
    }
    let mut fault_section = toml::Table::new();
    if shrunk.faults.buggify {
        fault_section.insert("buggify".into(), true.into());
    }
    let schedule: Vec<toml::Value> = faults.iter().map(|fault| toml::Value::Table(fault_table(fault))).collect();
    fault_section.insert("schedule".into(), schedule.into());
    document.insert("faults".into(), fault_section.into());
    let body = toml::to_string(&document).map_err(|error| format!("writing the shrunk scenario: {error}"))?;
    Ok(format!("# kafsim shrink {} --seed {seed}\n# replay: kafsim replay <this file> --seed {seed} --trace\n{body}", path.display()))
}
