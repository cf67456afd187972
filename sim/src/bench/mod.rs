//! `kafsim bench` (DESIGN §6): how fast the reference scenario runs, beside a
//! floor measured in the same process.
//!
//! The floor is what the simulator itself costs: for each seed, a fresh madsim
//! runtime with the same seed and the same nodes (names and addresses from the
//! scenario's roster) moves the same total number of messages that the kafsim
//! run of that seed sent, over the same simulated time, by the same means
//! kafsim's network delivers with (madsim's timer hands each message, after a
//! link latency drawn from a seeded generator, to the receiving node's mpsc
//! mailbox, which a driving loop reads), with no connections, no faults and no
//! Kafka logic at all (`floor`). Every node that is not a broker sends to a
//! broker, which echoes. The ratio of kafsim's wall time per message to the
//! floor's is the figure we steer by.
//!
//! Beside it, the madsim-net floor (`madsim_net`) moves the same pings over
//! madsim's own network, as kafsim did before its network modelled TCP
//! connections: kept so that figures can be compared with earlier ones.
//!
//! Wall-clock time is read here, outside the simulated runs, and only to
//! measure them; nothing inside a run sees it.

mod floor;
mod madsim_net;

use crate::context::Roster;
use crate::runner::{run_batch, BatchOptions, Outcome, RunResult};
use crate::scenario::Scenario;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The wall-clock watchdog for one kafsim run, as `kafsim run` sets by default.
const WATCHDOG: Duration = Duration::from_secs(300);

/// Simulated time the echoing nodes get to start (and bind their endpoints) before anyone sends.
const FLOOR_SETTLE: Duration = Duration::from_millis(1);

/// Simulated time a floor run may take beyond its span before madsim stops it:
/// nothing is lost on the floor's fault-free network, so only a bug reaches it.
const FLOOR_SLACK: Duration = Duration::from_secs(10);

/// One seed as measured, for either side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeedCost {
    pub seed: u64,
    pub messages: u64,
    /// History operations the run recorded (none on the floor).
    pub events: u64,
    pub sim: Duration,
    pub wall: Duration,
}

impl SeedCost {
    fn of_run(result: &RunResult) -> SeedCost {
        SeedCost { seed: result.seed, messages: result.messages, events: result.events as u64, sim: Duration::from_millis(result.sim_ms), wall: result.wall }
    }
}

/// One side of the comparison: every seed, and the wall time of the whole phase.
pub struct Phase {
    pub seeds: Vec<SeedCost>,
    pub elapsed: Duration,
}

impl Phase {
    /// Adds a later turn of the same side.
    fn absorb(&mut self, turn: Phase) {
        self.seeds.extend(turn.seeds);
        self.elapsed += turn.elapsed;
    }

    fn seeds_per_second(&self) -> f64 {
        self.seeds.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Simulated seconds per wall second, over the whole phase (all jobs together).
    fn sim_per_wall(&self) -> f64 {
        self.seeds.iter().map(|cost| cost.sim.as_secs_f64()).sum::<f64>() / self.elapsed.as_secs_f64()
    }

    /// Each run is single-threaded, so the sum of the runs' wall times is core time.
    fn wall_total(&self) -> Duration {
        self.seeds.iter().map(|cost| cost.wall).sum()
    }

    fn messages_per_core_second(&self) -> f64 {
        self.seeds.iter().map(|cost| cost.messages).sum::<u64>() as f64 / self.wall_total().as_secs_f64()
    }

    fn events_per_core_second(&self) -> f64 {
        self.seeds.iter().map(|cost| cost.events).sum::<u64>() as f64 / self.wall_total().as_secs_f64()
    }

    fn wall_mean(&self) -> Duration {
        self.wall_total() / self.seeds.len().max(1) as u32
    }

    fn wall_median(&self) -> Duration {
        median(self.seeds.iter().map(|cost| cost.wall).collect())
    }

    fn messages_mean(&self) -> f64 {
        self.seeds.iter().map(|cost| cost.messages).sum::<u64>() as f64 / self.seeds.len().max(1) as f64
    }

    fn sim_mean(&self) -> Duration {
        self.seeds.iter().map(|cost| cost.sim).sum::<Duration>() / self.seeds.len().max(1) as u32
    }
}

/// The middle value; for an even count, the mean of the two middle ones. Zero for none.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let count = values.len();
    match count {
        0 => Duration::ZERO,
        _ if count % 2 == 1 => values[count / 2],
        _ => (values[count / 2 - 1] + values[count / 2]) / 2,
    }
}

