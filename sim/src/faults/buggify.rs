//! Code-level fault points (madsim's buggify, after FoundationDB's BUGGIFY),
//! switched on per scenario with `[faults] buggify = true`.
//!
//! The nemesis breaks whole nodes and links; these points break single steps in
//! the places where Kafka brokers are fragile, each firing rarely and only in a
//! run that asked for it:
//! - `slow-flush` (disk.rs, node/mod.rs): an fsync that takes long. The node's
//!   loop stalls while it runs, as a log thread blocked in fsync does, and the
//!   flushed writes become durable only when it returns, so a power loss during
//!   the stall loses them before anything could have been acknowledged on them.
//! - `delayed-fetch-response` (node/mod.rs, transport.rs): a fetch response
//!   that leaves late (50ms to 2s: a leader slow to serve a fetch).
//! - `dropped-response` (node/mod.rs): a produce or fetch response never
//!   arrives, so the client's (or follower's) request times out although the
//!   broker served it: a spurious timeout, which exercises retries and idempotence.
//! - `lagging-follower` (node/mod.rs): a broker incarnation whose replica
//!   fetches all leave late (by 50ms to 1.5s, drawn per incarnation), so it
//!   trails its leaders.
//!
//! Randomness comes from madsim's generator, drawn only when the scenario turned
//! the points on: a scenario without the key runs exactly as before.
//!
//! The switch is kafsim's own, not `madsim::buggify::enable()`: madsim's switch
//! also turns on madsim's own fault point in its network, which delays one in
//! ten sends and receives by 1 to 5 seconds. With it every run of the default
//! scenario ended in a liveness failure (heartbeats late by seconds, brokers
//! fenced), which tests madsim's network more than Kafka. The points here
//! draw as `madsim::buggify::buggify_with_prob` does, from the same generator.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// One fault point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Point {
    SlowFlush,
    DelayedFetchResponse,
    DroppedResponse,
    LaggingFollower,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::SlowFlush => "slow-flush",
            Point::DelayedFetchResponse => "delayed-fetch-response",
            Point::DroppedResponse => "dropped-response",
            Point::LaggingFollower => "lagging-follower",
        }
    }

    /// How often the point fires where it is reached.
    fn probability(self) -> f64 {
        match self {
            Point::SlowFlush => 0.05,
            Point::DelayedFetchResponse => 0.02,
            Point::DroppedResponse => 0.002,
            Point::LaggingFollower => 0.25,
        }
    }
}

thread_local! {
    /// Whether the run on this thread (one run per thread) turned the points on.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// How often each point fired in that run.
    static FIRED: RefCell<BTreeMap<Point, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Whether the fault points are on in the run on this thread.
pub fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Whether `point` fires now; counted when it does.
pub fn fires(point: Point) -> bool {
    use rand::Rng;
    let fired = enabled() && madsim::rand::thread_rng().gen_bool(point.probability());
    if fired {
        FIRED.with(|counts| *counts.borrow_mut().entry(point).or_insert(0) += 1);
        tracing::info!(target: "kafsim::buggify", "buggify {}", point.name());
    }
    fired
}

/// A duration drawn uniformly from `low_ms..high_ms`, in microseconds, from madsim's generator.
pub fn draw_micros(low_ms: u64, high_ms: u64) -> u64 {
    use rand::Rng;
    madsim::rand::thread_rng().gen_range(low_ms * 1000..high_ms * 1000)
}

/// Switches the points on (`true`, at the start of a run that asks for them) or
/// off (at the start of every other run on this thread), and clears the counts.
pub fn set_enabled(on: bool) {
    FIRED.with(|counts| counts.borrow_mut().clear());
    ENABLED.with(|enabled| enabled.set(on));
}

/// `slow-flush 3, dropped-response 1`: what fired in this run.
pub fn fired_summary() -> String {
    FIRED.with(|counts| {
        let counts = counts.borrow();
        let fired: Vec<String> = counts.iter().map(|(point, count)| format!("{} {count}", point.name())).collect();
        if fired.is_empty() {
            "nothing".to_string()
        } else {
            fired.join(", ")
        }
    })
}
