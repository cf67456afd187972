//! Applications written against kafsim's rdkafka-shaped API
//! (`kafsim::rdkafka`), the way their authors would write them with rdkafka,
//! and run in the simulator by the tests beside them (`tests/examples.rs`):
//!
//! - `order_enrichment`: a careful exactly-once service, a transactional
//!   consume-transform-produce loop with `send_offsets_to_transaction` (KIP-98, KIP-447);
//! - `commit_before_produce` and `produce_then_commit`: the same service
//!   with one of the two classic mistakes each;
//! - `audit_consumer`: a plain at-least-once consumer that stores an
//!   offset only after processing its message.
//!
//! Each reads `orders` and (but the last) writes `enriched`, as
//! `scenarios/app-orders.toml` lays them out.

pub mod audit_consumer;
pub mod mistakes;
pub mod order_enrichment;

/// What the service makes of an order: the order, enriched.
pub fn enrich(order: &[u8]) -> String {
    format!("enriched order {}", String::from_utf8_lossy(order))
}
