//! The timeline as inline SVG: x is simulated time, one lane per node under a
//! `network` lane; faults are translucent bands on the lanes they hit, operations
//! are marks (one per lane and pixel column, see `marks`), the heal is a dashed
//! line and each violation a red line linked to its row in the violation table.
//! Coordinates are whole pixels computed in integers, so the output is the same
//! on every machine.

use super::escape::escape;
use super::faults::{Fault, FaultTargets, FaultTimeline};
use super::locate::Located;
use super::marks::{bucket_marks, lane_names, Bucket};
use crate::check::findings::seconds;
use crate::check::Violation;
use crate::history::History;
use std::fmt::{self, Write};

/// Pixel columns of the plot, and so the number of mark buckets per lane.
pub const PLOT_WIDTH: u64 = 1000;
const LABEL_WIDTH: u64 = 110;
const RIGHT_MARGIN: u64 = 20;
const AXIS_HEIGHT: u64 = 34;
const LANE_HEIGHT: u64 = 22;
const BOTTOM_MARGIN: u64 = 6;
/// The lane of faults that hit every link rather than some nodes.
const NETWORK_LANE: usize = 0;

/// A violation with its place on the timeline, and its row number in the table.
pub struct Pin<'a> {
    pub number: usize,
    pub violation: &'a Violation,
    pub located: Located,
}

struct Layout {
    /// Simulated microseconds the plot spans.
    span: u64,
    /// Lane names; the first is the network lane.
    lanes: Vec<String>,
}

impl Layout {
    fn x(&self, time: u64) -> u64 {
        LABEL_WIDTH + self.column(time)
    }

    fn x_end(&self, time: u64) -> u64 {
        LABEL_WIDTH + time.min(self.span) * PLOT_WIDTH / self.span
    }

    fn column(&self, time: u64) -> u64 {
        (time.min(self.span) * PLOT_WIDTH / self.span).min(PLOT_WIDTH - 1)
    }

    fn lane_top(&self, lane: usize) -> u64 {
        AXIS_HEIGHT + lane as u64 * LANE_HEIGHT
    }

    fn lane_of(&self, name: &str) -> Option<usize> {
        self.lanes.iter().skip(1).position(|lane| lane == name).map(|index| index + 1)
    }

    fn plot_bottom(&self) -> u64 {
        self.lane_top(self.lanes.len())
    }

    fn width(&self) -> u64 {
        LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN
    }

    fn height(&self) -> u64 {
        self.plot_bottom() + BOTTOM_MARGIN
    }
}

/// What the timeline draws: `span` is the run's simulated length in microseconds,
/// `brokers` the brokers known beyond the history (from the final state).
pub struct TimelineInput<'a> {
    pub history: &'a History,
    pub faults: &'a FaultTimeline,
    pub pins: &'a [Pin<'a>],
    pub brokers: &'a [String],
    pub span: u64,
}

/// The whole SVG element.
pub fn render_svg(input: &TimelineInput<'_>) -> String {
    let TimelineInput { history, faults, pins, brokers, span } = *input;
    let mut lanes = vec!["network".to_string()];
    lanes.extend(lane_names(history, faults, brokers));
    let layout = Layout { span: span.max(1), lanes };
    let mut svg = String::new();
    write_svg(&mut svg, &layout, history, faults, pins).expect("formatting into a String cannot fail");
    svg
}

