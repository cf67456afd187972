//! The requests and responses nodes exchange, named after Kafka's APIs.
//!
//! Every request carries a `correlation_id` its response echoes, as on Kafka's
//! wire. Errors are typed values (`ErrorCode`), as Kafka returns them in responses.

use crate::config::Acks;
use crate::coordinator::group::protocol::GroupMessage;
use crate::coordinator::txn::protocol::TxnMessage;
use crate::record::{ProducerStamp, Record, SharedBatch};
use crate::txn_index::AbortedTransaction;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch, ProducerId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use crate::error::ErrorCode;

/// Kafka's internal topics, where the coordinators keep their state.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Which coordinator a FindCoordinator request asks for (Kafka's `key_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CoordinatorType {
    Group,
    Transaction,
}

impl CoordinatorType {
    pub fn topic(self) -> &'static str {
        match self {
            CoordinatorType::Group => CONSUMER_OFFSETS_TOPIC,
            CoordinatorType::Transaction => TRANSACTION_STATE_TOPIC,
        }
    }
}

/// The controller's record of one partition (KRaft's PartitionRecord).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: Vec<NodeId>,
    /// KIP-966's eligible leader replicas: replicas out of the ISR that still
    /// hold everything below the high watermark, so one may be elected cleanly
    /// when the ISR is empty. Always empty unless `eligible.leader.replicas.version`
    /// is 1; absent from records written before it existed, and left out
    /// when empty, so a cluster without ELR logs the same bytes as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<NodeId>,
    /// KIP-966's `lastKnownElr`, as Kafka keeps it with
    /// `useLastKnownLeaderInBalancedRecovery` (its default): the leader the
    /// partition had when its ISR became empty, elected once it is live again
    /// if no ISR or ELR member is left. Empty whenever the partition has a
    /// leader, and always without ELR; absent from records when empty, as `elr` is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_known_elr: Vec<NodeId>,
}

