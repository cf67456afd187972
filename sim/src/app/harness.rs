//! `Harness`: runs an application over seeds inside `cargo test`, against a
//! cluster and faults from a scenario (a file, or TOML text in the test), and
//! judges every seed with the checkers.
//!
//! ```no_run
//! use kafsim::app::Harness;
//! use kafsim::rdkafka::config::ClientConfig;
//! use kafsim::rdkafka::consumer::{CommitMode, StreamConsumer};
//!
//! let report = Harness::from_file("scenarios/app-orders.toml")
//!     .expect("a valid scenario")
//!     .seeds(0..100)
//!     .never(&["at-least-once"])
//!     .run(|ctx| async move {
//!         let consumer: StreamConsumer = ClientConfig::new()
//!             .set("bootstrap.servers", ctx.bootstrap_servers())
//!             .set("group.id", "audit")
//!             .set("enable.auto.commit", "false")
//!             .set("auto.offset.reset", "earliest")
//!             .create()
//!             .expect("a valid configuration");
//!         consumer.subscribe(&["events"]).expect("a known topic");
//!         loop {
//!             let Ok(message) = consumer.recv().await else { continue };
//!             ctx.processed(&message);
//!             let _ = consumer.commit_message(&message, CommitMode::Sync).await;
//!         }
//!     });
//! assert_eq!(report.seeds_run(), 100);
//! ```
//!
//! A seed that breaks an expectation fails the test with the seed, the
//! anomaly in words, and the command that replays it: the same test with
//! `KAFSIM_SEED=<seed>`, which runs that seed alone and prints its history,
//! its violations and its trace hash (and with `KAFSIM_REPORT=<dir>` writes
//! its HTML report there). Same seed, same binary: same trace hash.

use super::context::AppContext;
use super::shared::{AppMain, AppSpec};
use crate::check::CheckerKind;
use crate::runner::{run_batch_in_mode, run_seed_in_mode, BatchOptions, RunResult};
use crate::scenario::{Scenario, ScenarioError};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that replays one seed.
pub const SEED_VARIABLE: &str = "KAFSIM_SEED";
/// With `KAFSIM_SEED`: a directory for the seed's HTML report (its timeline).
pub const REPORT_VARIABLE: &str = "KAFSIM_REPORT";

/// A run of an application over seeds.
pub struct Harness {
    scenario: Scenario,
    seeds: Vec<u64>,
    instances: u32,
    swarm: bool,
    check_determinism: bool,
}

impl Harness {
    /// The cluster, topics, input producers, faults and expectations of a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Harness, ScenarioError> {
        Ok(Harness::new(Scenario::load(path.as_ref())?))
    }

    /// The same, from TOML text (a scenario written in the test itself).
    pub fn from_toml(text: &str) -> Result<Harness, ScenarioError> {
        Ok(Harness::new(Scenario::parse(text, Path::new("<harness>"))?))
    }

    /// A scenario built by hand. Seeds default to the scenario's `seeds`; one instance.
    pub fn new(scenario: Scenario) -> Harness {
        let seeds = (0..scenario.seeds).collect();
        Harness { scenario, seeds, instances: 1, swarm: false, check_determinism: false }
    }

    /// How many processes of the application run side by side (`app-1`, `app-2`, ...).
    pub fn instances(mut self, instances: u32) -> Harness {
        assert!((1..=64).contains(&instances), "instances: expected 1 to 64, got {instances}");
        self.instances = instances;
        self
    }

    pub fn seeds(mut self, seeds: impl IntoIterator<Item = u64>) -> Harness {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// Each seed draws its own fault mix (`kafsim run --swarm`).
    pub fn swarm(mut self, swarm: bool) -> Harness {
        self.swarm = swarm;
        self
    }

    /// Runs every seed twice and fails on any seed whose trace hashes differ.
    pub fn check_determinism(mut self, check: bool) -> Harness {
        self.check_determinism = check;
        self
    }

    /// Anomalies no seed may show, in place of the scenario's `expect.never`.
    pub fn never(mut self, kinds: &[&str]) -> Harness {
        self.scenario.expect.never = checker_kinds(kinds);
        self
    }

    /// Anomalies some seed must show, in place of the scenario's `expect.finds`.
    pub fn finds(mut self, kinds: &[&str]) -> Harness {
        self.scenario.expect.finds = checker_kinds(kinds);
        self
    }

    /// The scenario with `main` as its application.
    fn scenario_with<F, Fut>(&self, main: F) -> Arc<Scenario>
    where
        F: Fn(AppContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let mut scenario = self.scenario.clone();
        let main = AppMain(Arc::new(move |ctx| Box::pin(main(ctx))));
        scenario.app = Some(AppSpec { instances: self.instances, main });
        Arc::new(scenario)
    }

    /// Runs `main` over every seed and returns the report; panics, failing
    /// the test, if an expectation failed. With `KAFSIM_SEED` set, runs that
    /// seed alone and prints its replay.
    pub fn run<F, Fut>(self, main: F) -> HarnessReport
    where
        F: Fn(AppContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let report = self.report(main);
        if let Some(failure) = report.failure() {
            panic!("{failure}");
        }
        report
    }

    /// `run`, without failing: the report says what every seed showed.
    pub fn report<F, Fut>(self, main: F) -> HarnessReport
    where
        F: Fn(AppContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let scenario = self.scenario_with(main);
        if let Some(seed) = replay_seed() {
            return replay(&scenario, seed, self.swarm);
        }
        let jobs = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        let options = BatchOptions { jobs, watchdog: Duration::from_secs(300), check_determinism: self.check_determinism };
        let (results, mismatches) = run_batch_in_mode(&scenario, &self.seeds, &options, self.swarm, |_| {});
        let nondeterministic = mismatches.iter().map(|mismatch| mismatch.seed).collect();
        HarnessReport { scenario, results, swarm: self.swarm, nondeterministic }
    }
}

