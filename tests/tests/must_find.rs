//! A checker that never fails proves nothing: every unsafe configuration must
//! make its checker fire within a bounded number of seeds, and the safe twin of
//! each must stay clean over the same seeds.

use kafsim::check::CheckerKind;
use kafsim::runner::{run_batch, BatchOptions, RunResult};
use kafsim::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn run(name: &str, seeds: u64) -> Vec<RunResult> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let seeds: Vec<u64> = (0..seeds).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    run_batch(&scenario, &seeds, &options, |_| {}).0
}

fn seeds_showing(runs: &[RunResult], kind: CheckerKind) -> usize {
    runs.iter().filter(|run| run.kinds().contains(&kind)).count()
}

fn assert_finds(name: &str, seeds: u64, kind: CheckerKind) {
    let runs = run(name, seeds);
    assert!(seeds_showing(&runs, kind) > 0, "{name}: no seed of {seeds} showed {kind}");
    assert_eq!(seeds_showing(&runs, CheckerKind::Panic), 0, "{name}: a run panicked");
}

#[test]
fn replication_factor_one_with_acks_1_loses_writes_to_power_loss() {
    assert_finds("rf1-acks1-power-loss.toml", 20, CheckerKind::LostWrite);
}

#[test]
fn acks_1_loses_writes_when_leaders_crash() {
    assert_finds("acks1-leader-crash.toml", 40, CheckerKind::LostWrite);
}

#[test]
fn unclean_election_of_a_lagging_replica_loses_writes() {
    assert_finds("unclean-election.toml", 20, CheckerKind::LostWrite);
}

#[test]
fn no_fsync_and_every_replica_losing_power_loses_writes() {
    assert_finds("replicas-power-loss.toml", 20, CheckerKind::LostWrite);
}

/// KIP-966: the last in-sync replica losing power is elected again with an
/// empty log, unless eligible leader replicas keep the replicas fenced out of
/// the ISR electable and that one, back from an unclean shutdown, is not.
#[test]
fn the_last_replica_losing_power_loses_writes_without_eligible_leader_replicas_and_not_with_them() {
    let without = run("last-replica-power-loss.toml", 30);
    assert!(seeds_showing(&without, CheckerKind::LostWrite) * 10 >= 9 * without.len(), "without ELR the last replica's power loss lost writes in under nine seeds of ten");
    let with = run("last-replica-power-loss-elr.toml", 30);
    for kind in [CheckerKind::LostWrite, CheckerKind::ReplicaDivergence, CheckerKind::Liveness, CheckerKind::Panic] {
        let failing: Vec<u64> = with.iter().filter(|run| run.kinds().contains(&kind)).map(|run| run.seed).collect();
        assert!(failing.is_empty(), "last-replica-power-loss-elr showed {kind} on seeds {failing:?}");
    }
}

#[test]
fn legacy_high_watermark_truncation_diverges_where_epochs_do_not() {
    let legacy = run("legacy-hw-truncation.toml", 150);
    assert!(seeds_showing(&legacy, CheckerKind::ReplicaDivergence) > 0, "legacy truncation never diverged in 150 seeds");
    let epochs = run("epoch-truncation.toml", 150);
    assert_eq!(seeds_showing(&epochs, CheckerKind::ReplicaDivergence), 0, "epoch truncation diverged");
}

#[test]
fn the_safe_configuration_loses_nothing_over_a_hundred_seeds() {
    let runs = run("safe-acks-all.toml", 100);
    for kind in [CheckerKind::LostWrite, CheckerKind::CommittedDataLost, CheckerKind::ReplicaDivergence, CheckerKind::InconsistentOffsets, CheckerKind::Panic] {
        let failing: Vec<u64> = runs.iter().filter(|run| run.kinds().contains(&kind)).map(|run| run.seed).collect();
        assert!(failing.is_empty(), "safe-acks-all showed {kind} on seeds {failing:?}");
    }
}

