//! The command line of DESIGN §3. Exit codes: 0 every expectation met, 1 an
//! expectation failed, 2 bad input.

use crate::runner::{run_batch_in_mode, run_seed_in_mode, BatchOptions};
use crate::scenario::Scenario;
use crate::summary::{to_json, ScenarioReport};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_SCENARIO: &str = "scenarios/default.toml";
pub const REFERENCE_SCENARIO: &str = "scenarios/reference.toml";

#[derive(Parser)]
#[command(name = "kafsim", version, about = "Kafka semantics under faults, in a deterministic simulator")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run scenarios over many seeds and judge their expectations.
    Run(RunArgs),
    /// Run one seed again, bit for bit, and print its trace.
    Replay(ReplayArgs),
    /// List the scenarios under scenarios/.
    List,
    /// Run configurations x fault classes and write the guarantee matrix.
    Matrix(MatrixArgs),
    /// Minimise a failing seed's faults while the same violation keeps appearing.
    Shrink(ShrinkArgs),
    /// Measure the reference scenario beside a floor of bare madsim nodes (DESIGN §6).
    Bench(BenchArgs),
    /// Merge the --json files of shards (seed ranges run apart) into one summary and verdict.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The shards' --json files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged runs as one --json document to this file ("-" for standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No summary table; only the exit code (and --json) tell the verdict.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// Scenario files (default: scenarios/default.toml).
    pub scenarios: Vec<PathBuf>,
    /// How many seeds, from 0 (default: the scenario's `seeds`).
    #[arg(long, conflicts_with_all = ["seed", "seed_range"])]
    pub seeds: Option<u64>,
    /// Exactly one seed.
    #[arg(long, conflicts_with = "seed_range")]
    pub seed: Option<u64>,
    /// A half-open range of seeds, A..B, to split work across machines.
    #[arg(long, value_parser = parse_seed_range)]
    pub seed_range: Option<(u64, u64)>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write every run as JSON to this file ("-" for standard output; the summary then goes to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a report for each failing seed under this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Run each seed twice and fail on any trace-hash difference.
    #[arg(long)]
    pub check_determinism: bool,
    /// Swarm testing: each seed draws its own subset of the fault kinds, interval and max_concurrent.
    #[arg(long)]
    pub swarm: bool,
    /// No progress bar and no summary table.
    #[arg(long)]
    pub quiet: bool,
    /// Wall-clock seconds one run may take before the watchdog reports it.
    #[arg(long, default_value_t = 300)]
    pub watchdog: u64,
}

#[derive(clap::Args)]
pub struct ShrinkArgs {
    pub scenario: PathBuf,
    #[arg(long)]
    pub seed: u64,
    /// Where to write the shrunk scenario (default: print it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The seed failed in swarm mode (`run --swarm`): draw its fault mix first.
    #[arg(long)]
    pub swarm: bool,
}

#[derive(clap::Args)]
pub struct MatrixArgs {
    /// Seeds per cell.
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    #[arg(long, default_value = "reports/guarantees.md")]
    pub out: PathBuf,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    pub scenario: PathBuf,
    #[arg(long)]
    pub seed: u64,
    /// Print every event (operations, faults, elections, truncations) with simulated time and node.
    #[arg(long)]
    pub trace: bool,
    /// Write the run's report under this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Replay a seed of `run --swarm`: its fault mix is drawn from the seed again.
    #[arg(long)]
    pub swarm: bool,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The scenario to measure.
    #[arg(long, default_value = REFERENCE_SCENARIO)]
    pub scenario: PathBuf,
    /// How many seeds, from 0.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "seed_range")]
    pub seeds: u64,
    /// Instead of --seeds: the seeds A, A+1, ..., B-1 (to look at a few heavy or light seeds).
    #[arg(long, value_parser = parse_seed_range)]
    pub seed_range: Option<(u64, u64)>,
    /// Worker threads; each run is single-threaded, so 1 measures one core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    /// Instead of the floor comparison: the per-seed cost as messages and partitions double.
    #[arg(long)]
    pub scaling: bool,
    /// Run the comparison this many times over the same seeds, and print each
    /// round's kafsim/floor ratio and their median, which the machine's changing
    /// load moves less than one run's ratio. The table covers all rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "scaling")]
    pub rounds: u64,
}

fn parse_seed_range(text: &str) -> Result<(u64, u64), String> {
    let (start, end) = text.split_once("..").ok_or_else(|| format!("expected A..B, got {text:?}"))?;
    let start: u64 = start.trim().parse().map_err(|_| format!("expected a seed number before '..', got {start:?}"))?;
    let end: u64 = end.trim().parse().map_err(|_| format!("expected a seed number after '..', got {end:?}"))?;
    if end <= start {
        return Err(format!("the range {start}..{end} holds no seed"));
    }
    Ok((start, end))
}

/// Bad input: the message is printed and the process exits with code 2.
pub struct InputError(pub String);

fn load(path: &Path) -> Result<Arc<Scenario>, InputError> {
    Scenario::load(path).map(Arc::new).map_err(|error| InputError(error.to_string()))
}

