//! Users' own applications inside the simulation (DESIGN §1, "Users' own
//! applications"): code written against a client API shaped after the
//! `rdkafka` crate (`crate::rdkafka`) runs as nodes of a run, its clients
//! are the model's own producer and consumer, every call it makes is
//! recorded in the history, and `Harness` runs it over seeds inside `cargo test`.
//!
//! What application code must not do inside the simulation, because the run
//! would no longer be a function of its seed:
//! - spawn OS threads or block its thread (`std::thread`, blocking IO,
//!   `std::thread::sleep`): use `madsim::time::sleep` and `madsim::task::spawn`;
//! - read the real clock (`std::time::SystemTime`, `Instant::now` outside
//!   madsim): madsim's time is the simulated one;
//! - draw OS randomness (`rand::thread_rng`, `getrandom`): madsim's
//!   `rand::thread_rng` is seeded from the run, and is the one to use;
//! - iterate a `HashMap` to decide what to do (its order is random per process).
//!
//! madsim intercepts the clock and `getrandom` inside a run, so most of this
//! is caught for you; `Harness` checks every seed it reports for a repeatable
//! trace hash when asked (`Harness::check_determinism`).

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