/// Processing before committing reprocesses after a consumer crash (at-most-once
/// breaks) but never skips (at-least-once holds); committing first is the mirror.
#[test]
fn delivery_modes_break_the_guarantee_they_do_not_promise_and_keep_the_one_they_do() {
    let at_least_once = run("group-at-least-once.toml", 10);
    assert!(seeds_showing(&at_least_once, CheckerKind::AtMostOnce) > 0, "at-least-once delivery never reprocessed a record");
    assert_eq!(seeds_showing(&at_least_once, CheckerKind::AtLeastOnce), 0, "at-least-once delivery skipped a committed record");
    let at_most_once = run("group-at-most-once.toml", 10);
    assert!(seeds_showing(&at_most_once, CheckerKind::AtLeastOnce) > 0, "at-most-once delivery never skipped a record");
    assert_eq!(seeds_showing(&at_most_once, CheckerKind::AtMostOnce), 0, "at-most-once delivery processed a record twice");
    for runs in [&at_least_once, &at_most_once] {
        assert_eq!(seeds_showing(runs, CheckerKind::GroupOverlap) + seeds_showing(runs, CheckerKind::Panic), 0);
    }
}

#[test]
fn without_idempotence_retries_duplicate_and_reorder_and_with_it_they_do_not() {
    assert_finds("no-idempotence-duplicates.toml", 10, CheckerKind::Duplicate);
    let reorder = run("no-idempotence-reorder.toml", 10);
    assert!(seeds_showing(&reorder, CheckerKind::NonmonotonicSend) > 0, "max.in.flight=5 without idempotence never reordered in 10 seeds");
    let idempotent = run("idempotent-producer.toml", 10);
    for kind in [CheckerKind::Duplicate, CheckerKind::NonmonotonicSend, CheckerKind::Panic] {
        assert_eq!(seeds_showing(&idempotent, kind), 0, "idempotent-producer showed {kind}");
    }
}

/// TCP delays rather than drops: requests held behind a 40 s partition reach
/// the broker after the producer gave up on them and retried on a new
/// connection. Without idempotence that writes them twice and out of order;
/// with it (KIP-98) the broker recognises their sequence numbers.
#[test]
fn requests_delayed_past_their_retry_duplicate_without_idempotence_and_not_with_it() {
    let delayed = run("no-idempotence-delayed-retry.toml", 10);
    assert!(seeds_showing(&delayed, CheckerKind::Duplicate) > 0, "no delayed request was written twice in 10 seeds");
    assert!(seeds_showing(&delayed, CheckerKind::NonmonotonicSend) > 0, "no delayed request was written out of order in 10 seeds");
    let idempotent = run("idempotent-delayed-retry.toml", 10);
    for kind in [CheckerKind::Duplicate, CheckerKind::NonmonotonicSend, CheckerKind::LostWrite, CheckerKind::Panic] {
        assert_eq!(seeds_showing(&idempotent, kind), 0, "idempotent-delayed-retry showed {kind}");
    }
}

#[test]
fn read_uncommitted_reads_aborted_transactions_and_read_committed_does_not() {
    assert_finds("txn-read-uncommitted.toml", 5, CheckerKind::AbortedRead);
    let committed = run("txn-read-committed.toml", 5);
    for kind in [CheckerKind::AbortedRead, CheckerKind::TxnAtomicity, CheckerKind::Panic] {
        assert_eq!(seeds_showing(&committed, kind), 0, "txn-read-committed showed {kind}");
    }
}

#[test]
fn a_plain_pipeline_duplicates_outputs_and_a_transactional_one_does_not() {
    assert_finds("pipeline-at-least-once.toml", 5, CheckerKind::EosViolation);
    let exactly_once = run("pipeline-exactly-once.toml", 5);
    for kind in [CheckerKind::EosViolation, CheckerKind::Duplicate, CheckerKind::LostWrite, CheckerKind::AbortedRead, CheckerKind::TxnAtomicity, CheckerKind::Panic] {
        assert_eq!(seeds_showing(&exactly_once, kind), 0, "pipeline-exactly-once showed {kind}");
    }
}

