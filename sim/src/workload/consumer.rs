//! What a consumer client does: reads its topic through Kafka's consumer and
//! records each poll (partition, offset, value) and each seek.
//!
//! Without a group it assigns itself every partition and only reads. In a group
//! it also plays the application of DESIGN §4 `delivery`, recording each step:
//! - at-least-once: process each polled batch at once, then commit the positions;
//!   a crash between the two means the next owner processes the batch again.
//! - at-most-once: commit the positions first, process the batch only once the
//!   commit succeeded; a crash between the two means nobody ever processes it.
//!
//! Commits are synchronous (one in flight, as `commitSync`); batches polled while
//! one is out wait for the next. Assignments and revocations are recorded with
//! their generation.

use crate::history::{OpBody, OpType, PolledRecord, Value};
use crate::invariants::Invariants;
use crate::recorder::Recorder;
use crate::scenario::Delivery;
use kafsim_model::client::consumer::{Consumer, ConsumerEvent};
use kafsim_model::error::ErrorCode;
use kafsim_model::node::Outbox;
use kafsim_model::{Instant, Offset, TopicPartition};
use std::sync::Arc;

/// The application side of a group consumer.
struct Application {
    group: Arc<str>,
    delivery: Delivery,
    /// at-most-once: polled batches not yet processed, waiting for their commit.
    unprocessed: Vec<Vec<PolledRecord>>,
    /// How many of `unprocessed` the commit in flight covers.
    covered: Option<usize>,
    /// at-least-once: processed records whose positions are not committed yet.
    uncommitted: bool,
}

/// One consumer client's workload, for one incarnation of its process.
pub struct ConsumerWorkload {
    recorder: Recorder,
    invariants: Arc<Invariants>,
    application: Option<Application>,
}

impl ConsumerWorkload {
    /// A new incarnation, recorded as the client's start; `group` and
    /// `delivery` make it an application of DESIGN §4 `delivery`.
    pub fn start(now: Instant, recorder: Recorder, invariants: Arc<Invariants>, group: Option<Arc<str>>, delivery: Delivery) -> ConsumerWorkload {
        recorder.record(now, OpType::Invoke, OpBody::ClientStart);
        let application = group.map(|group| Application { group, delivery, unprocessed: Vec::new(), covered: None, uncommitted: false });
        ConsumerWorkload { recorder, invariants, application }
    }

    /// Whether the application has nothing left to process or commit.
    pub fn settled(&self) -> bool {
        self.application.as_ref().is_none_or(|application| application.unprocessed.is_empty() && !application.uncommitted && application.covered.is_none())
    }

    fn record(&self, now: Instant, kind: OpType, body: OpBody) {
        self.recorder.record(now, kind, body);
    }

