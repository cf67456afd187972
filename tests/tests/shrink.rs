//! `kafsim shrink` keeps the violation while it drops faults, and the file it
//! writes is a scenario that replays to the same violation.

use kafsim::check::CheckerKind;
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use kafsim::shrink::shrink;
use std::path::Path;
use std::sync::Arc;

#[test]
fn a_lost_write_shrinks_to_fewer_faults_and_the_shrunk_file_replays_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("acks1-leader-crash.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let shrunk = shrink(&scenario, 0, |_| {}).expect("seed 0 shows a lost write that shrinks");
    assert_eq!(shrunk.kind, CheckerKind::LostWrite);
    assert!(!shrunk.minimal.is_empty() && shrunk.minimal.len() < shrunk.original.len(), "{} of {}", shrunk.minimal.len(), shrunk.original.len());
    let out = std::env::temp_dir().join(format!("kafsim-shrunk-{}.toml", std::process::id()));
    std::fs::write(&out, &shrunk.toml).expect("write the shrunk scenario");
    let replayed = Arc::new(Scenario::load(&out).expect("the shrunk scenario parses"));
    assert!(replayed.faults.kinds.is_empty());
    assert_eq!(replayed.faults.schedule.len(), shrunk.minimal.len());
    assert!(run_seed(&replayed, 0).result.kinds().contains(&CheckerKind::LostWrite));
}
