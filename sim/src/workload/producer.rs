//! What a producer client does: sends unique values (`producer:sequence`) at
//! the scenario's rate through Kafka's producer, and records every send as
//! invoke, then ok (with partition and offset), fail or info (outcome unknown).
//!
//! A transactional producer (`transactional.id`) sends in transactions of
//! `transaction_size` values, committing most and aborting `abort_ratio` of them
//! on purpose, and records each transaction with its values and its outcome.

use super::values::{draw_key, ValueArena};
use crate::history::{OpBody, OpType, Value};
use crate::recorder::Recorder;
use crate::scenario::ProducerSpec;
use kafsim_model::client::producer::{Producer, ProducerEvent, TransactionOutcome};
use kafsim_model::node::Outbox;
use kafsim_model::Instant;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What outlives a producer's restarts: its counter, so values stay unique, and
/// the sends still in flight, which become `info` when the process dies.
#[derive(Debug, Default)]
pub struct ProducerProgress {
    pub next_sequence: u64,
    pub pending: PendingSends,
    pub next_transaction: u64,
    /// The transaction under way, with its values, until it ends.
    pub open_transaction: Option<(u64, Vec<Value>)>,
}

/// The sequences sent and not yet answered. A node hands sequences out one
/// after another, so they are kept as flags from the oldest one still pending:
/// a send and its answer cost a flag each, not a search tree's rebalancing.
#[derive(Debug, Default)]
pub struct PendingSends {
    first: u64,
    flags: VecDeque<bool>,
    count: usize,
}

impl PendingSends {
    pub fn insert(&mut self, sequence: u64) {
        if self.flags.is_empty() {
            self.first = sequence;
        }
        assert_eq!(sequence, self.first + self.flags.len() as u64, "a producer sends its sequences in order");
        self.flags.push_back(true);
        self.count += 1;
    }

    /// Whether `sequence` was pending.
    pub fn remove(&mut self, sequence: u64) -> bool {
        let Some(flag) = sequence.checked_sub(self.first).and_then(|index| self.flags.get_mut(usize::try_from(index).ok()?)) else { return false };
        if !std::mem::replace(flag, false) {
            return false;
        }
        self.count -= 1;
        while self.flags.front() == Some(&false) {
            self.flags.pop_front();
            self.first += 1;
        }
        true
    }

    pub fn contains(&self, sequence: u64) -> bool {
        sequence.checked_sub(self.first).and_then(|index| self.flags.get(usize::try_from(index).ok()?)).is_some_and(|flag| *flag)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pending sequences, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.flags.iter().zip(self.first..).filter(|(flag, _)| **flag).map(|(_, sequence)| sequence)
    }
}

/// What a process that ends (crashed, or exited) left in flight: its outcome
/// is unknown, so it is recorded as `info`.
fn abandon(now: Instant, recorder: &Recorder, number: u32, progress: &Mutex<ProducerProgress>, reason: &str) {
    let mut progress = progress.lock().expect("progress lock");
    for sequence in std::mem::take(&mut progress.pending).iter() {
        let value = Value { producer: number, sequence };
        recorder.record(now, OpType::Info, OpBody::Send { value, partition: None, offset: None, error: Some(reason.into()) });
    }
    if let Some((number, values)) = progress.open_transaction.take() {
        recorder.record(now, OpType::Info, OpBody::Txn { number, values, error: Some(reason.into()) });
    }
}

/// One producer client's workload, for one incarnation of its process.
pub struct ProducerWorkload {
    recorder: Recorder,
    number: u32,
    progress: Arc<Mutex<ProducerProgress>>,
    /// Set when the fault phase is over and the run drains.
    stop: Arc<AtomicBool>,
    topic: Arc<str>,
    keys: u32,
    messages: u64,
    /// Whether `messages` values were sent: only this workload advances its
    /// progress's `next_sequence`, so it keeps the answer without taking the lock.
    all_sent: bool,
    interval: Duration,
    next_send: Instant,
    /// The producer's events while they are carried out, kept for its capacity.
    spare: Vec<ProducerEvent>,
    values: ValueArena,
    transaction_size: u32,
    abort_ratio: f64,
    abort_pending: bool,
}

