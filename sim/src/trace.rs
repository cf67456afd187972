//! Traces: one line per event with simulated time and node, through
//! tracing-subscriber, and the trace hash that pins a run down bit for bit.

use crate::final_state::FinalState;
use crate::history::{History, Op, OpDescription};
use kafsim_model::hash::StableHasher;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    /// The node whose machine is stepping now; madsim runs one run per thread.
    static CURRENT_NODE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Names the node that steps from now on, for the trace lines it emits. Only a
/// trace subscriber reads the name, so without one (every run but `replay
/// --trace`) this costs an atomic load, not a reference count on every send.
pub fn set_current_node(name: &Arc<str>) {
    if tracing::level_filters::LevelFilter::current() == tracing::level_filters::LevelFilter::OFF {
        return;
    }
    CURRENT_NODE.with(|current| {
        let mut current = current.borrow_mut();
        if current.as_ref().is_none_or(|known| !Arc::ptr_eq(known, name)) {
            *current = Some(name.clone());
        }
    });
}

pub fn describe(op: &Op) -> String {
    OpDescription(op).to_string()
}

/// The hash of everything a run observed: each operation (with its time, node,
/// type and body) and the final state of every replica. The values are hashed
/// as they are, not formatted first: formatting every operation of a run cost
/// a fifth of the run's time.
pub fn trace_hash(history: &History, final_state: Option<&FinalState>) -> u64 {
    use std::hash::Hash;
    let mut hasher = StableHasher::default();
    history.ops.hash(&mut hasher);
    trace_hash_after(hasher, final_state)
}

/// `trace_hash`, where `ops_hasher` has hashed the history's ops already
/// (`check::check_all_hashing` does it in the checkers' pass over them).
pub fn trace_hash_after(mut ops_hasher: StableHasher, final_state: Option<&FinalState>) -> u64 {
    use std::hash::Hash;
    final_state.hash(&mut ops_hasher);
    ops_hasher.finish()
}

#[derive(Default)]
struct EventFields {
    node: Option<String>,
    message: String,
    rest: String,
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "node" => self.node = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "node" => self.node = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

/// `   12.345s broker-2     become leader partition=events/0 epoch=3`
pub struct TraceFormat;

impl<S, N> FormatEvent<S, N> for TraceFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let micros = madsim::time::TimeHandle::try_current().map(|time| time.elapsed().as_micros() as u64).unwrap_or(0);
        let node = fields.node.or_else(|| CURRENT_NODE.with(|current| current.borrow().as_ref().map(|name| name.to_string()))).unwrap_or_else(|| "-".into());
        writeln!(writer, "{:>6}.{:03}s {:<12} {}{}", micros / 1_000_000, (micros / 1000) % 1000, node, fields.message, fields.rest)
    }
}

/// Prints kafsim's own events (history and model) to standard output.
pub fn install_trace_subscriber() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("kafsim", tracing::Level::INFO)
        .with_target("kafsim_model", tracing::Level::INFO)
        .with_target("kafsim::net", if std::env::var_os("KAFSIM_TRACE_MESSAGES").is_some() { tracing::Level::DEBUG } else { tracing::Level::INFO });
    let layer = tracing_subscriber::fmt::layer().event_format(TraceFormat).with_writer(std::io::stdout);
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
}
