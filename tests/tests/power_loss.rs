//! Kafka's default is no fsync: durability comes from replication. A power
//! loss of one replica at a time takes its unflushed writes, and its restart
//! recovers from what reached the disk, truncates its checkpointed high
//! watermark to the surviving log and catches up from the others. Nothing
//! acknowledged may be lost, and every partition serves again. (A recovery
//! that kept the checkpointed high watermark past the surviving log end
//! panics on the LSO <= HW <= LEO invariant in every seed.)

use kafsim::runner::{run_batch, BatchOptions};
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_minority_losing_power_loses_nothing_acknowledged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("minority-power-loss.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let seeds: Vec<u64> = (0..100).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    let runs = run_batch(&scenario, &seeds, &options, |_| {}).0;
    for run in &runs {
        assert!(run.violations.is_empty(), "seed {}: {:?}", run.seed, run.violations);
    }
}
