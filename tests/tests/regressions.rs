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

/// A transactional pipeline batch straddled a rebalance; its TxnOffsetCommit
/// carried the member's new generation instead of the one it polled in (KIP-447's
/// `consumer.groupMetadata()` at poll time), so the coordinator accepted it after
/// the same member had been sent back to the old committed offset: the batch was
/// written twice in committed output.
#[test]
fn pipeline_exactly_once_seed_4_fences_a_batch_polled_in_an_older_generation() {
    let detail = run_seed(&scenario("pipeline-exactly-once.toml"), 4);
    for kind in [CheckerKind::EosViolation, CheckerKind::Duplicate, CheckerKind::Liveness] {
        assert!(!detail.result.kinds().contains(&kind), "{:?}", detail.result.violations);
    }
}

/// A pipeline whose outputs were all acknowledged sent its offset commit only at
/// its next timer (about a second later), fell behind its producers, and never
/// drained; the pairing of sends by value alone also left invokes open when two
/// members sent the same output.
#[test]
fn pipeline_at_least_once_seed_57_drains() {
    let detail = run_seed(&scenario("pipeline-at-least-once.toml"), 57);
    assert!(!detail.result.kinds().contains(&CheckerKind::Liveness), "{:?}", detail.result.violations);
    let final_state = detail.final_state.expect("the run finished");
    assert!(final_state.pipelines.iter().all(|pipeline| pipeline.drained), "the pipeline drained");
}
