//! The HTML report of one run: a single self-contained file (inline CSS and SVG,
//! no script, nothing fetched) with the run's header and the command that replays
//! it, its violations, a timeline of nodes, faults and operations, and the faults
//! as a table. The output depends only on the run, so two reports of one seed are
//! byte for byte the same.

use super::faults::{pair_faults, FaultKind, FaultTimeline};
use super::locate::locate;
use super::marks::MarkClass;
use super::timeline::{render_svg, Pin, TimelineInput};
use crate::check::findings::seconds;
use crate::check::{CheckerKind, Violation};
use crate::history::{History, Op, OpBody, Value};
use crate::runner::{Outcome, RunDetail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::path::Path;
use super::escape::escape;

/// A path as a shell word: bare when it is plain, else single-quoted.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Violation => "violation",
        Outcome::Panic => "panic",
        Outcome::Timeout => "timeout",
    }
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.15em;margin:1.5em 0 .5em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}dt{font-weight:600}dd{margin:0}
code{font:13px ui-monospace,monospace;background:#f3f3f3;padding:.1em .3em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
td.detail{font:13px ui-monospace,monospace}tr:target{background:#ffe9e9}
.outcome-ok{color:#2a7d2a}.outcome-violation,.outcome-panic,.outcome-timeout{color:#c11;font-weight:600}
.scroll{overflow-x:auto}
.timeline text{font:11px system-ui,sans-serif;fill:#333}.timeline .label{text-anchor:end}.timeline .tick{text-anchor:middle;fill:#666}
.lane.even{fill:#f7f7f7}.lane.odd{fill:#eeeeee}.grid{stroke:#d0d0d0;stroke-width:1}
.heal line{stroke:#333;stroke-width:2;stroke-dasharray:4 3}.pin line{stroke:#e00;stroke-width:2;stroke-opacity:.75}.pin polygon{fill:#e00}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;margin:.6em 0;padding:0;list-style:none}
.legend li{display:flex;align-items:center;gap:.35em}.sw{display:inline-block;width:14px;height:12px}
.m-ok{fill:#2ca02c;background:#2ca02c}.m-fail{fill:#d62728;background:#d62728}.m-info{fill:#ff7f0e;background:#ff7f0e}
.m-poll{fill:#1f77b4;background:#1f77b4}.m-seek{fill:#9ecae1;background:#9ecae1}.m-start{fill:#7b3294;background:#7b3294}.m-conn{fill:#8c564b;background:#8c564b}.m-controller{fill:#393b79;background:#393b79}
.fault-crash,.fault-power-loss,.fault-pause,.fault-isolate,.fault-one-way,.fault-partition,.fault-packet-loss,.fault-latency,.side-a,.side-b{opacity:.35}
.fault-crash{fill:#c44e52;background:#c44e52}.fault-power-loss{fill:#67000d;background:#67000d}.fault-pause{fill:#bcbd22;background:#bcbd22}
.fault-isolate{fill:#9467bd;background:#9467bd}.fault-one-way{fill:#c5b0d5;background:#c5b0d5}.fault-partition{fill:#17becf;background:#17becf}
.fault-packet-loss{fill:#7f7f7f;background:#7f7f7f}.fault-latency{fill:#e377c2;background:#e377c2}
.side-a{fill:#17becf;background:#17becf}.side-b{fill:#e7ba52;background:#e7ba52}.note{fill:#555;background:#555}
.sw.heal{border-left:2px dashed #333;width:0;height:14px}.sw.pin{border-left:2px solid #e00;width:0;height:14px}
.explain{border-left:4px solid #c11;background:#fff5f5;padding:.5em 1em;margin:.5em 0}.explain p{margin:.3em 0}
mark{background:#ffd54f;padding:0 .15em}.ops{font:13px ui-monospace,monospace;white-space:pre;margin:.2em 0 .8em;overflow-x:auto}
";

/// What an anomaly means, in words (DESIGN §5).
fn explain(kind: CheckerKind) -> &'static str {
    match kind {
        CheckerKind::LostWrite => "A send the cluster acknowledged is missing from the final committed log: the producer was told the record was written, and it is gone.",
        CheckerKind::Duplicate => "One sent value stands at more than one offset: a retry was written again instead of being recognised as a duplicate.",
        CheckerKind::InconsistentOffsets => "Two reads of the same partition offset returned different records: replicas disagreed on what an offset holds, and consumers saw both.",
        CheckerKind::NonmonotonicSend => "A producer's acknowledged sends to one partition got offsets out of the order it sent them in.",
        CheckerKind::NonmonotonicPoll => "A consumer's reads of a partition went backwards without a seek or a rebalance.",
        CheckerKind::PollSkip => "A consumer's reads of a partition skipped offsets without a seek or a rebalance.",
        CheckerKind::CommittedDataLost => "A record a consumer read below the high watermark (so it was committed) later vanished from the log.",
        CheckerKind::ReplicaDivergence => "After healing, in-sync replicas disagree below the high watermark.",
        CheckerKind::Unseen => "An acknowledged send was never read by any consumer, though the consumers drained the partition to its end.",
        CheckerKind::Liveness => "After the faults were healed, pending work was not served before the drain timed out.",
        CheckerKind::Panic => "A simulated node panicked: an invariant of the model broke.",
        CheckerKind::Timeout => "The run hit its simulated-time limit or the wall-clock watchdog.",
        CheckerKind::ControllerSplitBrain => "Two controllers led the KRaft quorum in the same epoch, or a controller that is not a voter led it.",
        CheckerKind::MetadataDivergence => "Two applications of one metadata log offset applied different entries: nodes, or one node before and after a restart, disagree on committed metadata.",
        CheckerKind::MetadataRegression => "A node applied a metadata log offset that was not past the last one it had applied since it started.",
        _ => "A guarantee the checker of this name watches was broken (DESIGN §5).",
    }
}

/// The report page of one run of the scenario `name`, read from `scenario_path`.
pub fn render_page(name: &str, scenario_path: &Path, detail: &RunDetail) -> String {
    render_page_described(name, scenario_path, "", detail)
}

/// `render_page` with the scenario's description in the header.
pub fn render_page_described(name: &str, scenario_path: &Path, description: &str, detail: &RunDetail) -> String {
    let mut page = String::new();
    write_page(&mut page, name, scenario_path, description, detail).expect("formatting into a String cannot fail");
    page
}

fn write_page(page: &mut String, name: &str, scenario_path: &Path, description: &str, detail: &RunDetail) -> fmt::Result {
    let result = &detail.result;
    let last_op = detail.history.ops.last().map_or(0, |op| op.time);
    let span = (result.sim_ms * 1000).max(last_op);
    let faults = pair_faults(&detail.history, span);
    let pins: Vec<Pin<'_>> = result
        .violations
        .iter()
        .enumerate()
        .filter_map(|(index, violation)| Some(Pin { number: index + 1, violation, located: locate(&detail.history, violation)? }))
        .collect();
    writeln!(page, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(page, "<title>kafsim {} seed {}</title>\n<style>{STYLE}</style>\n</head>\n<body>", escape(name), result.seed)?;
    write_header(page, name, scenario_path, description, detail)?;
    write_explanation(page, detail)?;
    writeln!(page, "<h2>Timeline</h2>")?;
    write_legend(page)?;
    let brokers = brokers_of(detail);
    let timeline = TimelineInput { history: &detail.history, faults: &faults, pins: &pins, brokers: &brokers, span };
    writeln!(page, "<div class=\"scroll\">\n{}</div>", render_svg(&timeline))?;
    write_involved(page, detail)?;
    write_violations(page, detail, &pins)?;
    write_fault_table(page, &faults)?;
    writeln!(page, "</body>\n</html>")
}

/// Every broker holding a replica at the end, named as the cluster names them,
/// and the controller (a lane of its own even when nothing happened to it).
fn brokers_of(detail: &RunDetail) -> Vec<String> {
    let partitions = detail.final_state.iter().flat_map(|state| state.partitions.values());
    let ids: BTreeSet<u32> = partitions.flat_map(|partition| partition.replicas.keys().map(|id| id.0)).collect();
    let mut names: Vec<String> = ids.into_iter().map(|id| format!("broker-{id}")).collect();
    if !names.is_empty() {
        names.insert(0, "controller-1".to_string());
    }
    names
}

/// "What went wrong": each kind of violation explained in words, with its
/// count and first instance.
fn write_explanation(page: &mut String, detail: &RunDetail) -> fmt::Result {
    let mut kinds: BTreeMap<CheckerKind, Vec<&Violation>> = BTreeMap::new();
    for violation in &detail.result.violations {
        kinds.entry(violation.kind).or_default().push(violation);
    }
    if kinds.is_empty() {
        return Ok(());
    }
    writeln!(page, "<h2>What went wrong</h2>")?;
    for (kind, violations) in &kinds {
        let count = violations.len();
        let plural = if count == 1 { "" } else { "s" };
        writeln!(page, "<div class=\"explain\"><p><strong>{}</strong> ({count} violation{plural}). {}</p>", kind.name(), escape(explain(*kind)))?;
        writeln!(page, "<p>First: <code>{}</code></p></div>", escape(&violations[0].detail))?;
    }
    Ok(())
}

/// Values (`producer:sequence`) a violation's detail names.
fn values_named(detail: &str) -> Vec<Value> {
    let mut values = Vec::new();
    for token in detail.split(|c: char| !(c.is_ascii_digit() || c == ':')) {
        if let Some(value) = Value::decode(token.trim_matches(':').as_bytes()) {
            if !values.contains(&value) {
                values.push(value);
            }
        }
    }
    values
}

/// Whether an operation sends or reads one of `values`.
fn involves(op: &Op, values: &[Value]) -> bool {
    match &op.body {
        OpBody::Send { value, .. } => values.contains(value),
        OpBody::Poll { records } => records.iter().any(|record| values.contains(&record.value)),
        _ => false,
    }
}

/// One operation as a line, each of `values` highlighted. A poll shows only
/// the records that hold one of them, and how many it read in all.
fn op_line(op: &Op, values: &[Value]) -> String {
    let text = match &op.body {
        OpBody::Poll { records } if records.len() > 1 => {
            let kept = records.iter().filter(|record| values.contains(&record.value)).cloned().collect();
            let condensed = Op { body: OpBody::Poll { records: kept }, ..op.clone() };
            format!("{condensed}  (of {} records read)", records.len())
        }
        _ => op.to_string(),
    };
    let mut line = escape(&text);
    for value in values {
        let text = value.to_string();
        // Whole tokens only: 1:2 must not light up inside 1:23.
        let mut marked = String::with_capacity(line.len());
        let mut rest = line.as_str();
        while let Some(at) = rest.find(&text) {
            let before_ok = rest[..at].chars().next_back().is_none_or(|c| !c.is_ascii_digit() && c != ':');
            let after = &rest[at + text.len()..];
            let after_ok = after.chars().next().is_none_or(|c| !c.is_ascii_digit());
            marked.push_str(&rest[..at]);
            if before_ok && after_ok {
                marked.push_str(&format!("<mark>{text}</mark>"));
            } else {
                marked.push_str(&text);
            }
            rest = after;
        }
        marked.push_str(rest);
        line = marked;
    }
    line
}

/// The operations behind the first violations, with the values involved highlighted.
fn write_involved(page: &mut String, detail: &RunDetail) -> fmt::Result {
    const VIOLATIONS_SHOWN: usize = 5;
    const OPS_PER_VIOLATION: usize = 8;
    let history: &History = &detail.history;
    let mut shown = 0;
    for (index, violation) in detail.result.violations.iter().enumerate() {
        let values = values_named(&violation.detail);
        let ops: Vec<&Op> = history.ops.iter().filter(|op| involves(op, &values)).take(OPS_PER_VIOLATION + 1).collect();
        if ops.is_empty() {
            continue;
        }
        if shown == 0 {
            writeln!(page, "<h2>Records involved</h2>\n<p>The operations that sent or read the values each violation names, values highlighted.</p>")?;
        }
        shown += 1;
        let mut lines: Vec<String> = ops.iter().take(OPS_PER_VIOLATION).map(|op| op_line(op, &values)).collect();
        if ops.len() > OPS_PER_VIOLATION {
            lines.push("...".to_string());
        }
        writeln!(page, "<p><a href=\"#violation-{}\">#{}</a> {}</p>\n<div class=\"ops\">{}</div>", index + 1, index + 1, violation.kind, lines.join("\n"))?;
        if shown == VIOLATIONS_SHOWN {
            break;
        }
    }
    Ok(())
}

fn write_header(page: &mut String, name: &str, scenario_path: &Path, description: &str, detail: &RunDetail) -> fmt::Result {
    let result = &detail.result;
    let outcome = outcome_name(result.outcome);
    let swarm = if result.swarm.is_some() { " --swarm" } else { "" };
    let replay = format!("kafsim replay {} --seed {}{swarm} --trace", shell_word(&scenario_path.display().to_string()), result.seed);
    let heal = detail.history.heal_time().map_or_else(|| "never reached".to_string(), seconds);
    writeln!(page, "<h1>{} &middot; seed {}</h1>\n<dl>", escape(name), result.seed)?;
    writeln!(page, "<dt>scenario</dt><dd><code>{}</code>{}</dd>", escape(&scenario_path.display().to_string()), if description.is_empty() { String::new() } else { format!(" &mdash; {}", escape(description)) })?;
    writeln!(page, "<dt>seed</dt><dd>{}</dd>", result.seed)?;
    if let Some(mix) = &result.swarm {
        writeln!(page, "<dt>swarm</dt><dd>{}</dd>", escape(&mix.to_string()))?;
    }
    writeln!(page, "<dt>outcome</dt><dd class=\"outcome-{outcome}\">{outcome}</dd>")?;
    writeln!(page, "<dt>simulated</dt><dd>{}</dd>", seconds(result.sim_ms * 1000))?;
    writeln!(page, "<dt>fault phase ended</dt><dd>{heal}</dd>")?;
    writeln!(page, "<dt>events</dt><dd>{}</dd>", result.events)?;
    writeln!(page, "<dt>trace hash</dt><dd><code>{:016x}</code></dd>", result.trace_hash)?;
    writeln!(page, "<dt>replay</dt><dd><code>{}</code></dd>\n</dl>", escape(&replay))
}

fn write_violations(page: &mut String, detail: &RunDetail, pins: &[Pin<'_>]) -> fmt::Result {
    let violations = &detail.result.violations;
    writeln!(page, "<h2>All violations ({})</h2>", violations.len())?;
    if violations.is_empty() {
        return writeln!(page, "<p>None.</p>");
    }
    writeln!(page, "<table>\n<tr><th>#</th><th>kind</th><th>when</th><th>detail</th></tr>")?;
    for (index, violation) in violations.iter().enumerate() {
        let number = index + 1;
        let when = match pins.iter().find(|pin| pin.number == number) {
            Some(pin) => format!("{} ({})", seconds(pin.located.time), pin.located.reason),
            None => "not placed".to_string(),
        };
        writeln!(
            page,
            "<tr id=\"violation-{number}\"><td>{number}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
            violation.kind,
            escape(&when),
            escape(&violation.detail)
        )?;
    }
    writeln!(page, "</table>")
}

fn write_legend(page: &mut String) -> fmt::Result {
    let item = |page: &mut String, class: &str, label: &str| writeln!(page, "<li><span class=\"sw {class}\"></span>{}</li>", escape(label));
    writeln!(page, "<ul class=\"legend\">")?;
    for class in MarkClass::ALL.into_iter().rev() {
        item(page, &format!("m-{}", class.name()), class.label())?;
    }
    for kind in FaultKind::ALL {
        item(page, &format!("fault-{}", kind.name()), kind.name())?;
    }
    item(page, "side-a", "partition side A")?;
    item(page, "side-b", "partition side B")?;
    item(page, "heal", "heal (fault phase over)")?;
    item(page, "pin", "violation")?;
    writeln!(page, "</ul>\n<p>One mark per lane and pixel column, coloured by its worst operation; hover for counts.</p>")
}

fn write_fault_table(page: &mut String, faults: &FaultTimeline) -> fmt::Result {
    writeln!(page, "<h2>Faults ({})</h2>", faults.faults.len())?;
    if !faults.faults.is_empty() {
        writeln!(page, "<table>\n<tr><th>from</th><th>until</th><th>fault</th><th>undone by</th></tr>")?;
        for fault in &faults.faults {
            let undo = fault.undo.as_deref().unwrap_or("never undone");
            let (start, end) = (seconds(fault.start), seconds(fault.end));
            writeln!(page, "<tr><td>{start}</td><td>{end}</td><td>{}</td><td>{}</td></tr>", escape(&fault.description), escape(undo))?;
        }
        writeln!(page, "</table>")?;
    }
    if !faults.notes.is_empty() {
        writeln!(page, "<p>Other nemesis records:</p>\n<ul>")?;
        for note in &faults.notes {
            writeln!(page, "<li>{} {}</li>", seconds(note.time), escape(&note.description))?;
        }
        writeln!(page, "</ul>")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_highlighted_as_whole_tokens() {
        assert_eq!(values_named("value 2:80 stands at events/1@60 and 1:7"), vec![Value { producer: 2, sequence: 80 }, Value { producer: 1, sequence: 7 }]);
        let op = Op {
            time: 1_000,
            node: "consumer-1".into(),
            kind: crate::history::OpType::Ok,
            body: OpBody::Poll {
                records: vec![
                    crate::history::PolledRecord { partition: kafsim_model::TopicPartition::new("t", 0), offset: kafsim_model::Offset(0), value: Value { producer: 1, sequence: 2 } },
                    crate::history::PolledRecord { partition: kafsim_model::TopicPartition::new("t", 0), offset: kafsim_model::Offset(1), value: Value { producer: 1, sequence: 23 } },
                ],
            },
        };
        let line = op_line(&op, &[Value { producer: 1, sequence: 2 }]);
        assert_eq!(line.matches("<mark>").count(), 1, "{line}");
        assert!(line.contains("=<mark>1:2</mark>  (of 2 records read)") && !line.contains("1:23"), "a poll keeps the records involved: {line}");
        let send = Op { body: OpBody::Send { value: Value { producer: 1, sequence: 23 }, partition: None, offset: None, error: Some("1:2".into()) }, ..op };
        let line = op_line(&send, &[Value { producer: 1, sequence: 2 }]);
        assert!(line.contains("send 1:23") && line.contains("(<mark>1:2</mark>)"), "1:2 is not lit inside 1:23: {line}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("scenarios/default.toml"), "scenarios/default.toml");
        assert_eq!(shell_word("my scenarios/it's.toml"), r"'my scenarios/it'\''s.toml'");
    }
}
