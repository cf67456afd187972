//! The guarantee matrix: Kafka configurations (acks x min.insync.replicas x
//! unclean election x flush) against fault classes, each cell run over a number
//! of seeds, saying which guarantees held and, where one broke, the first seed
//! that shows it. Written to `reports/guarantees.md`.
//!
//! A second table covers delivery semantics: a consumer group committing
//! before (at-most-once) or after (at-least-once) processing, or auto-committing,
//! against consumer crashes, coordinator crashes and stalled consumers.
//!
//! Below the broker-configuration rows come producer rows on the safe broker
//! configuration (acks=all, min ISR 2): idempotence off with one or five
//! requests in flight, idempotence on, and transactional producers read by
//! read_committed or read_uncommitted consumers.

use crate::check::CheckerKind;
use crate::runner::{run_batch, BatchOptions, RunResult};
use crate::scenario::Scenario;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The guarantees a cell reports on.
pub const JUDGED: [CheckerKind; 11] = [
    CheckerKind::LostWrite,
    CheckerKind::CommittedDataLost,
    CheckerKind::ReplicaDivergence,
    CheckerKind::InconsistentOffsets,
    CheckerKind::Duplicate,
    CheckerKind::NonmonotonicSend,
    CheckerKind::AbortedRead,
    CheckerKind::TxnAtomicity,
    CheckerKind::ControllerSplitBrain,
    CheckerKind::MetadataDivergence,
    CheckerKind::MetadataRegression,
];

/// How the producers of a row behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerMode {
    /// Kafka's defaults for the row's acks: idempotent exactly when acks=all.
    Default,
    /// Idempotence set explicitly, with this many requests in flight.
    Idempotence { enabled: bool, max_in_flight: u32 },
    /// Transactions of 3 values, a fifth aborted, read with this isolation.
    Transactional { read_committed: bool },
}

#[derive(Clone, Copy, Debug)]
pub struct Configuration {
    pub acks: &'static str,
    pub min_insync_replicas: u32,
    pub unclean: bool,
    /// Flush after every message, or never (Kafka's default).
    pub fsync: bool,
    pub producer: ProducerMode,
}

impl Configuration {
    pub fn label(&self) -> String {
        let mut label = format!(
            "acks={} minISR={} unclean={} flush={}",
            self.acks,
            self.min_insync_replicas,
            if self.unclean { "on" } else { "off" },
            if self.fsync { "every" } else { "never" }
        );
        match self.producer {
            ProducerMode::Default => {}
            ProducerMode::Idempotence { enabled, max_in_flight } => {
                let _ = write!(label, " idempotence={} max.in.flight={max_in_flight}", if enabled { "on" } else { "off" });
            }
            ProducerMode::Transactional { read_committed } => {
                let _ = write!(label, " transactional, {}", if read_committed { "read_committed" } else { "read_uncommitted" });
            }
        }
        label
    }

