//! A panic inside a simulated node is a finding like any other: it is reported
//! with its seed, the faults that led to it are kept, and `shrink` brings it
//! down to those that matter. The panic is a deliberately injected bug behind a
//! test-only switch in the scenario's broker config (`kafsim.test.panic.on.restart`:
//! a broker panics when it restarts).

use kafsim::check::CheckerKind;
use kafsim::runner::{run_seed, Outcome};
use kafsim::scenario::{Action, Scenario};
use kafsim::shrink::shrink;
use std::path::Path;
use std::sync::Arc;

#[test]
fn a_panic_keeps_its_faults_and_shrinks_to_the_crash_that_causes_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("safe-acks-all.toml");
    let text = std::fs::read_to_string(&path).expect("the scenario reads");
    let text = text.replacen("[cluster.config]\n", "[cluster.config]\n\"kafsim.test.panic.on.restart\" = true\n", 1);
    // On disk, as a user's file is: `shrink` writes its result from the file it read.
    let path = std::env::temp_dir().join(format!("kafsim-panic-on-restart-{}.toml", std::process::id()));
    std::fs::write(&path, &text).expect("write the scenario with the switch");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario with the switch parses"));
    assert!(scenario.cluster.config.panic_on_restart, "the switch is on");
    let (seed, panicked) = (0..20)
        .map(|seed| (seed, run_seed(&scenario, seed)))
        .find(|(_, run)| run.result.outcome == Outcome::Panic)
        .expect("brokers crash and restart within 20 seeds, and the switch makes that panic");
    assert!(panicked.final_state.is_none());
    assert!(!panicked.faults.is_empty(), "a panicked run still tells which faults it applied");
    let shrunk = shrink(&scenario, seed, |_| {}).expect("the panic shrinks");
    assert_eq!(shrunk.kind, CheckerKind::Panic);
    assert_eq!(shrunk.minimal.len(), 1, "one broker crash is enough: {:?}", shrunk.minimal);
    assert!(matches!(shrunk.minimal[0].action, Action::Crash | Action::PowerLoss), "{:?}", shrunk.minimal[0]);
    let replayed = Arc::new(Scenario::parse(&shrunk.toml, &path).expect("the shrunk scenario parses"));
    assert_eq!(run_seed(&replayed, seed).result.outcome, Outcome::Panic);
}