pub fn seeds_for(args: &RunArgs, scenario: &Scenario) -> Vec<u64> {
    if let Some(seed) = args.seed {
        vec![seed]
    } else if let Some((start, end)) = args.seed_range {
        (start..end).collect()
    } else {
        (0..args.seeds.unwrap_or(scenario.seeds)).collect()
    }
}

/// The progress bar's message: findings so far, by kind.
fn findings_message(findings: &std::collections::BTreeMap<crate::check::CheckerKind, usize>) -> String {
    if findings.is_empty() {
        return "no findings".to_string();
    }
    let kinds: Vec<String> = findings.iter().map(|(kind, count)| format!("{} {count}", kind.name())).collect();
    format!("findings: {}", kinds.join(", "))
}

fn progress_bar(name: &str, seeds: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seeds as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar.set_message("no findings");
    bar
}

/// Writes a --json document to its file, or to standard output for "-".
fn write_json(path: &Path, text: &str) -> Result<(), InputError> {
    if path == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text).map_err(|error| InputError(format!("--json {}: {error}", path.display())))
}

pub fn run(args: RunArgs) -> Result<i32, InputError> {
    let paths = if args.scenarios.is_empty() { vec![PathBuf::from(DEFAULT_SCENARIO)] } else { args.scenarios.clone() };
    let scenarios = paths.iter().map(|path| load(path)).collect::<Result<Vec<_>, _>>()?;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1));
    let options = BatchOptions { jobs, watchdog: Duration::from_secs(args.watchdog), check_determinism: args.check_determinism };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let mut reports = Vec::new();
    for scenario in &scenarios {
        let seeds = seeds_for(&args, scenario);
        let progress = show_progress.then(|| progress_bar(&scenario.name, seeds.len()));
        let started = std::time::Instant::now();
        let mut findings = std::collections::BTreeMap::new();
        let (runs, nondeterminism) = run_batch_in_mode(scenario, &seeds, &options, args.swarm, |result| {
            if let Some(bar) = &progress {
                if result.outcome != crate::runner::Outcome::Ok {
                    for kind in result.kinds() {
                        *findings.entry(kind).or_insert(0) += 1;
                    }
                    bar.set_message(findings_message(&findings));
                }
                bar.inc(1);
            }
        });
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        let mut report = ScenarioReport::new(scenario, runs, nondeterminism, started.elapsed());
        report.swarm = args.swarm;
        if !args.quiet {
            if json_to_stdout {
                eprint!("{}", report.render());
            } else {
                print!("{}", report.render());
            }
        }
        if let Some(dir) = &args.report {
            crate::report::write_failing(dir, scenario, &report).map_err(|error| InputError(format!("{}: {error}", dir.display())))?;
        }
        reports.push(report);
    }
    if let Some(dir) = &args.report {
        crate::report::write_summary(dir, &reports).map_err(|error| InputError(format!("{}: {error}", dir.display())))?;
    }
    if let Some(path) = &args.json {
        write_json(path, &to_json(&reports))?;
    }
    Ok(if reports.iter().all(ScenarioReport::passed) { 0 } else { 1 })
}

