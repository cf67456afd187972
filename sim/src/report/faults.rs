//! Faults as intervals, for the timeline: pairs each fault the nemesis recorded
//! with the record that undid it, by parsing the descriptions `nemesis.rs` writes
//! ("crash broker-2" ... "restart broker-2"). A fault that nothing undid lasts until
//! the Heal op (the end of the fault phase), or to the end of the run when it began
//! after the heal. A description this module does not know becomes a note: an
//! instant on the network lane, so that nothing the nemesis did goes unseen.

use crate::history::{History, OpBody};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Crash,
    PowerLoss,
    Pause,
    Isolate,
    OneWay,
    Partition,
    PacketLoss,
    Latency,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Crash,
        FaultKind::PowerLoss,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::OneWay,
        FaultKind::Partition,
        FaultKind::PacketLoss,
        FaultKind::Latency,
    ];

    /// The name used in the legend and as the CSS class suffix.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::Pause => "pause",
            FaultKind::Isolate => "isolate",
            FaultKind::OneWay => "one-way",
            FaultKind::Partition => "partition",
            FaultKind::PacketLoss => "packet-loss",
            FaultKind::Latency => "latency",
        }
    }

    /// Which undo record ends a fault of this kind: a restart ends a crash and a power loss alike.
    fn undo_class(self) -> UndoClass {
        match self {
            FaultKind::Crash | FaultKind::PowerLoss => UndoClass::Restart,
            FaultKind::Pause => UndoClass::Resume,
            FaultKind::Isolate => UndoClass::HealIsolation,
            FaultKind::OneWay => UndoClass::HealOneWay,
            FaultKind::Partition => UndoClass::HealPartition,
            FaultKind::PacketLoss => UndoClass::PacketLossOver,
            FaultKind::Latency => UndoClass::LatencyNormal,
        }
    }
}

/// Where a fault hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTargets {
    /// Processes: crashed, paused, isolated or silenced.
    Nodes(Vec<String>),
    /// The nodes split in two sides, each able to talk only within itself.
    Split(Vec<String>, Vec<String>),
    /// Every link at once: packet loss, added latency.
    Network,
}

impl FaultTargets {
    /// Every node named, in the order the description names them.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        let (first, second): (&[String], &[String]) = match self {
            FaultTargets::Nodes(nodes) => (nodes, &[]),
            FaultTargets::Split(left, right) => (left, right),
            FaultTargets::Network => (&[], &[]),
        };
        first.iter().chain(second)
    }

    /// What the undo record names: the same node list, or nothing for network-wide faults.
    fn undo_target(&self) -> String {
        match self {
            FaultTargets::Nodes(nodes) => nodes.join(","),
            FaultTargets::Split(..) | FaultTargets::Network => String::new(),
        }
    }
}

/// One fault from the moment it began to the moment it was undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub description: String,
    pub targets: FaultTargets,
    pub start: u64,
    pub end: u64,
    /// The record that undid it; `None` when it lasted until the heal or the end.
    pub undo: Option<String>,
}

/// A nemesis record that is no fault this module knows, kept as an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub time: u64,
    pub description: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultTimeline {
    pub faults: Vec<Fault>,
    pub notes: Vec<Note>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum UndoClass {
    Restart,
    Resume,
    HealIsolation,
    HealOneWay,
    HealPartition,
    PacketLossOver,
    LatencyNormal,
}

#[derive(Debug, PartialEq, Eq)]
enum Record {
    Start(FaultKind, FaultTargets),
    Undo(UndoClass, String),
}

fn node_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(String::from).collect()
}

/// `[a,b] | [c]`, as `nemesis::split` writes it.
fn parse_split(text: &str) -> Option<FaultTargets> {
    let (left, right) = text.split_once(" | ")?;
    let side = |text: &str| text.trim().strip_prefix('[')?.strip_suffix(']').map(node_list);
    Some(FaultTargets::Split(side(left)?, side(right)?))
}

fn parse_undo(description: &str) -> Option<Record> {
    let whole = |class| Some(Record::Undo(class, String::new()));
    match description {
        "heal partition" => return whole(UndoClass::HealPartition),
        "packet loss over" => return whole(UndoClass::PacketLossOver),
        "latency back to normal" => return whole(UndoClass::LatencyNormal),
        _ => {}
    }
    let prefixes = [
        ("restart ", UndoClass::Restart),
        ("resume ", UndoClass::Resume),
        ("heal isolation of ", UndoClass::HealIsolation),
        ("heal one-way link of ", UndoClass::HealOneWay),
    ];
    prefixes.into_iter().find_map(|(prefix, class)| Some(Record::Undo(class, description.strip_prefix(prefix)?.trim().to_string())))
}