/// No configuration Kafka allows makes a group hand one partition to two members
/// in one generation, so the must-find case is a deliberately injected bug behind
/// a test-only consumer property: the group leader gives every member every
/// partition. The same seeds without the switch stay clean.
/// A consumer that keeps fetching a partition after it was revoked reads
/// beside the partition's next owner: `group-overlap` judges polls too.
#[test]
fn reading_a_revoked_partition_shows_as_group_overlap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("group-at-least-once.toml");
    let mut scenario = Scenario::load(&path).expect("the scenario parses");
    for consumer in &mut scenario.consumers {
        consumer.config.mutation = Some(kafsim_model::config::ConsumerMutation::FetchRevoked);
    }
    let seeds: Vec<u64> = (0..10).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    let broken = run_batch(&Arc::new(scenario), &seeds, &options, |_| {}).0;
    assert!(seeds_showing(&broken, CheckerKind::GroupOverlap) * 5 >= seeds.len(), "at least a fifth of the seeds read a revoked partition");
    let sound = run("group-at-least-once.toml", 10);
    assert_eq!(seeds_showing(&sound, CheckerKind::GroupOverlap), 0);
}

#[test]
fn a_broken_assignment_shows_as_group_overlap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("group-at-least-once.toml");
    let mut scenario = Scenario::load(&path).expect("the scenario parses");
    for consumer in &mut scenario.consumers {
        consumer.config.overlapping_assignment = true;
    }
    let seeds: Vec<u64> = (0..5).collect();
    let options = BatchOptions { jobs: 2, watchdog: Duration::from_secs(300), check_determinism: false };
    let broken = run_batch(&Arc::new(scenario), &seeds, &options, |_| {}).0;
    assert_eq!(seeds_showing(&broken, CheckerKind::GroupOverlap), seeds.len(), "every seed rebalances at least once, so every seed overlaps");
    let sound = run("group-at-least-once.toml", 5);
    assert_eq!(seeds_showing(&sound, CheckerKind::GroupOverlap), 0);
}

/// KIP-595's log-up-to-date check is what keeps a stale controller from
/// winning an election: granting votes without it overwrites committed
/// metadata. Without fsync a majority's power loss forgets it.
#[test]
fn a_controller_quorum_without_its_defences_loses_committed_metadata() {
    assert_finds("kraft-vote-without-log-check.toml", 10, CheckerKind::MetadataDivergence);
    assert_finds("kraft-no-fsync.toml", 20, CheckerKind::MetadataDivergence);
}

/// The same quorum with its defences, under its own faults and every fault
/// kind that applies: one leader per epoch, no committed metadata lost or
/// regressed, the data guarantees hold; and traces show the elections and
/// the fencing and unfencing (KIP-631) that faults cause.
#[test]
fn a_controller_quorum_with_its_defences_keeps_every_guarantee() {
    let runs = run("kraft-quorum.toml", 30);
    let kinds = [
        CheckerKind::ControllerSplitBrain,
        CheckerKind::MetadataDivergence,
        CheckerKind::MetadataRegression,
        CheckerKind::LostWrite,
        CheckerKind::ReplicaDivergence,
        CheckerKind::Liveness,
        CheckerKind::Panic,
    ];
    for kind in kinds {
        let failing: Vec<u64> = runs.iter().filter(|run| run.kinds().contains(&kind)).map(|run| run.seed).collect();
        assert!(failing.is_empty(), "kraft-quorum showed {kind} on seeds {failing:?}");
    }
    let elections = trace_of("kraft-quorum.toml").iter().filter(|line| line.contains("active controller in quorum epoch")).count();
    assert!(elections >= 2, "the active controller's power loss at 10 s makes a new one: {elections} elections");
    let fencing = trace_of("last-replica-power-loss.toml");
    assert!(fencing.iter().any(|line| line.contains("controller fences broker-")), "the brokers cut off from the controllers were not fenced");
    assert!(fencing.iter().any(|line| line.contains("controller unfences broker-")), "the brokers were never unfenced");
}

/// Seed 0's trace, a line per operation.
fn trace_of(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(name);
    let detail = kafsim::runner::run_seed(&Arc::new(Scenario::load(&path).expect("the scenario parses")), 0);
    detail.history.ops.iter().map(|op| op.to_string()).collect()
}
