//! A careful exactly-once order-enrichment service: read orders with
//! read_committed, write each enriched order and the consumed offsets in one
//! transaction, and on any failure abort and go back to the committed offsets.
//!
//! The habits it shows, each a defence the simulator tests:
//! - one `transactional.id` per instance, stable across restarts, so that a
//!   restarted instance fences its zombie (KIP-98);
//! - offsets committed with the consumer's group metadata as of the poll
//!   that read them, so a member that lost its partitions is fenced (KIP-447);
//! - a batch that saw a revocation is aborted, never committed;
//! - a fatal error ends the process, and its supervisor starts a new one.

use futures::future::join_all;
use kafsim::app::time::timeout;
use kafsim::app::AppContext;
use kafsim::rdkafka::config::ClientConfig;
use kafsim::rdkafka::consumer::{ConsumerContext, Rebalance, StreamConsumer};
use kafsim::rdkafka::error::KafkaError;
use kafsim::rdkafka::message::{Message, OwnedMessage};
use kafsim::rdkafka::producer::{FutureProducer, FutureRecord};
use kafsim::rdkafka::util::Timeout;
use kafsim::rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BATCH_MAX: usize = 20;
/// How long a batch waits for more orders once it has one.
const BATCH_LINGER: Duration = Duration::from_millis(50);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Hears of revocations: a batch read before one must not commit.
#[derive(Default)]
pub struct RevocationFlag(Arc<AtomicBool>);

impl ConsumerContext for RevocationFlag {
    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The service's main: runs until a fatal error, then returns (and is restarted).
pub async fn run(ctx: AppContext) {
    let revoked = Arc::new(AtomicBool::new(false));
    let consumer: StreamConsumer<RevocationFlag> = ClientConfig::new()
        .set("bootstrap.servers", ctx.bootstrap_servers())
        .set("group.id", "enricher")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create_with_context(RevocationFlag(revoked.clone()))
        .expect("a valid consumer configuration");
    consumer.subscribe(&["orders"]).expect("orders exists");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", ctx.bootstrap_servers())
        .set("transactional.id", format!("enricher-{}", ctx.instance()))
        .create()
        .expect("a valid producer configuration");
    if producer.init_transactions(CALL_TIMEOUT).await.is_err() {
        return;
    }
    loop {
        // Cleared before the batch is read: a revocation while it is read dooms it.
        revoked.store(false, Ordering::SeqCst);
        let batch = next_batch(&consumer).await;
        match process(&ctx, &consumer, &producer, &batch, &revoked).await {
            Ok(()) => {}
            Err(error) if is_fatal(&error) => return,
            Err(_) => {
                let _ = producer.abort_transaction(CALL_TIMEOUT).await;
                rewind(&consumer).await;
            }
        }
    }
}

/// At least one order, then whatever else arrives within `BATCH_LINGER`.
async fn next_batch(consumer: &StreamConsumer<RevocationFlag>) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    while batch.is_empty() {
        if let Ok(message) = consumer.recv().await {
            batch.push(message.detach());
        }
    }
    while batch.len() < BATCH_MAX {
        match timeout(BATCH_LINGER, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            _ => break,
        }
    }
    batch
}

/// One transaction: the batch's enriched orders and its offsets.
async fn process(ctx: &AppContext, consumer: &StreamConsumer<RevocationFlag>, producer: &FutureProducer, batch: &[OwnedMessage], revoked: &AtomicBool) -> Result<(), KafkaError> {
    let metadata = consumer.group_metadata().ok_or_else(|| KafkaError::Subscription("no group generation yet".into()))?;
    producer.begin_transaction()?;
    let enriched: Vec<String> = batch.iter().map(|order| crate::enrich(order.payload().unwrap_or_default())).collect();
    let sends = batch.iter().zip(&enriched).map(|(order, enriched)| {
        let record = FutureRecord::to("enriched").payload(enriched.as_str()).headers(ctx.derived_from(order));
        let record = match order.key() {
            Some(key) => record.key(key),
            None => record,
        };
        producer.send(record, Timeout::Never)
    });
    for delivery in join_all(sends).await {
        delivery.map_err(|(error, _)| error)?;
    }
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for order in batch {
        let offset = next.entry((order.topic().to_string(), order.partition())).or_default();
        *offset = (*offset).max(order.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
    }
    if revoked.load(Ordering::SeqCst) {
        return Err(KafkaError::Subscription("partitions revoked during the batch".into()));
    }
    producer.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT).await?;
    producer.commit_transaction(CALL_TIMEOUT).await
}

fn is_fatal(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(error) if error.is_fatal())
}

/// Back to the committed offsets, after an abort (KIP-98).
async fn rewind<C: ConsumerContext>(consumer: &StreamConsumer<C>) {
    if let Ok(mut assignment) = consumer.assignment() {
        let _ = assignment.set_all_offsets(Offset::Stored);
        let _ = consumer.seek_partitions(assignment, CALL_TIMEOUT).await;
    }
}
