//! Seeds that once caught a real bug, kept as named tests. (Seeds found before
//! the nemesis drew from its own generator no longer replay those runs; their
//! bugs are pinned by unit tests beside the code instead.)

use kafsim::check::CheckerKind;
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;

fn scenario(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

/// The drain declared the run over while a failover was still converging (the
/// new leader's high watermark behind its log end), and the final snapshot read
/// acknowledged records above it as lost.
#[test]
fn default_seed_327_final_state_waits_for_replication_to_settle() {
    let detail = run_seed(&scenario("default.toml"), 327);
    assert!(!detail.result.kinds().contains(&CheckerKind::LostWrite), "{:?}", detail.result.violations);
    let final_state = detail.final_state.expect("the run finished");
    for (partition, snapshot) in &final_state.partitions {
        let leader = snapshot.committed().expect("every partition has a committed replica");
        assert_eq!(leader.high_watermark, leader.log_end_offset, "{partition} settled");
    }
}
