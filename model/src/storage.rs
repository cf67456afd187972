//! What a broker or controller asks of its disk, and what it gets back after a crash.
//!
//! Appends and truncations go to the operating system's page cache; `Flush` makes
//! them durable (fsync). Checkpoints are written the way Kafka writes its checkpoint
//! files (write a temporary file, fsync, rename), so they are durable at once.
//! Appends complete synchronously here: Kafka's log append is a write(2) into the page
//! cache, and its flush on `log.flush.interval.messages` runs inline in the append path.

use crate::controller::snapshot::ControllerSnapshot;
use crate::log::EpochEntry;
use crate::record::SharedBatch;
use crate::types::{Offset, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub enum DiskOp {
    Append { partition: TopicPartition, batch: SharedBatch },
    /// Removes every record at or above `offset`.
    Truncate { partition: TopicPartition, offset: Offset },
    Flush { partition: TopicPartition },
    Checkpoint(Checkpoint),
    /// A controller's quorum state and metadata log (KIP-595), written whole
    /// and fsynced before the step's messages leave, as KafkaRaftClient
    /// flushes before it answers.
    Quorum(Box<crate::quorum::QuorumDurable>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checkpoint {
    /// Kafka's replication-offset-checkpoint: every partition's high watermark.
    HighWatermarks(BTreeMap<TopicPartition, Offset>),
    /// Kafka's leader-epoch-checkpoint of one partition (KIP-101).
    LeaderEpochs { partition: TopicPartition, entries: Vec<EpochEntry> },
    /// The controller's metadata (a snapshot of what KRaft keeps in its metadata log).
    Controller(ControllerSnapshot),
}

impl Checkpoint {
    /// Checkpoints of the same file replace each other.
    pub fn file_name(&self) -> String {
        match self {
            Checkpoint::HighWatermarks(_) => "replication-offset-checkpoint".to_string(),
            Checkpoint::LeaderEpochs { partition, .. } => format!("{partition}/leader-epoch-checkpoint"),
            Checkpoint::Controller(_) => "__cluster_metadata".to_string(),
        }
    }
}

/// What survived on a node's disk: after a process crash, everything the node wrote;
/// after a power loss, only what was flushed (perhaps with a torn last batch).
#[derive(Clone, Debug, Default)]
pub struct DurableState {
    pub logs: BTreeMap<TopicPartition, Vec<SharedBatch>>,
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// A controller's quorum state and metadata log, if it wrote one.
    pub quorum: Option<crate::quorum::QuorumDurable>,
}

impl DurableState {
    pub fn high_watermarks(&self) -> BTreeMap<TopicPartition, Offset> {
        match self.checkpoints.get("replication-offset-checkpoint") {
            Some(Checkpoint::HighWatermarks(marks)) => marks.clone(),
            _ => BTreeMap::new(),
        }
    }

    pub fn controller(&self) -> Option<&ControllerSnapshot> {
        match self.checkpoints.get("__cluster_metadata") {
            Some(Checkpoint::Controller(snapshot)) => Some(snapshot),
            _ => None,
        }
    }
}