/// The peak resident set size in bytes, from the `VmHWM:` line of `/proc/self/status`.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let kibibytes: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kibibytes * 1024)
}

/// Splits `total` into `parts` shares that differ by at most one, larger shares first.
pub fn split_evenly(total: u64, parts: u64) -> Vec<u64> {
    assert!(parts > 0 || total == 0, "messages to send need at least one sender");
    (0..parts).map(|index| total / parts + u64::from(index < total % parts)).collect()
}

/// When the `index`th of `count` sends is due: spread evenly from the start of the span.
pub fn send_offset(span: Duration, index: u64, count: u64) -> Duration {
    assert!(index < count, "send {index} of only {count}");
    Duration::from_nanos((span.as_nanos() * u128::from(index) / u128::from(count)) as u64)
}

/// What one sending node of the floor does: `round_trips` pings that its broker
/// echoes, and `one_way` pings that it does not, to make an odd total exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderPlan {
    pub round_trips: u64,
    pub one_way: u64,
}

/// Shares `messages` among `senders` so that sends plus echoes make exactly `messages`.
pub fn floor_plan(messages: u64, senders: u64) -> Vec<SenderPlan> {
    split_evenly(messages / 2, senders)
        .into_iter()
        .enumerate()
        .map(|(index, round_trips)| SenderPlan { round_trips, one_way: u64::from(index == 0 && messages % 2 == 1) })
        .collect()
}

/// Which floor a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// madsim's timer and a mailbox, as kafsim's network delivers.
    Timer,
    /// madsim's own network, as kafsim delivered before its connections came.
    MadsimNet,
}

/// The floor for one seed of `kafsim`'s run, on this thread. Never inlined, so
/// that a profiler can collect the floor's cost apart from kafsim's.
#[inline(never)]
fn floor_seed(scenario: &Scenario, kafsim: &SeedCost, floor: Floor) -> Result<SeedCost, String> {
    let started = Instant::now();
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(kafsim.seed, madsim::Config::default());
    runtime.set_time_limit(kafsim.sim + FLOOR_SETTLE + FLOOR_SLACK);
    let roster = Roster::for_scenario(scenario);
    let (messages, span) = (kafsim.messages, kafsim.sim);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match floor {
        Floor::Timer => runtime.block_on(floor::simulation(roster, messages, span)),
        Floor::MadsimNet => runtime.block_on(madsim_net::simulation(roster, messages, span)),
    }));
    drop(runtime);
    let wall = started.elapsed();
    let (sim, sent) = outcome.map_err(|_| format!("the floor run of seed {} panicked (a bug in the floor)", kafsim.seed))?;
    if sent != messages {
        return Err(format!("the floor run of seed {} sent {sent} messages where kafsim sent {messages}", kafsim.seed));
    }
    Ok(SeedCost { seed: kafsim.seed, messages: sent, events: 0, sim, wall })
}

/// The floor for every seed, on `jobs` threads; results in seed order.
fn floor_phase(scenario: &Scenario, kafsim: &[SeedCost], jobs: usize, floor: Floor) -> Result<Phase, String> {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<SeedCost, String>>>> = Mutex::new(vec![None; kafsim.len()]);
    std::thread::scope(|scope| {
        for slot in 0..jobs.max(1).min(kafsim.len().max(1)) {
            let (next, results) = (&next, &results);
            std::thread::Builder::new()
                .name(format!("kafsim-floor-{slot}"))
                .stack_size(16 << 20)
                .spawn_scoped(scope, move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cost) = kafsim.get(index) else { return };
                    let measured = floor_seed(scenario, cost, floor);
                    results.lock().expect("results lock")[index] = Some(measured);
                })
                .expect("spawning a floor thread");
        }
    });
    let elapsed = started.elapsed();
    let seeds = results.into_inner().expect("results lock").into_iter().map(|result| result.expect("every seed was run")).collect::<Result<_, _>>()?;
    Ok(Phase { seeds, elapsed })
}

/// kafsim itself, over `seeds` on `jobs` threads.
fn kafsim_phase(scenario: &Arc<Scenario>, seeds: &[u64], jobs: usize) -> (Phase, Vec<Outcome>) {
    let options = BatchOptions { jobs, watchdog: WATCHDOG, check_determinism: false };
    let started = Instant::now();
    let (runs, _) = run_batch(scenario, seeds, &options, |_| {});
    let elapsed = started.elapsed();
    let outcomes = runs.iter().map(|run| run.outcome).collect();
    (Phase { seeds: runs.iter().map(SeedCost::of_run).collect(), elapsed }, outcomes)
}