impl ProducerWorkload {
    /// A new incarnation: what the last one left in flight becomes `info`
    /// (its outcome is unknown), then the client's start is recorded.
    pub fn start(now: Instant, recorder: Recorder, spec: &ProducerSpec, number: u32, progress: Arc<Mutex<ProducerProgress>>, stop: Arc<AtomicBool>) -> ProducerWorkload {
        abandon(now, &recorder, number, &progress, "producer process crashed");
        recorder.record(now, OpType::Invoke, OpBody::ClientStart);
        let all_sent = progress.lock().expect("progress lock").next_sequence >= spec.messages;
        ProducerWorkload {
            recorder,
            number,
            progress,
            stop,
            topic: spec.topic.as_str().into(),
            keys: spec.keys,
            messages: spec.messages,
            all_sent,
            interval: Duration::from_secs_f64(1.0 / spec.rate),
            next_send: now,
            spare: Vec::new(),
            values: ValueArena::default(),
            transaction_size: spec.transaction_size,
            abort_ratio: spec.abort_ratio,
            abort_pending: false,
        }
    }

    /// The process stops for good (a zombie fenced by its successor): what it
    /// left in flight becomes `info`, as a crash's would, and it sends no more.
    pub fn exit(&mut self, now: Instant) {
        abandon(now, &self.recorder, self.number, &self.progress, "fenced by its successor: the process exited");
        self.all_sent = true;
    }

    /// Sends not yet acknowledged, failed or given up.
    pub fn pending_count(&self) -> usize {
        let progress = self.progress.lock().expect("progress lock");
        progress.pending.len() + usize::from(progress.open_transaction.is_some())
    }

    fn active(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && !self.all_sent
    }

    /// When the next send is due, unless none is (all sent, or draining), or a
    /// transactional producer's next transaction waits for the last to end,
    /// which the producer's own answers (not a timer) bring.
    pub fn next_send(&self, producer: &Producer) -> Option<Instant> {
        let waiting_for_transaction = producer.transaction_phase().is_some() && !producer.is_ready_for_transaction();
        (self.active() && !waiting_for_transaction).then_some(self.next_send)
    }