fn parse_start(description: &str) -> Option<Record> {
    let start = |kind, targets| Some(Record::Start(kind, targets));
    if let Some(rest) = description.strip_prefix("one-way: ") {
        let node = rest.split_whitespace().next()?;
        return start(FaultKind::OneWay, FaultTargets::Nodes(vec![node.to_string()]));
    }
    if let Some(rest) = description.strip_prefix("partition ") {
        return start(FaultKind::Partition, parse_split(rest)?);
    }
    if description.starts_with("packet loss ") {
        return start(FaultKind::PacketLoss, FaultTargets::Network);
    }
    if description.starts_with("latency +") {
        return start(FaultKind::Latency, FaultTargets::Network);
    }
    let on_nodes = [("crash ", FaultKind::Crash), ("power-loss ", FaultKind::PowerLoss), ("pause ", FaultKind::Pause), ("isolate ", FaultKind::Isolate)];
    on_nodes.into_iter().find_map(|(prefix, kind)| {
        let nodes = node_list(description.strip_prefix(prefix)?);
        (!nodes.is_empty()).then_some(Record::Start(kind, FaultTargets::Nodes(nodes)))
    })
}

/// What a nemesis description says: a fault began, one was undone, or neither.
fn parse(description: &str) -> Option<Record> {
    parse_undo(description).or_else(|| parse_start(description))
}

