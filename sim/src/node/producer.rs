//! A producer workload node: sends unique values (`producer:sequence`) at the
//! scenario's rate through Kafka's producer, and records every send as invoke,
//! then ok (with partition and offset), fail or info (outcome unknown).
//!
//! A transactional producer (`transactional.id`) sends in transactions of
//! `transaction_size` values, committing most and aborting `abort_ratio` of them
//! on purpose, and records each transaction with its values and its outcome.

use super::{Machine, Wire};
use crate::context::RunContext;
use crate::history::{OpBody, OpType, Value};
use kafsim_model::client::producer::{Producer, ProducerEvent, TransactionOutcome};
use kafsim_model::net::{ConnectionEvent, Destination};
use kafsim_model::node::{Node, Outbox};
use kafsim_model::protocol::Message;
use kafsim_model::{Instant, NodeId};
use rand::Rng;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
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

pub struct ProducerNode {
    ctx: Arc<RunContext>,
    name: Arc<str>,
    number: u32,
    producer: Producer,
    /// `producer.next_deadline()`, kept until the producer is next touched: the
    /// driver asks twice per wake, and only the two `Machine` handlers (and
    /// what they call) change the producer.
    producer_deadline: Cell<Option<Option<Instant>>>,
    progress: Arc<Mutex<ProducerProgress>>,
    topic: Arc<str>,
    keys: u32,
    messages: u64,
    /// Whether `messages` values were sent: only this node advances its
    /// progress's `next_sequence`, so it keeps the answer without taking the lock.
    all_sent: bool,
    interval: Duration,
    next_send: Instant,
    out: Outbox<ProducerEvent>,
    /// `out`'s events while they are carried out, kept for its capacity.
    spare: Vec<ProducerEvent>,
    values: ValueArena,
    transaction_size: u32,
    abort_ratio: f64,
    abort_pending: bool,
}

impl ProducerNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> ProducerNode {
        let name = ctx.roster.entry(id).name.clone();
        let scenario = ctx.scenario.clone();
        let spec = &scenario.producers[spec];
        let progress = ctx.producer_progress[&id].clone();
        let orphans: Vec<u64> = std::mem::take(&mut progress.lock().expect("progress lock").pending).iter().collect();
        for sequence in orphans {
            let value = Value { producer: number, sequence };
            ctx.record(&name, OpType::Info, OpBody::Send { value, partition: None, offset: None, error: Some("producer process crashed".into()) });
        }
        if let Some((number, values)) = progress.lock().expect("progress lock").open_transaction.take() {
            ctx.record(&name, OpType::Info, OpBody::Txn { number, values, error: Some("producer process crashed".into()) });
        }
        ctx.record(&name, OpType::Invoke, OpBody::ClientStart);
        let mut config = spec.config.clone();
        // One transactional id per producer; a restart reuses it, fencing the zombie.
        if let Some(id) = &mut config.transactional_id {
            *id = format!("{id}-{number}");
        }
        let producer = Producer::new(config, ctx.roster.brokers(), number, jitter_seed(id, ctx.now()));
        let interval = Duration::from_secs_f64(1.0 / spec.rate);
        let all_sent = progress.lock().expect("progress lock").next_sequence >= spec.messages;
        ProducerNode {
            name,
            number,
            producer,
            producer_deadline: Cell::new(None),
            progress,
            topic: spec.topic.as_str().into(),
            keys: spec.keys,
            messages: spec.messages,
            all_sent,
            interval,
            next_send: ctx.now(),
            out: Outbox::new(id),
            spare: Vec::new(),
            values: ValueArena::default(),
            transaction_size: spec.transaction_size,
            abort_ratio: spec.abort_ratio,
            abort_pending: false,
            ctx,
        }
    }

    /// Sends not yet acknowledged, failed or given up.
    pub fn pending_count(&self) -> usize {
        let progress = self.progress.lock().expect("progress lock");
        progress.pending.len() + usize::from(progress.open_transaction.is_some())
    }

    fn active(&self) -> bool {
        !self.ctx.stop_producing.load(Ordering::Relaxed) && !self.all_sent
    }

    fn send_due(&mut self, now: Instant) {
        if self.producer.transaction_phase().is_some() {
            return self.transaction_due(now);
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
            let key = self.draw_key();
            self.ctx.record_at(now, &self.name, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
            self.producer.send(now, sequence, self.topic.clone(), key, self.values.encode(value), &mut self.out);
        }
    }

    /// One of the scenario's `keys` keys, drawn from the seed; None when keys are null.
    fn draw_key(&self) -> Option<bytes::Bytes> {
        if self.keys == 0 {
            return None;
        }
        let index = madsim::rand::thread_rng().gen_range(0..self.keys);
        Some(static_key(index).unwrap_or_else(|| encode_key(index)))
    }

    /// Begins a transaction when one is due and the last one ended: sends its
    /// values at once, then asks for the commit (or, drawn from the seed, the abort).
    fn transaction_due(&mut self, now: Instant) {
        if self.next_send > now || !self.active() || !self.producer.is_ready_for_transaction() {
            return;
        }
        if self.progress.lock().expect("progress lock").open_transaction.is_some() {
            return;
        }
        self.producer.begin_transaction().expect("ready for a transaction");
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
        self.ctx.record_at(now, &self.name, OpType::Invoke, OpBody::Txn { number, values: values.clone(), error: None });
        for value in values {
            let key = self.draw_key();
            self.ctx.record_at(now, &self.name, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
            self.producer.send(now, value.sequence, self.topic.clone(), key, self.values.encode(value), &mut self.out);
        }
        // An abort waits until its sends were answered, so aborted records are
        // really in the log for read_committed consumers to skip.
        self.abort_pending = self.abort_ratio > 0.0 && madsim::rand::thread_rng().gen_bool(self.abort_ratio);
        if !self.abort_pending {
            self.producer.commit_transaction(now, &mut self.out);
        }
    }

    /// The planned abort, once none of the transaction's sends is pending.
    fn abort_when_sent(&mut self, now: Instant) {
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
            self.producer.abort_transaction(now, &mut self.out);
        }
    }

    /// Records what the producer reported, and carries out what that leads to
    /// (an abort waiting for its sends), until nothing is left.
    fn carry_out(&mut self, now: Instant) {
        while !self.out.events.is_empty() {
            self.carry_out_once(now);
            self.abort_when_sent(now);
        }
    }

    fn carry_out_once(&mut self, now: Instant) {
        let mut events = std::mem::replace(&mut self.out.events, std::mem::take(&mut self.spare));
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
                    self.ctx.record_at(now, &self.name, kind, OpBody::Txn { number, values, error });
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
                    self.ctx.record_at(now, &self.name, kind, body);
                }
            }
        }
        drop(progress);
        self.spare = events;
    }

    /// Runs one step of the producer with the wire's buffers as its own, then
    /// records what it reported.
    fn step(&mut self, now: Instant, wire: &mut Wire, step: impl FnOnce(&mut Self)) {
        self.producer_deadline.set(None);
        self.out.swap_wire(wire);
        step(self);
        self.carry_out(now);
        self.out.swap_wire(wire);
    }
}