/// What every broker caches and answers Metadata requests from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Bumped on every change; brokers ask for a copy when theirs is older.
    pub version: u64,
    pub brokers: Vec<NodeId>,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl ClusterMetadata {
    pub fn partition_count(&self, topic: &str) -> u32 {
        self.partitions.keys().filter(|tp| &*tp.topic == topic).count() as u32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    Earliest,
    Latest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: TopicPartition,
    pub fetch_offset: Offset,
    /// KIP-320: the epoch the fetcher believes the leader has.
    pub current_leader_epoch: LeaderEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedData {
    pub high_watermark: Offset,
    pub log_end_offset: Offset,
    pub batches: Vec<SharedBatch>,
    /// KIP-98: for a read_committed fetch, data stops here; else the high watermark.
    pub last_stable_offset: Offset,
    /// KIP-98: for a read_committed fetch, the aborted transactions in the range returned.
    pub aborted_transactions: Vec<AbortedTransaction>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub leader_epoch: Option<LeaderEpoch>,
    pub end_offset: Offset,
}

#[derive(Clone, Debug)]
pub enum Message {
    MetadataRequest { correlation_id: u64 },
    MetadataResponse { correlation_id: u64, metadata: Arc<ClusterMetadata> },
    ProduceRequest {
        correlation_id: u64,
        acks: Acks,
        timeout: Duration,
        partition: TopicPartition,
        producer: Option<ProducerStamp>,
        records: Arc<[Record]>,
        /// KIP-98: set by a transactional producer, so the leader can verify the
        /// partition is in the transaction (KIP-890 part 1).
        transactional_id: Option<Arc<str>>,
    },
    ProduceResponse { correlation_id: u64, partition: TopicPartition, result: Result<Offset, ErrorCode> },
    /// From a consumer (`replica_id` None) or a follower's replica fetcher.
    /// `read_committed` is Kafka's isolation level (KIP-98).
    FetchRequest { correlation_id: u64, replica_id: Option<NodeId>, max_wait: Duration, partitions: Vec<FetchPartition>, read_committed: bool },
    FetchResponse { correlation_id: u64, partitions: Vec<(TopicPartition, Result<FetchedData, ErrorCode>)> },
    ListOffsetsRequest { correlation_id: u64, partition: TopicPartition, spec: OffsetSpec, current_leader_epoch: LeaderEpoch },
    ListOffsetsResponse { correlation_id: u64, partition: TopicPartition, result: Result<(Offset, LeaderEpoch), ErrorCode> },
    /// KIP-101/KIP-279: where did `leader_epoch` end on the leader?
    OffsetsForLeaderEpochRequest { correlation_id: u64, partitions: Vec<(TopicPartition, LeaderEpoch, LeaderEpoch)> },
    OffsetsForLeaderEpochResponse { correlation_id: u64, partitions: Vec<(TopicPartition, Result<EpochEndOffset, ErrorCode>)> },
    /// Any broker answers from its metadata: the leader of the key's internal partition.
    FindCoordinatorRequest { correlation_id: u64, key_type: CoordinatorType, key: Arc<str> },
    FindCoordinatorResponse { correlation_id: u64, result: Result<NodeId, ErrorCode> },
    InitProducerIdRequest { correlation_id: u64 },
    InitProducerIdResponse { correlation_id: u64, result: Result<(ProducerId, u16), ErrorCode> },
    /// A broker's registration (`broker_epoch` None, after every start) or heartbeat.
    BrokerHeartbeat { correlation_id: u64, broker: NodeId, broker_epoch: Option<BrokerEpoch>, metadata_version: u64 },
    /// `metadata_version` is the version of the broker's metadata image: how
    /// far it has applied the metadata log (KIP-631's "caught up" test).
    BrokerHeartbeatResponse { correlation_id: u64, broker_epoch: BrokerEpoch, error: Option<ErrorCode> },
    /// KIP-497: a leader asks the controller to change a partition's ISR.
    AlterPartitionRequest {
        correlation_id: u64,
        broker: NodeId,
        broker_epoch: BrokerEpoch,
        partition: TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: Vec<NodeId>,
    },
    /// The new state boxed: it is rare, and would make every message larger.
    AlterPartitionResponse { correlation_id: u64, partition: TopicPartition, result: Result<Box<PartitionState>, ErrorCode> },
    /// The controller quorum's own protocol (KIP-595): votes, BeginQuorumEpoch
    /// and fetches of the metadata log, between controllers and from brokers.
    /// Boxed, as a fetch response carries records.
    Quorum(Box<crate::quorum::QuorumMessage>),
    /// Group coordination and committed offsets (`coordinator::group::protocol`).
    /// Boxed: the largest of them would make every message bigger, and each
    /// message is moved several times on its way through a node.
    Group(Box<GroupMessage>),
    /// Transactions (`coordinator::txn::protocol`).
    Txn(TxnMessage),
}

/// The correlation id field of the variants `Message` defines itself (group and
/// transaction messages have their own), by reference or mutable reference as
/// `$message` is borrowed: one list for both accessors.
macro_rules! own_correlation_field {
    ($message:expr) => {
        match $message {
            Message::MetadataRequest { correlation_id }
            | Message::MetadataResponse { correlation_id, .. }
            | Message::ProduceRequest { correlation_id, .. }
            | Message::ProduceResponse { correlation_id, .. }
            | Message::FetchRequest { correlation_id, .. }
            | Message::FetchResponse { correlation_id, .. }
            | Message::ListOffsetsRequest { correlation_id, .. }
            | Message::ListOffsetsResponse { correlation_id, .. }
            | Message::OffsetsForLeaderEpochRequest { correlation_id, .. }
            | Message::OffsetsForLeaderEpochResponse { correlation_id, .. }
            | Message::FindCoordinatorRequest { correlation_id, .. }
            | Message::FindCoordinatorResponse { correlation_id, .. }
            | Message::InitProducerIdRequest { correlation_id }
            | Message::InitProducerIdResponse { correlation_id, .. }
            | Message::BrokerHeartbeat { correlation_id, .. }
            | Message::BrokerHeartbeatResponse { correlation_id, .. }
            | Message::AlterPartitionRequest { correlation_id, .. }
            | Message::AlterPartitionResponse { correlation_id, .. } => Some(correlation_id),
            Message::Quorum(_) | Message::Group(_) | Message::Txn(_) => None,
        }
    };
}

impl Message {
    pub fn group(message: GroupMessage) -> Message {
        Message::Group(Box::new(message))
    }

    /// Which coordinator serves this request, for the broker to route it.
    pub fn coordinator(&self) -> Option<CoordinatorType> {
        match self {
            Message::Group(message) if message.routes_to_coordinator() => Some(CoordinatorType::Group),
            Message::Txn(message) if message.routes_to_coordinator() => Some(CoordinatorType::Transaction),
            _ => None,
        }
    }

    /// Whether this answers a request (and so travels on a connection its
    /// receiver opened) rather than being one.
    pub fn is_response(&self) -> bool {
        match self {
            Message::MetadataResponse { .. }
            | Message::ProduceResponse { .. }
            | Message::FetchResponse { .. }
            | Message::ListOffsetsResponse { .. }
            | Message::OffsetsForLeaderEpochResponse { .. }
            | Message::FindCoordinatorResponse { .. }
            | Message::InitProducerIdResponse { .. }
            | Message::BrokerHeartbeatResponse { .. }
            | Message::AlterPartitionResponse { .. } => true,
            Message::MetadataRequest { .. }
            | Message::ProduceRequest { .. }
            | Message::FetchRequest { .. }
            | Message::ListOffsetsRequest { .. }
            | Message::OffsetsForLeaderEpochRequest { .. }
            | Message::FindCoordinatorRequest { .. }
            | Message::InitProducerIdRequest { .. }
            | Message::BrokerHeartbeat { .. }
            | Message::AlterPartitionRequest { .. } => false,
            Message::Quorum(message) => message.is_response(),
            Message::Group(message) => !message.routes_to_coordinator(),
            Message::Txn(message) => message.is_response(),
        }
    }

    /// The correlation id a request carries or a response echoes; None for the
    /// quorum's messages, which pair requests and responses themselves.
    pub fn correlation_id(&self) -> Option<u64> {
        match self {
            Message::Group(message) => Some(message.correlation_id()),
            Message::Txn(message) => Some(message.correlation_id()),
            _ => own_correlation_field!(self).copied(),
        }
    }

    /// The correlation id, for the simulator's network: it gives each request
    /// an id unique to its connection and restores the client's id on the
    /// response, so a response reaches only the connection its request came on.
    pub fn correlation_id_mut(&mut self) -> Option<&mut u64> {
        match self {
            Message::Group(message) => Some(message.correlation_id_mut()),
            Message::Txn(message) => Some(message.correlation_id_mut()),
            _ => own_correlation_field!(self),
        }
    }

    /// The API name, for traces and statistics.
    pub fn api(&self) -> &'static str {
        match self {
            Message::MetadataRequest { .. } | Message::MetadataResponse { .. } => "Metadata",
            Message::ProduceRequest { .. } | Message::ProduceResponse { .. } => "Produce",
            Message::FetchRequest { .. } | Message::FetchResponse { .. } => "Fetch",
            Message::ListOffsetsRequest { .. } | Message::ListOffsetsResponse { .. } => "ListOffsets",
            Message::OffsetsForLeaderEpochRequest { .. } | Message::OffsetsForLeaderEpochResponse { .. } => "OffsetsForLeaderEpoch",
            Message::FindCoordinatorRequest { .. } | Message::FindCoordinatorResponse { .. } => "FindCoordinator",
            Message::InitProducerIdRequest { .. } | Message::InitProducerIdResponse { .. } => "InitProducerId",
            Message::BrokerHeartbeat { .. } | Message::BrokerHeartbeatResponse { .. } => "BrokerHeartbeat",
            Message::AlterPartitionRequest { .. } | Message::AlterPartitionResponse { .. } => "AlterPartition",
            Message::Quorum(message) => message.api(),
            Message::Group(message) => message.api(),
            Message::Txn(message) => message.api(),
        }
    }
}

/// A message on its way out of a node: from one of its network endpoints
/// (`Outbox::me`) to another node's.
#[derive(Clone, Debug)]
pub struct Send {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}

#[cfg(test)]
mod tests {
    use super::Message;

    /// A message is moved several times between a node and the network, and
    /// each move copies as many bytes as the largest variant holds; past about
    /// 128 bytes the compiler also turns each move into a call to memcpy. Rare
    /// large messages go in a Box instead (as the group protocol's do). The
    /// shell's envelope adds 24 bytes and should stay within 128 too.
    #[test]
    fn a_message_stays_small() {
        assert!(std::mem::size_of::<Message>() <= 104, "Message grew to {} bytes", std::mem::size_of::<Message>());
    }
}
