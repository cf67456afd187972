//! `liveness`: after the fault phase healed, work was left undone. Safety
//! checkers cannot tell a cluster that lost nothing from one that stopped doing
//! anything; once every fault is undone Kafka must make progress again, so every
//! send must complete and consumers must catch up with the committed log.
//!
//! Judged only if the history holds a `Heal` op (the run reached its liveness
//! phase). Sends invoked but never completed by the end of the history are one
//! violation with their count and the first example; if consumers drained
//! (`final_state.drained`), each consumer whose final position for a partition is
//! below that partition's committed high watermark is one violation, and so is
//! each partition of a consumer group's topic that no live member of the group
//! owned at the end (a group that never settled after healing).
//!
//! A pipeline that did not drain (`PipelineSnapshot::drained`: some input
//! not read, processed and committed by a settled, stable group) is one
//! violation per pipeline.
//!
//! A transaction still open in a committed log at the end (no commit or abort
//! marker followed its records, `TransactionFate::Open`) is one violation per
//! producer id: its coordinator must end it, at the latest by aborting it
//! `transaction.timeout.ms` after it began, and until then it holds every
//! read_committed reader of those partitions at its first offset (KIP-98's
//! last stable offset).

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::{FinalState, TransactionFate};
use crate::history::History;
use kafsim_model::{Offset, ProducerId, TopicPartition};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let final_state = views.final_state;
    let mut findings = Findings::new(CheckerKind::Liveness);
    if views.heal_time().is_none() {
        return findings.into_violations();
    }
    let mut pending = views.send_pairs().iter().filter(|pair| pair.completion.is_none());
    if let Some(first) = pending.next() {
        let count = 1 + pending.count();
        findings.report(format!(
            "{count} invoked sends never completed by the end of the run; the first, {} by {} at {}",
            first.value,
            first.invoke.node,
            seconds(first.invoke.time)
        ));
    }
    for pipeline in final_state.pipelines.iter().filter(|pipeline| !pipeline.drained) {
        findings.report(format!(
            "pipeline {} from {} to {} did not drain by the end of the run: its members did not all settle, stable, with every input read and committed",
            pipeline.group, pipeline.from, pipeline.to
        ));
    }
    report_open_transactions(views, &mut findings);
    if final_state.drained {
        for (consumer, snapshot) in &final_state.consumers {
            for (partition, &position) in &snapshot.positions {
                let committed = final_state.partitions.get(partition).and_then(|partition| partition.committed());
                let Some(high_watermark) = committed.map(|replica| replica.high_watermark) else {
                    continue;
                };
                if position < high_watermark {
                    findings.report(format!(
                        "{consumer} ended at offset {position} of {partition}, below its high watermark {high_watermark}"
                    ));
                }
                if findings.is_full() {
                    return findings.into_violations();
                }
            }
        }
        for (group, snapshot) in &final_state.groups {
            for partition in final_state.partitions.keys().filter(|partition| *partition.topic == *snapshot.topic) {
                let owned = snapshot.members.iter().any(|member| final_state.consumers.get(member).is_some_and(|consumer| consumer.positions.contains_key(partition)));
                if !owned {
                    findings.report(format!("no member of group {group} owned {partition} with a position at the end of the drain"));
                }
                if findings.is_full() {
                    return findings.into_violations();
                }
            }
        }
    }
    findings.into_violations()
}

