//! Coordinators hosted by brokers: the group coordinator on `__consumer_offsets`
//! and the transaction coordinator on `__transaction_state`.
//!
//! As in Kafka, a coordinator's state lives in an internal, replicated topic. The
//! broker that leads partition `p` of that topic is the coordinator for every key
//! (group id, transactional id) that hashes to `p`. On becoming leader it loads
//! the partition's log into memory; on losing leadership it unloads it. Every state
//! change is first written to the partition with acks=all; the coordinator answers
//! the client only once the write is committed (the high watermark passed it), so a
//! successor loading the log sees every change a client was told about.
//!
//! The broker is the coordinator's only link to the world: the coordinator pushes
//! `CoordinatorEffect`s (sends and log appends), and the broker reports back when
//! an append committed or failed (`write_completed`).

pub mod group;
pub mod runtime;
pub mod txn;

use crate::config::BrokerConfig;
use crate::controller::TopicSpec;
use crate::protocol::{ClusterMetadata, Message};
use crate::error::ErrorCode;
use crate::record::{Record, SharedBatch};
use crate::time::Instant;
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use serde::{Deserialize, Serialize};
use crate::protocol::TRANSACTION_STATE_TOPIC;
use crate::protocol::CoordinatorType;
use crate::protocol::CONSUMER_OFFSETS_TOPIC;

/// Whether a topic is one of Kafka's internal topics (clients never produce to them).
pub fn is_internal_topic(topic: &str) -> bool {
    topic == CONSUMER_OFFSETS_TOPIC || topic == TRANSACTION_STATE_TOPIC
}

/// Java's `String.hashCode`, which Kafka uses to place a key on a partition of an
/// internal topic (`Utils.abs(groupId.hashCode) % partitionCount`).
pub fn java_string_hash(key: &str) -> i32 {
    key.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(unit as i32))
}

/// The internal-topic partition that owns `key`. Kafka's `Utils.abs` maps
/// `i32::MIN` to 0, unlike `i32::abs`.
pub fn partition_for(key: &str, partition_count: u32) -> u32 {
    let hash = java_string_hash(key);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive as u32 % partition_count.max(1)
}

/// The broker currently leading the partition that owns `key`, as `metadata` says.
pub fn find_coordinator(metadata: &ClusterMetadata, key_type: CoordinatorType, key: &str) -> Result<NodeId, ErrorCode> {
    let count = metadata.partition_count(key_type.topic());
    if count == 0 {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    let tp = TopicPartition::new(key_type.topic(), partition_for(key, count));
    metadata.partitions.get(&tp).and_then(|state| state.leader).ok_or(ErrorCode::CoordinatorNotAvailable)
}

/// The internal topics a cluster needs: `__consumer_offsets` when consumers use
/// groups, `__transaction_state` when producers use transactions. Kafka creates
/// them on first use; creating them up front gives every seed the same layout.
pub fn internal_topics(config: &BrokerConfig, broker_count: u32, groups: bool, transactions: bool) -> Vec<TopicSpec> {
    let mut topics = Vec::new();
    if groups {
        topics.push(TopicSpec {
            name: CONSUMER_OFFSETS_TOPIC.into(),
            partitions: config.offsets_topic_num_partitions,
            replication_factor: config.offsets_topic_replication_factor.min(broker_count),
        });
    }
    if transactions {
        topics.push(TopicSpec {
            name: TRANSACTION_STATE_TOPIC.into(),
            partitions: config.transaction_state_log_num_partitions,
            replication_factor: config.transaction_state_log_replication_factor.min(broker_count),
        });
    }
    topics
}

/// Names one append a coordinator asked for, so the broker can report its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteToken(pub u64);

/// What a coordinator asks its broker to do.
#[derive(Clone, Debug)]
pub enum CoordinatorEffect {
    /// A reply to a client, or a request to another broker (which the broker
    /// sends through its own `NetworkClient`).
    Send { to: NodeId, message: Message },
    /// Append `records` to the internal `partition` with acks=all; the broker calls
    /// `write_completed(token, ..)` once the write committed, failed or timed out.
    /// `producer`: a transactional write under this producer id and epoch (KIP-98's
    /// TxnOffsetCommit): the batch belongs to the producer's transaction, and its
    /// commit or abort marker decides it.
    Append { partition: u32, records: Vec<Record>, token: WriteToken, producer: Option<(crate::types::ProducerId, u16)> },
}

/// The contract between a broker and a coordinator it hosts.
pub trait Coordinator {
    fn coordinator_type(&self) -> CoordinatorType;

    /// This broker became leader of internal partition `partition` at
    /// `leader_epoch` (the coordinator epoch); `batches` is the whole local log.
    fn load(&mut self, now: Instant, partition: u32, leader_epoch: LeaderEpoch, batches: &[SharedBatch], out: &mut Vec<CoordinatorEffect>);

    /// This broker no longer leads `partition`: forget its keys. Pending writes are
    /// failed by the broker with `NotCoordinator` before this is called.
    fn unload(&mut self, partition: u32);

    /// A request for this coordinator (the broker routes by message kind).
    fn handle_request(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Vec<CoordinatorEffect>);

    /// The outcome of an `Append`: the base offset once committed, or why it failed.
    fn write_completed(&mut self, now: Instant, token: WriteToken, result: Result<Offset, ErrorCode>, out: &mut Vec<CoordinatorEffect>);

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<CoordinatorEffect>);

    fn next_deadline(&self) -> Option<Instant>;
}

/// Coordinator records are serialized as JSON into the record value; the key names
/// what the record is about, as Kafka's record keys do, for readable traces.
pub fn encode_record<T: Serialize>(key: &str, value: &T) -> Record {
    let value = serde_json::to_vec(value).expect("coordinator records always serialize");
    Record { key: Some(bytes::Bytes::copy_from_slice(key.as_bytes())), value: bytes::Bytes::from(value), headers: None }
}

/// Decodes a coordinator record; `None` for a record this coordinator did not write
/// (a torn or foreign record is skipped, as Kafka skips unknown record versions).
pub fn decode_record<T: for<'de> Deserialize<'de>>(record: &Record) -> Option<T> {
    serde_json::from_slice(&record.value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Java: "".hashCode() == 0, "g1".hashCode() == 3242,
    /// "copier".hashCode() == -1354729774, "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    #[test]
    fn placement_matches_kafka() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("g1"), 3242);
        assert_eq!(java_string_hash("copier"), -1354729774);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("g1", 50), 3242 % 50);
        assert_eq!(partition_for("copier", 50), 1354729774 % 50);
    }
}
