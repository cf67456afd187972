//! `timeout`: the run hit its simulated-time limit or the wall-clock watchdog.
//! A run that never finished cannot be judged complete (its drain and final state
//! are missing or partial), and a hang is itself a finding, so the timeout is
//! reported as one violation per `Timeout` op.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, OpBody};

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::Timeout);
    for op in views.run_end_ops() {
        if findings.is_full() {
            break;
        }
        if let OpBody::Timeout { message } = &op.body {
            findings.report(format!("the run timed out at {}: {message}", seconds(op.time)));
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_for_a_timeout() {
        let mut history = HistoryBuilder::new();
        history.heal(50_000);
        history.timeout(120_000, "simulated time limit of 120s reached");
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Timeout);
        assert_eq!(violations[0].detail, "the run timed out at 120.000s: simulated time limit of 120s reached");
    }

    #[test]
    fn silent_without_a_timeout() {
        let mut history = HistoryBuilder::new();
        history.panic(10, "broker-1", "boom");
        history.heal(50_000);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