fn checker_kinds(kinds: &[&str]) -> Vec<CheckerKind> {
    kinds.iter().map(|kind| CheckerKind::from_name(kind).unwrap_or_else(|| panic!("unknown checker {kind:?}; DESIGN §5 lists them"))).collect()
}

/// The seed `KAFSIM_SEED` names, if set. Read here, outside any run.
fn replay_seed() -> Option<u64> {
    let text = std::env::var(SEED_VARIABLE).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text:?}: expected a seed number")))
}

/// Runs one seed and prints its history, violations and trace hash.
fn replay(scenario: &Arc<Scenario>, seed: u64, swarm: bool) -> HarnessReport {
    let detail = run_seed_in_mode(scenario, seed, swarm);
    for op in &detail.history.ops {
        println!("{op}");
    }
    for violation in &detail.result.violations {
        println!("violation {}: {}", violation.kind, violation.detail);
    }
    if let Ok(dir) = std::env::var(REPORT_VARIABLE) {
        match crate::report::write_run(Path::new(&dir), scenario, &detail) {
            Ok(path) => println!("report: {}", path.display()),
            Err(error) => println!("report: {dir}: {error}"),
        }
    }
    println!("trace-hash: {:016x}", detail.result.trace_hash);
    HarnessReport { scenario: scenario.clone(), results: vec![detail.result], swarm, nondeterministic: Vec::new() }
}

/// What a `Harness` run showed.
pub struct HarnessReport {
    scenario: Arc<Scenario>,
    results: Vec<RunResult>,
    swarm: bool,
    nondeterministic: Vec<u64>,
}

impl HarnessReport {
    pub fn seeds_run(&self) -> usize {
        self.results.len()
    }

    /// Every seed's result, by seed.
    pub fn results(&self) -> &[RunResult] {
        &self.results
    }

    /// The seeds whose runs showed `kind`, in order.
    pub fn seeds_with(&self, kind: &str) -> Vec<u64> {
        let kind = CheckerKind::from_name(kind).unwrap_or_else(|| panic!("unknown checker {kind:?}"));
        self.results.iter().filter(|result| result.kinds().contains(&kind)).map(|result| result.seed).collect()
    }

    /// The trace hash of `seed`'s run, if it ran.
    pub fn trace_hash(&self, seed: u64) -> Option<u64> {
        self.results.iter().find(|result| result.seed == seed).map(|result| result.trace_hash)
    }

    /// Why the run failed its expectations, in words, with the replay command; None if it met them.
    pub fn failure(&self) -> Option<String> {
        let expect = &self.scenario.expect;
        let test = std::thread::current().name().unwrap_or("<test name>").to_string();
        let swarm = if self.swarm { " (swarm)" } else { "" };
        if let Some(seed) = self.nondeterministic.first() {
            return Some(format!("kafsim: seed {seed}{swarm} of {} gave two trace hashes: the application did something the seed does not decide (see kafsim::app)", self.scenario.name));
        }
        for result in &self.results {
            let broken = result.violations.iter().find(|violation| expect.never.contains(&violation.kind) || matches!(violation.kind, CheckerKind::Panic | CheckerKind::Timeout) && !expect.finds.contains(&violation.kind));
            if let Some(violation) = broken {
                return Some(format!(
                    "kafsim: seed {}{swarm} of {} shows {}: {}\nreplay it: {SEED_VARIABLE}={} cargo test --release {test} -- --nocapture",
                    result.seed, self.scenario.name, violation.kind, violation.detail, result.seed
                ));
            }
        }
        for kind in &expect.finds {
            if !self.results.iter().any(|result| result.kinds().contains(kind)) {
                return Some(format!("kafsim: no seed of {} ({} seeds run{swarm}) showed {kind}, which the test expects to find", self.scenario.name, self.results.len()));
            }
        }
        None
    }
}
