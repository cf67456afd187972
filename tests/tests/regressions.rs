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

/// A restarted producer took a ProduceResponse meant for its previous
/// incarnation (same correlation id) as the answer to a new send, and recorded
/// the send acknowledged at another record's offset (inconsistent-offsets and
/// nonmonotonic-send for producer-2); producer correlation ids now start at the
/// incarnation's start time, as the consumer's do.
#[test]
fn pipeline_exactly_once_seed_352_producer_ignores_replies_to_its_previous_incarnation() {
    let detail = run_seed(&scenario("pipeline-exactly-once.toml"), 352);
    for kind in [CheckerKind::InconsistentOffsets, CheckerKind::NonmonotonicSend, CheckerKind::EosViolation] {
        assert!(!detail.result.kinds().contains(&kind), "{:?}", detail.result.violations);
    }
}

/// A pipeline member stalled past transaction.timeout.ms; the coordinator aborted
/// its transaction and bumped the epoch, so its next AddPartitionsToTxn was fenced.
/// The transaction could only abort, yet its queued sends waited out
/// delivery.timeout.ms (120 s) before failing, and the member's partition stood
/// still until the end of the drain (liveness). Kafka's Sender aborts undrained
/// batches as soon as the transaction has an abortable error; so does ours now.
#[test]
fn pipeline_member_stall_seed_20_fails_queued_sends_of_a_doomed_transaction_at_once() {
    let detail = run_seed(&scenario("pipeline-member-stall.toml"), 20);
    for kind in [CheckerKind::Liveness, CheckerKind::EosViolation] {
        assert!(!detail.result.kinds().contains(&kind), "{:?}", detail.result.violations);
    }
}

/// Pipeline members' transactions aborted (broker crashes, partitions and
/// pauses) and other members reprocessed their inputs, writing the same output
/// values, committed, at other offsets. The checkers matched records to writes
/// by value: the committed copies a read_committed consumer read were blamed on
/// the aborted transactions (aborted-read), and the aborted transactions'
/// acknowledged sends were reported lost (lost-write). They now go by position
/// and by the fate the final log gives each transactional batch.
#[test]
fn pipeline_exactly_once_broker_faults_seed_0_judges_reprocessed_outputs_by_position() {
    use kafsim::final_state::TransactionFate;
    use std::collections::BTreeSet;
    let detail = run_seed(&scenario("pipeline-exactly-once-broker-faults.toml"), 0);
    for kind in [CheckerKind::AbortedRead, CheckerKind::LostWrite, CheckerKind::Duplicate, CheckerKind::EosViolation, CheckerKind::TxnAtomicity] {
        assert!(!detail.result.kinds().contains(&kind), "{:?}", detail.result.violations);
    }
    // The case is really there: an output value stands in an aborted batch of
    // `enriched` and again in a committed one.
    let final_state = detail.final_state.expect("the run finished");
    let (mut aborted, mut committed) = (BTreeSet::new(), BTreeSet::new());
    for (_, snapshot) in final_state.partitions.iter().filter(|(partition, _)| &*partition.topic == "enriched") {
        let replica = snapshot.committed().expect("every partition has a committed replica");
        for &(offset, value) in &replica.records {
            match replica.transaction_fate(offset) {
                Some(TransactionFate::Aborted) => aborted.insert(value),
                Some(TransactionFate::Committed) => committed.insert(value),
                _ => false,
            };
        }
    }
    assert!(aborted.intersection(&committed).next().is_some(), "no output was reprocessed after an abort");
}
