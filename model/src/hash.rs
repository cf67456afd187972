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
    fn word(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(last));
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

impl std::hash::Hasher for StableHasher {
    fn finish(&self) -> u64 {
        StableHasher::finish(*self)
    }

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
