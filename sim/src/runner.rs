//! The runner: a fresh madsim runtime per seed, seeds in parallel on OS threads
//! (one runtime each), a simulated-time limit per run and a wall-clock watchdog.
//! A panic inside a run is a `panic` finding with its seed; the batch goes on.

use crate::check::{check_all_hashing, CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody, OpType};
use crate::faults::nemesis::AppliedFaults;
use crate::scenario::Scenario;
use crate::simulate::simulate;
use crate::trace::trace_hash_after;
use kafsim_model::hash::StableHasher;
use serde::Serialize;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Violation,
    Panic,
    Timeout,
}

/// One seed's result, in the JSON shape of DESIGN §3.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub outcome: Outcome,
    pub violations: Vec<Violation>,
    #[serde(serialize_with = "hex")]
    pub trace_hash: u64,
    pub sim_ms: u64,
    pub events: usize,
    /// The fault mix a `--swarm` run drew from its seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::scenario::SwarmMix>,
    #[serde(skip)]
    pub messages: u64,
    #[serde(skip)]
    pub wall: Duration,
}

fn hex<S: serde::Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{value:016x}"))
}

impl RunResult {
    pub fn kinds(&self) -> Vec<CheckerKind> {
        let mut kinds: Vec<CheckerKind> = self.violations.iter().map(|violation| violation.kind).collect();
        kinds.dedup();
        kinds
    }
}

/// Everything a run produced, for replay and reports.
pub struct RunDetail {
    pub result: RunResult,
    pub history: History,
    pub final_state: Option<FinalState>,
    /// The faults applied, as a schedule that replays them (after a panic, those
    /// applied until then; a fault still in effect has no duration).
    pub faults: Vec<crate::scenario::ScheduledFault>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs one seed, in swarm mode (its own fault mix, drawn from the seed) or not.
pub fn run_seed_in_mode(scenario: &Arc<Scenario>, seed: u64, swarm: bool) -> RunDetail {
    if swarm {
        run_seed(&crate::faults::swarm::scenario_for(scenario, seed), seed)
    } else {
        run_seed(scenario, seed)
    }
}

/// Runs one seed to the end, on this thread. Never inlined, so that a profiler
/// can collect a seed's cost apart from the batch around it.
#[inline(never)]
pub fn run_seed(scenario: &Arc<Scenario>, seed: u64) -> RunDetail {
    let started = std::time::Instant::now();
    let messages = scenario.producers.iter().map(|producer| u64::from(producer.count).saturating_mul(producer.messages)).sum();
    let history = Arc::new(Mutex::new(History::with_room_for(messages)));
    let applied = AppliedFaults::default();
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(scenario.time_limit);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (sim_history, sim_applied) = (history.clone(), applied.clone());
        let scenario = scenario.clone();
        runtime.block_on(async move { simulate(scenario, sim_history, sim_applied).await })
    }));
    drop(runtime);
    let mut history = std::mem::take(&mut *history.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let last_op_time = history.ops.last().map(|op| op.time).unwrap_or(0);
    let faults = std::mem::take(&mut *applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let (final_state, messages, sim_micros) = match outcome {
        Ok(result) => (Some(result.final_state), result.messages, result.sim_micros),
        Err(payload) => {
            let message = panic_message(&*payload);
            let time = last_op_time;
            let body = if message.contains("time limit exceeded") { OpBody::Timeout { message } } else { OpBody::Panic { message } };
            history.push(time, &"runner".into(), OpType::Info, body);
            (None, 0, time)
        }
    };
    let sim_ms = sim_micros / 1000;
    // The checkers' pass over the history also hashes it for the trace hash.
    let mut ops_hasher = StableHasher::default();
    let violations = match &final_state {
        Some(final_state) => check_all_hashing(&history, final_state, &mut ops_hasher),
        None => check_all_hashing(&history, &FinalState::default(), &mut ops_hasher)
            .into_iter()
            .filter(|violation| matches!(violation.kind, CheckerKind::Panic | CheckerKind::Timeout))
            .collect(),
    };
    let outcome = if violations.iter().any(|violation| violation.kind == CheckerKind::Panic) {
        Outcome::Panic
    } else if violations.iter().any(|violation| violation.kind == CheckerKind::Timeout) {
        Outcome::Timeout
    } else if violations.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Violation
    };
    let result = RunResult {
        seed,
        outcome,
        trace_hash: trace_hash_after(ops_hasher, final_state.as_ref()),
        sim_ms,
        events: history.ops.len(),
        violations,
        swarm: scenario.faults.swarm.clone(),
        messages,
        wall: started.elapsed(),
    };
    RunDetail { result, history, final_state, faults }
}