fn count(outcomes: &[Outcome], wanted: Outcome) -> usize {
    outcomes.iter().filter(|outcome| **outcome == wanted).count()
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn ratio(kafsim: Duration, floor: Duration) -> String {
    if floor.is_zero() {
        "n/a".to_string()
    } else {
        format!("{:.1}x", kafsim.as_secs_f64() / floor.as_secs_f64())
    }
}

/// The table `kafsim bench` prints; its rows are the same on every run, only the numbers change.
pub fn render(path: &str, jobs: usize, kafsim: &Phase, outcomes: &[Outcome], floor: &Phase, madsim_net: &Phase, peak_memory: Option<u64>) -> String {
    let mut out = String::new();
    // One outcome per seed, however many rounds ran them.
    out.push_str(&format!("bench  {path}  seeds {}  jobs {jobs}\n", outcomes.len()));
    out.push_str(&format!(
        "kafsim outcomes: ok {}  with findings (judged or not) {}  panic {}  timeout {}\n\n",
        count(outcomes, Outcome::Ok),
        count(outcomes, Outcome::Violation),
        count(outcomes, Outcome::Panic),
        count(outcomes, Outcome::Timeout)
    ));
    let cells = |value: &dyn Fn(&Phase) -> String| [value(kafsim), value(floor), value(madsim_net)];
    let rows: [(&str, [String; 3]); 9] = [
        ("seeds/s", cells(&|phase| format!("{:.2}", phase.seeds_per_second()))),
        ("simulated s per wall s", cells(&|phase| format!("{:.1}", phase.sim_per_wall()))),
        ("messages per wall s per core", cells(&|phase| format!("{:.0}", phase.messages_per_core_second()))),
        ("history events per wall s per core", [format!("{:.0}", kafsim.events_per_core_second()), "-".to_string(), "-".to_string()]),
        ("wall ms per seed, median", cells(&|phase| milliseconds(phase.wall_median()))),
        ("wall ms per seed, mean", cells(&|phase| milliseconds(phase.wall_mean()))),
        ("messages per seed, mean", cells(&|phase| format!("{:.0}", phase.messages_mean()))),
        ("simulated s per seed, mean", cells(&|phase| format!("{:.1}", phase.sim_mean().as_secs_f64()))),
        ("wall s, whole phase", cells(&|phase| format!("{:.2}", phase.elapsed.as_secs_f64()))),
    ];
    out.push_str(&format!("{:<34} {:>12} {:>12} {:>17}\n", "", "kafsim", "floor", "madsim-net floor"));
    for (label, [kafsim_value, floor_value, madsim_net_value]) in rows {
        out.push_str(&format!("{label:<34} {kafsim_value:>12} {floor_value:>12} {madsim_net_value:>17}\n"));
    }
    let memory = peak_memory.map_or("unavailable".to_string(), mebibytes);
    out.push_str(&format!("{:<34} {:>12}   (VmHWM of the whole process, read at the end)\n", "peak memory", memory));
    // The cost of a simulated network message, kafsim's over the floor's. Both
    // sides move the same messages, so it is also the ratio of mean wall per seed.
    let per_message = per_message_ratio(kafsim, floor);
    if per_message.is_finite() {
        out.push_str(&format!("\nkafsim/floor, wall per network message: {per_message:.2}x"));
    }
    out.push_str(&format!(
        "\nkafsim/floor, wall per seed: {} (mean), {} (median)\n",
        ratio(kafsim.wall_mean(), floor.wall_mean()),
        ratio(kafsim.wall_median(), floor.wall_median())
    ));
    let against_madsim_net = per_message_ratio(kafsim, madsim_net);
    if against_madsim_net.is_finite() {
        out.push_str(&format!("kafsim/madsim-net floor, wall per network message: {against_madsim_net:.2}x (earlier figures' floor)\n"));
    }
    out
}

/// Runs the bench and returns the table, or why the floor could not be measured.
///
/// kafsim and the floor take turns, `jobs` seeds at a time, so that a machine
/// whose load changes during the bench slows both sides alike: the ratio is
/// the figure we steer by, and it should not depend on what else ran.
pub fn bench(scenario: &Arc<Scenario>, seeds: &[u64], jobs: usize, rounds: usize) -> Result<String, String> {
    let mut kafsim = Phase { seeds: Vec::new(), elapsed: Duration::ZERO };
    let mut floor = Phase { seeds: Vec::new(), elapsed: Duration::ZERO };
    let mut madsim_net = Phase { seeds: Vec::new(), elapsed: Duration::ZERO };
    let mut outcomes = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds.max(1) {
        let mut kafsim_round = Phase { seeds: Vec::new(), elapsed: Duration::ZERO };
        let mut floor_round = Phase { seeds: Vec::new(), elapsed: Duration::ZERO };
        for turn in seeds.chunks(jobs.max(1)) {
            let (kafsim_turn, turn_outcomes) = kafsim_phase(scenario, turn, jobs);
            let floor_turn = floor_phase(scenario, &kafsim_turn.seeds, jobs, Floor::Timer)?;
            madsim_net.absorb(floor_phase(scenario, &kafsim_turn.seeds, jobs, Floor::MadsimNet)?);
            kafsim_round.absorb(kafsim_turn);
            floor_round.absorb(floor_turn);
            // Every round runs the same seeds to the same outcomes.
            if round == 0 {
                outcomes.extend(turn_outcomes);
            }
        }
        ratios.push(per_message_ratio(&kafsim_round, &floor_round));
        kafsim.absorb(kafsim_round);
        floor.absorb(floor_round);
    }
    let peak_memory = std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(parse_vm_hwm);
    let mut table = render(&scenario.path.display().to_string(), jobs, &kafsim, &outcomes, &floor, &madsim_net, peak_memory);
    if ratios.len() > 1 {
        let each: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}x")).collect();
        table.push_str(&format!("kafsim/floor, wall per network message, by round: {}; median {:.2}x\n", each.join(" "), median_ratio(ratios)));
    }
    table.push_str(&quorum_comparison(scenario, &kafsim, seeds, jobs));
    Ok(table)
}

