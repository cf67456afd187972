//! A transactional pipeline and a read_committed reader under broker crashes,
//! partitions, pauses and client crashes, with Kafka's defaults: members'
//! transactions abort and their inputs are processed again, by them or by
//! another member, writing the same output values at other offsets. The
//! checkers tie reads and writes by position and by the fate the final log
//! gives each transactional batch, so the committed copy is never blamed on the
//! aborted one (aborted-read), an aborted transaction's acknowledged sends are
//! never lost writes, and nothing breaks exactly-once.

use kafsim::check::CheckerKind;
use kafsim::final_state::TransactionFate;
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

#[test]
fn reprocessed_outputs_are_judged_by_position_not_by_value() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("pipeline-exactly-once-broker-faults.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let details: Vec<_> = (0..20).map(|seed| run_seed(&scenario, seed)).collect();
    let never = [CheckerKind::AbortedRead, CheckerKind::LostWrite, CheckerKind::Duplicate, CheckerKind::EosViolation, CheckerKind::TxnAtomicity, CheckerKind::Liveness];
    for (seed, detail) in details.iter().enumerate() {
        for kind in never {
            assert!(!detail.result.kinds().contains(&kind), "seed {seed}: {:?}", detail.result.violations);
        }
    }
    // The case is really there: in some seed an output value stands in an
    // aborted batch of `enriched` and again in a committed one.
    let reprocessed = details.iter().filter_map(|detail| detail.final_state.as_ref()).any(|final_state| {
        let (mut aborted, mut committed) = (BTreeSet::new(), BTreeSet::new());
        for (_, snapshot) in final_state.partitions.iter().filter(|(partition, _)| &*partition.topic == "enriched") {
            let Some(replica) = snapshot.committed() else { continue };
            for &(offset, value) in &replica.records {
                match replica.transaction_fate(offset) {
                    Some(TransactionFate::Aborted) => aborted.insert(value),
                    Some(TransactionFate::Committed) => committed.insert(value),
                    _ => false,
                };
            }
        }
        aborted.intersection(&committed).next().is_some()
    });
    assert!(reprocessed, "no seed reprocessed an output after an abort");
}

/// Short transaction timeouts under broker crashes and partitions: the
/// coordinator aborts slow transactions and fences their producers, whose
/// AddOffsetsToTxn then fails for good. The member aborts and reads the batch
/// again. It once waited for its offsets forever, still heartbeating, and its
/// partition stood still to the end (liveness in seed 8 of these 20).
#[test]
fn fenced_transactions_abort_and_the_pipeline_drains() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("pipeline-exactly-once-txn-timeouts.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    for seed in 0..20 {
        let detail = run_seed(&scenario, seed);
        assert!(detail.result.violations.is_empty(), "seed {seed}: {:?}", detail.result.violations);
    }
}
