//! The order-enrichment service with one classic mistake each, as people
//! write it before they learn why not. The simulator finds both.
//!
//! - `commit_before_produce`: the offset is committed, then the enriched
//!   order is sent. A crash between the two skips the order for good:
//!   `at-least-once` (and `eos-violation`, an input with no output).
//! - `produce_then_commit`: no transaction; the enriched order is sent and
//!   acknowledged, then the offset committed. A crash between the two makes
//!   the next owner enrich the order again: `eos-violation` (a duplicate in
//!   the output), and `at-most-once`.

use kafsim::app::AppContext;
use kafsim::rdkafka::config::ClientConfig;
use kafsim::rdkafka::consumer::{CommitMode, StreamConsumer};
use kafsim::rdkafka::message::Message;
use kafsim::rdkafka::producer::{FutureProducer, FutureRecord};
use kafsim::rdkafka::util::Timeout;

fn clients(ctx: &AppContext) -> (StreamConsumer, FutureProducer) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", ctx.bootstrap_servers())
        .set("group.id", "enricher")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a valid consumer configuration");
    consumer.subscribe(&["orders"]).expect("orders exists");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", ctx.bootstrap_servers()).create().expect("a valid producer configuration");
    (consumer, producer)
}

/// Mistake one: commit first, then produce.
pub async fn commit_before_produce(ctx: AppContext) {
    let (consumer, producer) = clients(&ctx);
    loop {
        let Ok(order) = consumer.recv().await else { continue };
        if consumer.commit_message(&order, CommitMode::Sync).await.is_err() {
            continue;
        }
        let enriched = crate::enrich(order.payload().unwrap_or_default());
        let record = FutureRecord::<[u8], str>::to("enriched").payload(&enriched).headers(ctx.derived_from(&order));
        let _ = producer.send(record, Timeout::Never).await;
    }
}

/// Mistake two: produce without a transaction, then commit.
pub async fn produce_then_commit(ctx: AppContext) {
    let (consumer, producer) = clients(&ctx);
    loop {
        let Ok(order) = consumer.recv().await else { continue };
        let enriched = crate::enrich(order.payload().unwrap_or_default());
        let record = FutureRecord::<[u8], str>::to("enriched").payload(&enriched).headers(ctx.derived_from(&order));
        if producer.send(record, Timeout::Never).await.is_ok() {
            let _ = consumer.commit_message(&order, CommitMode::Sync).await;
        }
    }
}
