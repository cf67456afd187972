//! A fixed seed's trace summary, pinned: any change to the model, the nemesis or
//! the workload that changes what a run does shows up here as a reviewable diff.

use kafsim::history::{OpBody, OpType};
use kafsim::runner::run_seed;
use kafsim::scenario::Scenario;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

#[test]
fn default_scenario_seed_1_summary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join("default.toml");
    let scenario = Arc::new(Scenario::load(&path).expect("the scenario parses"));
    let detail = run_seed(&scenario, 1);
    let mut summary = String::new();
    let count = |kind: OpType, send: bool| {
        detail.history.ops.iter().filter(|op| op.kind == kind && matches!(op.body, OpBody::Send { .. }) == send).count()
    };
    writeln!(summary, "outcome: {:?}", detail.result.outcome).unwrap();
    writeln!(summary, "simulated ms: {}", detail.result.sim_ms).unwrap();
    writeln!(summary, "sends: invoke {} ok {} fail {} info {}", count(OpType::Invoke, true), count(OpType::Ok, true), count(OpType::Fail, true), count(OpType::Info, true)).unwrap();
    let polls = detail.history.ops.iter().filter(|op| matches!(op.body, OpBody::Poll { .. })).count();
    writeln!(summary, "polls: {polls}").unwrap();
    for op in detail.history.ops.iter().filter(|op| matches!(op.body, OpBody::Fault { .. } | OpBody::Heal)) {
        writeln!(summary, "{op}").unwrap();
    }
    if let Some(final_state) = &detail.final_state {
        for (partition, snapshot) in &final_state.partitions {
            let replicas: Vec<String> = snapshot
                .replicas
                .values()
                .map(|replica| format!("broker-{} hw {} leo {}", replica.broker, replica.high_watermark, replica.log_end_offset))
                .collect();
            writeln!(summary, "{partition}: leader {:?} epoch {} isr {:?}; {}", snapshot.leader, snapshot.leader_epoch, snapshot.isr, replicas.join(", ")).unwrap();
        }
    }
    for violation in &detail.result.violations {
        writeln!(summary, "violation {}: {}", violation.kind, violation.detail).unwrap();
    }
    writeln!(summary, "trace-hash: {:016x}", detail.result.trace_hash).unwrap();
    insta::assert_snapshot!(summary);
}
