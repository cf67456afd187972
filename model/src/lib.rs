//! kafsim-model: the Kafka system itself, free of IO.
//!
//! Every node (broker, controller, producer, consumer) is a state machine in the
//! style of quinn-proto, with one shape (`node::Node`): `handle_message`,
//! `handle_connection` and `handle_timeout` consume one input and push outputs
//! (sends, connection commands, disk operations, events) into an `Outbox`;
//! `next_deadline()` says when it wants a tick. Nothing here reads a clock, owns a
//! random generator or touches a network: the simulator in `sim/` drives it.

pub mod broker;
pub mod client;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod error;
pub mod hash;
pub mod log;
pub mod net;
pub mod node;
pub mod partition;
pub mod partition_map;
pub mod protocol;
pub mod quorum;
pub mod record;
pub mod storage;
#[cfg(test)]
mod testkit;
pub mod time;
pub mod txn_index;
pub mod types;

pub use time::Instant;
pub use types::*;
