//! `metadata-divergence`: two applications of the same offset of the KRaft
//! metadata log disagree on its entry, whether by two nodes or by one node in
//! two process lifetimes. The quorum (KIP-595) commits an entry once a majority
//! of the voters holds it and never overwrites it, so every controller and
//! broker that applies the log (KIP-631) applies one and the same committed
//! prefix, before and after a restart. Metadata that differed would have nodes
//! disagree on leaders, ISRs and which brokers are fenced.
//!
//! Each offset's first application is kept (its digest, node, incarnation and
//! time), and every later one is compared with it. Every op counts, whatever its
//! type. A node whose log went astray differs at most offsets after the first,
//! so each node and incarnation is reported once, at its first differing offset.

use super::findings::{seconds, Findings};
use super::views::Views;
use super::{CheckerKind, Violation};
use crate::final_state::FinalState;
use crate::history::{History, Op, OpBody};
use std::collections::{BTreeMap, BTreeSet};

/// The first application of one offset.
#[derive(Clone, Copy)]
struct Application<'a> {
    digest: u64,
    incarnation: u32,
    op: &'a Op,
}

pub fn check(history: &History, final_state: &FinalState) -> Vec<Violation> {
    judge(&Views::new(history, final_state))
}

/// `check` on views already built (`check_all` builds them once for every checker).
pub(crate) fn judge(views: &Views<'_>) -> Vec<Violation> {
    let mut findings = Findings::new(CheckerKind::MetadataDivergence);
    let mut first_applications: BTreeMap<u64, Application<'_>> = BTreeMap::new();
    // The (node, incarnation) pairs already reported.
    let mut diverged: BTreeSet<(&str, u32)> = BTreeSet::new();
    for &op in views.metadata_applications() {
        if findings.is_full() {
            break;
        }
        let OpBody::MetadataApplied { incarnation, offset: first_offset, digests } = &op.body else { continue };
        let mut reported = diverged.contains(&(&*op.node, *incarnation));
        for (offset, &digest) in (*first_offset..).zip(digests) {
            let first = *first_applications.entry(offset).or_insert(Application { digest, incarnation: *incarnation, op });
            if first.digest == digest || reported {
                continue;
            }
            findings.report(format!(
                "metadata offset {offset}: {} (incarnation {incarnation}) applied digest {digest:#x} at {}, \
                 but {} (incarnation {}) applied digest {:#x} at {}",
                op.node,
                seconds(op.time),
                first.op.node,
                first.incarnation,
                first.digest,
                seconds(first.op.time)
            ));
            diverged.insert((&*op.node, *incarnation));
            reported = true;
        }
    }
    findings.into_violations()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn fires_when_a_broker_applies_another_entry_at_a_committed_offset() {
        let mut history = HistoryBuilder::new();
        history.metadata_applied(1_000, "controller-1", 1, 0, &[0xa0, 0xa1, 0xa2]);
        // broker-2 differs from offset 1 on: one violation, at the first offset.
        history.metadata_applied(1_200, "broker-2", 1, 0, &[0xa0, 0xb1]);
        history.metadata_applied(1_300, "broker-2", 1, 2, &[0xb2]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].kind, CheckerKind::MetadataDivergence);
        assert_eq!(
            violations[0].detail,
            "metadata offset 1: broker-2 (incarnation 1) applied digest 0xb1 at 1.200s, \
             but controller-1 (incarnation 1) applied digest 0xa1 at 1.000s"
        );
    }

    #[test]
    fn fires_when_a_restarted_node_applies_another_entry_than_before() {
        let mut history = HistoryBuilder::new();
        history.metadata_applied(1_000, "controller-2", 1, 0, &[0xa0, 0xa1]);
        history.metadata_applied(3_000, "controller-2", 2, 0, &[0xa0, 0xc1]);
        let violations = check(&history.build(), &final_state(vec![]));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.starts_with("metadata offset 1: controller-2 (incarnation 2) applied digest 0xc1 at 3.000s"), "{}", violations[0].detail);
    }

    #[test]
    fn silent_for_nodes_and_restarts_applying_one_log() {
        let mut history = HistoryBuilder::new();
        history.metadata_applied(1_000, "controller-1", 1, 0, &[0xa0, 0xa1]);
        history.metadata_applied(1_100, "broker-1", 1, 0, &[0xa0]);
        history.metadata_applied(1_500, "controller-1", 1, 2, &[0xa2]);
        history.metadata_applied(1_600, "broker-1", 1, 1, &[0xa1, 0xa2]);
        // broker-1 restarted and applies the log again from offset 0.
        history.metadata_applied(4_000, "broker-1", 2, 0, &[0xa0, 0xa1, 0xa2, 0xa3]);
        assert!(check(&history.build(), &final_state(vec![])).is_empty());
    }
}
