//! A plain at-least-once consumer: it processes each order (here: counts
//! it, and tells the checkers with `ctx.processed`), then stores its offset;
//! auto-commit commits the stored offsets (`enable.auto.offset.store =
//! false`, rdkafka's recommended at-least-once setting). It must never skip
//! an order, and after a crash it processes some again.

use futures::StreamExt;
use kafsim::app::AppContext;
use kafsim::rdkafka::config::ClientConfig;
use kafsim::rdkafka::consumer::StreamConsumer;

pub async fn run(ctx: AppContext) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", ctx.bootstrap_servers())
        .set("group.id", "audit")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a valid consumer configuration");
    consumer.subscribe(&["orders"]).expect("orders exists");
    let mut orders = consumer.stream();
    while let Some(order) = orders.next().await {
        let Ok(order) = order else { continue };
        ctx.processed(&order);
        consumer.store_offset_from_message(&order).expect("an assigned partition");
    }
}
