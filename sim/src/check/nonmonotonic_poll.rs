//! `nonmonotonic-poll`: one consumer's consecutive reads of one partition did not
//! move strictly forward. A Kafka consumer reads a partition in offset order from
//! its position; going back (or reading one offset twice) without a seek, a
//! rebalance or a restart means the fetch position regressed under it, for
//! example a fetch served by a stale leader after a truncation it never noticed.
//!
//! A `Seek` of that consumer and partition, or a `ClientStart` of that consumer,
//! resets the expectation: the next read may start anywhere.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::History;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::NonmonotonicPoll);
    for (previous, current) in views.consecutive_reads() {
        if current.offset <= previous.offset {
            findings.report(format!(
                "{} read {}@{} ({}) then @{} ({}) at {}",
                views.read_op(current).node,
                views.read_record(current).partition,
                previous.offset,
                previous.value,
                current.offset,
                current.value,
                seconds(views.read_op(current).time)
            ));
            if findings.is_full() {
                break;
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
    fn fires_when_a_read_goes_backwards() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 4, value(1, 4)), (0, 5, value(1, 5))]);
        history.poll(20, "consumer-1", &[(0, 3, value(1, 3))]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::NonmonotonicPoll);
        assert_eq!(violations[0].detail, "consumer-1 read events/0@5 (1:5) then @3 (1:3) at 0.020s");
    }

    #[test]
    fn fires_when_one_offset_is_read_twice_within_a_poll() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 4, value(1, 4)), (0, 4, value(1, 4))]);
        assert_eq!(check(&history.build(), &final_state(vec![])).len(), 1);
    }

    #[test]
    fn silent_when_reads_go_back_only_after_a_seek_or_restart() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 4, value(1, 4)), (0, 5, value(1, 5)), (1, 0, value(2, 0))]);
        history.seek(15, "consumer-1", 0, 0);
        history.poll(20, "consumer-1", &[(0, 0, value(1, 0)), (1, 1, value(2, 1))]);
        history.client_start(25, "consumer-1");
        history.poll(30, "consumer-1", &[(0, 0, value(1, 0)), (1, 0, value(2, 0))]);
        // Another consumer's reads are its own.
        history.poll(40, "consumer-2", &[(0, 0, value(1, 0))]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }

    #[test]
    fn a_seek_of_another_partition_resets_nothing() {
        let mut history = HistoryBuilder::new();
        history.poll(10, "consumer-1", &[(0, 4, value(1, 4))]);
        history.seek(15, "consumer-1", 1, 0);
        history.poll(20, "consumer-1", &[(0, 2, value(1, 2))]);
        assert_eq!(check(&history.build(), &final_state(vec![])).len(), 1);
    }
}
