//! Seeds that once caught a real bug, kept as named tests.

use kafsim::check::CheckerKind;
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;

fn scenario(name: &str) -> Arc<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    Arc::new(Scenario::load(&path).expect("the scenario parses"))
}

/// A one-way link let the controller apply an ISR expansion whose answer never
/// came back; the leader gave up on it, fell back to the smaller ISR and
/// acknowledged writes the new member never had, which an election then lost.
/// KIP-497: the leader keeps the maximal ISR and retries until it learns.
#[test]
fn safe_acks_all_seed_1349_alter_partition_answer_lost() {
    let result = run_seed(&scenario("safe-acks-all.toml"), 1349).result;
    assert!(!result.kinds().contains(&CheckerKind::LostWrite), "{:?}", result.violations);
}

/// An idempotent producer's retried batch fell out of the broker's five-batch
/// duplicate window because later batches kept being written past it; the
/// producer then reset its sequence numbers and wrote the batch twice.
#[test]
fn default_seed_1_retry_stays_within_the_duplicate_window() {
    let result = run_seed(&scenario("default.toml"), 1).result;
    assert!(!result.kinds().contains(&CheckerKind::Duplicate), "{:?}", result.violations);
    assert!(!result.kinds().contains(&CheckerKind::NonmonotonicSend), "{:?}", result.violations);
}
