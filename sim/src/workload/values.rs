//! The bytes a workload sends: values (`producer:sequence`, unique per send,
//! so checkers can follow each one) and keys (`k` and a number drawn from the
//! seed), made without allocating per send.

use crate::history::Value;
use rand::Rng;

/// One of `keys` keys, drawn from the seed; None when keys are null (0).
pub fn draw_key(keys: u32) -> Option<bytes::Bytes> {
    if keys == 0 {
        return None;
    }
    let index = madsim::rand::thread_rng().gen_range(0..keys);
    Some(static_key(index).unwrap_or_else(|| encode_key(index)))
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
pub struct ValueArena {
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
    pub fn encode(&mut self, value: Value) -> bytes::Bytes {
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

#[cfg(test)]
mod tests {
    use super::*;

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
