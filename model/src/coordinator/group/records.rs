//! What the group coordinator writes to `__consumer_offsets`: a group's metadata
//! after each completed rebalance (Kafka's GroupMetadataValue) and each committed
//! offset (OffsetCommitValue). A coordinator that takes over replays them (`load`).

use super::protocol::{Generation, MemberId, Subscription};
use crate::record::Record;
use crate::types::{NodeId, Offset, TopicPartition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: MemberId,
    pub client: NodeId,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<Arc<str>>,
    pub subscription: Subscription,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub group_id: Arc<str>,
    pub generation: Generation,
    pub protocol: Option<Arc<str>>,
    pub leader: Option<MemberId>,
    pub members: Vec<MemberRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub group_id: Arc<str>,
    pub partition: TopicPartition,
    pub offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupLogRecord {
    Group(GroupRecord),
    Offset(OffsetRecord),
}

impl GroupLogRecord {
    pub fn group_id(&self) -> &Arc<str> {
        match self {
            GroupLogRecord::Group(record) => &record.group_id,
            GroupLogRecord::Offset(record) => &record.group_id,
        }
    }

    /// The record as it goes into the log, keyed as Kafka keys it (group, or group + partition).
    pub fn encode(&self) -> Record {
        let key = match self {
            GroupLogRecord::Group(record) => format!("group:{}", record.group_id),
            GroupLogRecord::Offset(record) => format!("offset:{}:{}", record.group_id, record.partition),
        };
        crate::coordinator::encode_record(&key, self)
    }
}
