//! How a node writes to the run's history: each operation with its simulated
//! time, under the node's name, and (when traced) as a trace line.

use crate::history::{History, OpBody, OpType};
use kafsim_model::Instant;
use std::sync::{Arc, Mutex};

/// One node's pen on the shared history.
#[derive(Clone)]
pub struct Recorder {
    history: Arc<Mutex<History>>,
    node: Arc<str>,
}

impl Recorder {
    pub fn new(history: Arc<Mutex<History>>, node: Arc<str>) -> Recorder {
        Recorder { history, node }
    }

    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// Records an operation at `now` (the clock's time, which does not move
    /// while a node steps).
    pub fn record(&self, now: Instant, kind: OpType, body: OpBody) {
        record(&self.history, now, &self.node, kind, body);
    }
}

pub(crate) fn record(history: &Mutex<History>, now: Instant, node: &Arc<str>, kind: OpType, body: OpBody) {
    let time = now.as_micros();
    let mut history = history.lock().expect("history lock");
    history.push(time, node, kind, body);
    if tracing::enabled!(target: "kafsim::history", tracing::Level::INFO) {
        let op = history.ops.last().expect("just pushed");
        tracing::info!(target: "kafsim::history", node = &*op.node, "{}", crate::trace::describe(op));
    }
}
