//! The examples in the simulator, each over seeds of `scenarios/app-orders.toml`
//! (three instances of the application). Replay a seed a test reports with
//! `KAFSIM_SEED=<seed> cargo test --release -p kafsim-examples <test> -- --nocapture`.

use kafsim::app::Harness;
use kafsim_examples::{audit_consumer, mistakes, order_enrichment};

fn orders() -> Harness {
    Harness::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/app-orders.toml")).expect("a valid scenario").instances(3)
}

/// What a consumer outside any transaction must never show, whatever it does
/// with its offsets: the cluster's own guarantees.
const CLUSTER: [&str; 5] = ["lost-write", "replica-divergence", "aborted-read", "group-overlap", "panic"];

#[test]
fn the_careful_service_is_exactly_once() {
    let report = orders().seeds(0..60).run(order_enrichment::run);
    assert_eq!(report.seeds_run(), 60);
}

#[test]
fn the_careful_service_is_exactly_once_with_swarm_faults() {
    orders().seeds(0..30).swarm(true).run(order_enrichment::run);
}

#[test]
fn committing_before_producing_skips_orders() {
    let report = orders().seeds(0..40).never(&CLUSTER).finds(&["at-least-once", "eos-violation"]).run(mistakes::commit_before_produce);
    assert!(report.seeds_with("duplicate").is_empty(), "nothing is produced twice when offsets go first");
}

#[test]
fn producing_without_a_transaction_duplicates_orders() {
    let report = orders().seeds(0..40).never(&CLUSTER).finds(&["eos-violation"]).run(mistakes::produce_then_commit);
    assert!(report.seeds_with("at-least-once").is_empty(), "acknowledged output, then the commit: nothing is skipped");
}

#[test]
fn the_audit_consumer_never_skips_and_does_reprocess() {
    let mut never = CLUSTER.to_vec();
    never.push("at-least-once");
    orders().seeds(0..40).never(&never).finds(&["at-most-once"]).run(audit_consumer::run);
}

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    let first = orders().seeds([7]).run(order_enrichment::run);
    let second = orders().seeds([7]).run(order_enrichment::run);
    let hash = first.trace_hash(7).expect("seed 7 ran");
    assert_eq!(second.trace_hash(7), Some(hash));
    orders().seeds(0..8).check_determinism(true).run(order_enrichment::run);
}

#[test]
fn a_failing_seed_replays_bit_for_bit() {
    let report = orders().seeds(0..10).never(&CLUSTER).finds(&["at-least-once"]).run(mistakes::commit_before_produce);
    let seed = report.seeds_with("at-least-once")[0];
    let first = report.results().iter().find(|result| result.seed == seed).expect("the seed ran");
    let again = orders().seeds([seed]).never(&CLUSTER).run(mistakes::commit_before_produce);
    let replayed = &again.results()[0];
    assert_eq!(replayed.trace_hash, first.trace_hash);
    assert_eq!(replayed.violations, first.violations);
}

#[test]
fn a_broken_expectation_names_the_seed_the_anomaly_and_the_command_that_replays_it() {
    let report = orders().seeds(0..40).never(&["at-most-once"]).report(audit_consumer::run);
    let seed = report.seeds_with("at-most-once")[0];
    let failure = report.failure().expect("the audit consumer reprocesses");
    assert!(failure.contains(&format!("seed {seed} of app-orders shows at-most-once: group audit processed")), "{failure}");
    assert!(failure.contains(&format!("replay it: KAFSIM_SEED={seed} cargo test --release")), "{failure}");
    let missing = orders().seeds(0..5).never(&[]).finds(&["duplicate"]).report(audit_consumer::run).failure().expect("no duplicate to find");
    assert!(missing.contains("(5 seeds run) showed duplicate, which the test expects to find"), "{missing}");
}
