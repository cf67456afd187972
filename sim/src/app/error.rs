//! Errors as the `rdkafka` crate reports them: `KafkaError` by the operation
//! that failed, with an `RDKafkaErrorCode`, and for transactions an error that
//! says its class (fatal, abortable, retriable), as librdkafka's
//! `rd_kafka_error_t` does.

use kafsim_model::error::ErrorCode;
use std::fmt;

pub type KafkaResult<T> = Result<T, KafkaError>;

/// librdkafka's error codes, the subset this API reports. Broker error codes
/// keep Kafka's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RDKafkaErrorCode {
    /// A request timed out, or the call's own timeout passed.
    OperationTimedOut,
    /// A message's delivery timed out (`delivery.timeout.ms`, librdkafka's `message.timeout.ms`).
    MessageTimedOut,
    /// The client is in a state the call cannot run in (no transaction begun, say).
    State,
    /// A bad argument: unknown topic for this client, a partition list that cannot be used.
    InvalidArgument,
    /// The operation is not supported by kafsim yet (see the module docs).
    NotImplemented,
    /// A newer producer with the same `transactional.id` fenced this one (KIP-98).
    ProducerFenced,
    /// The producer's epoch is no longer current (KIP-588).
    InvalidProducerEpoch,
    /// The consumer's generation is over: it was removed from the group (KIP-447).
    IllegalGeneration,
    UnknownMemberId,
    RebalanceInProgress,
    /// Lost connection or a broker's error the client gave up retrying.
    Transport,
    /// The broker refused the write for lack of in-sync replicas.
    NotEnoughReplicas,
    /// The transaction was aborted, or must be.
    TransactionAborted,
    /// Any other broker error, by its Kafka name.
    BrokerError,
}

impl RDKafkaErrorCode {
    /// The code for a broker's (or the client network's) error.
    pub(crate) fn from_broker(code: ErrorCode) -> RDKafkaErrorCode {
        match code {
            ErrorCode::ProducerFenced => RDKafkaErrorCode::ProducerFenced,
            ErrorCode::InvalidProducerEpoch => RDKafkaErrorCode::InvalidProducerEpoch,
            ErrorCode::IllegalGeneration => RDKafkaErrorCode::IllegalGeneration,
            ErrorCode::UnknownMemberId => RDKafkaErrorCode::UnknownMemberId,
            ErrorCode::RebalanceInProgress => RDKafkaErrorCode::RebalanceInProgress,
            ErrorCode::NotEnoughReplicas | ErrorCode::NotEnoughReplicasAfterAppend => RDKafkaErrorCode::NotEnoughReplicas,
            ErrorCode::RequestTimedOut | ErrorCode::NetworkTimeout => RDKafkaErrorCode::OperationTimedOut,
            ErrorCode::NetworkException => RDKafkaErrorCode::Transport,
            _ => RDKafkaErrorCode::BrokerError,
        }
    }
}

/// A transactional call's error, with its class (librdkafka's `rd_kafka_error_t`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RDKafkaError {
    code: RDKafkaErrorCode,
    description: String,
    fatal: bool,
    retriable: bool,
    txn_requires_abort: bool,
}

impl RDKafkaError {
    /// The producer cannot go on: close it and make a new one (ProducerFenced, say).
    pub(crate) fn fatal(code: RDKafkaErrorCode, description: impl Into<String>) -> RDKafkaError {
        RDKafkaError { code, description: description.into(), fatal: true, retriable: false, txn_requires_abort: false }
    }

    /// The transaction can only be aborted; the producer may begin another.
    pub(crate) fn abortable(code: RDKafkaErrorCode, description: impl Into<String>) -> RDKafkaError {
        RDKafkaError { code, description: description.into(), fatal: false, retriable: false, txn_requires_abort: true }
    }

    /// The same call may be made again (after a timeout, say).
    pub(crate) fn retriable(code: RDKafkaErrorCode, description: impl Into<String>) -> RDKafkaError {
        RDKafkaError { code, description: description.into(), fatal: false, retriable: true, txn_requires_abort: false }
    }

    /// A call made in the wrong state: neither fatal nor abortable.
    pub(crate) fn state(description: impl Into<String>) -> RDKafkaError {
        RDKafkaError { code: RDKafkaErrorCode::State, description: description.into(), fatal: false, retriable: false, txn_requires_abort: false }
    }

    pub fn code(&self) -> RDKafkaErrorCode {
        self.code
    }

    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    pub fn txn_requires_abort(&self) -> bool {
        self.txn_requires_abort
    }
}

impl fmt::Display for RDKafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.description)
    }
}

/// What went wrong, by the operation, as `rdkafka::error::KafkaError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaError {
    /// `ClientConfig::create` refused the configuration.
    ClientCreation(String),
    /// A message could not be delivered.
    MessageProduction(RDKafkaErrorCode),
    MessageConsumption(RDKafkaErrorCode),
    /// A commit failed (or, `Transport`, its outcome is unknown).
    ConsumerCommit(RDKafkaErrorCode),
    Subscription(String),
    /// `assignment`, `position`, `seek_partitions` and `group_metadata` asked of a consumer that cannot answer.
    MetadataFetch(RDKafkaErrorCode),
    Seek(String),
    StoreOffset(RDKafkaErrorCode),
    SetPartitionOffset(RDKafkaErrorCode),
    /// A transactional call failed; the error says whether it is fatal,
    /// abortable or retriable.
    Transaction(RDKafkaError),
}

impl KafkaError {
    /// The librdkafka code, where the error has one.
    pub fn rdkafka_error_code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            KafkaError::MessageProduction(code)
            | KafkaError::MessageConsumption(code)
            | KafkaError::ConsumerCommit(code)
            | KafkaError::MetadataFetch(code)
            | KafkaError::StoreOffset(code)
            | KafkaError::SetPartitionOffset(code) => Some(*code),
            KafkaError::Transaction(error) => Some(error.code()),
            KafkaError::ClientCreation(_) | KafkaError::Subscription(_) | KafkaError::Seek(_) => None,
        }
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaError::ClientCreation(text) => write!(f, "Client creation error: {text}"),
            KafkaError::MessageProduction(code) => write!(f, "Message production error: {code:?}"),
            KafkaError::MessageConsumption(code) => write!(f, "Message consumption error: {code:?}"),
            KafkaError::ConsumerCommit(code) => write!(f, "Consumer commit error: {code:?}"),
            KafkaError::Subscription(text) => write!(f, "Subscription error: {text}"),
            KafkaError::MetadataFetch(code) => write!(f, "Meta data fetch error: {code:?}"),
            KafkaError::Seek(text) => write!(f, "Seek error: {text}"),
            KafkaError::StoreOffset(code) => write!(f, "Store offset error: {code:?}"),
            KafkaError::SetPartitionOffset(code) => write!(f, "Set partition offset error: {code:?}"),
            KafkaError::Transaction(error) => write!(f, "Transaction error: {error}"),
        }
    }
}

impl std::error::Error for KafkaError {}
