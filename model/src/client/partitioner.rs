//! The producer's choice of partition for a record, as Apache Kafka's Java client makes it.
//!
//! * Keyed records: `BuiltInPartitioner.partitionForKey`, which is
//!   `Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`. The hash is Kafka's
//!   variant of MurmurHash2 (`org.apache.kafka.common.utils.Utils.murmur2`), reproduced
//!   bit for bit, including Java's wrapping `int` arithmetic, so a key lands on the same
//!   partition here as it does with a real Java producer.
//! * Records without a key: a per-topic round-robin counter, as in Kafka's
//!   `RoundRobinPartitioner` (`toPositive(counter.getAndIncrement()) % count`).
//!   Kafka's *default* for null keys is the sticky/uniform-sticky partitioner; this
//!   model uses round-robin instead, which spreads records just as evenly but
//!   deterministically and without batching state.
//!
//! Pure functions and a plain counter: no IO, no clock, no randomness.

/// Kafka's murmur2 seed (`Utils.murmur2`: `int seed = 0x9747b28c`).
const SEED: u32 = 0x9747_b28c;
/// Mixing constant `m`.
const M: i32 = 0x5bd1_e995;
/// Mixing shift `r`.
const R: u32 = 24;

/// Kafka's 32-bit murmur2 hash of `data`, exactly as `org.apache.kafka.common.utils.Utils.murmur2`.
///
/// Java's `int` overflow is modelled with wrapping arithmetic and its `>>>` with a
/// logical (unsigned) shift. The length is mixed in as Java's `int` length; keys are
/// never anywhere near 2 GiB, and truncating the length is what Java would do anyway.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    // Java: `int length = data.length;` (an array length always fits in an int).
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    let length = data.len() as i32;
    #[allow(clippy::cast_possible_wrap)]
    let mut h: i32 = (SEED as i32) ^ length;

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        // Little-endian assembly of four unsigned bytes, as
        // `(data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ...`.
        let mut k = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= lsr(k, R);
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail: Java's fall-through `switch (length % 4)`.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= i32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= i32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= i32::from(first);
        h = h.wrapping_mul(M);
    }

    h ^= lsr(h, 13);
    h = h.wrapping_mul(M);
    h ^= lsr(h, 15);
    h
}

/// Java's unsigned right shift `n >>> s` on an `int`.
#[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
fn lsr(n: i32, s: u32) -> i32 {
    ((n as u32) >> s) as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (`n & 0x7fffffff`).
///
/// Not `abs`: `i32::MIN` maps to 0 and negative numbers do not map to their magnitude.
#[must_use]
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a keyed record: `toPositive(murmur2(key)) % partition_count`, as in
/// Kafka's `BuiltInPartitioner.partitionForKey` (and the old `DefaultPartitioner`).
///
/// # Panics
///
/// If `partition_count` is 0, as Java throws `ArithmeticException` there; a topic always
/// has at least one partition.
#[must_use]
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    assert!(
        partition_count > 0,
        "partition_for_key: a topic has at least one partition"
    );
    // `to_positive` is never negative, so the unsigned remainder equals Java's `%`.
    #[allow(clippy::cast_sign_loss)]
    let hash = to_positive(murmur2(key)) as u32;
    hash % partition_count
}

/// Round-robin for records without a key, as Kafka's `RoundRobinPartitioner`: one counter
/// per topic, `toPositive(counter.getAndIncrement()) % partition_count`.
///
/// The counter wraps like Java's `AtomicInteger`: after `i32::MAX` it goes negative and
/// `to_positive` folds it back, so the sequence restarts from 0 rather than skipping.
/// Kafka takes the remainder over the *available* partitions and then maps that index
/// through the available-partition list; here `partition_count` is that candidate count
/// and the caller does the mapping (with every partition available it is the identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRobin {
    next: u32,
}

impl RoundRobin {
    /// A counter whose first pick is `start` (Kafka starts every topic's counter at 0).
    #[must_use]
    pub fn new(start: u32) -> Self {
        Self { next: start }
    }

