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

/// Batches answered after the producer decided to take a new id went back to
/// the front of the queue one by one, reversing their order, so the new
/// sequence numbers (and offsets) ran against send order.
#[test]
fn safe_acks_all_seed_1163_retried_batches_keep_their_order() {
    let result = run_seed(&scenario("safe-acks-all.toml"), 1163).result;
    assert!(!result.kinds().contains(&CheckerKind::NonmonotonicSend), "{:?}", result.violations);
}

/// After a new producer id, a batch whose first try may have been written was
/// sent again under the new id, which the broker cannot recognise as a retry.
#[test]
fn safe_acks_all_seed_1505_unresolved_batches_are_not_resent_under_a_new_id() {
    let result = run_seed(&scenario("safe-acks-all.toml"), 1505).result;
    assert!(!result.kinds().contains(&CheckerKind::Duplicate), "{:?}", result.violations);
}

/// A producer that first heard metadata from a broker which knew no topic yet
/// waited for the five-minute metadata refresh and sent nothing.
#[test]
fn safe_acks_all_seed_883_producer_asks_again_for_a_missing_topic() {
    let result = run_seed(&scenario("safe-acks-all.toml"), 883).result;
    assert!(!result.kinds().contains(&CheckerKind::Liveness), "{:?}", result.violations);
}
