//! The report of a small hand-written run, as a snapshot: header, violations,
//! every kind of mark and fault band, the heal and the violation pins.

use super::*;
use crate::check::testkit::{final_state, partition_snapshot, value, HistoryBuilder};
use crate::check::{CheckerKind, Violation};
use crate::history::History;
use crate::runner::{Outcome, RunResult};
use std::time::Duration;

fn small_history() -> History {
    let mut history = HistoryBuilder::new();
    history.client_start(0, "producer-1").client_start(0, "consumer-1").client_start(0, "producer-2");
    history.acked_send(100, "producer-1", value(1, 0), 0, 0).acked_send(150, "producer-2", value(2, 0), 1, 0);
    history.fault(1_000, "crash broker-2").fault(1_500, "partition [broker-1,producer-1] | [broker-3,controller-1,consumer-1]");
    history.acked_send(1_600, "producer-1", value(1, 1), 0, 1);
    history.send_invoke(1_700, "producer-1", value(1, 2)).send_fail(2_200, "producer-1", value(1, 2));
    history.poll(2_000, "consumer-1", &[(0, 0, value(1, 0)), (1, 0, value(2, 0))]);
    history.fault(2_500, "heal partition").fault(3_000, "restart broker-2").fault(3_200, "packet loss 10%");
    history.fault(3_300, "Pause skipped: target Node(\"broker-<9>\") resolves to no node");
    history.fault(3_500, "pause controller-1");
    history.heal(5_000).fault(5_000, "packet loss over");
    history.seek(5_100, "consumer-1", 0, 0).poll(5_200, "consumer-1", &[(0, 1, value(1, 1))]);
    history.build()
}

fn small_run() -> RunDetail {
    let violations = vec![
        Violation::new(CheckerKind::LostWrite, "value 1:1 acknowledged at events/0@1 by producer-1 at 1.601s is absent from the committed log".to_string()),
        Violation::new(CheckerKind::ReplicaDivergence, "events/0: replica <3> & \"1\" differ at offset 1 (2:9 vs 1:1)".to_string()),
    ];
    let history = small_history();
    let result = RunResult {
        seed: 42,
        outcome: Outcome::Violation,
        violations,
        trace_hash: 0x0123_4567_89ab_cdef,
        sim_ms: 6_000,
        events: history.ops.len(),
        swarm: None,
        messages: 0,
        wall: Duration::ZERO,
    };
    // broker-4 records nothing and no fault hits it: only the final state names it.
    let records = [(0, value(1, 0))];
    let state = final_state(vec![(0, partition_snapshot(1, &[1, 2, 4], 1, &records)), (1, partition_snapshot(3, &[3], 0, &[]))]);
    RunDetail { result, history, final_state: Some(state), faults: Vec::new() }
}

#[test]
fn html_report_of_a_small_run() {
    let page = render_page("acks <all> & crash", Path::new("scenarios/small.toml"), &small_run());
    insta::assert_snapshot!(page);
}

#[test]
fn the_page_is_self_contained() {
    let page = render_page("small", Path::new("scenarios/small.toml"), &small_run());
    for external in ["<script", "src=", "href=\"http", "@import", "url("] {
        assert!(!page.contains(external), "the report must not load anything: found {external}");
    }
    assert!(page.contains("kafsim replay scenarios/small.toml --seed 42 --trace"));
}

#[test]
fn write_run_writes_the_text_and_the_page() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/default.toml");
    let scenario = Scenario::load(&path).expect("the default scenario loads");
    let dir = std::env::temp_dir().join(format!("kafsim-report-test-{}", std::process::id()));
    let page = write_run(&dir, &scenario, &small_run()).expect("writing the report");
    assert_eq!(page, dir.join("default-seed-42.html"));
    let text = std::fs::read_to_string(dir.join("default-seed-42.txt")).expect("the text report exists");
    assert!(text.ends_with("trace-hash: 0123456789abcdef\n"));
    assert!(std::fs::read_to_string(&page).expect("the page exists").starts_with("<!DOCTYPE html>"));
    std::fs::remove_dir_all(&dir).expect("removing the test directory");
}