pub fn merge(args: MergeArgs) -> Result<i32, InputError> {
    let reports = crate::merge::merge_files(&args.files).map_err(InputError)?;
    if !args.quiet {
        let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
        for report in &reports {
            let text = report.render();
            if json_to_stdout {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
        }
    }
    if let Some(path) = &args.json {
        write_json(path, &to_json(&reports))?;
    }
    Ok(if reports.iter().all(ScenarioReport::passed) { 0 } else { 1 })
}

pub fn replay(args: ReplayArgs) -> Result<i32, InputError> {
    let scenario = load(&args.scenario)?;
    if args.trace {
        crate::trace::install_trace_subscriber();
    }
    let detail = run_seed_in_mode(&scenario, args.seed, args.swarm);
    if let Some(mix) = &detail.result.swarm {
        println!("{mix}");
    }
    if !args.trace {
        for op in &detail.history.ops {
            println!("{op}");
        }
    }
    if let Some(final_state) = &detail.final_state {
        for (partition, snapshot) in &final_state.partitions {
            let replicas: Vec<String> = snapshot
                .replicas
                .values()
                .map(|replica| format!("broker-{} hw {} leo {}{}", replica.broker, replica.high_watermark, replica.log_end_offset, if replica.is_leader { " (leads)" } else { "" }))
                .collect();
            let leader = snapshot.leader.map_or("none".to_string(), |leader| format!("broker-{leader}"));
            let isr: Vec<String> = snapshot.isr.iter().map(|broker| format!("broker-{broker}")).collect();
            let elr: Vec<String> = snapshot.elr.iter().map(|broker| format!("broker-{broker}")).collect();
            let elr = if elr.is_empty() { String::new() } else { format!(" elr [{}]", elr.join(",")) };
            let last_known_leader = snapshot.last_known_elr.first().map_or(String::new(), |broker| format!(" last known leader broker-{broker}"));
            let transactions = snapshot.committed().map_or(String::new(), |replica| describe_transactions(&replica.transactions));
            println!("final {partition}: leader {leader} epoch {} isr [{}]{elr}{last_known_leader}; {}{transactions}", snapshot.leader_epoch, isr.join(","), replicas.join(", "));
        }
    }
    let result = &detail.result;
    println!("seed: {}  outcome: {:?}  simulated: {}.{:03}s  events: {}", result.seed, result.outcome, result.sim_ms / 1000, result.sim_ms % 1000, result.events);
    for violation in &result.violations {
        println!("violation {}: {}", violation.kind, violation.detail);
    }
    if let Some(dir) = &args.report {
        let path = crate::report::write_run(dir, &scenario, &detail).map_err(|error| InputError(format!("{}: {error}", dir.display())))?;
        println!("report: {}", path.display());
    }
    println!("trace-hash: {:016x}", result.trace_hash);
    let unexpected = result.kinds().iter().any(|kind| {
        scenario.expect.never.contains(kind) || (matches!(kind, crate::check::CheckerKind::Panic | crate::check::CheckerKind::Timeout) && !scenario.expect.finds.contains(kind))
    });
    Ok(if unexpected { 1 } else { 0 })
}

pub fn shrink(args: ShrinkArgs) -> Result<i32, InputError> {
    let scenario = load(&args.scenario)?;
    let scenario = if args.swarm { crate::faults::swarm::scenario_for(&scenario, args.seed) } else { scenario };
    let shrunk = match crate::shrink::shrink(&scenario, args.seed, |note| eprintln!("shrink: {note}")) {
        Ok(shrunk) => shrunk,
        Err(reason) => {
            eprintln!("shrink: {reason}");
            return Ok(1);
        }
    };
    eprintln!("shrink: {} of {} faults still show {} ({} runs)", shrunk.minimal.len(), shrunk.original.len(), shrunk.kind, shrunk.runs);
    eprintln!("shrink: before: {}", shrunk.before);
    eprintln!("shrink: after:  {}", shrunk.after);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &shrunk.toml).map_err(|error| InputError(format!("{}: {error}", path.display())))?;
            eprintln!("shrink: wrote {}; replay with: kafsim replay {} --seed {} --trace", path.display(), path.display(), args.seed);
        }
        None => print!("{}", shrunk.toml),
    }
    Ok(0)
}

pub fn matrix(args: MatrixArgs) -> Result<i32, InputError> {
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1));
    let rows = crate::matrix::run_matrix(args.seeds, jobs, |cell| eprintln!("matrix: {cell}"));
    let text = crate::matrix::render(&rows, args.seeds);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).map_err(|error| InputError(format!("{}: {error}", parent.display())))?;
    }
    std::fs::write(&args.out, &text).map_err(|error| InputError(format!("{}: {error}", args.out.display())))?;
    print!("{text}");
    Ok(0)
}

pub fn list() -> Result<i32, InputError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir("scenarios")
        .map_err(|error| InputError(format!("scenarios/: {error}")))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        match Scenario::load(&path) {
            Ok(scenario) => println!("{:<40} {}", path.display(), scenario.description),
            Err(error) => println!("{:<40} INVALID: {error}", path.display()),
        }
    }
    Ok(0)
}

pub fn bench(args: BenchArgs) -> Result<i32, InputError> {
    let scenario = load(&args.scenario)?;
    let (first, end) = args.seed_range.unwrap_or((0, args.seeds));
    let seeds: Vec<u64> = (first..end).collect();
    if args.scaling {
        print!("{}", crate::bench::scaling(&scenario, &seeds, args.jobs as usize));
        return Ok(0);
    }
    match crate::bench::bench(&scenario, &seeds, args.jobs as usize, args.rounds as usize) {
        Ok(table) => {
            print!("{table}");
            Ok(0)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(1)
        }
    }
}

pub fn main_with(cli: Cli) -> i32 {
    let result = match cli.command {
        None => run(RunArgs::default()),
        Some(Command::Run(args)) => run(args),
        Some(Command::Replay(args)) => replay(args),
        Some(Command::List) => list(),
        Some(Command::Matrix(args)) => matrix(args),
        Some(Command::Shrink(args)) => shrink(args),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Merge(args)) => merge(args),
    };
    match result {
        Ok(code) => code,
        Err(InputError(message)) => {
            eprintln!("error: {message}");
            2
        }
    }
}

/// The fates of a committed replica's transactional batches, for a replay's
/// final lines: empty where no transaction wrote.
fn describe_transactions(transactions: &[crate::final_state::TransactionalBatch]) -> String {
    use crate::final_state::TransactionFate;
    if transactions.is_empty() {
        return String::new();
    }
    let count = |fate: TransactionFate| transactions.iter().filter(|batch| batch.fate == fate).count();
    let mut text = format!("; transactional batches: {} committed, {} aborted", count(TransactionFate::Committed), count(TransactionFate::Aborted));
    let open: Vec<String> = transactions.iter().filter(|batch| batch.fate == TransactionFate::Open).map(|batch| format!("@{}", batch.first_offset)).collect();
    if !open.is_empty() {
        text.push_str(&format!(", {} open (from {})", open.len(), open.join(" ")));
    }
    text
}
