//! Users' own applications inside the simulation (DESIGN §1, "Users' own
//! applications"): code written against a client API shaped after the
//! `rdkafka` crate (`crate::rdkafka`) runs as nodes of a run, its clients
//! are the model's own producer and consumer, every call it makes is
//! recorded in the history, and `Harness` runs it over seeds inside `cargo test`.
//!
//! What application code must not do inside the simulation, because the run
//! would no longer be a function of its seed, and what madsim does about it:
//! - spawn OS threads: refused inside a run, so the run ends as a `panic`
//!   finding with its seed (use `madsim::task::spawn` for concurrency);
//! - block its thread (blocking IO, `std::thread::sleep`): the whole
//!   simulation stops with it; use `kafsim::app::time::sleep`;
//! - read the real clock: madsim answers `SystemTime::now` and `Instant::now`
//!   with simulated time, so this is safe, but `kafsim::app::time` says so;
//! - draw OS randomness: madsim answers `getrandom` from the run's seed, so
//!   `rand::thread_rng` and `HashMap`'s hashing are seeded too;
//! - talk to anything outside the simulation (files, real sockets): that
//!   nothing can make repeatable.
//!
//! `Harness::check_determinism` runs each seed twice and fails on any seed
//! whose two runs differ.

pub mod config;
pub mod consumer;
mod consumer_core;
pub mod context;
pub mod error;
pub mod harness;
pub mod message;
pub mod node;
pub mod partitions;
pub mod producer;
mod producer_core;
pub mod session;
pub mod shared;

#[cfg(test)]
mod tests;

pub use context::AppContext;

/// Simulated time for application code: `sleep`, `timeout`, `Instant`
/// (madsim's, which a run's seed decides). Use these, not tokio's or std's.
pub mod time {
    pub use madsim::time::{sleep, timeout, Instant};
}
pub use harness::{Harness, HarnessReport};
pub use shared::{AppMain, AppSpec};

use crate::context::RunContext;
use crate::history::{OpBody, OpType};
use kafsim_model::NodeId;
use node::AppNode;
use session::AppSession;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a supervisor waits before it starts an exited application again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Starts a process of application instance `number` on its node: what the
/// last process left in flight becomes `info`, then the application's code
/// runs. If the code returns (it gave up, after a fatal error say), its
/// supervisor restarts the process a second later, as systemd or Kubernetes would.
pub(crate) fn start(ctx: Arc<RunContext>, id: NodeId, number: u32, node: Arc<Mutex<AppNode>>) {
    let now = ctx.now();
    ctx.apps.abandon_instance(now, number, "application process ended");
    let session = AppSession { ctx: ctx.clone(), node, id };
    AppSession::register(session.clone());
    let main = ctx.scenario.app.as_ref().expect("an app node runs the scenario's application").main.clone();
    let name = ctx.roster.entry(id).name.clone();
    ctx.record(&name, OpType::Info, OpBody::ClientStart);
    tracing::debug!(target: "kafsim::app", "{name} starts");
    madsim::task::spawn_local(async move {
        (main.0)(AppContext { session }).await;
        madsim::time::sleep(RESTART_DELAY).await;
        ctx.network.crash(ctx.now(), id);
        let me = madsim::plugin::node();
        let handle = madsim::runtime::Handle::current();
        handle.kill(me);
        handle.restart(me);
    });
}