/// Pairs every fault in the history with its undo. `end_of_run` closes what
/// began after the heal and was never undone.
pub fn pair_faults(history: &History, end_of_run: u64) -> FaultTimeline {
    let mut timeline = FaultTimeline::default();
    // Faults still in effect, by what would undo them; oldest first, so that of two
    // partitions the first healed is the first made.
    let mut open: BTreeMap<(UndoClass, String), Vec<usize>> = BTreeMap::new();
    for op in &history.ops {
        let OpBody::Fault { description } = &op.body else { continue };
        match parse(description) {
            Some(Record::Start(kind, targets)) => {
                open.entry((kind.undo_class(), targets.undo_target())).or_default().push(timeline.faults.len());
                let fault = Fault { kind, description: description.clone(), targets, start: op.time, end: end_of_run, undo: None };
                timeline.faults.push(fault);
            }
            Some(Record::Undo(class, target)) => {
                let oldest = open.get_mut(&(class, target)).filter(|indexes| !indexes.is_empty()).map(|indexes| indexes.remove(0));
                match oldest {
                    Some(index) => {
                        timeline.faults[index].end = op.time;
                        timeline.faults[index].undo = Some(description.clone());
                    }
                    None => timeline.notes.push(Note { time: op.time, description: description.clone() }),
                }
            }
            None => timeline.notes.push(Note { time: op.time, description: description.clone() }),
        }
    }
    let heal = history.heal_time();
    for fault in timeline.faults.iter_mut().filter(|fault| fault.undo.is_none()) {
        fault.end = heal.filter(|&heal| heal >= fault.start).unwrap_or(end_of_run).max(fault.start);
    }
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::HistoryBuilder;

    fn nodes(names: &[&str]) -> FaultTargets {
        FaultTargets::Nodes(names.iter().map(|name| name.to_string()).collect())
    }

    fn spans(timeline: &FaultTimeline) -> Vec<(FaultKind, u64, u64, bool)> {
        timeline.faults.iter().map(|fault| (fault.kind, fault.start / 1000, fault.end / 1000, fault.undo.is_some())).collect()
    }

    #[test]
    fn parses_every_description_the_nemesis_writes() {
        assert_eq!(parse("crash broker-2"), Some(Record::Start(FaultKind::Crash, nodes(&["broker-2"]))));
        assert_eq!(parse("power-loss broker-1,broker-3"), Some(Record::Start(FaultKind::PowerLoss, nodes(&["broker-1", "broker-3"]))));
        assert_eq!(parse("pause controller-1"), Some(Record::Start(FaultKind::Pause, nodes(&["controller-1"]))));
        assert_eq!(parse("isolate broker-1"), Some(Record::Start(FaultKind::Isolate, nodes(&["broker-1"]))));
        assert_eq!(parse("one-way: broker-3 hears but cannot send"), Some(Record::Start(FaultKind::OneWay, nodes(&["broker-3"]))));
        let split = FaultTargets::Split(vec!["broker-1".into(), "producer-1".into()], vec!["broker-2".into()]);
        assert_eq!(parse("partition [broker-1,producer-1] | [broker-2]"), Some(Record::Start(FaultKind::Partition, split)));
        assert_eq!(parse("packet loss 10%"), Some(Record::Start(FaultKind::PacketLoss, FaultTargets::Network)));
        assert_eq!(parse("latency +50ms"), Some(Record::Start(FaultKind::Latency, FaultTargets::Network)));
        assert_eq!(parse("restart broker-1,broker-3"), Some(Record::Undo(UndoClass::Restart, "broker-1,broker-3".into())));
        assert_eq!(parse("resume controller-1"), Some(Record::Undo(UndoClass::Resume, "controller-1".into())));
        assert_eq!(parse("heal isolation of broker-1"), Some(Record::Undo(UndoClass::HealIsolation, "broker-1".into())));
        assert_eq!(parse("heal one-way link of broker-3"), Some(Record::Undo(UndoClass::HealOneWay, "broker-3".into())));
        assert_eq!(parse("heal partition"), Some(Record::Undo(UndoClass::HealPartition, String::new())));
        assert_eq!(parse("packet loss over"), Some(Record::Undo(UndoClass::PacketLossOver, String::new())));
        assert_eq!(parse("latency back to normal"), Some(Record::Undo(UndoClass::LatencyNormal, String::new())));
        assert_eq!(parse("Crash skipped: target Node(\"x\") resolves to no node"), None);
        assert_eq!(parse("partition without sides"), None);
    }

    #[test]
    fn pairs_each_fault_with_its_own_undo() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "crash broker-2").fault(20, "power-loss broker-1").fault(30, "restart broker-1");
        history.fault(40, "restart broker-2").fault(50, "pause broker-3").fault(60, "resume broker-3");
        history.fault(70, "isolate broker-1").fault(80, "heal isolation of broker-1");
        history.fault(90, "packet loss 10%").fault(95, "latency +50ms").fault(100, "packet loss over").fault(110, "latency back to normal");
        let timeline = pair_faults(&history.build(), 1_000_000);
        assert_eq!(
            spans(&timeline),
            vec![
                (FaultKind::Crash, 10, 40, true),
                (FaultKind::PowerLoss, 20, 30, true),
                (FaultKind::Pause, 50, 60, true),
                (FaultKind::Isolate, 70, 80, true),
                (FaultKind::PacketLoss, 90, 100, true),
                (FaultKind::Latency, 95, 110, true),
            ]
        );
        assert_eq!(timeline.faults[0].undo.as_deref(), Some("restart broker-2"));
        assert!(timeline.notes.is_empty());
    }

    #[test]
    fn a_multi_node_crash_is_undone_by_the_restart_naming_the_same_nodes() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "crash broker-1,broker-2").fault(15, "restart broker-1").fault(20, "restart broker-1,broker-2");
        let timeline = pair_faults(&history.build(), 1_000_000);
        assert_eq!(spans(&timeline), vec![(FaultKind::Crash, 10, 20, true)]);
        assert_eq!(timeline.notes, vec![Note { time: 15_000, description: "restart broker-1".into() }]);
    }

    #[test]
    fn partitions_heal_oldest_first() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "partition [broker-1] | [broker-2]").fault(20, "partition [broker-3] | [broker-1]");
        history.fault(30, "heal partition").fault(40, "heal partition");
        let timeline = pair_faults(&history.build(), 1_000_000);
        assert_eq!(spans(&timeline), vec![(FaultKind::Partition, 10, 30, true), (FaultKind::Partition, 20, 40, true)]);
    }

    #[test]
    fn a_fault_never_undone_lasts_until_the_heal_or_the_end() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "crash broker-1").heal(50).fault(60, "isolate broker-2");
        let timeline = pair_faults(&history.build(), 90_000);
        assert_eq!(spans(&timeline), vec![(FaultKind::Crash, 10, 50, false), (FaultKind::Isolate, 60, 90, false)]);
    }

    #[test]
    fn unknown_records_become_notes() {
        let mut history = HistoryBuilder::new();
        history.fault(10, "Crash skipped: target Node(\"broker-9\") resolves to no node");
        let timeline = pair_faults(&history.build(), 90_000);
        assert!(timeline.faults.is_empty());
        assert_eq!(timeline.notes.len(), 1);
        assert_eq!(timeline.notes[0].time, 10_000);
    }
}
