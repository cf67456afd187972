//! The timeline's rows and what is drawn on them: one lane per node, in roster
//! order, and the operations as marks bucketed per pixel column, so that a run of
//! fifty thousand operations draws as a few thousand marks. A bucket shows its
//! worst outcome; its tooltip counts everything in it.

use super::faults::FaultTimeline;
use crate::history::{History, Op, OpBody, OpType};
use std::collections::BTreeMap;

/// What one operation looks like on the timeline, from least to most alarming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkClass {
    ClientStart,
    Seek,
    /// A connection closed: reset by its peer or timed out (issue 14).
    Connection,
    /// The KRaft quorum elected a controller, or the active controller changed
    /// the cluster's metadata (registered, fenced or unfenced a broker) or resigned.
    Controller,
    Poll,
    SendOk,
    Info,
    Fail,
}

impl MarkClass {
    pub const ALL: [MarkClass; 8] = [
        MarkClass::ClientStart,
        MarkClass::Seek,
        MarkClass::Connection,
        MarkClass::Controller,
        MarkClass::Poll,
        MarkClass::SendOk,
        MarkClass::Info,
        MarkClass::Fail,
    ];

    /// The CSS class suffix and legend key.
    pub fn name(self) -> &'static str {
        match self {
            MarkClass::ClientStart => "start",
            MarkClass::Seek => "seek",
            MarkClass::Connection => "conn",
            MarkClass::Controller => "controller",
            MarkClass::Poll => "poll",
            MarkClass::SendOk => "ok",
            MarkClass::Info => "info",
            MarkClass::Fail => "fail",
        }
    }

    /// How the legend and tooltips call it.
    pub fn label(self) -> &'static str {
        match self {
            MarkClass::ClientStart => "client start",
            MarkClass::Seek => "seek",
            MarkClass::Connection => "connection closed",
            MarkClass::Controller => "controller change",
            MarkClass::Poll => "poll",
            MarkClass::SendOk => "send ok",
            MarkClass::Info => "outcome unknown (info)",
            MarkClass::Fail => "failed",
        }
    }

    /// Invokes, nemesis records and metadata applications are not marks: an
    /// invoke is half of the op its completion shows, faults are drawn as bands,
    /// and every node applies every metadata log entry, too many to draw.
    pub fn of(op: &Op) -> Option<MarkClass> {
        match (&op.body, op.kind) {
            (OpBody::Fault { .. } | OpBody::Heal | OpBody::MetadataApplied { .. }, _) => None,
            // Recorded `info`, which elsewhere means an unknown outcome; these are plain facts.
            (OpBody::ControllerElected { .. } | OpBody::ControllerChange { .. }, OpType::Info) => Some(MarkClass::Controller),
            (OpBody::ClientStart, _) => Some(MarkClass::ClientStart),
            (OpBody::Connection { .. }, _) => Some(MarkClass::Connection),
            (OpBody::Panic { .. } | OpBody::Timeout { .. }, _) => Some(MarkClass::Fail),
            (_, OpType::Invoke) => None,
            (_, OpType::Fail) => Some(MarkClass::Fail),
            (_, OpType::Info) => Some(MarkClass::Info),
            (OpBody::Send { .. }, OpType::Ok) => Some(MarkClass::SendOk),
            (OpBody::Poll { .. }, OpType::Ok) => Some(MarkClass::Poll),
            (_, OpType::Ok) => Some(MarkClass::Seek),
        }
    }
}

/// The operations of one lane that fall in one pixel column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub counts: BTreeMap<MarkClass, u32>,
    /// Records returned by the polls counted here.
    pub records_polled: usize,
    pub first: u64,
    pub last: u64,
    /// What the controller ops here say (elections, fencing), the first few.
    pub notes: Vec<String>,
}

/// Controller notes one bucket's title spells out; the rest are counted.
const NOTES_SHOWN: usize = 4;

impl Bucket {
    fn add(&mut self, op: &Op, class: MarkClass) {
        if self.counts.is_empty() {
            self.first = op.time;
        }
        self.last = op.time;
        *self.counts.entry(class).or_default() += 1;
        if let OpBody::Poll { records } = &op.body {
            self.records_polled += records.len();
        }
        if self.notes.len() < NOTES_SHOWN {
            self.notes.extend(op.body.controller_note());
        }
    }

    /// The most alarming operation other than a client start, which is drawn apart.
    pub fn worst(&self) -> Option<MarkClass> {
        self.counts.keys().copied().filter(|class| *class != MarkClass::ClientStart).max()
    }

    pub fn starts(&self) -> u32 {
        self.counts.get(&MarkClass::ClientStart).copied().unwrap_or(0)
    }