/// One violation per producer id with a transaction open in some committed log.
fn report_open_transactions(views: &Views<'_>, findings: &mut Findings) {
    let mut open: BTreeMap<ProducerId, Vec<(&TopicPartition, Offset)>> = BTreeMap::new();
    for (_, view) in views.final_partitions() {
        let Some(replica) = view.committed else { continue };
        for batch in replica.transactions.iter().filter(|batch| batch.fate == TransactionFate::Open && batch.first_offset < replica.high_watermark) {
            let partitions = open.entry(batch.producer_id).or_default();
            // A transaction's first batch in a partition is where it holds the last stable offset.
            if partitions.last().is_none_or(|(partition, _)| *partition != view.partition) {
                partitions.push((view.partition, batch.first_offset));
            }
        }
    }
    for (producer_id, partitions) in open {
        let places: Vec<String> = partitions.iter().map(|(partition, offset)| format!("{partition}@{offset}")).collect();
        findings.report(format!(
            "a transaction of producer id {} is still open at the end of the run, holding the last stable offset at {}",
            producer_id.0,
            places.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::final_state::TransactionFate;

    fn one_committed_partition() -> FinalState {
        final_state(vec![(0, partition_snapshot(1, &[1], 2, &[(0, value(1, 0)), (1, value(1, 1))]))])
    }

    #[test]
    fn fires_once_for_all_pending_sends_after_a_heal() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.send_invoke(20, "producer-2", value(2, 0));
        history.heal(30);
        history.send_invoke(40, "producer-1", value(1, 1));
        let violations = check(&history.build(), &one_committed_partition());
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Liveness);
        assert_eq!(
            violations[0].detail,
            "2 invoked sends never completed by the end of the run; the first, 2:0 by producer-2 at 0.020s"
        );
    }

    #[test]
    fn fires_for_a_drained_consumer_behind_the_high_watermark() {
        let mut history = HistoryBuilder::new();
        history.heal(30);
        let mut state = with_consumer(one_committed_partition(), "consumer-1", &[(0, 1)]);
        state = with_consumer(state, "consumer-2", &[(0, 2)]);
        state.drained = true;
        let violations = check(&history.build(), &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "consumer-1 ended at offset 1 of events/0, below its high watermark 2");
    }

    #[test]
    fn silent_when_everything_completed_and_caught_up() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.send_invoke(20, "producer-1", value(1, 1));
        history.send_fail(21, "producer-1", value(1, 1));
        history.heal(30);
        let mut state = with_consumer(one_committed_partition(), "consumer-1", &[(0, 2)]);
        state.drained = true;
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn fires_for_a_group_partition_nobody_owns() {
        let mut history = HistoryBuilder::new();
        history.heal(30);
        let history = history.build();
        let two = final_state(vec![
            (0, partition_snapshot(1, &[1], 0, &[])),
            (1, partition_snapshot(1, &[1], 0, &[])),
        ]);
        let mut state = with_group(with_consumer(with_consumer(two.clone(), "consumer-1", &[(0, 0)]), "consumer-2", &[]), &["consumer-1", "consumer-2"]);
        state.drained = true;
        let violations = check(&history, &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "no member of group g1 owned events/1 with a position at the end of the drain");
        let mut state = with_group(with_consumer(with_consumer(two, "consumer-1", &[(0, 0)]), "consumer-2", &[(1, 0)]), &["consumer-1", "consumer-2"]);
        state.drained = true;
        assert!(check(&history, &state).is_empty());
    }

    #[test]
    fn silent_without_a_heal() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(20, "producer-1", value(1, 1));
        let mut state = with_consumer(one_committed_partition(), "consumer-1", &[(0, 0)]);
        state.drained = true;
        assert!(check(&history.build(), &state).is_empty());
    }

    #[test]
    fn fires_once_per_producer_with_a_transaction_still_open_at_the_end() {
        let mut history = HistoryBuilder::new();
        history.heal(30);
        let history = history.build();
        let records = [(0, value(1, 0)), (1, value(1, 1)), (2, value(1, 2))];
        let fates = [(0, 0, TransactionFate::Committed), (1, 2, TransactionFate::Open)];
        let state = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 3, &records), &fates))]);
        let violations = check(&history, &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].detail, "a transaction of producer id 2 is still open at the end of the run, holding the last stable offset at events/0@1");
        let ended = final_state(vec![(0, with_transactions(partition_snapshot(1, &[1], 3, &records), &[(0, 0, TransactionFate::Committed), (1, 2, TransactionFate::Aborted)]))]);
        assert!(check(&history, &ended).is_empty());
        assert!(check(&HistoryBuilder::new().build(), &state).is_empty(), "no heal, no liveness phase");
    }

    #[test]
    fn fires_for_a_pipeline_that_did_not_drain() {
        let mut history = HistoryBuilder::new();
        history.heal(30);
        let history = history.build();
        let mut state = one_committed_partition();
        let pipeline = crate::final_state::PipelineSnapshot { group: "copier".into(), from: "events".into(), to: "copies".into(), drained: false };
        state.pipelines.push(pipeline);
        let violations = check(&history, &state);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].detail,
            "pipeline copier from events to copies did not drain by the end of the run: its members did not all settle, stable, with every input read and committed"
        );
        state.pipelines[0].drained = true;
        assert!(check(&history, &state).is_empty());
    }
}