/// The same seeds on the other controller quorum size, 3 voters beside 1 (KIP-595):
/// what the quorum's own traffic (fetches, elections, brokers observing the
/// metadata log) costs a run. `kafsim` is the scenario as written, already run.
fn quorum_comparison(scenario: &Arc<Scenario>, kafsim: &Phase, seeds: &[u64], jobs: usize) -> String {
    let mut other = (**scenario).clone();
    other.cluster.controllers = if scenario.cluster.controllers == 1 { 3 } else { 1 };
    let (other_phase, _) = kafsim_phase(&Arc::new(other), seeds, jobs);
    let (one, three) = if scenario.cluster.controllers == 1 { (kafsim, &other_phase) } else { (&other_phase, kafsim) };
    let mut out = format!("\n{:<34} {:>12} {:>12} {:>9}\n", "controller quorum", "1 voter", "3 voters", "3 / 1");
    let median_ms = |phase: &Phase| phase.wall_median().as_secs_f64() * 1000.0;
    out.push_str(&format!("{:<34} {:>12.1} {:>12.1} {:>8.2}x\n", "wall ms per seed, median", median_ms(one), median_ms(three), median_ms(three) / median_ms(one)));
    out.push_str(&format!(
        "{:<34} {:>12.0} {:>12.0} {:>8.2}x\n",
        "messages per seed, mean",
        one.messages_mean(),
        three.messages_mean(),
        three.messages_mean() / one.messages_mean().max(1.0)
    ));
    out
}

/// kafsim's wall time per network message over the floor's. Both sides move the
/// same messages, so it is also the ratio of their mean wall time per seed.
fn per_message_ratio(kafsim: &Phase, floor: &Phase) -> f64 {
    floor.messages_per_core_second() / kafsim.messages_per_core_second()
}

/// The median of the rounds' ratios: a round that the machine's load slowed
/// moves it less than it moves their mean.
fn median_ratio(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    let count = ratios.len();
    match count {
        0 => f64::NAN,
        _ if count % 2 == 1 => ratios[count / 2],
        _ => (ratios[count / 2 - 1] + ratios[count / 2]) / 2.0,
    }
}

/// The scenario with every producer's messages (and rate, so the fault phase
/// stays as long) multiplied by `messages`, and every topic's partitions by `partitions`.
pub fn scaled(scenario: &Scenario, messages: u64, partitions: u32) -> Scenario {
    let mut scaled = scenario.clone();
    for producer in &mut scaled.producers {
        producer.messages *= messages;
        producer.rate *= messages as f64;
    }
    for topic in &mut scaled.topics {
        topic.partitions *= partitions;
    }
    scaled
}

