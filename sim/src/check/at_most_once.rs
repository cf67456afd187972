//! `at-most-once`: a consumer group's application processed one record twice.
//! With at-least-once delivery this is expected after a crash between
//! processing and committing (the next owner reprocesses); with at-most-once
//! delivery (commit first, then process) it must never happen.
//!
//! Looks only at `Process` ops: a value processed more than once within one
//! group, by any members, is one violation.

use super::findings::{seconds, Findings};
use super::value_map::ValueMap;
use super::views::{Names, Views};
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody};

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::AtMostOnce);
    let mut groups = Names::default();
    // Per group and value: the node that first processed it, and when.
    let mut first: ValueMap<(&str, u64)> = ValueMap::with_sequence_bound(views.sequence_bound());
    for op in views.group_ops() {
        let OpBody::Process { group, records } = &op.body else { continue };
        let scope = groups.key(group);
        for record in records {
            let slot = first.slot(scope, record.value);
            match *slot {
                None => *slot = Some((&*op.node, op.time)),
                Some((node, time)) => {
                    findings.report(format!(
                        "group {group} processed {} ({}@{}) twice: by {node} at {} and by {} at {}",
                        record.value,
                        record.partition,
                        record.offset,
                        seconds(time),
                        op.node,
                        seconds(op.time)
                    ));
                    if findings.is_full() {
                        return findings.into_violations();
                    }
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

    #[test]
    fn fires_when_a_record_is_processed_twice() {
        let mut history = HistoryBuilder::new();
        history.process(10, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        history.client_start(20, "consumer-1");
        history.process(30, "consumer-2", &[(0, 1, value(1, 1))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::AtMostOnce);
        assert_eq!(violations[0].detail, "group g1 processed 1:1 (events/0@1) twice: by consumer-1 at 0.010s and by consumer-2 at 0.030s");
    }

    #[test]
    fn silent_when_every_record_is_processed_once() {
        let mut history = HistoryBuilder::new();
        history.process(10, "consumer-1", &[(0, 0, value(1, 0))]);
        history.process(30, "consumer-2", &[(0, 1, value(1, 1))]);
        // Reading twice is not processing twice.
        history.poll(40, "consumer-2", &[(0, 1, value(1, 1))]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