    /// The next partition, in `0..partition_count`, advancing the counter.
    ///
    /// # Panics
    ///
    /// If `partition_count` is 0 (Java throws `ArithmeticException`).
    pub fn next_partition(&mut self, partition_count: u32) -> u32 {
        assert!(
            partition_count > 0,
            "RoundRobin::next_partition: no partitions to choose from"
        );
        // The Java counter is an `int`; reading our u32 bit pattern as one and taking
        // `toPositive` is the same as masking off bit 31.
        let value = self.next & 0x7fff_ffff;
        self.next = self.next.wrapping_add(1);
        value % partition_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// `UtilsTest.testMurmur2` in Apache Kafka,
    /// clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
    /// (apache/kafka trunk, commit 1eb7644349cb07139d6a3c1ad1986979647cac99):
    ///
    /// ```java
    /// cases.put("21".getBytes(), -973932308);
    /// cases.put("foobar".getBytes(), -790332482);
    /// cases.put("a-little-bit-long-string".getBytes(), -985981536);
    /// cases.put("a-little-bit-longer-string".getBytes(), -1486304829);
    /// cases.put("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8".getBytes(), -58897971);
    /// cases.put(new byte[] {'a', 'b', 'c'}, 479470107);
    /// ```
    const KAFKA_MURMUR2_CASES: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        // Java: `new byte[] {'a', 'b', 'c'}`.
        (b"abc", 479_470_107),
    ];

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        for (key, expected) in KAFKA_MURMUR2_CASES {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn kafka_vectors_cover_every_tail_length() {
        // Lengths 2, 6, 24, 26, 48, 3: tails of 2, 2, 0, 2, 0, 3 bytes. Kafka's table has
        // no 1-byte tail; that path was cross-checked (when this was written) against
        // Kafka's own Java `Utils.murmur2` on random inputs of every length 0..40.
        let tails: Vec<usize> = KAFKA_MURMUR2_CASES
            .iter()
            .map(|(k, _)| k.len() % 4)
            .collect();
        assert!(tails.contains(&0) && tails.contains(&2) && tails.contains(&3));
    }

    #[test]
    fn partition_for_key_is_to_positive_murmur2_mod_count() {
        // `BuiltInPartitioner.partitionForKey` applied to the UtilsTest vectors above.
        for (key, hash) in KAFKA_MURMUR2_CASES {
            for count in [1_u32, 2, 3, 5, 7, 12, 100, 1000] {
                #[allow(clippy::cast_sign_loss)]
                let expected = (to_positive(hash) as u32) % count;
                assert_eq!(partition_for_key(key, count), expected);
            }
        }
        // Spelled out for "abc" (hash 479470107, already positive).
        assert_eq!(partition_for_key(b"abc", 3), 479_470_107 % 3);
        assert_eq!(partition_for_key(b"abc", 1), 0);
        // "21": hash -973932308, toPositive = -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
    }

    /// Kafka has no test asserting `partitionForKey` on fixed keys; the nearest are the
    /// comments in Kafka Streams'
    /// streams/src/test/java/org/apache/kafka/streams/integration/KTableKTableForeignKeyInnerJoinMultiIntegrationTest.java
    /// (same commit): "Partitions pre-computed using the default Murmur2 hash, just to
    /// ensure that all 3 partitions will be exercised", for the `StringSerializer` keys
    /// "0".."9". They are comments, not assertions, and are for 3 partitions (the topic
    /// there is now created with 5), so this is a secondary check.
    #[test]
    fn partition_for_key_matches_kafka_streams_precomputed_partitions() {
        let precomputed: [(&[u8], u32); 10] = [
            (b"0", 2),
            (b"1", 0),
            (b"2", 2),
            (b"3", 2),
            (b"4", 1),
            (b"5", 0),
            (b"6", 1),
            (b"7", 0),
            (b"8", 0),
            (b"9", 2),
        ];
        for (key, partition) in precomputed {
            assert_eq!(
                partition_for_key(key, 3),
                partition,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(0), 0);
        assert_eq!(to_positive(1), 1);
        assert_eq!(to_positive(i32::MAX), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
    }

    /// Kafka's `RoundRobinPartitionerTest.testRoundRobinWithNullKeyBytes`
    /// (clients/src/test/java/org/apache/kafka/clients/producer/RoundRobinPartitionerTest.java):
    /// topicA has 3 partitions, topicB 1; 30 sends to topicA interleaved with a send to
    /// topicB every fifth one leave exactly 10 records on each of topicA's partitions,
    /// because each topic has its own counter.
    #[test]
    fn round_robin_counters_are_per_topic() {
        let mut counters: HashMap<&str, RoundRobin> = HashMap::new();
        let mut counts = [0_u32; 3];
        for i in 0..30 {
            let partition = counters
                .entry("topicA")
                .or_insert_with(|| RoundRobin::new(0))
                .next_partition(3);
            counts[partition as usize] += 1;
            if i % 5 == 0 {
                let b = counters
                    .entry("topicB")
                    .or_insert_with(|| RoundRobin::new(0))
                    .next_partition(1);
                assert_eq!(b, 0);
            }
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn round_robin_cycles_from_start() {
        let mut rr = RoundRobin::new(0);
        let picks: Vec<u32> = (0..7).map(|_| rr.next_partition(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        let mut rr = RoundRobin::new(5);
        assert_eq!(rr.next_partition(4), 1);
        assert_eq!(rr.next_partition(4), 2);
    }

    #[test]
    fn round_robin_wraps_like_a_java_int_counter() {
        // AtomicInteger: i32::MAX, then i32::MIN (toPositive -> 0), then MIN + 1 (-> 1).
        let mut rr = RoundRobin::new(0x7fff_ffff);
        assert_eq!(rr.next_partition(10), 2_147_483_647 % 10);
        assert_eq!(rr.next_partition(10), 0);
        assert_eq!(rr.next_partition(10), 1);
        // And across u32's own wrap: 0xffff_ffff is Java -1 -> toPositive = i32::MAX.
        let mut rr = RoundRobin::new(u32::MAX);
        assert_eq!(rr.next_partition(10), 2_147_483_647 % 10);
        assert_eq!(rr.next_partition(10), 0);
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn partition_for_key_rejects_zero_partitions() {
        let _ = partition_for_key(b"k", 0);
    }

    proptest! {
        #[test]
        fn partition_for_key_is_in_range(key in proptest::collection::vec(any::<u8>(), 0..64), count in 1_u32..) {
            prop_assert!(partition_for_key(&key, count) < count);
        }

        #[test]
        fn round_robin_is_in_range(start in any::<u32>(), count in 1_u32.., steps in 1_usize..16) {
            let mut rr = RoundRobin::new(start);
            for _ in 0..steps {
                prop_assert!(rr.next_partition(count) < count);
            }
        }
    }
}
