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
        if let GroupLogRecord::Offset(record) = self {
            if let Some(encoded) = encode_offset(record) {
                return encoded;
            }
        }
        let key = match self {
            GroupLogRecord::Group(record) => format!("group:{}", record.group_id),
            GroupLogRecord::Offset(record) => format!("offset:{}:{}", record.group_id, record.partition),
        };
        crate::coordinator::encode_record(&key, self)
    }
}

/// An offset record exactly as `crate::coordinator::encode_record` writes it (the
/// key, and the value as serde_json prints it), built by hand: every committed
/// offset goes through here, and the generic path costs thousands of
/// instructions a record. None when a name holds a character JSON escapes, which
/// the generic path then writes.
fn encode_offset(record: &OffsetRecord) -> Option<Record> {
    // serde_json escapes '"', '\\' and the control characters, and nothing else.
    let plain = |name: &str| name.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    let group_id: &str = &record.group_id;
    let topic: &str = &record.partition.topic;
    if !plain(group_id) || !plain(topic) {
        return None;
    }
    let mut partition_digits = itoa_buffer();
    let partition = decimal(u64::from(record.partition.partition), &mut partition_digits);
    let mut offset_digits = itoa_buffer();
    let offset = decimal(record.offset.0, &mut offset_digits);
    // Exact capacities: a `Bytes` made from a full `Vec` takes it over as it is.
    let key_parts = [b"offset:", group_id.as_bytes(), b":", topic.as_bytes(), b"/", partition];
    let mut key = Vec::with_capacity(key_parts.iter().map(|part| part.len()).sum());
    for part in key_parts {
        key.extend_from_slice(part);
    }
    let value_parts = [
        &b"{\"Offset\":{\"group_id\":\""[..],
        group_id.as_bytes(),
        b"\",\"partition\":{\"topic\":\"",
        topic.as_bytes(),
        b"\",\"partition\":",
        partition,
        b"},\"offset\":",
        offset,
        b"}}",
    ];
    let mut value = Vec::with_capacity(value_parts.iter().map(|part| part.len()).sum());
    for part in value_parts {
        value.extend_from_slice(part);
    }
    Some(Record { key: Some(bytes::Bytes::from(key)), value: bytes::Bytes::from(value), headers: None })
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// `number` in decimal, written at the end of `buffer`.
fn decimal(mut number: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn generic(record: &GroupLogRecord) -> Record {
        let GroupLogRecord::Offset(offset) = record else { unreachable!("offset records only") };
        crate::coordinator::encode_record(&format!("offset:{}:{}", offset.group_id, offset.partition), record)
    }

    proptest! {
        /// The hand-built offset record is byte for byte the generic one, for
        /// any names (escaped ones go the generic way) and any numbers.
        #[test]
        fn offset_records_encode_as_serde_json_does(group_id in "\\PC{0,12}|[a-z\"\\\\\n\u{1}é/]{0,6}", topic in "\\PC{0,12}|[a-z\"\\\\\t]{0,6}", partition in any::<u32>(), offset in any::<u64>()) {
            let record = GroupLogRecord::Offset(OffsetRecord { group_id: group_id.into(), partition: TopicPartition::new(topic, partition), offset: Offset(offset) });
            prop_assert_eq!(record.encode(), generic(&record));
        }
    }

    #[test]
    fn small_and_large_numbers() {
        for (partition, offset) in [(0, 0), (9, 10), (u32::MAX, u64::MAX)] {
            let record = GroupLogRecord::Offset(OffsetRecord { group_id: "g1".into(), partition: TopicPartition::new("events", partition), offset: Offset(offset) });
            assert_eq!(record.encode(), generic(&record));
        }
    }
}