/// Seeds a client's reconnect jitter: different for every node and start, and
/// drawn from nothing random.
pub fn jitter_seed(id: NodeId, now: Instant) -> u64 {
    u64::from(id.0) << 40 ^ now.as_micros()
}

/// Keys below this number come from a table made once per process; higher ones
/// are made per send.
const STATIC_KEY_COUNT: u32 = 1024;

/// Key number `index` from the process's table of static keys. Its text is
/// allocated once and never freed (a few kilobytes), so a key is a static
/// `Bytes`: cloning and dropping one, which every copy of a record does in the
/// producer, the brokers and the consumers, touches no reference count.
fn static_key(index: u32) -> Option<bytes::Bytes> {
    static TABLE: std::sync::OnceLock<Vec<bytes::Bytes>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut text = Vec::new();
        let mut ranges = Vec::new();
        for index in 0..STATIC_KEY_COUNT {
            let start = text.len();
            text.extend_from_slice(&encode_key(index));
            ranges.push(start..text.len());
        }
        let text: &'static [u8] = Box::leak(text.into_boxed_slice());
        ranges.into_iter().map(|range| bytes::Bytes::from_static(&text[range])).collect()
    });
    table.get(index as usize).cloned()
}

/// The bytes of key number `index`: `k` and the number in decimal.
fn encode_key(index: u32) -> bytes::Bytes {
    let mut buffer = DecimalBuffer::default();
    buffer.push(b'k');
    buffer.push_decimal(u64::from(index));
    bytes::Bytes::copy_from_slice(buffer.as_bytes())
}

