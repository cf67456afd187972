//! One hash for everything that must come out the same on every machine and in
//! every release: a run's trace hash and a record batch's checksum.

/// A word-at-a-time multiplicative hash (FNV-1a's constants, one multiply per
/// 8 bytes instead of per byte): stable across machines and releases, unlike
/// std's hasher. As a `Hasher`, integers go in as little-endian words whatever
/// the machine; byte strings go in as little-endian words, the last one padded
/// with zeros, then their length.
#[derive(Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    #[inline]
    fn word(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }

    /// Inlined: the trace hash writes every node and topic name of a run's
    /// history through here, most of them shorter than one word.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.word(padded_word(rest));
        }
        self.word(bytes.len() as u64);
    }

    pub fn finish(self) -> u64 {
        // A final mix, so that the last words reach every bit.
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^ (hash >> 33)
    }
}

/// One to seven bytes as a little-endian word padded with zeros, the same word
/// as copying them into a zeroed `[u8; 8]`, but from at most three loads
/// instead of a copy of variable length.
#[inline]
fn padded_word(rest: &[u8]) -> u64 {
    let length = rest.len();
    debug_assert!((1..8).contains(&length), "a remainder of one to seven bytes");
    if length >= 4 {
        // Two four-byte loads that overlap in the middle, where they agree.
        let low = u64::from(u32::from_le_bytes(rest[..4].try_into().expect("four bytes")));
        let high = u64::from(u32::from_le_bytes(rest[length - 4..].try_into().expect("four bytes")));
        low | high << (8 * (length - 4))
    } else {
        // The first, middle and last bytes are all of them (some twice).
        let middle = length / 2;
        u64::from(rest[0]) | u64::from(rest[middle]) << (8 * middle) | u64::from(rest[length - 1]) << (8 * (length - 1))
    }
}

impl std::hash::Hasher for StableHasher {
    fn finish(&self) -> u64 {
        StableHasher::finish(*self)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        StableHasher::write(self, bytes);
    }

    fn write_u8(&mut self, value: u8) {
        self.word(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.word(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.word(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.word(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.word(value as u64);
    }

    fn write_i32(&mut self, value: i32) {
        self.word(value as u32 as u64);
    }

    fn write_i64(&mut self, value: i64) {
        self.word(value as u64);
    }

    fn write_isize(&mut self, value: isize) {
        self.word(value as i64 as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash as first written: the remainder copied into a zeroed word.
    fn write_by_copy(hasher: &mut StableHasher, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            hasher.word(u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            hasher.word(u64::from_le_bytes(last));
        }
        hasher.word(bytes.len() as u64);
    }

    /// Trace hashes recorded before must stay valid: every length and every
    /// byte position hashes as the copying version did.
    #[test]
    fn write_agrees_with_copying_the_remainder() {
        let bytes: Vec<u8> = (0u8..40).map(|index| index.wrapping_mul(37).wrapping_add(0x81)).collect();
        for start in 0..8 {
            for end in start..bytes.len() {
                let (mut fast, mut copied) = (StableHasher::default(), StableHasher::default());
                fast.write(&bytes[start..end]);
                write_by_copy(&mut copied, &bytes[start..end]);
                assert_eq!(fast.finish(), copied.finish(), "bytes {start}..{end}");
            }
        }
    }
}
