//! The running application instance a client call belongs to, and how calls
//! step its clients and wait for them.
//!
//! `ClientConfig::create` takes no context, as rdkafka's does not, so a client
//! finds its instance by the madsim node its task runs on: each run registers
//! its app nodes in a table of its own thread (a run is one thread, and only
//! one run is on a thread at a time).

use super::node::AppNode;
use super::partitions::Timeout;
use crate::context::RunContext;
use crate::faults::network::Arrival;
use kafsim_model::{Instant, NodeId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

thread_local! {
    static SESSIONS: RefCell<BTreeMap<madsim::task::NodeId, AppSession>> = const { RefCell::new(BTreeMap::new()) };
}

/// One incarnation of one application instance.
#[derive(Clone)]
pub struct AppSession {
    pub(crate) ctx: Arc<RunContext>,
    pub(crate) node: Arc<Mutex<AppNode>>,
    pub(crate) id: NodeId,
}

impl AppSession {
    /// Makes `session` the one of the madsim node this task runs on.
    pub(crate) fn register(session: AppSession) {
        SESSIONS.with(|sessions| sessions.borrow_mut().insert(madsim::plugin::node(), session));
    }

    /// Forgets every session: a new run begins on this thread.
    pub(crate) fn clear_all() {
        SESSIONS.with(|sessions| sessions.borrow_mut().clear());
    }

    /// The session of the application whose task calls.
    pub(crate) fn current() -> Option<AppSession> {
        if madsim::runtime::Handle::try_current().is_err() {
            return None;
        }
        SESSIONS.with(|sessions| sessions.borrow().get(&madsim::plugin::node()).cloned())
    }

    /// The broker ids a `bootstrap.servers` list names (`broker-1:9092,broker-2:9092`).
    pub(crate) fn brokers_named(&self, servers: &str) -> Result<Vec<NodeId>, String> {
        let mut brokers = Vec::new();
        for server in servers.split(',').map(str::trim).filter(|server| !server.is_empty()) {
            let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
            let entry = self.ctx.roster.by_name(host).filter(|entry| entry.role == crate::context::NodeRole::Broker);
            let entry = entry.ok_or_else(|| format!("\"bootstrap.servers\": {server:?} is not a broker of this cluster; expected names such as {}", bootstrap_servers(&self.ctx)))?;
            brokers.push(entry.id);
        }
        if brokers.is_empty() {
            return Err("\"bootstrap.servers\": expected at least one broker".into());
        }
        Ok(brokers)
    }

    /// Runs `call` on the node and carries out what it left. If that moved
    /// anything, the calls waiting on the node look again; if it left sends or
    /// moved a client's deadline, the node's loop wakes to send them and take
    /// the new deadline. A call that changed nothing wakes nobody, so waiting
    /// calls never wake each other in a loop at one instant.
    pub(crate) fn call<R>(&self, call: impl FnOnce(&mut AppNode, Instant) -> R) -> R {
        use crate::node::Machine;
        let now = self.ctx.now();
        let (result, wake_loop) = {
            let mut node = self.node.lock().expect("app node lock");
            let before = node.next_deadline();
            let result = call(&mut node, now);
            if node.settle(now) {
                node.wake_all();
            }
            (result, node.has_wire() || node.next_deadline() != before)
        };
        if wake_loop {
            if let Some(mailbox) = self.ctx.network.mailbox(self.id) {
                // The loop is gone only when the node is: nothing is left to wake.
                let _ = mailbox.unbounded_send(Arrival::Wake);
            }
        }
        result
    }

    /// Calls `poll` (as `call` does) until it gives an answer, again each time
    /// a client of the node moved on; None if `timeout` passed first.
    pub(crate) async fn wait<R>(&self, timeout: Timeout, mut poll: impl FnMut(&mut AppNode, Instant) -> Option<R>) -> Option<R> {
        let waiting = futures::future::poll_fn(|cx| {
            let answer = self.call(|node, now| {
                let answer = poll(node, now);
                if answer.is_none() {
                    node.add_waker(cx.waker());
                }
                answer
            });
            match answer {
                Some(answer) => Poll::Ready(answer),
                None => Poll::Pending,
            }
        });
        match timeout {
            Timeout::Never => Some(waiting.await),
            Timeout::After(duration) => madsim::time::timeout(duration, waiting).await.ok(),
        }
    }
}

/// The `bootstrap.servers` of the run's cluster.
pub(crate) fn bootstrap_servers(ctx: &RunContext) -> String {
    let names: Vec<String> = ctx.roster.brokers().into_iter().map(|id| format!("{}:9092", ctx.roster.entry(id).name)).collect();
    names.join(",")
}

/// A future the application's code is, boxed.
pub type AppFuture = std::pin::Pin<Box<dyn Future<Output = ()>>>;