/// A seed whose run outlived the watchdog: reported, and its thread abandoned.
fn watchdog_result(seed: u64, limit: Duration) -> RunResult {
    let detail = format!("wall-clock watchdog: the run took longer than {}s", limit.as_secs());
    RunResult {
        seed,
        outcome: Outcome::Timeout,
        violations: vec![Violation::new(CheckerKind::Timeout, detail)],
        trace_hash: 0,
        sim_ms: 0,
        events: 0,
        swarm: None,
        messages: 0,
        wall: limit,
    }
}

/// The seed index a worker is running, and since when.
type WorkerSlot = Option<(usize, std::time::Instant)>;

pub struct BatchOptions {
    pub jobs: usize,
    pub watchdog: Duration,
    pub check_determinism: bool,
}

/// A seed whose two runs gave different trace hashes.
#[derive(Clone, Debug)]
pub struct Nondeterminism {
    pub seed: u64,
    pub first: u64,
    pub second: u64,
}

/// Runs `seeds` on `jobs` threads; `on_done` is called (on this thread) as each
/// finishes. Results come back sorted by seed.
pub fn run_batch(
    scenario: &Arc<Scenario>,
    seeds: &[u64],
    options: &BatchOptions,
    on_done: impl FnMut(&RunResult),
) -> (Vec<RunResult>, Vec<Nondeterminism>) {
    run_batch_in_mode(scenario, seeds, options, false, on_done)
}

/// `run_batch`, where with `swarm` each seed runs its own fault mix (`crate::faults::swarm`).
pub fn run_batch_in_mode(
    scenario: &Arc<Scenario>,
    seeds: &[u64],
    options: &BatchOptions,
    swarm: bool,
    mut on_done: impl FnMut(&RunResult),
) -> (Vec<RunResult>, Vec<Nondeterminism>) {
    let next = Arc::new(AtomicUsize::new(0));
    let seeds: Arc<Vec<u64>> = Arc::new(seeds.to_vec());
    let (sender, receiver) = mpsc::channel::<(usize, RunResult, Option<Nondeterminism>)>();
    // Which seed index each worker runs and since when, for the watchdog.
    let running: Arc<Mutex<Vec<WorkerSlot>>> = Arc::new(Mutex::new(Vec::new()));
    let spawn_worker = |slot: usize| {
        let (next, seeds, sender, running, scenario) = (next.clone(), seeds.clone(), sender.clone(), running.clone(), scenario.clone());
        let check = options.check_determinism;
        std::thread::Builder::new()
            .name(format!("kafsim-worker-{slot}"))
            .stack_size(64 << 20)
            .spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= seeds.len() {
                    return;
                }
                running.lock().expect("running lock")[slot] = Some((index, std::time::Instant::now()));
                let seed = seeds[index];
                let first = run_seed_in_mode(&scenario, seed, swarm).result;
                let mismatch = check.then(|| run_seed_in_mode(&scenario, seed, swarm).result).and_then(|second| {
                    (second.trace_hash != first.trace_hash).then_some(Nondeterminism { seed, first: first.trace_hash, second: second.trace_hash })
                });
                {
                    let mut running = running.lock().expect("running lock");
                    if running[slot].map(|(current, _)| current) != Some(index) {
                        // The watchdog gave up on this worker; its result is no longer wanted.
                        return;
                    }
                    running[slot] = None;
                }
                if sender.send((index, first, mismatch)).is_err() {
                    return;
                }
            })
            .expect("spawning a worker thread")
    };
    let jobs = options.jobs.max(1).min(seeds.len().max(1));
    for slot in 0..jobs {
        running.lock().expect("running lock").push(None);
        spawn_worker(slot);
    }
    let mut results: Vec<Option<RunResult>> = vec![None; seeds.len()];
    let mut mismatches = Vec::new();
    let mut done = 0;
    while done < seeds.len() {
        match receiver.recv_timeout(Duration::from_millis(250)) {
            Ok((index, result, mismatch)) => {
                on_done(&result);
                mismatches.extend(mismatch);
                results[index] = Some(result);
                done += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let expired: Vec<(usize, usize)> = {
                    let running = running.lock().expect("running lock");
                    running
                        .iter()
                        .enumerate()
                        .filter_map(|(slot, current)| current.filter(|(_, since)| since.elapsed() > options.watchdog).map(|(index, _)| (slot, index)))
                        .collect()
                };
                for (_, index) in &expired {
                    let result = watchdog_result(seeds[*index], options.watchdog);
                    on_done(&result);
                    results[*index] = Some(result);
                    done += 1;
                }
                for (slot, _) in expired {
                    // Abandon the stuck thread and put a fresh worker in its slot.
                    let mut running = running.lock().expect("running lock");
                    running.push(None);
                    let fresh = running.len() - 1;
                    running[slot] = None;
                    drop(running);
                    spawn_worker(fresh);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    (results.into_iter().flatten().collect(), mismatches)
}
