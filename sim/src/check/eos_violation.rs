//! `eos-violation`: in consume-transform-produce, an input record's output is
//! missing from the committed output, or stands there more than once. Kafka's
//! exactly-once (KIP-98 transactions, KIP-447 offsets fenced by generation) is
//! the promise that every input committed in `from` yields exactly one output
//! in `to`, whatever crashed on the way.
//!
//! Inputs are the records of the final committed log of every partition of a
//! pipeline's `from` topic; outputs are the records of the committed log of its
//! `to` topic that a read_committed reader sees: those of no transaction or of
//! one whose commit marker the log holds (`PartitionView::is_visible`; an
//! aborted transaction's records stay in Kafka's log, and an open one's may go
//! either way). Each output maps back to its input (`Value::pipeline_input`):
//! the pipeline derives one from the other, so here the value is the identity.
//! A duplicate is judged always: an output twice in the committed output never
//! goes away. A missing output is judged only when the pipeline drained
//! (`PipelineSnapshot::drained`): before that, an input may simply not have
//! been processed yet.

use super::findings::Findings;
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::{FinalState, TransactionFate};
use crate::history::{History, Value};
use kafsim_model::{Offset, TopicPartition};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::EosViolation);
    let partitions = || views.final_partitions().map(|(_, view)| view);
    for pipeline in &views.final_state.pipelines {
        let mut outputs: BTreeMap<Value, Vec<(&TopicPartition, Offset)>> = BTreeMap::new();
        // Outputs of transactions still open at the end, to say why one is missing.
        let mut open: BTreeMap<Value, (&TopicPartition, Offset)> = BTreeMap::new();
        for view in partitions().filter(|view| &*view.partition.topic == pipeline.to.as_str()) {
            for &(offset, value) in view.log.iter() {
                let Some(input) = value.pipeline_input() else { continue };
                match view.fate(offset) {
                    None | Some(TransactionFate::Committed) => outputs.entry(input).or_default().push((view.partition, offset)),
                    Some(TransactionFate::Open) => {
                        open.entry(input).or_insert((view.partition, offset));
                    }
                    Some(TransactionFate::Aborted) => {}
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
        for view in partitions().filter(|view| &*view.partition.topic == pipeline.from.as_str()) {
            // An input of a transaction that did not commit is not one a read_committed pipeline reads.
            for &(offset, input) in view.log.iter().filter(|(offset, _)| view.is_visible(*offset)) {
                if findings.is_full() {
                    return findings.into_violations();
                }
                if !outputs.contains_key(&input) {
                    let open = match open.get(&input) {
                        Some((partition, offset)) => format!(" (one stands at {partition}@{offset} in a transaction still open)"),
                        None => String::new(),
                    };
                    findings.report(format!(
                        "pipeline {} drained, but input {input} at {}@{offset} has no output in the committed log of {}{open}",
                        pipeline.group, view.partition, pipeline.to
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
    use crate::final_state::TransactionFate;
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

    /// Member 1's output of 1:0 at copies/0@0 aborted, member 2's at @1
    /// committed, and 1:1's output stands at @2 in a transaction of `fate`.
    fn reprocessed(fate: TransactionFate) -> FinalState {
        let outputs = [(0, value(1, 0).pipeline_output()), (1, value(1, 0).pipeline_output()), (2, value(1, 1).pipeline_output())];
        let mut state = state(&outputs, true);
        let copies = state.partitions.remove(&TopicPartition::new("copies", 0)).expect("built above");
        let fates = [(0, 0, TransactionFate::Aborted), (1, 1, TransactionFate::Committed), (2, 2, fate)];
        state.partitions.insert(TopicPartition::new("copies", 0), with_transactions(copies, &fates));
        state
    }

    #[test]
    fn an_aborted_output_and_its_committed_reprocessing_are_exactly_once() {
        assert!(check(&History::default(), &reprocessed(TransactionFate::Committed)).is_empty());
    }

    #[test]
    fn an_output_only_in_a_transaction_still_open_is_missing() {
        let violations = check(&History::default(), &reprocessed(TransactionFate::Open));
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "pipeline copier drained, but input 1:1 at events/0@1 has no output in the committed log of copies (one stands at copies/0@2 in a transaction still open)"
        );
    }
}
