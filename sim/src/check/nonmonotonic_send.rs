//! `nonmonotonic-send`: one producer's acknowledged sends to one partition, taken
//! in the order it invoked them, did not get strictly increasing offsets. Kafka
//! keeps a producer's order within a partition only with idempotence (or at most
//! one request in flight); without it a failed batch retried behind a later one
//! lands after it, and a consumer sees the producer's writes reordered.
//!
//! Only sends completed `ok` with a partition and offset count; each is compared
//! with the producer's previous acknowledged send to that partition, so one
//! out-of-order send is one violation.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody, OpType, Value};
use kafsim_model::Offset;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::NonmonotonicSend);
    // The last acknowledged send per node and partition, node-major.
    let partition_count = views.partition_count();
    let mut last_acknowledged: Vec<Option<(Value, Offset)>> = vec![None; views.node_count() * partition_count];
    for pair in views.send_pairs() {
        if findings.is_full() {
            break;
        }
        let Some(completion) = pair.completion.filter(|op| op.kind == OpType::Ok) else {
            continue;
        };
        let (OpBody::Send { offset: Some(offset), .. }, Some((partition, key))) = (&completion.body, pair.completion_partition) else {
            continue;
        };
        let node: &str = &completion.node;
        let slot = &mut last_acknowledged[pair.node.0 as usize * partition_count + key.0 as usize];
        if let Some((previous_value, previous_offset)) = slot.replace((pair.value, *offset)) {
            if *offset <= previous_offset {
                findings.report(format!(
                    "{node} sent {previous_value} then {} to {partition}, \
                     but they were acknowledged at offsets {previous_offset} then {offset} (at {})",
                    pair.value,
                    seconds(completion.time)
                ));
            }
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_a_later_send_lands_before_an_earlier_one() {
        let mut history = HistoryBuilder::new();
        history.send_invoke(10, "producer-1", value(1, 0));
        history.send_invoke(11, "producer-1", value(1, 1));
        // The first batch failed and was retried behind the second.
        history.send_ok(20, "producer-1", value(1, 1), 0, 4);
        history.send_ok(30, "producer-1", value(1, 0), 0, 5);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::NonmonotonicSend);
        assert_eq!(
            violations[0].detail,
            "producer-1 sent 1:0 then 1:1 to events/0, but they were acknowledged at offsets 5 then 4 (at 0.020s)"
        );
    }

    #[test]
    fn fires_for_two_sends_at_the_same_offset() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 3);
        history.acked_send(20, "producer-1", value(1, 1), 0, 3);
        assert_eq!(check(&history.build(), &final_state(vec![])).len(), 1);
    }

    #[test]
    fn silent_for_increasing_offsets_per_producer_and_partition() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 5);
        // Other producers and other partitions have their own order.
        history.acked_send(11, "producer-2", value(2, 0), 0, 2);
        history.acked_send(12, "producer-1", value(1, 1), 1, 0);
        // A failed send in between says nothing.
        history.send_invoke(13, "producer-1", value(1, 2));
        history.send_fail(14, "producer-1", value(1, 2));
        history.acked_send(15, "producer-1", value(1, 3), 0, 9);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
