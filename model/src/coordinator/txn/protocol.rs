//! The requests and responses of the transaction coordinator and transactional produce: InitProducerId (transactional), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers, TxnOffsetCommit.
//!
//! TxnOffsetCommit belongs to the group coordinator and is not here yet;
//! AddOffsetsToTxn only adds the group's `__consumer_offsets` partition to the
//! transaction (its marker is what makes the offsets visible).

use crate::error::ErrorCode;
use crate::types::{ProducerId, TopicPartition};
use std::sync::Arc;
use std::time::Duration;

/// One request or response; `Message::Txn` carries it.
#[derive(Clone, Debug)]
pub enum TxnMessage {
    /// KIP-98: a transactional producer's InitProducerId, to its coordinator. It
    /// bumps the epoch, fencing earlier producers with the same transactional id,
    /// and aborts a transaction they left open.
    InitProducerIdRequest { correlation_id: u64, transactional_id: Arc<str>, transaction_timeout: Duration },
    InitProducerIdResponse { correlation_id: u64, result: Result<(ProducerId, u16), ErrorCode> },
    /// With `verify_only` (KIP-890 part 1) a partition leader asks, before the
    /// first transactional batch of a producer, whether the partition is in the
    /// producer's ongoing transaction; nothing is added.
    AddPartitionsToTxnRequest {
        correlation_id: u64,
        transactional_id: Arc<str>,
        producer_id: ProducerId,
        producer_epoch: u16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    },
    AddPartitionsToTxnResponse { correlation_id: u64, result: Result<(), ErrorCode> },
    AddOffsetsToTxnRequest { correlation_id: u64, transactional_id: Arc<str>, producer_id: ProducerId, producer_epoch: u16, group_id: Arc<str> },
    AddOffsetsToTxnResponse { correlation_id: u64, result: Result<(), ErrorCode> },
    /// Commit or abort. The answer carries the epoch the producer's next
    /// transaction uses (KIP-890 part 2 bumps it at every transaction's end).
    EndTxnRequest { correlation_id: u64, transactional_id: Arc<str>, producer_id: ProducerId, producer_epoch: u16, commit: bool },
    EndTxnResponse { correlation_id: u64, result: Result<u16, ErrorCode> },
    /// Coordinator to partition leader: append a commit or abort marker.
    WriteTxnMarkersRequest { correlation_id: u64, producer_id: ProducerId, producer_epoch: u16, coordinator_epoch: u32, commit: bool, partition: TopicPartition },
    WriteTxnMarkersResponse { correlation_id: u64, partition: TopicPartition, result: Result<(), ErrorCode> },
}

/// The correlation id field of every variant, by reference or by mutable
/// reference as `$message` is borrowed: one list for both accessors.
macro_rules! correlation_field {
    ($message:expr) => {
        match $message {
                TxnMessage::InitProducerIdRequest { correlation_id, .. }
                | TxnMessage::InitProducerIdResponse { correlation_id, .. }
                | TxnMessage::AddPartitionsToTxnRequest { correlation_id, .. }
                | TxnMessage::AddPartitionsToTxnResponse { correlation_id, .. }
                | TxnMessage::AddOffsetsToTxnRequest { correlation_id, .. }
                | TxnMessage::AddOffsetsToTxnResponse { correlation_id, .. }
                | TxnMessage::EndTxnRequest { correlation_id, .. }
                | TxnMessage::EndTxnResponse { correlation_id, .. }
                | TxnMessage::WriteTxnMarkersRequest { correlation_id, .. }
                | TxnMessage::WriteTxnMarkersResponse { correlation_id, .. } => correlation_id,
        }
    };
}

impl TxnMessage {
    /// Whether the broker hands this message to its coordinator (requests do;
    /// responses travel to clients, or to the broker itself).
    pub fn routes_to_coordinator(&self) -> bool {
        match self {
            TxnMessage::InitProducerIdRequest { .. }
            | TxnMessage::AddPartitionsToTxnRequest { .. }
            | TxnMessage::AddOffsetsToTxnRequest { .. }
            | TxnMessage::EndTxnRequest { .. }
            // The leader's answer to a marker goes back to the coordinator that asked.
            | TxnMessage::WriteTxnMarkersResponse { .. } => true,
            TxnMessage::InitProducerIdResponse { .. }
            | TxnMessage::AddPartitionsToTxnResponse { .. }
            | TxnMessage::AddOffsetsToTxnResponse { .. }
            | TxnMessage::EndTxnResponse { .. }
            // Served by the partition leader itself, not by a coordinator.
            | TxnMessage::WriteTxnMarkersRequest { .. } => false,
        }
    }

    /// Whether this answers a request rather than being one.
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            TxnMessage::InitProducerIdResponse { .. }
                | TxnMessage::AddPartitionsToTxnResponse { .. }
                | TxnMessage::AddOffsetsToTxnResponse { .. }
                | TxnMessage::EndTxnResponse { .. }
                | TxnMessage::WriteTxnMarkersResponse { .. }
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
            TxnMessage::InitProducerIdRequest { .. } | TxnMessage::InitProducerIdResponse { .. } => "InitProducerId",
            TxnMessage::AddPartitionsToTxnRequest { .. } | TxnMessage::AddPartitionsToTxnResponse { .. } => "AddPartitionsToTxn",
            TxnMessage::AddOffsetsToTxnRequest { .. } | TxnMessage::AddOffsetsToTxnResponse { .. } => "AddOffsetsToTxn",
            TxnMessage::EndTxnRequest { .. } | TxnMessage::EndTxnResponse { .. } => "EndTxn",
            TxnMessage::WriteTxnMarkersRequest { .. } | TxnMessage::WriteTxnMarkersResponse { .. } => "WriteTxnMarkers",
        }
    }
}