    /// Sends what is due by `now`.
    pub fn send_due(&mut self, now: Instant, producer: &mut Producer, out: &mut Outbox<ProducerEvent>) {
        if producer.transaction_phase().is_some() {
            return self.transaction_due(now, producer, out);
        }
        while self.next_send <= now && self.active() {
            self.next_send = self.next_send + self.interval;
            let sequence = {
                let mut progress = self.progress.lock().expect("progress lock");
                let sequence = progress.next_sequence;
                progress.next_sequence += 1;
                progress.pending.insert(sequence);
                self.all_sent = progress.next_sequence >= self.messages;
                sequence
            };
            let value = Value { producer: self.number, sequence };
            let key = draw_key(self.keys);
            self.recorder.record(now, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
            producer.send(now, sequence, self.topic.clone(), key, self.values.encode(value), out);
        }
    }

    /// Begins a transaction when one is due and the last one ended: sends its
    /// values at once, then asks for the commit (or, drawn from the seed, the abort).
    fn transaction_due(&mut self, now: Instant, producer: &mut Producer, out: &mut Outbox<ProducerEvent>) {
        if self.next_send > now || !self.active() || !producer.is_ready_for_transaction() {
            return;
        }
        if self.progress.lock().expect("progress lock").open_transaction.is_some() {
            return;
        }
        producer.begin_transaction().expect("ready for a transaction");
        let mut values = Vec::new();
        let number = {
            let mut progress = self.progress.lock().expect("progress lock");
            let number = progress.next_transaction;
            progress.next_transaction += 1;
            for _ in 0..self.transaction_size {
                if progress.next_sequence >= self.messages {
                    break;
                }
                let sequence = progress.next_sequence;
                progress.next_sequence += 1;
                progress.pending.insert(sequence);
                values.push(Value { producer: self.number, sequence });
            }
            self.all_sent = progress.next_sequence >= self.messages;
            progress.open_transaction = Some((number, values.clone()));
            number
        };
        self.next_send = now + self.interval * values.len().max(1) as u32;
        self.recorder.record(now, OpType::Invoke, OpBody::Txn { number, values: values.clone(), error: None });
        for value in values {
            let key = draw_key(self.keys);
            self.recorder.record(now, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
            producer.send(now, value.sequence, self.topic.clone(), key, self.values.encode(value), out);
        }
        // An abort waits until its sends were answered, so aborted records are
        // really in the log for read_committed consumers to skip.
        self.abort_pending = self.abort_ratio > 0.0 && madsim::rand::thread_rng().gen_bool(self.abort_ratio);
        if !self.abort_pending {
            producer.commit_transaction(now, out);
        }
    }

    /// The planned abort, once none of the transaction's sends is pending.
    fn abort_when_sent(&mut self, now: Instant, producer: &mut Producer, out: &mut Outbox<ProducerEvent>) {
        if !self.abort_pending {
            return;
        }
        let sent = {
            let progress = self.progress.lock().expect("progress lock");
            match &progress.open_transaction {
                Some((_, values)) => values.iter().all(|value| !progress.pending.contains(value.sequence)),
                None => true,
            }
        };
        if sent {
            self.abort_pending = false;
            producer.abort_transaction(now, out);
        }
    }

    /// Records what the producer reported, and carries out what that leads to
    /// (an abort waiting for its sends), until nothing is left.
    pub fn carry_out(&mut self, now: Instant, producer: &mut Producer, out: &mut Outbox<ProducerEvent>) {
        while !out.events.is_empty() {
            self.carry_out_once(now, out);
            self.abort_when_sent(now, producer, out);
        }
    }

    fn carry_out_once(&mut self, now: Instant, out: &mut Outbox<ProducerEvent>) {
        let mut events = std::mem::replace(&mut out.events, std::mem::take(&mut self.spare));
        // Recording takes the history's lock, never this node's progress. The
        // progress is locked only once an answer needs it: most steps only send.
        let mut progress = None;
        for event in events.drain(..) {
            match event {
                ProducerEvent::TransactionCompleted { outcome } => {
                    let progress = progress.get_or_insert_with(|| self.progress.lock().expect("progress lock"));
                    let Some((number, values)) = progress.open_transaction.take() else { continue };
                    let (kind, error) = match outcome {
                        TransactionOutcome::Committed => (OpType::Ok, None),
                        TransactionOutcome::Aborted => (OpType::Fail, Some("aborted".to_string())),
                        TransactionOutcome::Unknown(error) => (OpType::Info, Some(error)),
                    };
                    self.recorder.record(now, kind, OpBody::Txn { number, values, error });
                }
                ProducerEvent::Completed { handle, result } => {
                    progress.get_or_insert_with(|| self.progress.lock().expect("progress lock")).pending.remove(handle);
                    let value = Value { producer: self.number, sequence: handle };
                    let (kind, body) = match result {
                        Ok((partition, offset)) => (OpType::Ok, OpBody::Send { value, partition: Some(partition), offset: Some(offset), error: None }),
                        Err(error) => {
                            let kind = if error.maybe_written { OpType::Info } else { OpType::Fail };
                            (kind, OpBody::Send { value, partition: None, offset: None, error: Some(error.failure.to_string()) })
                        }
                    };
                    self.recorder.record(now, kind, body);
                }
            }
        }
        drop(progress);
        self.spare = events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pending flags answer as the ordered set they replace.
    #[test]
    fn pending_sends_behave_as_an_ordered_set() {
        let mut pending = PendingSends::default();
        let mut reference = std::collections::BTreeSet::new();
        let removals = [3u64, 0, 0, 7, 1, 2, 12, 4, 5, 6, 9, 8, 10, 11, 40];
        for sequence in 0..12 {
            pending.insert(sequence);
            reference.insert(sequence);
        }
        for removed in removals {
            assert_eq!(pending.remove(removed), reference.remove(&removed));
            assert_eq!(pending.len(), reference.len());
            assert_eq!(pending.iter().collect::<Vec<_>>(), reference.iter().copied().collect::<Vec<_>>());
            assert!((0..20).all(|sequence| pending.contains(sequence) == reference.contains(&sequence)));
        }
        assert!(pending.is_empty());
        // After a restart the next incarnation goes on from a later sequence.
        pending.insert(100);
        assert!(pending.contains(100) && !pending.contains(99));
    }
}
