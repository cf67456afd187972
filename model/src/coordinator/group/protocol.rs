//! The requests and responses of the group coordinator: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch (the classic protocol that
//! KIP-848 keeps as its "classic" path).

use crate::error::ErrorCode;
use crate::types::{Offset, ProducerId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A group's generation: bumped each time a rebalance completes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Generation(pub i32);

impl Generation {
    /// What a consumer outside any generation sends (Kafka's `-1`).
    pub const NONE: Generation = Generation(-1);
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member id, assigned by the coordinator.
pub type MemberId = Arc<str>;

/// What a member sends in JoinGroup as its protocol metadata: the topics it
/// subscribes to and, for the sticky assignors (KIP-429), what it owns now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub topics: Vec<Arc<str>>,
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation `owned_partitions` were assigned in.
    pub generation: Generation,
}

/// JoinGroup's answer.
#[derive(Clone, Debug)]
pub struct JoinResult {
    pub generation: Generation,
    /// The assignor the group chose.
    pub protocol: Arc<str>,
    pub leader: MemberId,
    pub member_id: MemberId,
    /// Every member's subscription, for the leader only (it runs the assignor).
    pub members: Vec<(MemberId, Subscription)>,
}

#[derive(Clone, Debug)]
pub enum GroupMessage {
    /// `member_id` None is a new member (the coordinator names it).
    JoinGroupRequest {
        correlation_id: u64,
        group_id: Arc<str>,
        member_id: Option<MemberId>,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        /// Assignor names in the member's preference order.
        protocols: Vec<Arc<str>>,
        subscription: Subscription,
    },
    JoinGroupResponse { correlation_id: u64, result: Result<JoinResult, ErrorCode> },
    /// The leader sends every member's assignment; followers send none.
    SyncGroupRequest {
        correlation_id: u64,
        group_id: Arc<str>,
        generation: Generation,
        member_id: MemberId,
        assignments: Vec<(MemberId, Vec<TopicPartition>)>,
    },
    SyncGroupResponse { correlation_id: u64, result: Result<Vec<TopicPartition>, ErrorCode> },
    HeartbeatRequest { correlation_id: u64, group_id: Arc<str>, generation: Generation, member_id: MemberId },
    HeartbeatResponse { correlation_id: u64, error: Option<ErrorCode> },
    LeaveGroupRequest { correlation_id: u64, group_id: Arc<str>, member_id: MemberId },
    LeaveGroupResponse { correlation_id: u64, error: Option<ErrorCode> },
    /// `generation` NONE and no member: a commit outside group management.
    OffsetCommitRequest {
        correlation_id: u64,
        group_id: Arc<str>,
        generation: Generation,
        member_id: Option<MemberId>,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    OffsetCommitResponse { correlation_id: u64, result: Result<(), ErrorCode> },
    /// `require_stable` (KIP-447): partitions with transactional offsets still
    /// pending answer UnstableOffsetCommit instead of an offset that may change.
    OffsetFetchRequest { correlation_id: u64, group_id: Arc<str>, partitions: Vec<TopicPartition>, require_stable: bool },
    /// Per partition its committed offset, None when nothing was committed.
    OffsetFetchResponse { correlation_id: u64, result: Result<Vec<(TopicPartition, Option<Offset>)>, ErrorCode> },
    /// KIP-98's TxnOffsetCommit, with KIP-447's generation and member id so a
    /// zombie of an older generation is fenced. The offsets are pending until
    /// the transaction's marker lands on the group's `__consumer_offsets` partition.
    TxnOffsetCommitRequest {
        correlation_id: u64,
        group_id: Arc<str>,
        transactional_id: Arc<str>,
        producer_id: ProducerId,
        producer_epoch: u16,
        generation: Generation,
        member_id: MemberId,
        offsets: Vec<(TopicPartition, Offset)>,
    },
    TxnOffsetCommitResponse { correlation_id: u64, result: Result<(), ErrorCode> },
}

/// The correlation id field of every variant, by reference or by mutable
/// reference as `$message` is borrowed: one list for both accessors.
macro_rules! correlation_field {
    ($message:expr) => {
        match $message {
                GroupMessage::JoinGroupRequest { correlation_id, .. }
                | GroupMessage::JoinGroupResponse { correlation_id, .. }
                | GroupMessage::SyncGroupRequest { correlation_id, .. }
                | GroupMessage::SyncGroupResponse { correlation_id, .. }
                | GroupMessage::HeartbeatRequest { correlation_id, .. }
                | GroupMessage::HeartbeatResponse { correlation_id, .. }
                | GroupMessage::LeaveGroupRequest { correlation_id, .. }
                | GroupMessage::LeaveGroupResponse { correlation_id, .. }
                | GroupMessage::OffsetCommitRequest { correlation_id, .. }
                | GroupMessage::OffsetCommitResponse { correlation_id, .. }
                | GroupMessage::OffsetFetchRequest { correlation_id, .. }
                | GroupMessage::OffsetFetchResponse { correlation_id, .. }
                | GroupMessage::TxnOffsetCommitRequest { correlation_id, .. }
                | GroupMessage::TxnOffsetCommitResponse { correlation_id, .. } => correlation_id,
        }
    };
}

impl GroupMessage {
    /// Whether the broker hands this message to its coordinator (requests do;
    /// responses travel to clients, or to the broker itself).
    pub fn routes_to_coordinator(&self) -> bool {
        matches!(
            self,
            GroupMessage::JoinGroupRequest { .. }
                | GroupMessage::SyncGroupRequest { .. }
                | GroupMessage::HeartbeatRequest { .. }
                | GroupMessage::LeaveGroupRequest { .. }
                | GroupMessage::OffsetCommitRequest { .. }
                | GroupMessage::OffsetFetchRequest { .. }
                | GroupMessage::TxnOffsetCommitRequest { .. }
        )
    }

    pub fn correlation_id(&self) -> u64 {
        *correlation_field!(self)
    }

    /// The correlation id, for the simulator's network to route a response to
    /// the connection its request came on.
    pub fn correlation_id_mut(&mut self) -> &mut u64 {
        correlation_field!(self)
    }

    pub fn api(&self) -> &'static str {
        match self {
            GroupMessage::JoinGroupRequest { .. } | GroupMessage::JoinGroupResponse { .. } => "JoinGroup",
            GroupMessage::SyncGroupRequest { .. } | GroupMessage::SyncGroupResponse { .. } => "SyncGroup",
            GroupMessage::HeartbeatRequest { .. } | GroupMessage::HeartbeatResponse { .. } => "Heartbeat",
            GroupMessage::LeaveGroupRequest { .. } | GroupMessage::LeaveGroupResponse { .. } => "LeaveGroup",
            GroupMessage::OffsetCommitRequest { .. } | GroupMessage::OffsetCommitResponse { .. } => "OffsetCommit",
            GroupMessage::OffsetFetchRequest { .. } | GroupMessage::OffsetFetchResponse { .. } => "OffsetFetch",
            GroupMessage::TxnOffsetCommitRequest { .. } | GroupMessage::TxnOffsetCommitResponse { .. } => "TxnOffsetCommit",
        }
    }

    /// The group a request is about.
    pub fn group_id(&self) -> Option<&Arc<str>> {
        match self {
            GroupMessage::JoinGroupRequest { group_id, .. }
            | GroupMessage::SyncGroupRequest { group_id, .. }
            | GroupMessage::HeartbeatRequest { group_id, .. }
            | GroupMessage::LeaveGroupRequest { group_id, .. }
            | GroupMessage::OffsetCommitRequest { group_id, .. }
            | GroupMessage::OffsetFetchRequest { group_id, .. }
            | GroupMessage::TxnOffsetCommitRequest { group_id, .. } => Some(group_id),
            _ => None,
        }
    }
}
