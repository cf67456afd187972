//! Not a test: the figures of the closing note. Runs each example over
//! `KAFSIM_MEASURE_SEEDS` seeds (default 200) and prints, per anomaly, the
//! seeds that showed it, the first, and the median number of seeds run from
//! any start until the first finding.
//! `KAFSIM_MEASURE_ONLY=<example>` measures one example.
//! `KAFSIM_MEASURE_SEEDS=1000 cargo test --release -p kafsim-examples --test measure -- --ignored --nocapture`

use kafsim::app::{AppContext, Harness, HarnessReport};
use kafsim_examples::{audit_consumer, mistakes, order_enrichment};
use std::future::Future;

fn measure<F, Fut>(name: &str, swarm: bool, main: F)
where
    F: Fn(AppContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if std::env::var("KAFSIM_MEASURE_ONLY").is_ok_and(|only| only != name) {
        return;
    }
    let seeds: u64 = std::env::var("KAFSIM_MEASURE_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(200);
    let harness = Harness::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/app-orders.toml")).expect("a valid scenario").instances(3);
    let report: HarnessReport = harness.seeds(0..seeds).swarm(swarm).report(main);
    let mut kinds: Vec<String> = report.results().iter().flat_map(|result| result.kinds()).map(|kind| kind.name().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    println!("{name}{}: {} seeds", if swarm { " (swarm)" } else { "" }, report.seeds_run());
    for kind in kinds {
        let found = report.seeds_with(&kind);
        let flags: Vec<bool> = (0..seeds).map(|seed| found.contains(&seed)).collect();
        let mut waits: Vec<u64> = (0..seeds as usize).filter_map(|start| flags[start..].iter().position(|flag| *flag).map(|at| at as u64 + 1)).collect();
        waits.sort();
        let median = waits.get(waits.len() / 2).copied().unwrap_or(0);
        println!("  {kind}: {}/{seeds} seeds ({:.0}%), first seed {}, median seeds to first finding {median}", found.len(), 100.0 * found.len() as f64 / seeds as f64, found[0]);
    }
}

#[test]
#[ignore = "measurement, not a test"]
fn measure_the_examples() {
    measure("order_enrichment", false, order_enrichment::run);
    measure("order_enrichment", true, order_enrichment::run);
    measure("commit_before_produce", false, mistakes::commit_before_produce);
    measure("produce_then_commit", false, mistakes::produce_then_commit);
    measure("audit_consumer", false, audit_consumer::run);
}
