//! What a run keeps of its applications across their restarts: each
//! producer's counter and what it left in flight, and what the drain and the
//! final snapshot need to know of the applications' groups and pipelines.

use super::session::AppFuture;
use super::context::AppContext;
use crate::history::{OpBody, OpType, PolledRecord, Value};
use crate::recorder::Recorder;
use kafsim_model::{Instant, Offset, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// The application's code: called once per start of each instance's process.
#[derive(Clone)]
pub struct AppMain(pub(crate) Arc<dyn Fn(AppContext) -> AppFuture + Send + Sync>);

impl fmt::Debug for AppMain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppMain")
    }
}

/// The application a scenario runs (`Harness`): `instances` processes of it.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub instances: u32,
    pub main: AppMain,
}

impl PartialEq for AppSpec {
    fn eq(&self, other: &AppSpec) -> bool {
        self.instances == other.instances && Arc::ptr_eq(&self.main.0, &other.main.0)
    }
}

/// An input a record is made from: its value and place, and the group that read it.
#[derive(Clone, Debug)]
pub(crate) struct Derived {
    pub(crate) group: Option<Arc<str>>,
    pub(crate) input: PolledRecord,
}

/// One application producer's state that outlives its process: its counter,
/// so values stay unique, and its sends and transaction in flight.
pub struct ProducerProgress {
    pub(crate) recorder: Recorder,
    pub(crate) next_sequence: u64,
    pub(crate) pending: BTreeMap<u64, Value>,
    pub(crate) next_transaction: u64,
    pub(crate) open_transaction: Option<(u64, Vec<Value>)>,
}

impl ProducerProgress {
    pub(crate) fn new(recorder: Recorder) -> ProducerProgress {
        ProducerProgress { recorder, next_sequence: 0, pending: BTreeMap::new(), next_transaction: 0, open_transaction: None }
    }

    /// The process that made these sends ended: their outcome is unknown.
    pub(crate) fn abandon(&mut self, now: Instant, reason: &str) {
        for (_, value) in std::mem::take(&mut self.pending) {
            self.recorder.record(now, OpType::Info, OpBody::Send { value, partition: None, offset: None, error: Some(reason.into()) });
        }
        if let Some((number, values)) = self.open_transaction.take() {
            self.recorder.record(now, OpType::Info, OpBody::Txn { number, values, error: Some(reason.into()) });
        }
    }
}

/// What the applications of a run did that the drain and the snapshot judge.
#[derive(Debug, Default)]
pub struct AppRegistry {
    /// (group, from, to): a group's consumer read `from`, and a record made
    /// from its input went to `to`. `eos-violation` judges each.
    pub(crate) pipelines: BTreeSet<(Arc<str>, Arc<str>, Arc<str>)>,
    /// The topics each group's consumers subscribed to.
    pub(crate) group_topics: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// The highest offset each group committed per partition, as its members learned.
    pub(crate) committed: BTreeMap<(Arc<str>, TopicPartition), Offset>,
}

impl AppRegistry {
    pub(crate) fn pipeline(&mut self, group: &Arc<str>, from: &Arc<str>, to: &Arc<str>) {
        if !self.pipelines.iter().any(|(g, f, t)| g == group && f == from && t == to) {
            self.pipelines.insert((group.clone(), from.clone(), to.clone()));
        }
    }

    pub(crate) fn subscribed(&mut self, group: &Arc<str>, topics: &[Arc<str>]) {
        self.group_topics.entry(group.clone()).or_default().extend(topics.iter().cloned());
    }

    pub(crate) fn committed(&mut self, group: &Arc<str>, offsets: &[(TopicPartition, Offset)]) {
        for (partition, offset) in offsets {
            let known = self.committed.entry((group.clone(), partition.clone())).or_insert(*offset);
            *known = (*known).max(*offset);
        }
    }
}

/// The applications' share of a run's context.
#[derive(Default)]
pub struct AppRunState {
    /// Per producer value number.
    pub(crate) progress: Mutex<BTreeMap<u32, Arc<Mutex<ProducerProgress>>>>,
    pub(crate) registry: Arc<Mutex<AppRegistry>>,
}

/// Application producers write values `(APP_VALUE_BASE + instance * 100 + k):s`,
/// `k` counting the instance's producers in the order it makes them.
pub const APP_VALUE_BASE: u32 = 200_000;

impl AppRunState {
    /// The progress of the `index`th producer of instance `instance`, made on first use.
    pub(crate) fn producer_progress(&self, instance: u32, index: u32, recorder: Recorder) -> (u32, Arc<Mutex<ProducerProgress>>) {
        let number = APP_VALUE_BASE + instance * 100 + index;
        let progress = self.progress.lock().expect("progress lock").entry(number).or_insert_with(|| Arc::new(Mutex::new(ProducerProgress::new(recorder)))).clone();
        (number, progress)
    }

    /// Instance `instance`'s process ended (crashed or restarted): what its
    /// producers left in flight has an unknown outcome.
    pub(crate) fn abandon_instance(&self, now: Instant, instance: u32, reason: &str) {
        let range = APP_VALUE_BASE + instance * 100..APP_VALUE_BASE + instance * 100 + 100;
        for (_, progress) in self.progress.lock().expect("progress lock").range(range) {
            progress.lock().expect("progress lock").abandon(now, reason);
        }
    }

    /// Whether any application producer has a send or a transaction in flight.
    pub(crate) fn producers_busy(&self) -> bool {
        self.progress.lock().expect("progress lock").values().any(|progress| {
            let progress = progress.lock().expect("progress lock");
            !progress.pending.is_empty() || progress.open_transaction.is_some()
        })
    }
}