    /// "3 send ok, 1 failed, 2 poll (14 records)"; controller changes are
    /// spelled out: "1 controller change: controller fences broker-2: ...".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .rev()
            .map(|(class, count)| match class {
                MarkClass::Poll => {
                    let records = if self.records_polled == 1 { "record" } else { "records" };
                    format!("{count} {} ({} {records})", class.label(), self.records_polled)
                }
                MarkClass::Controller => {
                    let more = if *count as usize > self.notes.len() { "; ..." } else { "" };
                    format!("{count} {}: {}{more}", class.label(), self.notes.join("; "))
                }
                _ => format!("{count} {}", class.label()),
            })
            .collect();
        parts.join(", ")
    }
}

/// The order lanes appear in: controllers, brokers, producers, consumers, then the
/// rest; by number within a role, so that broker-10 follows broker-9.
fn lane_order(name: &str) -> (u8, u64, &str) {
    let roles = ["controller-", "broker-", "producer-", "consumer-"];
    let role = roles.iter().position(|prefix| name.starts_with(prefix)).unwrap_or(roles.len());
    let number = name.rsplit('-').next().and_then(|digits| digits.parse().ok()).unwrap_or(u64::MAX);
    (role as u8, number, name)
}

/// Every node the history names, as an operation's node or a fault's target, and
/// the `brokers` known otherwise (brokers record no operations, so one that no fault
/// hit would have no lane). The nemesis is no lane: its records are the bands.
pub fn lane_names(history: &History, faults: &FaultTimeline, brokers: &[String]) -> Vec<String> {
    let mut names: Vec<&str> = history.ops.iter().map(|op| &*op.node).filter(|node| *node != "nemesis").collect();
    names.extend(faults.faults.iter().flat_map(|fault| fault.targets.nodes()).map(String::as_str));
    names.extend(brokers.iter().map(String::as_str));
    names.sort_by_key(|name| lane_order(name));
    names.dedup();
    names.into_iter().map(String::from).collect()
}

/// Buckets every mark by (lane index, column); `column_of` maps a time to its column.
pub fn bucket_marks(history: &History, lanes: &[String], column_of: impl Fn(u64) -> u64) -> BTreeMap<(usize, u64), Bucket> {
    let lane_index: BTreeMap<&str, usize> = lanes.iter().enumerate().map(|(index, name)| (name.as_str(), index)).collect();
    let mut buckets: BTreeMap<(usize, u64), Bucket> = BTreeMap::new();
    for op in &history.ops {
        let (Some(class), Some(&lane)) = (MarkClass::of(op), lane_index.get(&*op.node)) else { continue };
        buckets.entry((lane, column_of(op.time))).or_default().add(op, class);
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::{value, HistoryBuilder};
    use crate::report::faults::pair_faults;

    #[test]
    fn lanes_follow_roster_order() {
        let mut history = HistoryBuilder::new();
        history.client_start(0, "consumer-1").client_start(0, "producer-2").client_start(0, "producer-1");
        history.fault(5, "crash broker-10").fault(6, "pause broker-2").fault(7, "isolate controller-1");
        history.timeout(9, "time limit exceeded");
        let history = history.build();
        let lanes = lane_names(&history, &pair_faults(&history, 10_000), &["broker-1".to_string(), "broker-2".to_string()]);
        let expected = ["controller-1", "broker-1", "broker-2", "broker-10", "producer-1", "producer-2", "consumer-1", "runner"];
        assert_eq!(lanes, expected);
    }

    #[test]
    fn a_bucket_shows_its_worst_outcome_and_counts_the_rest() {
        let mut history = HistoryBuilder::new();
        history.acked_send(1, "producer-1", value(1, 0), 0, 0).send_fail(2, "producer-1", value(1, 1)).client_start(3, "producer-1");
        history.poll(1, "consumer-1", &[(0, 0, value(1, 0)), (0, 1, value(1, 1))]);
        let history = history.build();
        let lanes = vec!["producer-1".to_string(), "consumer-1".to_string()];
        let buckets = bucket_marks(&history, &lanes, |_| 0);
        let producer = &buckets[&(0, 0)];
        assert_eq!(producer.worst(), Some(MarkClass::Fail));
        assert_eq!(producer.starts(), 1);
        assert_eq!(producer.summary(), "1 failed, 1 send ok, 1 client start");
        assert_eq!(buckets[&(1, 0)].summary(), "1 poll (2 records)");
    }

    #[test]
    fn quorum_changes_are_controller_marks_and_metadata_applications_are_not_drawn() {
        let mut history = HistoryBuilder::new();
        history.controller_elected(1, "controller-1", 1, true).controller_change(2, "controller-1", "unfenced broker-2");
        history.metadata_applied(3, "controller-1", 1, 0, &[7, 8]).metadata_applied(3, "broker-2", 1, 0, &[7, 8]);
        let history = history.build();
        let classes: Vec<Option<MarkClass>> = history.ops.iter().map(MarkClass::of).collect();
        assert_eq!(classes, [Some(MarkClass::Controller), Some(MarkClass::Controller), None, None]);
        let lanes = vec!["controller-1".to_string(), "broker-2".to_string()];
        let buckets = bucket_marks(&history, &lanes, |_| 0);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[&(0, 0)].summary(), "2 controller change: active controller in quorum epoch 1; unfenced broker-2");
    }
}
