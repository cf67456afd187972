//! The operation log, Jepsen style: every client call is an `invoke` followed by
//! `ok`, `fail` (it certainly did not happen) or `info` (its outcome is unknown).
//! Faults and client restarts are recorded too, so checkers and traces see them.

use kafsim_model::{Offset, TopicPartition};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Every produced value is unique: the producer's number and its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Value {
    pub producer: u32,
    pub sequence: u64,
}

/// A pipeline's output of input `p:s` is `(PIPELINE_OUTPUT_BASE + p):s`: distinct
/// from every produced value, and mapped back to its input by `pipeline_input`.
pub const PIPELINE_OUTPUT_BASE: u32 = 1_000_000;

impl Value {
    /// The value a consume-transform-produce pipeline writes for this input.
    pub fn pipeline_output(self) -> Value {
        Value { producer: PIPELINE_OUTPUT_BASE + self.producer, sequence: self.sequence }
    }

    /// The input a pipeline output was made from; None for any other value.
    pub fn pipeline_input(self) -> Option<Value> {
        self.producer.checked_sub(PIPELINE_OUTPUT_BASE).map(|producer| Value { producer, sequence: self.sequence })
    }

    pub fn encode(self) -> bytes::Bytes {
        bytes::Bytes::from(format!("{}:{}", self.producer, self.sequence))
    }

    /// The inverse of `encode`; None for anything else. Parsed by hand: consumers
    /// decode every record they poll, and the final snapshot every record of
    /// every partition.
    pub fn decode(bytes: &[u8]) -> Option<Value> {
        let colon = bytes.iter().position(|byte| *byte == b':')?;
        let producer = u32::try_from(decimal(&bytes[..colon])?).ok()?;
        Some(Value { producer, sequence: decimal(&bytes[colon + 1..])? })
    }
}