/// Where the node's values come from. A node sends consecutive sequences of
/// one producer, so their bytes (`producer:sequence` in decimal, as
/// `Value::encode` makes them) are written `VALUE_CHUNK_COUNT` at a time into
/// one shared buffer, and each value is a slice of it: it needs no allocation
/// of its own, and cloning it (a log cut inside a batch, or a follower
/// appending only part of one, copies that batch's records) counts one
/// reference, where a `Bytes` of its own would allocate on its first clone.
#[derive(Default)]
struct ValueArena {
    chunk: bytes::Bytes,
    producer: u32,
    first_sequence: u64,
    /// Where each value of the chunk ends in it, from `first_sequence` on.
    ends: Vec<usize>,
}

/// How many values the arena writes ahead in one buffer.
const VALUE_CHUNK_COUNT: u64 = 256;

impl ValueArena {
    /// The bytes of `value`, written without `format!`, which cost more than the
    /// rest of a send's shell.
    fn encode(&mut self, value: Value) -> bytes::Bytes {
        let mut index = value.sequence.wrapping_sub(self.first_sequence);
        if value.producer != self.producer || index >= self.ends.len() as u64 {
            self.write_from(value);
            index = 0;
        }
        let index = index as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        self.chunk.slice(start..self.ends[index])
    }

    /// Writes `value` and the values of the sequences after it into a new chunk.
    fn write_from(&mut self, value: Value) {
        let mut text = Vec::with_capacity(VALUE_CHUNK_COUNT as usize * 16);
        self.ends.clear();
        for offset in 0..VALUE_CHUNK_COUNT {
            let Some(sequence) = value.sequence.checked_add(offset) else { break };
            let mut buffer = DecimalBuffer::default();
            buffer.push_decimal(u64::from(value.producer));
            buffer.push(b':');
            buffer.push_decimal(sequence);
            text.extend_from_slice(buffer.as_bytes());
            self.ends.push(text.len());
        }
        self.chunk = bytes::Bytes::from(text);
        self.producer = value.producer;
        self.first_sequence = value.sequence;
    }
}

/// Room for two decimal u64 and a separator.
struct DecimalBuffer {
    bytes: [u8; 48],
    length: usize,
}

impl Default for DecimalBuffer {
    fn default() -> Self {
        DecimalBuffer { bytes: [0; 48], length: 0 }
    }
}

impl DecimalBuffer {
    fn push(&mut self, byte: u8) {
        self.bytes[self.length] = byte;
        self.length += 1;
    }

    fn push_decimal(&mut self, number: u64) {
        let digit_count = number.checked_ilog10().unwrap_or(0) as usize + 1;
        let mut rest = number;
        for slot in self.bytes[self.length..self.length + digit_count].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.length += digit_count;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl Machine for ProducerNode {
    fn handle_message(&mut self, now: Instant, _to: NodeId, from: NodeId, message: Message, wire: &mut Wire) {
        self.step(now, wire, |node| node.producer.handle_message(now, from, message, &mut node.out));
    }

    fn handle_connection(&mut self, now: Instant, _at: NodeId, destination: Destination, event: ConnectionEvent, wire: &mut Wire) {
        self.step(now, wire, |node| node.producer.handle_connection(now, destination, event, &mut node.out));
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        self.step(now, wire, |node| {
            node.send_due(now);
            node.producer.handle_timeout(now, &mut node.out);
        });
    }

    fn next_deadline(&self) -> Option<Instant> {
        // A transactional producer's next transaction waits for the last to end,
        // which the producer's own answers (not a timer) bring.
        let waiting_for_transaction = self.producer.transaction_phase().is_some() && !self.producer.is_ready_for_transaction();
        let next_send = (self.active() && !waiting_for_transaction).then_some(self.next_send);
        let producer_deadline = self.producer_deadline.get().unwrap_or_else(|| {
            let deadline = self.producer.next_deadline();
            self.producer_deadline.set(Some(deadline));
            deadline
        });
        kafsim_model::time::earliest(producer_deadline, next_send)
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

    #[test]
    fn values_and_keys_are_encoded_as_format_would() {
        let mut arena = ValueArena::default();
        for round in 0..200 {
            for producer in [0, 1, 9, 10, 123, u32::MAX] {
                for sequence in [0, 1, 9, 10, 99, 100, 5999, 1 << 40, u64::MAX] {
                    let value = Value { producer, sequence: sequence.wrapping_add(round) };
                    assert_eq!(arena.encode(value), value.encode());
                }
            }
        }
        for index in [0, 1, 9, 10, 15, 1023, 1024, u32::MAX] {
            assert_eq!(encode_key(index), bytes::Bytes::from(format!("k{index}")));
            assert!(static_key(index).is_none_or(|key| key == encode_key(index)));
        }
        assert!(static_key(STATIC_KEY_COUNT - 1).is_some() && static_key(STATIC_KEY_COUNT).is_none());
    }
}
