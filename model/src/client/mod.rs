//! Kafka's clients: the producer and the consumer, as state machines.

mod metadata;
pub mod assignor;
pub mod consumer;
pub mod group_member;
pub mod isolation;
pub mod partitioner;
pub mod producer;

pub use metadata::MetadataTracker;