/// A non-empty run of ASCII digits as a number; None for anything else or on overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Nineteen digits never overflow a u64: every number a run writes is that
    // short, and is read without checked arithmetic.
    if digits.len() <= 19 {
        let mut number = 0u64;
        for digit in digits {
            let digit = digit.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            number = number * 10 + u64::from(digit);
        }
        return Some(number);
    }
    digits.iter().try_fold(0u64, |number, digit| {
        let digit = digit.checked_sub(b'0').filter(|digit| *digit < 10)?;
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.producer, self.sequence)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One record a consumer read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PolledRecord {
    pub partition: TopicPartition,
    pub offset: Offset,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum OpBody {
    /// A producer's send of one value. `invoke` carries the key's partition when the
    /// producer chose it; `ok` carries where the broker put it.
    Send { value: Value, partition: Option<TopicPartition>, offset: Option<Offset>, error: Option<String> },
    /// Records a consumer got from one poll, in the order it got them.
    Poll { records: Vec<PolledRecord> },
    /// A consumer's position moved without reading (initial position, reset,
    /// rebalance, truncation detected): the next read of that partition may start anywhere.
    Seek { partition: TopicPartition, offset: Offset, reason: String },
    /// A client process (re)started: its earlier reads say nothing of its next ones.
    ClientStart,
    /// The nemesis did something, or undid it.
    Fault { description: String },
    /// A simulated node panicked; the run ended there.
    Panic { message: String },
    /// The run hit its simulated-time limit or the wall-clock watchdog.
    Timeout { message: String },
    /// The fault phase ended: everything healed and the workload drains.
    Heal,
    // Group variants come last: the trace hash covers each variant's index,
    // and runs without groups keep their hashes.
    /// A group member was given `partitions` (everything it owns) in `generation`.
    Assign { group: Arc<str>, generation: i32, partitions: Vec<TopicPartition> },
    /// A group member gave up `partitions` it owned in `generation`, and why.
    Revoke { group: Arc<str>, generation: i32, partitions: Vec<TopicPartition>, reason: String },
    /// An OffsetCommit: `invoke` when sent, then `ok`, `fail` (refused) or `info`
    /// (timed out: it may have been applied). Offsets are the next record to read.
    Commit { group: Arc<str>, generation: i32, offsets: Vec<(TopicPartition, Offset)>, error: Option<String> },
    /// The application processed these records (DESIGN §4 `delivery`): its own
    /// step, so a crash between processing and committing shows in the history.
    Process { group: Arc<str>, records: Vec<PolledRecord> },
    /// A producer's transaction (KIP-98) and the values sent in it: `invoke` when
    /// it begins, then `ok` (committed), `fail` (aborted) or `info` (outcome unknown).
    /// Last, after the group variants, so the variants before it keep their
    /// discriminants and the trace hashes of runs without transactions stay as they were.
    Txn { number: u64, values: Vec<Value>, error: Option<String> },
    /// A connection a node opened closed: reset by its peer, refused, or
    /// closed by the node itself (a request timed out), with which peer and why.
    Connection { event: String },
    // KRaft variants last, for the same reason as the ones above.
    /// KIP-595: this controller became the quorum's leader, the active
    /// controller, in `epoch`; `voter` says whether it is one of the voters.
    ControllerElected { epoch: u32, voter: bool },
    /// KIP-631: this controller or broker applied committed metadata log
    /// entries from `offset` on, one digest per entry (of its epoch and bytes),
    /// in the node's process lifetime `incarnation` (1 for the first start).
    MetadataApplied { incarnation: u32, offset: u64, digests: Vec<u64> },
    /// The active controller registered, fenced or unfenced a broker (KIP-631),
    /// or a controller gave up leading: for the trace and the report.
    ControllerChange { event: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Op {
    /// Simulated microseconds since the run began.
    pub time: u64,
    /// The node the operation belongs to: `producer-1`, `consumer-2`, `nemesis`.
    pub node: Arc<str>,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub body: OpBody,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6}.{:03}s {:<12} {}", self.time / 1_000_000, (self.time / 1000) % 1000, self.node, OpDescription(self))
    }
}

/// An operation without its time and node: its type and what it did.
pub struct OpDescription<'a>(pub &'a Op);

impl OpBody {
    /// What a controller op says (an election, a fencing), in words; None for other ops.
    pub fn controller_note(&self) -> Option<String> {
        match self {
            OpBody::ControllerElected { epoch, voter } => Some(format!("active controller in quorum epoch {epoch}{}", if *voter { "" } else { " (not a voter)" })),
            OpBody::ControllerChange { event } => Some(event.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for OpDescription<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        let kind = match op.kind {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        };
        write!(f, "{kind:<6} ")?;
        match &op.body {
            OpBody::Send { value, partition, offset, error } => {
                write!(f, "send {value}")?;
                if let Some(partition) = partition {
                    write!(f, " -> {partition}")?;
                }
                if let Some(offset) = offset {
                    write!(f, " @{offset}")?;
                }
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                Ok(())
            }
            OpBody::Txn { number, values, error } => {
                write!(f, "txn {number} [")?;
                for (index, value) in values.iter().enumerate() {
                    write!(f, "{}{value}", if index == 0 { "" } else { " " })?;
                }
                write!(f, "]")?;
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                Ok(())
            }
            OpBody::Poll { records } => {
                write!(f, "poll")?;
                for record in records {
                    write!(f, " {}@{}={}", record.partition, record.offset, record.value)?;
                }
                Ok(())
            }
            OpBody::Seek { partition, offset, reason } => write!(f, "seek {partition} to {offset} ({reason})"),
            OpBody::ClientStart => write!(f, "client start"),
            OpBody::Connection { event } => write!(f, "{event}"),
            OpBody::ControllerElected { .. } | OpBody::ControllerChange { .. } => write!(f, "{}", op.body.controller_note().expect("a controller op")),
            OpBody::MetadataApplied { incarnation, offset, digests } => {
                write!(f, "metadata applied {offset}..{} (incarnation {incarnation})", offset + digests.len() as u64)
            }
            OpBody::Assign { group, generation, partitions } => write!(f, "assign {group} gen {generation} {partitions:?}"),
            OpBody::Revoke { group, generation, partitions, reason } => write!(f, "revoke {group} gen {generation} {partitions:?} ({reason})"),
            OpBody::Commit { group, generation, offsets, error } => {
                write!(f, "commit {group} gen {generation}")?;
                for (partition, offset) in offsets {
                    write!(f, " {partition}@{offset}")?;
                }
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                Ok(())
            }
            OpBody::Process { group, records } => {
                write!(f, "process {group}")?;
                for record in records {
                    write!(f, " {}@{}={}", record.partition, record.offset, record.value)?;
                }
                Ok(())
            }
            OpBody::Fault { description } => write!(f, "fault {description}"),
            OpBody::Panic { message } => write!(f, "panic {message}"),
            OpBody::Timeout { message } => write!(f, "timeout {message}"),
            OpBody::Heal => write!(f, "heal: fault phase over, draining"),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    pub ops: Vec<Op>,
    /// What the checkers size their lists by, kept as ops are pushed so that
    /// they need no pass of their own over a history of megabytes.
    #[serde(skip)]
    tally: Tally,
}

/// Counts of a history's ops, for sizing what is built from it (`History::tally`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many ops were counted: the tally is of the history's first `ops` ops.
    pub ops: usize,
    /// Sends invoked.
    pub invokes: usize,
    /// Sends completed `ok`.
    pub acknowledged: usize,
    /// Records in polls completed `ok` or `info`.
    pub polled_records: usize,
    /// One more than the largest sequence of a value invoked.
    pub sequence_bound: u64,
}

impl Tally {
    fn count(&mut self, op: &Op) {
        self.ops += 1;
        match (&op.body, op.kind) {
            (OpBody::Send { value, .. }, OpType::Invoke) => {
                self.invokes += 1;
                self.sequence_bound = self.sequence_bound.max(value.sequence.saturating_add(1));
            }
            (OpBody::Send { .. }, OpType::Ok) => self.acknowledged += 1,
            (OpBody::Poll { records }, OpType::Ok | OpType::Info) => self.polled_records += records.len(),
            _ => {}
        }
    }
}

/// A history never reserves room for more operations than this up front (about
/// 100 MB of address space); a bigger run's history grows as a Vec does.
const MAX_RESERVED_OPS: u64 = 1 << 20;

impl History {
    /// An empty history with room for the operations a run of a scenario that
    /// sends `messages` records records: an invoke and a completion per send,
    /// and polls, retries and faults. Growing a Vec of a few megabytes by
    /// doubling copied it a dozen times and was most of the run's cache misses
    /// on writes. The reference scenario's seeds record 2 to 3.8 operations per
    /// record, so room for 4 spares all but rare seeds the copy; the room a run
    /// leaves unwritten is address space only, as its pages are never touched.
    pub fn with_room_for(messages: u64) -> History {
        let ops = messages.saturating_mul(4) + 256;
        History { ops: Vec::with_capacity(ops.min(MAX_RESERVED_OPS) as usize), tally: Tally::default() }
    }

    pub fn push(&mut self, time: u64, node: &Arc<str>, kind: OpType, body: OpBody) {
        let op = Op { time, node: node.clone(), kind, body };
        // Counted while the op is in the cache, not in a later pass.
        if self.tally.ops == self.ops.len() {
            self.tally.count(&op);
        }
        self.ops.push(op);
    }

    /// The counts of every op. Kept by `push`; counted afresh if ops were
    /// added to `ops` some other way.
    pub fn tally(&self) -> Tally {
        if self.tally.ops == self.ops.len() {
            return self.tally;
        }
        let mut tally = Tally::default();
        for op in &self.ops {
            tally.count(op);
        }
        tally
    }

    /// The time the fault phase ended, if the run got that far.
    pub fn heal_time(&self) -> Option<u64> {
        self.ops.iter().find(|op| op.body == OpBody::Heal).map(|op| op.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_kept_by_push_is_the_tally_counted_afresh() {
        let (producer, consumer): (Arc<str>, Arc<str>) = ("producer-1".into(), "consumer-1".into());
        let record = |sequence| PolledRecord { partition: TopicPartition::new("t", 0), offset: Offset(sequence), value: Value { producer: 1, sequence } };
        let send = |sequence| OpBody::Send { value: Value { producer: 1, sequence }, partition: None, offset: None, error: None };
        let mut history = History::with_room_for(4);
        history.push(1, &producer, OpType::Invoke, send(7));
        history.push(2, &producer, OpType::Invoke, send(3));
        history.push(3, &producer, OpType::Ok, send(7));
        history.push(4, &producer, OpType::Info, send(3));
        history.push(5, &consumer, OpType::Ok, OpBody::Poll { records: vec![record(0), record(1)] });
        history.push(6, &consumer, OpType::Info, OpBody::Poll { records: vec![record(2)] });
        history.push(7, &consumer, OpType::Fail, OpBody::Poll { records: vec![record(3)] });
        history.push(8, &consumer, OpType::Ok, OpBody::Heal);
        let kept = history.tally();
        assert_eq!(kept, Tally { ops: 8, invokes: 2, acknowledged: 1, polled_records: 3, sequence_bound: 8 });
        // Ops added past `push` are counted too, and `push` stops keeping a tally it no longer matches.
        history.ops.push(Op { time: 9, node: producer.clone(), kind: OpType::Invoke, body: send(20) });
        history.push(10, &producer, OpType::Ok, send(20));
        assert_eq!(history.tally(), Tally { ops: 10, invokes: 3, acknowledged: 2, polled_records: 3, sequence_bound: 21 });
    }

    #[test]
    fn values_round_trip_and_anything_else_is_refused() {
        for value in [Value { producer: 0, sequence: 0 }, Value { producer: 7, sequence: 12_345 }, Value { producer: 1, sequence: 9_999_999_999_999_999_999 }, Value { producer: u32::MAX, sequence: u64::MAX }] {
            assert_eq!(Value::decode(&value.encode()), Some(value));
        }
        for bad in ["", ":", "1:", ":1", "1:2:3", "a:1", "1:x", "-1:2", "4294967296:0", "1:18446744073709551616", "1:99999999999999999999", "1 :2", "1:/", "barrier"] {
            assert_eq!(Value::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    /// The decoding before its short-number path: every digit checked for overflow.
    fn decode_checked(bytes: &[u8]) -> Option<Value> {
        let decimal = |digits: &[u8]| -> Option<u64> {
            if digits.is_empty() {
                return None;
            }
            digits.iter().try_fold(0u64, |number, digit| {
                let digit = digit.checked_sub(b'0').filter(|digit| *digit < 10)?;
                number.checked_mul(10)?.checked_add(u64::from(digit))
            })
        };
        let colon = bytes.iter().position(|byte| *byte == b':')?;
        let producer = u32::try_from(decimal(&bytes[..colon])?).ok()?;
        Some(Value { producer, sequence: decimal(&bytes[colon + 1..])? })
    }

    proptest::proptest! {
        #[test]
        fn decode_agrees_with_checking_every_digit(bytes in proptest::collection::vec(proptest::prop_oneof![8 => b'0'..=b'9', 2 => proptest::strategy::Just(b':'), 1 => proptest::num::u8::ANY], 0..26)) {
            proptest::prop_assert_eq!(Value::decode(&bytes), decode_checked(&bytes));
        }
    }
}
