//! The client API for users' own applications, laid out as the `rdkafka`
//! crate lays out its own: an application written against rdkafka moves over
//! by changing `use rdkafka::` to `use kafsim::rdkafka::`. The types live in
//! `crate::app`; each module's docs say where kafsim differs from rdkafka.
//!
//! ```
//! use kafsim::rdkafka::config::ClientConfig;
//! use kafsim::rdkafka::producer::{FutureProducer, FutureRecord};
//! use kafsim::rdkafka::util::Timeout;
//!
//! // Outside a simulated application there is no cluster to talk to.
//! let made = ClientConfig::new().set("bootstrap.servers", "broker-1:9092").create::<FutureProducer>();
//! assert!(made.is_err());
//! let record: FutureRecord<'_, str, str> = FutureRecord::to("events").key("k").payload("v");
//! assert_eq!(record.topic, "events");
//! let _ = Timeout::Never;
//! ```

pub use crate::app::partitions::{Offset, TopicPartitionList};

pub mod config {
    pub use crate::app::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};
}

pub mod producer {
    pub use crate::app::producer::{FutureProducer, FutureRecord, OwnedDeliveryResult, Producer};
}

pub mod consumer {
    pub use crate::app::consumer::{Consumer, ConsumerContext, ConsumerGroupMetadata, DefaultConsumerContext, Rebalance, StreamConsumer};
    pub use crate::app::partitions::CommitMode;
}

pub mod message {
    pub use crate::app::message::{BorrowedMessage, FromBytes, Header, Headers, Message, OwnedHeaders, OwnedMessage, ToBytes};
}

pub mod error {
    pub use crate::app::error::{KafkaError, KafkaResult, RDKafkaError, RDKafkaErrorCode};
}

pub mod util {
    pub use crate::app::partitions::Timeout;
}

pub mod topic_partition_list {
    pub use crate::app::partitions::{Offset, TopicPartitionList, TopicPartitionListElem};
}