/// `kafsim bench --scaling`: the per-seed cost as messages and partitions double.
/// The same seeds run each variant, so the rows differ only in the workload.
pub fn scaling(scenario: &Arc<Scenario>, seeds: &[u64], jobs: usize) -> String {
    let mut out = format!("scaling  {}  seeds {}  jobs {jobs}\n\n", scenario.path.display(), seeds.len());
    out.push_str(&format!("{:<24} {:>14} {:>16} {:>14} {:>12}\n", "workload", "wall ms/seed", "messages/seed", "us/message", "cost x"));
    let mut base: Option<f64> = None;
    for (label, messages, partitions) in [("as written", 1, 1), ("2x messages", 2, 1), ("4x messages", 4, 1), ("2x partitions", 1, 2), ("4x partitions", 1, 4)] {
        let variant = Arc::new(scaled(scenario, messages, partitions));
        let (phase, _) = kafsim_phase(&variant, seeds, jobs);
        let wall = phase.wall_mean().as_secs_f64() * 1000.0;
        let per_message = wall * 1000.0 / phase.messages_mean().max(1.0);
        let factor = wall / *base.get_or_insert(wall);
        out.push_str(&format!("{label:<24} {wall:>14.1} {:>16.0} {per_message:>14.2} {factor:>11.2}x\n", phase.messages_mean()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_doubles_messages_rate_and_partitions() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/reference.toml");
        let scenario = Scenario::load(&path).expect("the reference scenario loads");
        let doubled = scaled(&scenario, 2, 2);
        assert_eq!(doubled.producers[0].messages, scenario.producers[0].messages * 2);
        assert_eq!(doubled.producers[0].rate, scenario.producers[0].rate * 2.0);
        assert_eq!(doubled.topics[0].partitions, scenario.topics[0].partitions * 2);
        assert_eq!(doubled.duration, scenario.duration);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let millis = |values: &[u64]| values.iter().map(|value| Duration::from_millis(*value)).collect::<Vec<_>>();
        assert_eq!(median(millis(&[])), Duration::ZERO);
        assert_eq!(median(millis(&[7])), Duration::from_millis(7));
        assert_eq!(median(millis(&[9, 1, 5])), Duration::from_millis(5));
        assert_eq!(median(millis(&[4, 1, 3, 2])), Duration::from_micros(2500));
    }

    #[test]
    fn median_ratio_of_odd_and_even_rounds() {
        assert_eq!(median_ratio(vec![2.3, 1.9, 2.0]), 2.0);
        assert_eq!(median_ratio(vec![2.2, 1.8]), 2.0);
        assert_eq!(median_ratio(vec![1.95]), 1.95);
        assert!(median_ratio(Vec::new()).is_nan());
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tkafsim\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(51234 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tkafsim\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t lots kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn shares_differ_by_at_most_one_and_sum_to_the_total() {
        assert_eq!(split_evenly(10, 3), vec![4, 3, 3]);
        assert_eq!(split_evenly(2, 5), vec![1, 1, 0, 0, 0]);
        assert_eq!(split_evenly(0, 0), Vec::<u64>::new());
        for (total, parts) in [(0, 1), (1, 1), (35_001, 5), (99, 7)] {
            let shares = split_evenly(total, parts);
            assert_eq!(shares.iter().sum::<u64>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn the_floor_plan_moves_exactly_the_messages_asked_for() {
        for (messages, senders) in [(0, 5), (1, 5), (2, 5), (35_001, 5), (35_000, 3)] {
            let plans = floor_plan(messages, senders);
            assert_eq!(plans.len() as u64, senders);
            let moved: u64 = plans.iter().map(|plan| 2 * plan.round_trips + plan.one_way).sum();
            assert_eq!(moved, messages, "{messages} messages over {senders} senders");
        }
        assert_eq!(floor_plan(7, 2), vec![SenderPlan { round_trips: 2, one_way: 1 }, SenderPlan { round_trips: 1, one_way: 0 }]);
    }

    #[test]
    fn sends_are_spread_over_the_span() {
        let span = Duration::from_secs(60);
        assert_eq!(send_offset(span, 0, 4), Duration::ZERO);
        assert_eq!(send_offset(span, 1, 4), Duration::from_secs(15));
        assert_eq!(send_offset(span, 3, 4), Duration::from_secs(45));
    }
}
