//! `metadata-regression`: a node applied an offset of the KRaft metadata log
//! that was not past the last offset it had applied in the same process
//! lifetime. A node applies committed entries in log order, each once (KIP-631's
//! metadata loader), and the quorum never takes a committed entry back, so
//! within one incarnation the offsets a node applies only grow. A restarted node
//! is a new incarnation that loads the log again, from offset 0 or its snapshot:
//! that is no regression.
//!
//! Every op counts, whatever its type; one that applies nothing (no digests) is
//! skipped. A node's last offset becomes the last one of the application that
//! went back, so one step back is one violation.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Op, OpBody};
use std::collections::BTreeMap;

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::MetadataRegression);
    // The last offset each node applied in each incarnation, and the op that applied it.
    let mut last_applied: BTreeMap<(&str, u32), (u64, &Op)> = BTreeMap::new();
    for &op in views.metadata_applications() {
        if findings.is_full() {
            break;
        }
        let OpBody::MetadataApplied { incarnation, offset, digests } = &op.body else { continue };
        if digests.is_empty() {
            continue;
        }
        let last_offset = offset + digests.len() as u64 - 1;
        let Some((previous_offset, previous_op)) = last_applied.insert((&*op.node, *incarnation), (last_offset, op)) else { continue };
        if *offset <= previous_offset {
            findings.report(format!(
                "{} (incarnation {incarnation}) applied metadata offset {offset} at {}, after it had applied offset {previous_offset} at {}",
                op.node,
                seconds(op.time),
                seconds(previous_op.time)
            ));
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_a_node_applies_an_offset_again() {
        let mut history = HistoryBuilder::new();
        history.metadata_applied(1_000, "broker-1", 1, 0, &[0xa0, 0xa1, 0xa2]);
        // The same entries again, as a loader that lost its place would apply them.
        history.metadata_applied(1_500, "broker-1", 1, 2, &[0xa2, 0xa3]);
        history.metadata_applied(2_000, "broker-1", 1, 4, &[0xa4]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::MetadataRegression);
        assert_eq!(violations[0].detail, "broker-1 (incarnation 1) applied metadata offset 2 at 1.500s, after it had applied offset 2 at 1.000s");
    }

    #[test]
    fn silent_for_growing_offsets_and_a_restart_that_applies_the_log_again() {
        let mut history = HistoryBuilder::new();
        history.metadata_applied(1_000, "controller-1", 1, 0, &[0xa0, 0xa1]);
        // Another node has its own order; an empty application applies nothing.
        history.metadata_applied(1_100, "broker-2", 1, 0, &[0xa0]);
        history.metadata_applied(1_200, "controller-1", 1, 2, &[]);
        // A gap (a snapshot loaded past some offsets) is not a step back.
        history.metadata_applied(1_500, "controller-1", 1, 5, &[0xa5]);
        history.metadata_applied(4_000, "controller-1", 2, 0, &[0xa0, 0xa1, 0xa2]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
