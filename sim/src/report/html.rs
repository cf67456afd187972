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
use crate::runner::{Outcome, RunDetail};
use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::path::Path;

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(character),
        }
    }
    escaped
}

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
.m-poll{fill:#1f77b4;background:#1f77b4}.m-seek{fill:#9ecae1;background:#9ecae1}.m-start{fill:#7b3294;background:#7b3294}
.fault-crash,.fault-power-loss,.fault-pause,.fault-isolate,.fault-one-way,.fault-partition,.fault-packet-loss,.fault-latency,.side-a,.side-b{opacity:.35}
.fault-crash{fill:#c44e52;background:#c44e52}.fault-power-loss{fill:#67000d;background:#67000d}.fault-pause{fill:#bcbd22;background:#bcbd22}
.fault-isolate{fill:#9467bd;background:#9467bd}.fault-one-way{fill:#c5b0d5;background:#c5b0d5}.fault-partition{fill:#17becf;background:#17becf}
.fault-packet-loss{fill:#7f7f7f;background:#7f7f7f}.fault-latency{fill:#e377c2;background:#e377c2}
.side-a{fill:#17becf;background:#17becf}.side-b{fill:#e7ba52;background:#e7ba52}.note{fill:#555;background:#555}
.sw.heal{border-left:2px dashed #333;width:0;height:14px}.sw.pin{border-left:2px solid #e00;width:0;height:14px}
";

/// The report page of one run of the scenario `name`, read from `scenario_path`.
pub fn render_page(name: &str, scenario_path: &Path, detail: &RunDetail) -> String {
    let mut page = String::new();
    write_page(&mut page, name, scenario_path, detail).expect("formatting into a String cannot fail");
    page
}

fn write_page(page: &mut String, name: &str, scenario_path: &Path, detail: &RunDetail) -> fmt::Result {
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
    write_header(page, name, scenario_path, detail)?;
    write_violations(page, detail, &pins)?;
    writeln!(page, "<h2>Timeline</h2>")?;
    write_legend(page)?;
    let brokers = brokers_of(detail);
    let timeline = TimelineInput { history: &detail.history, faults: &faults, pins: &pins, brokers: &brokers, span };
    writeln!(page, "<div class=\"scroll\">\n{}</div>", render_svg(&timeline))?;
    write_fault_table(page, &faults)?;
    writeln!(page, "</body>\n</html>")
}

/// Every broker holding a replica at the end, named as the cluster names them.
fn brokers_of(detail: &RunDetail) -> Vec<String> {
    let partitions = detail.final_state.iter().flat_map(|state| state.partitions.values());
    let ids: BTreeSet<u32> = partitions.flat_map(|partition| partition.replicas.keys().map(|id| id.0)).collect();
    ids.into_iter().map(|id| format!("broker-{id}")).collect()
}

fn write_header(page: &mut String, name: &str, scenario_path: &Path, detail: &RunDetail) -> fmt::Result {
    let result = &detail.result;
    let outcome = outcome_name(result.outcome);
    let swarm = if result.swarm.is_some() { " --swarm" } else { "" };
    let replay = format!("kafsim replay {} --seed {}{swarm} --trace", shell_word(&scenario_path.display().to_string()), result.seed);
    let heal = detail.history.heal_time().map_or_else(|| "never reached".to_string(), seconds);
    writeln!(page, "<h1>{} &middot; seed {}</h1>\n<dl>", escape(name), result.seed)?;
    writeln!(page, "<dt>outcome</dt><dd class=\"outcome-{outcome}\">{outcome}</dd>")?;
    writeln!(page, "<dt>simulated</dt><dd>{}</dd>", seconds(result.sim_ms * 1000))?;
    writeln!(page, "<dt>fault phase ended</dt><dd>{heal}</dd>")?;
    writeln!(page, "<dt>events</dt><dd>{}</dd>", result.events)?;
    writeln!(page, "<dt>trace hash</dt><dd><code>{:016x}</code></dd>", result.trace_hash)?;
    writeln!(page, "<dt>replay</dt><dd><code>{}</code></dd>\n</dl>", escape(&replay))
}

fn write_violations(page: &mut String, detail: &RunDetail, pins: &[Pin<'_>]) -> fmt::Result {
    let violations = &detail.result.violations;
    writeln!(page, "<h2>Violations ({})</h2>", violations.len())?;
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
    fn escape_replaces_every_markup_character() {
        assert_eq!(escape(r#"<script>alert("x & 'y'")</script>"#), "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;");
        assert_eq!(escape("broker-1 → 2:0"), "broker-1 → 2:0");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("scenarios/default.toml"), "scenarios/default.toml");
        assert_eq!(shell_word("my scenarios/it's.toml"), r"'my scenarios/it'\''s.toml'");
    }
}
