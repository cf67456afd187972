//! `panic`: a simulated node panicked. A panic in the model is a tripped
//! invariant assertion (or a plain bug), which is always a finding: the run ended
//! there and its seed reproduces it. One violation per `Panic` op, with its message.

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
    let mut findings = Findings::new(CheckerKind::Panic);
    for op in views.run_end_ops() {
        if findings.is_full() {
            break;
        }
        if let OpBody::Panic { message } = &op.body {
            findings.report(format!("{} panicked at {}: {message}", op.node, seconds(op.time)));
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_for_a_panic_with_its_message() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-1", value(1, 0), 0, 0);
        history.panic(1500, "broker-2", "high watermark moved back from 7 to 5");
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::Panic);
        assert_eq!(violations[0].detail, "broker-2 panicked at 1.500s: high watermark moved back from 7 to 5");
    }

    #[test]
    fn silent_without_a_panic() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "crash broker-2");
        history.timeout(60_000, "simulated time limit reached");
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