    /// Records what the consumer reported, and carries out what that leads to
    /// (a commit), until nothing is left. The two event buffers trade places so
    /// neither is allocated anew per step.
    pub fn carry_out(&mut self, now: Instant, consumer: &mut Consumer, out: &mut Outbox<ConsumerEvent>) {
        let mut events = Vec::new();
        loop {
            self.maybe_commit(now, consumer, out);
            if out.events.is_empty() {
                break;
            }
            std::mem::swap(&mut events, &mut out.events);
            for event in events.drain(..) {
                self.handle_event(now, event);
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Records(records) => {
                let records: Vec<PolledRecord> = records
                    .into_iter()
                    .filter_map(|(partition, offset, record)| Value::decode(&record.value).map(|value| PolledRecord { partition, offset, value }))
                    .collect();
                // Only an application keeps the records once the poll is recorded.
                if self.application.is_some() && !records.is_empty() {
                    self.record(now, OpType::Ok, OpBody::Poll { records: records.clone() });
                    self.polled(now, records);
                } else {
                    self.record(now, OpType::Ok, OpBody::Poll { records });
                }
            }
            ConsumerEvent::Seek { partition, offset, reason } => {
                self.record(now, OpType::Ok, OpBody::Seek { partition, offset, reason: reason.to_string() });
            }
            ConsumerEvent::Error { partition, error } => {
                let reason = format!("{error}: position lost, auto.offset.reset=none");
                self.record(now, OpType::Fail, OpBody::Seek { partition, offset: Offset(0), reason });
            }
            ConsumerEvent::Assigned { generation, partitions } => {
                let group = self.group_name();
                self.record(now, OpType::Ok, OpBody::Assign { group, generation: generation.0, partitions });
            }
            ConsumerEvent::Revoked { generation, partitions, reason } => {
                self.revoked(&partitions);
                let group = self.group_name();
                self.record(now, OpType::Ok, OpBody::Revoke { group, generation: generation.0, partitions, reason: reason.to_string() });
            }
            ConsumerEvent::CommitCompleted { generation, offsets, result, auto } => self.commit_completed(now, generation.0, offsets, result, auto),
        }
    }

    fn group_name(&self) -> Arc<str> {
        self.application.as_ref().map_or_else(|| Arc::from(""), |application| application.group.clone())
    }

    fn polled(&mut self, now: Instant, records: Vec<PolledRecord>) {
        let Some(application) = &mut self.application else { return };
        if records.is_empty() {
            return;
        }
        match application.delivery {
            Delivery::AtMostOnce => application.unprocessed.push(records),
            Delivery::AtLeastOnce | Delivery::ExactlyOnce => {
                application.uncommitted = true;
                let group = application.group.clone();
                self.record(now, OpType::Ok, OpBody::Process { group, records });
            }
        }
    }

    /// at-most-once: batches of revoked partitions that no commit covers are dropped
    /// unprocessed; the next owner reads them again from the committed offset.
    fn revoked(&mut self, partitions: &[TopicPartition]) {
        let Some(application) = &mut self.application else { return };
        let keep_from = application.covered.unwrap_or(0);
        let mut index = 0;
        application.unprocessed.retain_mut(|batch| {
            let covered = index < keep_from;
            index += 1;
            if !covered {
                batch.retain(|record| !partitions.contains(&record.partition));
            }
            covered || !batch.is_empty()
        });
    }

    fn maybe_commit(&mut self, now: Instant, consumer: &mut Consumer, out: &mut Outbox<ConsumerEvent>) {
        let Some(application) = &self.application else { return };
        if application.covered.is_some() || !consumer.can_commit() {
            return;
        }
        let wanted = match application.delivery {
            Delivery::AtMostOnce => !application.unprocessed.is_empty(),
            Delivery::AtLeastOnce | Delivery::ExactlyOnce => application.uncommitted,
        };
        if !wanted {
            return;
        }
        let offsets = consumer.committable_offsets();
        let generation = consumer.group().map_or(-1, |group| group.generation().0);
        let group = application.group.clone();
        let covering = application.unprocessed.len();
        if !consumer.commit(now, offsets.clone(), out) {
            return;
        }
        let application = self.application.as_mut().expect("checked above");
        application.covered = Some(covering);
        application.uncommitted = false;
        self.record(now, OpType::Invoke, OpBody::Commit { group, generation, offsets, error: None });
    }

    fn commit_completed(&mut self, now: Instant, generation: i32, offsets: Vec<(TopicPartition, Offset)>, result: Result<(), ErrorCode>, auto: bool) {
        let group = self.group_name();
        let (kind, error) = super::commit_outcome(result);
        if kind == OpType::Ok {
            self.invariants.offsets_committed(&group, generation, &offsets);
        }
        if auto {
            self.record(now, OpType::Invoke, OpBody::Commit { group: group.clone(), generation, offsets: offsets.clone(), error: None });
        }
        self.record(now, kind, OpBody::Commit { group: group.clone(), generation, offsets, error });
        let Some(application) = &mut self.application else { return };
        if auto {
            return;
        }
        let covered = application.covered.take().unwrap_or(0).min(application.unprocessed.len());
        let batches: Vec<Vec<PolledRecord>> = application.unprocessed.drain(..covered).collect();
        match (application.delivery, kind) {
            // Committed: now the covered batches are processed.
            (Delivery::AtMostOnce, OpType::Ok) => {
                for records in batches {
                    self.record(now, OpType::Ok, OpBody::Process { group: group.clone(), records });
                }
            }
            // Not (known to be) committed: dropped unprocessed, at most once.
            (Delivery::AtMostOnce, _) => {}
            // at-least-once: a failed commit is retried with the next one.
            (_, OpType::Ok) => {}
            (_, _) => application.uncommitted = true,
        }
    }
}