fn write_svg(svg: &mut String, layout: &Layout, history: &History, faults: &FaultTimeline, pins: &[Pin<'_>]) -> fmt::Result {
    let (width, height) = (layout.width(), layout.height());
    writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#)?;
    write_lanes(svg, layout)?;
    write_axis(svg, layout)?;
    for fault in &faults.faults {
        write_fault(svg, layout, fault)?;
    }
    for note in &faults.notes {
        let (x, top) = (layout.x(note.time), layout.lane_top(NETWORK_LANE));
        let title = format!("{}: {}", seconds(note.time), note.description);
        writeln!(svg, r#"<rect class="note" x="{x}" y="{top}" width="2" height="{LANE_HEIGHT}"><title>{}</title></rect>"#, escape(&title))?;
    }
    let buckets = bucket_marks(history, &layout.lanes[1..], |time| layout.column(time));
    for ((lane, column), bucket) in &buckets {
        write_bucket(svg, layout, lane + 1, *column, bucket)?;
    }
    if let Some(heal) = history.heal_time() {
        let title = format!("heal at {}: fault phase over, draining", seconds(heal));
        write_vertical_line(svg, layout, "heal", layout.x(heal), &title)?;
    }
    for pin in pins {
        write_pin(svg, layout, pin)?;
    }
    writeln!(svg, "</svg>")
}

fn write_lanes(svg: &mut String, layout: &Layout) -> fmt::Result {
    for (lane, name) in layout.lanes.iter().enumerate() {
        let top = layout.lane_top(lane);
        let stripe = if lane % 2 == 0 { "lane even" } else { "lane odd" };
        writeln!(svg, r#"<rect class="{stripe}" x="{LABEL_WIDTH}" y="{top}" width="{PLOT_WIDTH}" height="{LANE_HEIGHT}"/>"#)?;
        let (label_x, label_y) = (LABEL_WIDTH - 8, top + LANE_HEIGHT / 2 + 4);
        writeln!(svg, r#"<text class="label" x="{label_x}" y="{label_y}">{}</text>"#, escape(name))?;
    }
    Ok(())
}

/// A tick step of 1, 2 or 5 times a power of ten milliseconds, giving at most a dozen ticks.
fn tick_step(span: u64) -> u64 {
    let mut base = 1000;
    loop {
        for step in [base, 2 * base, 5 * base] {
            if span / step <= 12 {
                return step;
            }
        }
        base *= 10;
    }
}

fn tick_label(time: u64, step: u64) -> String {
    if step.is_multiple_of(1_000_000) {
        format!("{}s", time / 1_000_000)
    } else {
        seconds(time)
    }
}

fn write_axis(svg: &mut String, layout: &Layout) -> fmt::Result {
    let step = tick_step(layout.span);
    let bottom = layout.plot_bottom();
    for time in (0..=layout.span).step_by(step as usize) {
        let x = layout.x_end(time);
        writeln!(svg, r#"<line class="grid" x1="{x}" y1="{}" x2="{x}" y2="{bottom}"/>"#, AXIS_HEIGHT - 4)?;
        writeln!(svg, r#"<text class="tick" x="{x}" y="12">{}</text>"#, tick_label(time, step))?;
    }
    Ok(())
}

/// The lanes a fault is drawn on, each with its CSS class: its nodes, or for a
/// split the network lane and each side in its own colour.
fn fault_bands(layout: &Layout, fault: &Fault) -> Vec<(usize, String, String)> {
    let kind = format!("fault-{}", fault.kind.name());
    let on_node = |name: &String, class: &str, note: &str| layout.lane_of(name).map(|lane| (lane, class.to_string(), note.to_string()));
    match &fault.targets {
        FaultTargets::Network => vec![(NETWORK_LANE, kind, String::new())],
        FaultTargets::Nodes(nodes) => nodes.iter().filter_map(|name| on_node(name, &kind, "")).collect(),
        FaultTargets::Split(left, right) => {
            let sides = left.iter().map(|name| on_node(name, "side-a", " (side A)")).chain(right.iter().map(|name| on_node(name, "side-b", " (side B)")));
            std::iter::once(Some((NETWORK_LANE, kind, String::new()))).chain(sides).flatten().collect()
        }
    }
}

fn write_fault(svg: &mut String, layout: &Layout, fault: &Fault) -> fmt::Result {
    let (x, x_end) = (layout.x_end(fault.start), layout.x_end(fault.end));
    let width = x_end.saturating_sub(x).max(1);
    let ending = match &fault.undo {
        Some(undo) => format!("until {} ({undo})", seconds(fault.end)),
        None => format!("until {}, never undone", seconds(fault.end)),
    };
    for (lane, class, side) in fault_bands(layout, fault) {
        let top = layout.lane_top(lane) + 2;
        let title = format!("{}{side}: from {} {ending}", fault.description, seconds(fault.start));
        writeln!(
            svg,
            r#"<rect class="{class}" x="{x}" y="{top}" width="{width}" height="{}"><title>{}</title></rect>"#,
            LANE_HEIGHT - 4,
            escape(&title)
        )?;
    }
    Ok(())
}

fn write_bucket(svg: &mut String, layout: &Layout, lane: usize, column: u64, bucket: &Bucket) -> fmt::Result {
    let x = LABEL_WIDTH + column;
    let top = layout.lane_top(lane);
    let when = if bucket.first == bucket.last { seconds(bucket.first) } else { format!("{}–{}", seconds(bucket.first), seconds(bucket.last)) };
    write!(svg, "<g><title>{} {when}: {}</title>", escape(&layout.lanes[lane]), escape(&bucket.summary()))?;
    if let Some(worst) = bucket.worst() {
        write!(svg, r#"<rect class="m-{}" x="{x}" y="{}" width="1" height="10"/>"#, worst.name(), top + 6)?;
    }
    if bucket.starts() > 0 {
        write!(svg, r#"<rect class="m-start" x="{x}" y="{}" width="2" height="{}"/>"#, top + 1, LANE_HEIGHT - 2)?;
    }
    writeln!(svg, "</g>")
}

fn write_vertical_line(svg: &mut String, layout: &Layout, class: &str, x: u64, title: &str) -> fmt::Result {
    let (top, bottom) = (AXIS_HEIGHT - 6, layout.plot_bottom());
    writeln!(svg, r#"<g class="{class}"><title>{}</title><line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/></g>"#, escape(title))
}

fn write_pin(svg: &mut String, layout: &Layout, pin: &Pin<'_>) -> fmt::Result {
    let x = layout.x(pin.located.time);
    let title = format!(
        "violation {}: {} at {} ({}): {}",
        pin.number,
        pin.violation.kind,
        seconds(pin.located.time),
        pin.located.reason,
        pin.violation.detail
    );
    let (top, bottom) = (AXIS_HEIGHT - 6, layout.plot_bottom());
    let marker = format!("{},{} {},{} {x},{}", x - 4, top - 8, x + 4, top - 8, top);
    writeln!(
        svg,
        r##"<a href="#violation-{}"><g class="pin"><title>{}</title><polygon points="{marker}"/><line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/></g></a>"##,
        pin.number,
        escape(&title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(60_000_000), 5_000_000);
        assert_eq!(tick_step(75_000_000), 10_000_000);
        assert_eq!(tick_step(100_000), 10_000);
        assert_eq!(tick_label(5_000_000, 5_000_000), "5s");
        assert_eq!(tick_label(250_000, 50_000), "0.250s");
    }
}
