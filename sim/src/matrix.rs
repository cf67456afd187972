//! The guarantee matrix: Kafka configurations (acks x min.insync.replicas x
//! unclean election x flush) against fault classes, each cell run over a number
//! of seeds, saying which guarantees held and, where one broke, the first seed
//! that shows it. Written to `reports/guarantees.md`.
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
pub const JUDGED: [CheckerKind; 8] = [
    CheckerKind::LostWrite,
    CheckerKind::CommittedDataLost,
    CheckerKind::ReplicaDivergence,
    CheckerKind::InconsistentOffsets,
    CheckerKind::Duplicate,
    CheckerKind::NonmonotonicSend,
    CheckerKind::AbortedRead,
    CheckerKind::TxnAtomicity,
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

pub const FAULT_CLASSES: [FaultClass; 4] = [
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

fn judge(runs: &[RunResult]) -> Cell {
    let found = JUDGED
        .iter()
        .filter_map(|kind| {
            let showing: Vec<u64> = runs.iter().filter(|run| run.kinds().contains(kind)).map(|run| run.seed).collect();
            showing.first().map(|first| (*kind, showing.len(), *first))
        })
        .collect();
    Cell { found, seeds: runs.len() }
}

pub fn run_matrix(seeds: u64, jobs: usize, mut progress: impl FnMut(&str)) -> Vec<(Configuration, Vec<Cell>)> {
    let seeds: Vec<u64> = (0..seeds).collect();
    let options = BatchOptions { jobs, watchdog: Duration::from_secs(300), check_determinism: false };
    configurations()
        .into_iter()
        .map(|configuration| {
            let cells = FAULT_CLASSES
                .iter()
                .map(|class| {
                    progress(&format!("{} / {}", configuration.label(), class.name));
                    let scenario = Arc::new(scenario(&configuration, class));
                    judge(&run_batch(&scenario, &seeds, &options, |_| {}).0)
                })
                .collect();
            (configuration, cells)
        })
        .collect()
}

pub fn render(rows: &[(Configuration, Vec<Cell>)], seeds: u64) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Guarantee matrix\n");
    let _ = writeln!(
        text,
        "Generated by `kafsim matrix --seeds {seeds}`. Each cell ran {seeds} seeds of a 35-second fault phase on 3 brokers, \
one topic of 3 partitions with replication factor 3, 2 producers at 100 records/s (idempotent when acks=all, unless the row sets idempotence or transactions) and a consumer. \
A cell lists the guarantees that broke, with the number of seeds that showed it and the first such seed \
(replay it with the scenario `kafsim matrix` builds); `clean` means none of {} broke in any seed.\n",
        JUDGED.iter().map(|kind| format!("`{kind}`")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(text, "Fault classes:\n");
    let _ = writeln!(text, "- **single broker crash**: random process crashes of one broker or the controller at a time (the page cache survives).");
    let _ = writeln!(text, "- **leader isolated**: the leader of a partition is cut off from everyone for 12 s, twice.");
    let _ = writeln!(text, "- **all replicas lose power**: every replica of a random partition loses power at once; unflushed writes are gone.");
    let _ = writeln!(text, "- **minority-side leader**: a partition's leader is split from the rest with some of the clients, twice.\n");
    let _ = write!(text, "| configuration |");
    for class in FAULT_CLASSES {
        let _ = write!(text, " {} |", class.name);
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "|---|{}", "---|".repeat(FAULT_CLASSES.len()));
    for (configuration, cells) in rows {
        let _ = write!(text, "| {} |", configuration.label());
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
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
