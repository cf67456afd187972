//! Kafka's error codes, as responses carry them: typed values that clients
//! match on (retriable or not, maybe written or not), never strings.

use serde::{Deserialize, Serialize};

/// Kafka's error codes, the ones this model can return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    NotLeaderOrFollower,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    RequestTimedOut,
    /// KIP-320: the request's leader epoch is older than the replica's.
    FencedLeaderEpoch,
    /// KIP-320: the request's leader epoch is newer than the replica's.
    UnknownLeaderEpoch,
    OffsetOutOfRange,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownTopicOrPartition,
    StaleBrokerEpoch,
    /// KIP-631: the request went to a controller that is not the active one.
    NotController,
    InvalidUpdateVersion,
    IneligibleReplica,
    /// No live leader for the coordinator's internal partition yet.
    CoordinatorNotAvailable,
    /// This broker does not (or no longer) coordinate the key; find it again.
    NotCoordinator,
    /// The coordinator is still loading its state from the log.
    CoordinatorLoadInProgress,
    /// KIP-98: the request does not fit the transaction's state (say, a
    /// transactional produce to a partition not added to the transaction).
    InvalidTxnState,
    /// KIP-98: the coordinator is still completing the previous transaction; retry.
    ConcurrentTransactions,
    /// KIP-98: the producer id does not belong to this transactional id.
    InvalidProducerIdMapping,
    /// KIP-588: the producer's epoch is stale (the transaction timed out); abortable.
    InvalidProducerEpoch,
    /// A client gave up waiting for the response (the request may still have been served).
    NetworkTimeout,
    /// The connection closed with the request in flight (Kafka's NETWORK_EXCEPTION):
    /// the request may still have been served.
    NetworkException,
    /// Group coordination: the request's generation is not the group's current one.
    IllegalGeneration,
    /// Group coordination: the member is not (or no longer) in the group.
    UnknownMemberId,
    /// Group coordination: the group is rebalancing; rejoin.
    RebalanceInProgress,
    /// JoinGroup with a session timeout outside the broker's allowed range.
    InvalidSessionTimeout,
    /// JoinGroup whose assignors share none with the group's members.
    InconsistentGroupProtocol,
    /// KIP-447: OffsetFetch with require_stable found transactional offsets of
    /// the partition still pending; retry once the transaction completes.
    UnstableOffsetCommit,
}

impl ErrorCode {
    /// Whether Kafka's clients retry this error.
    pub fn is_retriable(self) -> bool {
        !matches!(
            self,
            ErrorCode::ProducerFenced
                | ErrorCode::OffsetOutOfRange
                | ErrorCode::InvalidTxnState
                | ErrorCode::InvalidProducerIdMapping
                | ErrorCode::InvalidProducerEpoch
        )
    }

    /// Whether a produce that failed with this error may nonetheless be in the log.
    pub fn maybe_written(self) -> bool {
        matches!(self, ErrorCode::NotEnoughReplicasAfterAppend | ErrorCode::RequestTimedOut | ErrorCode::NetworkTimeout | ErrorCode::NetworkException)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
