//! `eos-violation`: in consume-transform-produce, an input record's output is
//! missing from the committed output, or stands there more than once. Kafka's
//! exactly-once (KIP-98 transactions, KIP-447 offsets fenced by generation) is
//! the promise that every input committed in `from` yields exactly one output
//! in `to`, whatever crashed on the way.
//!
//! Inputs are the values in the final committed log of every partition of a
//! pipeline's `from` topic; outputs are the values in the committed log of its
//! `to` topic, which the final state already gives without aborted transactions
//! and control batches (as a read_committed reader sees it). Each output maps
//! back to its input (`Value::pipeline_input`). A duplicate is judged always: an
//! output twice in the committed log never goes away. A missing output is judged
//! only when the pipeline drained (`PipelineSnapshot::drained`): before that, an
//! input may simply not have been processed yet.

use super::findings::Findings;
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Value};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::EosViolation);
    let logs = || views.final_partitions().map(|(_, view)| (view.partition, view.log));
    for pipeline in &views.final_state.pipelines {
        let mut outputs: BTreeMap<Value, Vec<(&TopicPartition, Offset)>> = BTreeMap::new();
        for (partition, log) in logs().filter(|(partition, _)| &*partition.topic == pipeline.to.as_str()) {
            for &(offset, value) in log.iter() {
                if let Some(input) = value.pipeline_input() {
                    outputs.entry(input).or_default().push((partition, offset));
                }
            }
        }
        for (input, positions) in outputs.iter().filter(|(_, positions)| positions.len() > 1) {
            if findings.is_full() {
                return findings.into_violations();
            }
            let places: Vec<String> = positions.iter().map(|(partition, offset)| format!("{partition}@{offset}")).collect();
            findings.report(format!(
                "pipeline {} wrote input {input} to {} {} times in committed output: at {}",
                pipeline.group,
                pipeline.to,
                positions.len(),
                places.join(", ")
            ));
        }
        if !pipeline.drained {
            continue;
        }
        for (partition, log) in logs().filter(|(partition, _)| &*partition.topic == pipeline.from.as_str()) {
            for &(offset, input) in log.iter() {
                if findings.is_full() {
                    return findings.into_violations();
                }
                if !outputs.contains_key(&input) {
                    findings.report(format!(
                        "pipeline {} drained, but input {input} at {partition}@{offset} has no output in the committed log of {}",
                        pipeline.group, pipeline.to
                    ));
                }
            }
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::final_state::PipelineSnapshot;

    /// `events/0` holds inputs 1:0 and 1:1; `copies/0` holds `outputs`.
    fn state(outputs: &[(u64, Value)], drained: bool) -> FinalState {
        let mut state = final_state(vec![(0, partition_snapshot(1, &[1], 2, &[(0, value(1, 0)), (1, value(1, 1))]))]);
        let copies = partition_snapshot(1, &[1], outputs.len() as u64, outputs);
        state.partitions.insert(TopicPartition::new("copies", 0), copies);
        state.pipelines.push(PipelineSnapshot { group: "copier".into(), from: "events".into(), to: "copies".into(), drained });
        state
    }

    #[test]
    fn silent_when_every_input_has_exactly_one_output() {
        let outputs = [(0, value(1, 1).pipeline_output()), (1, value(1, 0).pipeline_output())];
        assert!(check(&History::default(), &state(&outputs, true)).is_empty());
    }

    #[test]
    fn fires_for_an_output_written_twice() {
        let outputs = [(0, value(1, 0).pipeline_output()), (1, value(1, 1).pipeline_output()), (2, value(1, 0).pipeline_output())];
        let violations = check(&History::default(), &state(&outputs, false));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::EosViolation);
        assert_eq!(violations[0].detail, "pipeline copier wrote input 1:0 to copies 2 times in committed output: at copies/0@0, copies/0@2");
    }

    #[test]
    fn fires_for_a_missing_output_only_once_drained() {
        let outputs = [(0, value(1, 0).pipeline_output())];
        assert!(check(&History::default(), &state(&outputs, false)).is_empty(), "not drained: 1:1 may not be processed yet");
        let violations = check(&History::default(), &state(&outputs, true));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "pipeline copier drained, but input 1:1 at events/0@1 has no output in the committed log of copies");
    }

    #[test]
    fn silent_without_pipelines() {
        let mut state = state(&[], true);
        state.pipelines.clear();
        assert!(check(&History::default(), &state).is_empty());
    }
}
