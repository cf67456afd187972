//! The drain: after the heal, the run waits for the workload and for
//! replication to settle before it takes the final snapshot the checkers read.

use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use kafsim_model::{LeaderEpoch, TopicPartition};
use std::path::Path;
use std::sync::Arc;

fn scenario(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

/// A failover still converging at the heal (`leader-crash-at-heal`): the new
/// leader of events/0 starts with its high watermark below its log end, under
/// records the old leader acknowledged. A drain that ended as soon as the
/// producers were done and the consumers had reached the high watermark took
/// the final snapshot then, and read those records as lost (lost-write and
/// committed-data-lost; found as default seed 327).
#[test]
fn the_final_snapshot_waits_for_a_failover_at_the_heal_to_settle() {
    let scenario = scenario("leader-crash-at-heal.toml");
    let events_0 = TopicPartition::new("events", 0);
    for seed in 0..30 {
        let detail = run_seed(&scenario, seed);
        let kinds = detail.result.kinds();
        assert!(!scenario.expect.never.iter().any(|kind| kinds.contains(kind)), "seed {seed}: {:?}", detail.result.violations);
        let final_state = detail.final_state.expect("the run finished");
        assert!(final_state.partitions[&events_0].leader_epoch > LeaderEpoch(0), "seed {seed}: events/0 failed over");
        for (partition, snapshot) in &final_state.partitions {
            let leader = snapshot.committed().expect("every partition has a committed replica");
            assert_eq!(leader.high_watermark, leader.log_end_offset, "seed {seed}: {partition} settled before the snapshot");
        }
    }
}