    fn toml(&self) -> String {
        let flush = if self.fsync { 1 } else { i64::MAX };
        let idempotence = match self.producer {
            ProducerMode::Idempotence { enabled, .. } => enabled,
            _ => self.acks == "all",
        };
        let mut producer_extra = String::new();
        let mut producer_config = String::new();
        let mut consumer_config = String::new();
        let mut cluster_extra = String::new();
        match self.producer {
            ProducerMode::Default => {}
            ProducerMode::Idempotence { max_in_flight, .. } => {
                producer_config = format!("\"max.in.flight.requests.per.connection\" = {max_in_flight}\n\"request.timeout.ms\" = 2000\n");
            }
            ProducerMode::Transactional { read_committed } => {
                producer_extra = "transaction_size = 3\nabort_ratio = 0.2\n".to_string();
                producer_config = "\"transactional.id\" = \"tx\"\n\"transaction.timeout.ms\" = 10000\n\"delivery.timeout.ms\" = 20000\n\"request.timeout.ms\" = 5000\n".to_string();
                let isolation = if read_committed { "read_committed" } else { "read_uncommitted" };
                consumer_config = format!("[consumers.config]\n\"isolation.level\" = \"{isolation}\"\n");
                cluster_extra = "\"transaction.state.log.num.partitions\" = 3\n".to_string();
            }
        }
        format!(
            "[cluster]\nbrokers = 3\n[cluster.config]\n\"min.insync.replicas\" = {}\n\"unclean.leader.election.enable\" = {}\n\"log.flush.interval.messages\" = {}\n\"replica.lag.time.max.ms\" = 10000\n{cluster_extra}\n[[topics]]\nname = \"events\"\npartitions = 3\nreplication_factor = 3\n\n[[producers]]\ncount = 2\ntopic = \"events\"\nmessages = 3000\nrate = 100\nkeys = 16\n{producer_extra}[producers.config]\nacks = \"{}\"\n\"enable.idempotence\" = {}\n{producer_config}\n[[consumers]]\ncount = 1\ntopic = \"events\"\n{consumer_config}",
            self.min_insync_replicas, self.unclean, flush, self.acks, idempotence
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FaultClass {
    pub name: &'static str,
    pub faults: &'static str,
}

/// Random broker crashes and partitions together: what a transaction or a
/// pipeline must survive for its exactly-once verdict to mean anything.
const BROKER_CRASH_AND_PARTITION: FaultClass = FaultClass { name: "broker crash + partition", faults: "[faults]\nkinds = [\"crash\", \"partition\"]\ninterval = \"5s\"\n" };

/// The controller quorum's own faults (KIP-595, 3 controllers): quorum
/// splits and the active controller cut off from the brokers at random, and
/// the active controller losing power, crashing, stalling and being isolated.
const CONTROLLER_QUORUM: FaultClass = FaultClass {
    name: "controller quorum faults",
    faults: "[faults]\nkinds = [\"quorum-split\", \"controller-cutoff\"]\ninterval = \"6s\"\n\
[[faults.schedule]]\nat = \"6s\"\naction = \"power-loss\"\ntarget = \"active-controller\"\nduration = \"3s\"\n\
[[faults.schedule]]\nat = \"14s\"\naction = \"crash\"\ntarget = \"active-controller\"\nduration = \"2s\"\n\
[[faults.schedule]]\nat = \"20s\"\naction = \"pause\"\ntarget = \"active-controller\"\nduration = \"4s\"\n\
[[faults.schedule]]\nat = \"27s\"\naction = \"isolate\"\ntarget = \"active-controller\"\nduration = \"5s\"\n",
};

pub const FAULT_CLASSES: [FaultClass; 6] = [
    FaultClass { name: "single broker crash", faults: "[faults]\nkinds = [\"crash\"]\ninterval = \"5s\"\n" },
    FaultClass {
        name: "leader isolated",
        faults: "[faults]\n[[faults.schedule]]\nat = \"5s\"\naction = \"isolate\"\ntarget = \"leader(events/0)\"\nduration = \"12s\"\n[[faults.schedule]]\nat = \"20s\"\naction = \"isolate\"\ntarget = \"leader(events/1)\"\nduration = \"12s\"\n",
    },
    FaultClass { name: "all replicas lose power", faults: "[faults]\nkinds = [\"replica-power-loss\"]\ninterval = \"8s\"\n" },
    FaultClass {
        name: "minority-side leader",
        faults: "[faults]\n[[faults.schedule]]\nat = \"5s\"\naction = \"partition\"\ntarget = \"leader(events/0)\"\nduration = \"12s\"\n[[faults.schedule]]\nat = \"20s\"\naction = \"partition\"\ntarget = \"leader(events/2)\"\nduration = \"12s\"\n",
    },
    BROKER_CRASH_AND_PARTITION,
    CONTROLLER_QUORUM,
];

pub fn configurations() -> Vec<Configuration> {
    let mut all = Vec::new();
    for acks in ["1", "all"] {
        for min_insync_replicas in [1, 2] {
            for unclean in [false, true] {
                for fsync in [false, true] {
                    all.push(Configuration { acks, min_insync_replicas, unclean, fsync, producer: ProducerMode::Default });
                }
            }
        }
    }
    let producers = [
        ProducerMode::Idempotence { enabled: false, max_in_flight: 1 },
        ProducerMode::Idempotence { enabled: false, max_in_flight: 5 },
        ProducerMode::Idempotence { enabled: true, max_in_flight: 5 },
        ProducerMode::Transactional { read_committed: true },
        ProducerMode::Transactional { read_committed: false },
    ];
    for producer in producers {
        all.push(Configuration { acks: "all", min_insync_replicas: 2, unclean: false, fsync: false, producer });
    }
    all
}

pub fn scenario(configuration: &Configuration, class: &FaultClass) -> Scenario {
    let text = format!(
        "name = \"matrix\"\nduration = \"35s\"\ndrain = \"60s\"\n\n{}\n{}\n[expect]\nnever = []\n",
        configuration.toml(),
        class.faults
    );
    Scenario::parse(&text, Path::new("matrix.toml")).expect("matrix scenarios are generated valid")
}

/// What one cell found: for each judged kind, the number of seeds and the first seed.
pub struct Cell {
    pub found: Vec<(CheckerKind, usize, u64)>,
    pub seeds: usize,
}

fn judge(runs: &[RunResult], judged: &[CheckerKind]) -> Cell {
    let found = judged
        .iter()
        .filter_map(|kind| {
            let showing: Vec<u64> = runs.iter().filter(|run| run.kinds().contains(kind)).map(|run| run.seed).collect();
            showing.first().map(|first| (*kind, showing.len(), *first))
        })
        .collect();
    Cell { found, seeds: runs.len() }
}

/// Both tables of the matrix.
pub struct Matrix {
    pub rows: Vec<(Configuration, Vec<Cell>)>,
    pub delivery: Vec<(DeliveryRow, Vec<Cell>)>,
}

/// The guarantees a delivery cell reports on.
pub const DELIVERY_JUDGED: [CheckerKind; 8] = [
    CheckerKind::EosViolation,
    CheckerKind::AtMostOnce,
    CheckerKind::AtLeastOnce,
    CheckerKind::GroupOverlap,
    CheckerKind::Liveness,
    CheckerKind::Duplicate,
    CheckerKind::LostWrite,
    CheckerKind::TxnAtomicity,
];

/// How a consumer group's application commits.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRow {
    pub delivery: &'static str,
    pub auto_commit: bool,
    /// A consume-transform-produce pipeline (`events` to `copies`) in place of the
    /// consumers: Some(transactional).
    pub pipeline: Option<bool>,
}

impl DeliveryRow {
    pub fn label(&self) -> String {
        if let Some(transactional) = self.pipeline {
            return if transactional { "pipeline, transactional (exactly-once)".to_string() } else { "pipeline, not transactional".to_string() };
        }
        if self.auto_commit {
            format!("{} + enable.auto.commit", self.delivery)
        } else {
            self.delivery.to_string()
        }
    }
}

pub const DELIVERY_ROWS: [DeliveryRow; 5] = [
    DeliveryRow { delivery: "at-most-once", auto_commit: false, pipeline: None },
    DeliveryRow { delivery: "at-least-once", auto_commit: false, pipeline: None },
    DeliveryRow { delivery: "at-least-once", auto_commit: true, pipeline: None },
    DeliveryRow { delivery: "at-least-once", auto_commit: false, pipeline: Some(false) },
    DeliveryRow { delivery: "exactly-once", auto_commit: false, pipeline: Some(true) },
];

/// `g1` lives on `__consumer_offsets` partition 2 of 3 ("g1".hashCode() % 3).
pub const DELIVERY_FAULTS: [FaultClass; 4] = [
    FaultClass { name: "consumer crash", faults: "[faults]\nkinds = [\"client-crash\"]\ninterval = \"4s\"\n" },
    FaultClass {
        name: "coordinator crash",
        faults: "[faults]\n[[faults.schedule]]\nat = \"8s\"\naction = \"crash\"\ntarget = \"leader(__consumer_offsets/2)\"\nduration = \"5s\"\n[[faults.schedule]]\nat = \"22s\"\naction = \"crash\"\ntarget = \"leader(__consumer_offsets/2)\"\nduration = \"5s\"\n",
    },
    FaultClass {
        name: "consumer stall",
        faults: "[faults]\n[[faults.schedule]]\nat = \"8s\"\naction = \"pause\"\ntarget = \"consumer-1\"\nduration = \"10s\"\n[[faults.schedule]]\nat = \"22s\"\naction = \"pause\"\ntarget = \"consumer-2\"\nduration = \"10s\"\n",
    },
    BROKER_CRASH_AND_PARTITION,
];

pub fn delivery_scenario(row: &DeliveryRow, class: &FaultClass) -> Scenario {
    if let Some(transactional) = row.pipeline {
        return pipeline_scenario(transactional, class);
    }
    let text = format!(
        "name = \"matrix-delivery\"\nduration = \"35s\"\ndrain = \"60s\"\n\n[cluster]\nbrokers = 3\n[cluster.config]\n\"min.insync.replicas\" = 2\n\"offsets.topic.num.partitions\" = 3\n\"group.initial.rebalance.delay.ms\" = 500\n\n\
[[topics]]\nname = \"events\"\npartitions = 3\nreplication_factor = 3\n\n[[producers]]\ncount = 2\ntopic = \"events\"\nmessages = 3000\nrate = 100\nkeys = 16\n\n\
[[consumers]]\ncount = 3\ntopic = \"events\"\ngroup = \"g1\"\ndelivery = \"{}\"\n[consumers.config]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000\n\"max.poll.interval.ms\" = 10000\n\"max.poll.records\" = 20\n\"enable.auto.commit\" = {}\n\n{}\n[expect]\nnever = []\n",
        row.delivery, row.auto_commit, class.faults
    );
    Scenario::parse(&text, Path::new("matrix-delivery.toml")).expect("matrix scenarios are generated valid")
}

/// The same cluster and producers, with 3 pipeline members of group `g1` copying
/// `events` to `copies` in place of the consumers. A pipeline that fell behind
/// during the faults needs more than a minute to catch up at 20 records per
/// transaction: the drain gives it two.
fn pipeline_scenario(transactional: bool, class: &FaultClass) -> Scenario {
    let text = format!(
        "name = \"matrix-delivery\"\nduration = \"35s\"\ndrain = \"120s\"\n\n[cluster]\nbrokers = 3\n[cluster.config]\n\"min.insync.replicas\" = 2\n\"offsets.topic.num.partitions\" = 3\n\"transaction.state.log.num.partitions\" = 3\n\"group.initial.rebalance.delay.ms\" = 500\n\n\
[[topics]]\nname = \"events\"\npartitions = 3\nreplication_factor = 3\n\n[[topics]]\nname = \"copies\"\npartitions = 3\nreplication_factor = 3\n\n[[producers]]\ncount = 2\ntopic = \"events\"\nmessages = 3000\nrate = 100\nkeys = 16\n\n\
[[pipelines]]\ncount = 3\nfrom = \"events\"\nto = \"copies\"\ngroup = \"g1\"\ntransactional = {transactional}\n[pipelines.config]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000\n\"max.poll.interval.ms\" = 10000\n\"max.poll.records\" = 20\n\"transaction.timeout.ms\" = 8000\n\"request.timeout.ms\" = 4000\n\n{}\n[expect]\nnever = []\n",
        class.faults.replace("consumer-", "pipeline-")
    );
    Scenario::parse(&text, Path::new("matrix-delivery.toml")).expect("matrix scenarios are generated valid")
}

pub fn run_matrix(seeds: u64, jobs: usize, mut progress: impl FnMut(&str)) -> Matrix {
    let seed_list: Vec<u64> = (0..seeds).collect();
    let options = BatchOptions { jobs, watchdog: Duration::from_secs(300), check_determinism: false };
    let rows = run_configurations(&seed_list, &options, &mut progress);
    let delivery = DELIVERY_ROWS
        .iter()
        .map(|row| {
            let cells = DELIVERY_FAULTS
                .iter()
                .map(|class| {
                    progress(&format!("{} / {}", row.label(), class.name));
                    let scenario = Arc::new(delivery_scenario(row, class));
                    judge(&run_batch(&scenario, &seed_list, &options, |_| {}).0, &DELIVERY_JUDGED)
                })
                .collect();
            (*row, cells)
        })
        .collect();
    Matrix { rows, delivery }
}

fn run_configurations(seeds: &[u64], options: &BatchOptions, progress: &mut impl FnMut(&str)) -> Vec<(Configuration, Vec<Cell>)> {
    configurations()
        .into_iter()
        .map(|configuration| {
            let cells = FAULT_CLASSES
                .iter()
                .map(|class| {
                    progress(&format!("{} / {}", configuration.label(), class.name));
                    let scenario = Arc::new(scenario(&configuration, class));
                    judge(&run_batch(&scenario, seeds, options, |_| {}).0, &JUDGED)
                })
                .collect();
            (configuration, cells)
        })
        .collect()
}

fn render_cells(text: &mut String, cells: &[Cell]) {
    for cell in cells {
        if cell.found.is_empty() {
            let _ = write!(text, " clean |");
        } else {
            let parts: Vec<String> = cell.found.iter().map(|(kind, count, first)| format!("{kind} {count}/{} (seed {first})", cell.seeds)).collect();
            let _ = write!(text, " {} |", parts.join("<br>"));
        }
    }
    let _ = writeln!(text);
}

pub fn render(matrix: &Matrix, seeds: u64) -> String {
    let rows = &matrix.rows;
    let mut text = String::new();
    let _ = writeln!(text, "# Guarantee matrix\n");
    let _ = writeln!(
        text,
        "Generated by `kafsim matrix --seeds {seeds}`. Each cell ran {seeds} seeds of a 35-second fault phase on 3 brokers and a quorum of 3 controllers (KIP-595), \
one topic of 3 partitions with replication factor 3, 2 producers at 100 records/s (idempotent when acks=all, unless the row sets idempotence or transactions) and a consumer. \
A cell lists the guarantees that broke, with the number of seeds that showed it and the first such seed \
(replay it with the scenario `kafsim matrix` builds); `clean` means none of {} broke in any seed.\n",
        JUDGED.iter().map(|kind| format!("`{kind}`")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(text, "Fault classes:\n");
    let _ = writeln!(text, "- **single broker crash**: random process crashes of one broker at a time, the active controller a quarter of the time (the page cache survives).");
    let _ = writeln!(text, "- **leader isolated**: the leader of a partition is cut off from everyone for 12 s, twice.");
    let _ = writeln!(text, "- **all replicas lose power**: every replica of a random partition loses power at once; unflushed writes are gone.");
    let _ = writeln!(text, "- **minority-side leader**: a partition's leader is split from the rest with some of the clients, twice.");
    let _ = writeln!(text, "- **broker crash + partition**: random process crashes of a broker (the active controller a quarter of the time), and random network partitions, every 5 s on average.");
    let _ = writeln!(text, "- **controller quorum faults**: random quorum splits (2|1) and cuts of the active controller from the brokers every 6 s on average, and the active controller loses power, crashes, stalls and is isolated in turn.\n");
    let _ = write!(text, "| configuration |");
    for class in FAULT_CLASSES {
        let _ = write!(text, " {} |", class.name);
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "|---|{}", "---|".repeat(FAULT_CLASSES.len()));
    for (configuration, cells) in rows {
        let _ = write!(text, "| {} |", configuration.label());
        render_cells(&mut text, cells);
    }
    render_delivery(&mut text, &matrix.delivery, seeds);
    text
}

fn render_delivery(text: &mut String, rows: &[(DeliveryRow, Vec<Cell>)], seeds: u64) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(text, "\n## Delivery semantics\n");
    let _ = writeln!(
        text,
        "Each cell ran {seeds} seeds of a 35-second fault phase: the same cluster (acks=all, min ISR 2) and producers, and a group of 3 consumers \
(session 6 s) whose application commits before processing (at-most-once) or after (at-least-once), optionally with auto-commit every 5 s on top; \
the pipeline rows put 3 consume-transform-produce members copying `events` to `copies` in their place, committing offsets after their outputs \
or in one transaction with them (KIP-98, KIP-447). \
`clean` means none of {} broke in any seed.\n",
        DELIVERY_JUDGED.iter().map(|kind| format!("`{kind}`")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(text, "- **consumer crash**: random crashes of a consumer or producer process, restarted after a while.");
    let _ = writeln!(text, "- **coordinator crash**: the broker leading the group's `__consumer_offsets` partition crashes for 5 s, twice.");
    let _ = writeln!(text, "- **consumer stall**: a consumer stalls for 10 s (past its session), twice, and wakes believing it still owns its partitions.");
    let _ = writeln!(text, "- **broker crash + partition**: random process crashes of a broker (the active controller a quarter of the time), and random network partitions, every 5 s on average.\n");
    let _ = write!(text, "| delivery |");
    for class in DELIVERY_FAULTS {
        let _ = write!(text, " {} |", class.name);
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "|---|{}", "---|".repeat(DELIVERY_FAULTS.len()));
    for (row, cells) in rows {
        let _ = write!(text, "| {} |", row.label());
        render_cells(text, cells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivery_cell_builds_a_valid_group_scenario() {
        for row in DELIVERY_ROWS {
            for class in DELIVERY_FAULTS {
                let scenario = delivery_scenario(&row, &class);
                assert!(scenario.uses_groups());
                match row.pipeline {
                    Some(transactional) => assert_eq!(scenario.uses_transactions(), transactional),
                    None => assert_eq!(scenario.consumers[0].config.enable_auto_commit, row.auto_commit),
                }
            }
        }
    }

    #[test]
    fn every_cell_builds_a_valid_scenario() {
        for configuration in configurations() {
            for class in &FAULT_CLASSES {
                let scenario = scenario(&configuration, class);
                let transactional = matches!(configuration.producer, ProducerMode::Transactional { .. });
                assert_eq!(scenario.uses_transactions(), transactional, "{}", configuration.label());
            }
        }
    }
}
