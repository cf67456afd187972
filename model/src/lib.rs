//! kafsim-model: the Kafka system itself, free of IO.
//!
//! Every node (broker, controller, producer, consumer) is a state machine in the
//! style of quinn-proto: `step(now, input, &mut out)` consumes one input (a message,
//! a tick, a client call) and pushes outputs (sends, disk operations, replies);
//! `next_deadline()` says when it wants a tick. Nothing here reads a clock, owns a
//! random generator or touches a network: the simulator in `sim/` drives it.

pub mod broker;
pub mod client;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod hash;
pub mod log;
pub mod net;
pub mod node;
pub mod partition;
pub mod partition_map;
pub mod protocol;
pub mod record;
pub mod storage;
#[cfg(test)]
mod testkit;
pub mod time;
pub mod txn_index;
pub mod types;

pub use time::Instant;
pub use types::*;
