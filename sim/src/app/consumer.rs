//! `StreamConsumer`, `ConsumerContext` and the group metadata transactions
//! take, as the `rdkafka` crate has them.
//!
//! Where kafsim differs from rdkafka:
//! - `commit`, `commit_message`, `commit_consumer_state` and `seek_partitions`
//!   are `async` (as in madsim-rdkafka): a simulated application cannot block
//!   its thread. `CommitMode::Async` returns once the commit is sent, not queued;
//! - a consumer subscribes (or assigns) once; `assign` takes whole topics
//!   (every partition of each topic it names) from their committed offsets,
//!   and an assigned consumer cannot commit (`NotImplemented`);
//! - `seek_partitions` supports `Offset::Stored` only: back to the committed
//!   offsets, what a transactional application does after an abort (KIP-98);
//! - the context's callbacks take the rebalance only (`pre_rebalance(&self,
//!   rebalance)`), as rdkafka's did before 0.35, and run inside `recv`;
//! - `store_offset(topic, partition, offset)` stores `offset` as the next
//!   offset to read, as rdkafka's does since 0.29; `store_offset_from_message`
//!   stores the message's offset + 1.

use super::config::{ClientConfig, ConsumerSettings, FromClientConfig, FromClientConfigAndContext};
use super::consumer_core::{CommitKind, ConsumerCore, RebalanceNote};
use super::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use super::message::{BorrowedMessage, Message};
use super::node::{AppNode, Client};
use super::partitions::{CommitMode, Offset, Timeout, TopicPartitionList};
use super::session::AppSession;
use crate::history::{OpBody, OpType};
use kafsim_model::client::consumer::Consumer as ModelConsumer;
use kafsim_model::coordinator::group::protocol::{Generation, MemberId};
use kafsim_model::TopicPartition;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a commit waits for its member to be able to commit (Kafka's `default.api.timeout.ms`).
const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(60);

/// rdkafka's `Consumer` trait, whose methods kafsim's `StreamConsumer` has as
/// its own; kept so that `use rdkafka::consumer::Consumer` still compiles.
pub trait Consumer {}

/// A rebalance, as the context's callbacks hear of it (rdkafka's `Rebalance`).
#[derive(Debug)]
pub enum Rebalance<'a> {
    Assign(&'a TopicPartitionList),
    Revoke(&'a TopicPartitionList),
    Error(KafkaError),
}

/// Callbacks of a consumer (rdkafka's `ConsumerContext`). They run inside
/// `recv`, on the application's task: before the member rejoins after an
/// eager revocation (`pre_rebalance` with `Revoke`), and after an assignment.
pub trait ConsumerContext: Send + Sync + 'static {
    fn pre_rebalance(&self, _rebalance: &Rebalance<'_>) {}
    fn post_rebalance(&self, _rebalance: &Rebalance<'_>) {}
}

/// A context with no callbacks (rdkafka's `DefaultConsumerContext`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultConsumerContext;

impl ConsumerContext for DefaultConsumerContext {}

/// A consumer's group generation and member id as of its last `recv`
/// (rdkafka's `ConsumerGroupMetadata`, Kafka's `consumer.groupMetadata()`):
/// what `send_offsets_to_transaction` fences the commit with (KIP-447).
#[derive(Clone)]
pub struct ConsumerGroupMetadata {
    pub(crate) group: Arc<str>,
    pub(crate) generation: Generation,
    pub(crate) member_id: MemberId,
    pub(crate) consumer: usize,
    pub(crate) node: Arc<Mutex<AppNode>>,
}

impl std::fmt::Debug for ConsumerGroupMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsumerGroupMetadata({}, generation {}, {:?})", self.group, self.generation.0, self.member_id)
    }
}

/// A consumer whose `recv` is a future (rdkafka's `StreamConsumer`).
///
/// ```no_run
/// use kafsim::app::AppContext;
/// use kafsim::rdkafka::config::ClientConfig;
/// use kafsim::rdkafka::consumer::{CommitMode, StreamConsumer};
/// use kafsim::rdkafka::message::Message;
///
/// async fn tail(ctx: AppContext) {
///     let consumer: StreamConsumer = ClientConfig::new()
///         .set("bootstrap.servers", ctx.bootstrap_servers())
///         .set("group.id", "tail")
///         .set("enable.auto.commit", "false")
///         .create()
///         .expect("a valid configuration");
///     consumer.subscribe(&["events"]).expect("a known topic");
///     while let Ok(message) = consumer.recv().await {
///         println!("{}@{}", message.topic(), message.offset());
///         ctx.processed(&message);
///         let _ = consumer.commit_message(&message, CommitMode::Sync).await;
///     }
/// }
/// ```
pub struct StreamConsumer<C: ConsumerContext = DefaultConsumerContext> {
    session: AppSession,
    settings: ConsumerSettings,
    /// The client's index on its node, once it subscribed or assigned.
    index: Mutex<Option<usize>>,
    context: C,
}

impl<C: ConsumerContext> Consumer for StreamConsumer<C> {}

impl FromClientConfig for StreamConsumer<DefaultConsumerContext> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        StreamConsumer::from_config_and_context(config, DefaultConsumerContext)
    }
}

impl<C: ConsumerContext> FromClientConfigAndContext<C> for StreamConsumer<C> {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let (session, settings) = config.consumer_config()?;
        Ok(StreamConsumer { session, settings, index: Mutex::new(None), context })
    }
}

fn partitions_list(partitions: &[TopicPartition], offset: impl Fn(&TopicPartition) -> Offset) -> TopicPartitionList {
    TopicPartitionList::from_partitions(partitions.iter().map(|tp| (tp.clone(), offset(tp))))
}

/// What `recv` found next.
enum Next {
    Rebalance(RebalanceNote),
    Error(KafkaError),
    Message(super::message::OwnedMessage),
}

impl<C: ConsumerContext> StreamConsumer<C> {
    fn index(&self) -> KafkaResult<usize> {
        self.index.lock().expect("index lock").ok_or_else(|| KafkaError::Subscription("the consumer has neither subscribed nor assigned".into()))
    }

    /// Makes the model consumer: subscribed to `topics` in the group, or assigned them whole.
    fn start(&self, topics: &[&str], subscribe: bool) -> KafkaResult<()> {
        let mut index = self.index.lock().expect("index lock");
        if index.is_some() {
            return Err(KafkaError::Subscription("kafsim's consumer subscribes or assigns once".into()));
        }
        let group: Option<Arc<str>> = self.settings.group.as_deref().map(Arc::from);
        if subscribe && group.is_none() {
            return Err(KafkaError::Subscription("subscribe needs group.id".into()));
        }
        let made = self.session.call(|node, now| {
            let known: Vec<&str> = node.ctx.scenario.topics.iter().map(|topic| topic.name.as_str()).collect();
            if let Some(unknown) = topics.iter().find(|topic| !known.contains(topic)) {
                return Err(KafkaError::Subscription(format!("unknown topic {unknown:?}; the scenario's topics are {known:?}")));
            }
            let (endpoint, name, _) = node.next_client("consumer").ok_or_else(|| KafkaError::Subscription(format!("an application instance makes at most {} clients per run of its process", super::node::MAX_CLIENTS)))?;
            let topics: Vec<Arc<str>> = topics.iter().map(|topic| Arc::from(*topic)).collect();
            let mut config = self.settings.config.clone();
            // The core commits stored offsets itself, as librdkafka does.
            let auto_commit = config.enable_auto_commit.then_some(config.auto_commit_interval);
            config.enable_auto_commit = false;
            let bootstrap = self.settings.bootstrap.clone();
            let jitter_seed = crate::node::jitter_seed(endpoint, now);
            let mut consumer = match (&group, subscribe) {
                (Some(group), true) => ModelConsumer::subscribe(config, topics.clone(), group.clone(), bootstrap, node.number as usize, jitter_seed),
                _ => ModelConsumer::new(config, topics.clone(), bootstrap, node.number as usize, jitter_seed),
            };
            consumer.hold_join_on_revoke();
            let registry = node.ctx.apps.registry.clone();
            if let Some(group) = group.as_ref().filter(|_| subscribe) {
                registry.lock().expect("registry lock").subscribed(group, &topics);
            }
            let recorder = node.ctx.recorder(name);
            recorder.record(now, OpType::Invoke, OpBody::ClientStart);
            let core = ConsumerCore::new(consumer, endpoint, recorder, registry, group.clone(), self.settings.auto_store, auto_commit);
            node.clients.push(Client::Consumer(Box::new(core)));
            let index = node.clients.len() - 1;
            node.consumer(index).handle_timeout(now);
            Ok(index)
        })?;
        *index = Some(made);
        Ok(())
    }

    /// Joins the group (`group.id`) on `topics` (Kafka's subscribe).
    pub fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.start(topics, true)
    }

    /// Reads every partition of each topic `assignment` names, outside any
    /// group's rebalances. Offsets in the list are not used; a list that names
    /// only some of a topic's partitions is refused.
    pub fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let mut topics: Vec<String> = assignment.elements().iter().map(|element| element.topic().to_string()).collect();
        topics.sort();
        topics.dedup();
        for topic in &topics {
            let partitions = self.session.ctx.scenario.topic(topic).map_or(0, |topic| topic.partitions);
            if assignment.elements_for_topic(topic).len() as u32 != partitions {
                return Err(KafkaError::Subscription(format!("kafsim assigns whole topics: list every partition of {topic} ({partitions})")));
            }
        }
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.start(&topics, false)
    }

    /// The next message. Runs the context's rebalance callbacks first when a
    /// rebalance happened since the last call.
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        let index = self.index()?;
        loop {
            let next = self.session.wait(Timeout::Never, |node, now| {
                let core = node.consumer(index);
                if let Some(note) = core.rebalances.pop_front() {
                    return Some(Next::Rebalance(note));
                }
                if core.is_revoking() {
                    // A revocation whose callbacks ran: the member may rejoin.
                    core.revocation_done(now);
                }
                if let Some(error) = core.errors.pop_front() {
                    return Some(Next::Error(error));
                }
                core.hand_out(now).map(Next::Message)
            });
            match next.await.expect("no timeout") {
                Next::Message(message) => return Ok(BorrowedMessage { message, _consumer: PhantomData }),
                Next::Error(error) => return Err(error),
                Next::Rebalance(RebalanceNote::Assign(partitions)) => {
                    let list = partitions_list(&partitions, |_| Offset::Invalid);
                    self.context.pre_rebalance(&Rebalance::Assign(&list));
                    self.context.post_rebalance(&Rebalance::Assign(&list));
                }
                Next::Rebalance(RebalanceNote::Revoke(partitions)) => {
                    let list = partitions_list(&partitions, |_| Offset::Invalid);
                    self.context.pre_rebalance(&Rebalance::Revoke(&list));
                    // librdkafka's auto-commit commits the revoked partitions' stored offsets.
                    let stored = self.session.call(|node, _| {
                        let core = node.consumer(index);
                        if core.auto_commits() { core.stored_of(&partitions) } else { Vec::new() }
                    });
                    if !stored.is_empty() {
                        let _ = self.commit_offsets(index, stored, CommitMode::Sync).await;
                    }
                    self.context.post_rebalance(&Rebalance::Revoke(&list));
                }
            }
        }
    }

    /// The messages, as a stream (rdkafka's `StreamConsumer::stream`).
    pub fn stream(&self) -> std::pin::Pin<Box<dyn futures::Stream<Item = KafkaResult<BorrowedMessage<'_>>> + '_>> {
        Box::pin(futures::stream::unfold(self, |consumer| async move { Some((consumer.recv().await, consumer)) }))
    }

    /// Commits `offsets` (each the next offset to read).
    pub async fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        let index = self.index()?;
        let offsets = offsets.absolute_offsets().map_err(|_| KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidArgument))?;
        self.commit_offsets(index, offsets, mode).await
    }

    /// Commits the offset after `message`.
    pub async fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()> {
        let index = self.index()?;
        let partition = TopicPartition::new(message.topic(), message.partition() as u32);
        self.commit_offsets(index, vec![(partition, kafsim_model::Offset(message.offset() as u64 + 1))], mode).await
    }

    /// Commits the stored offsets.
    pub async fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        let index = self.index()?;
        let stored = self.session.call(|node, _| node.consumer(index).stored.iter().map(|(tp, offset)| (tp.clone(), *offset)).collect());
        self.commit_offsets(index, stored, mode).await
    }

    async fn commit_offsets(&self, index: usize, offsets: Vec<(TopicPartition, kafsim_model::Offset)>, mode: CommitMode) -> KafkaResult<()> {
        if offsets.is_empty() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidArgument));
        }
        // kafsim's consumer commits as a group member only: a consumer that
        // assigned itself partitions (even with a group.id) cannot commit yet.
        let member = self.session.call(|node, _| node.consumer(index).consumer.group().is_some());
        if !member {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NotImplemented));
        }
        let sent = self.session.wait(Timeout::After(DEFAULT_API_TIMEOUT), |node, now| node.consumer(index).start_commit(now, offsets.clone(), CommitKind::Plain)).await;
        let id = sent.ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::OperationTimedOut))?;
        if mode == CommitMode::Async {
            return Ok(());
        }
        let result = self.session.wait(Timeout::Never, |node, _| node.consumer(index).commit_results.remove(&id)).await.expect("no timeout");
        result.map_err(|code| KafkaError::ConsumerCommit(RDKafkaErrorCode::from_broker(code)))
    }

    /// Stores `offset` as the next offset to read of the partition, for the
    /// next commit of the stored offsets (auto-commit, `commit_consumer_state`).
    pub fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        let index = self.index()?;
        if offset < 0 || partition < 0 {
            return Err(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument));
        }
        self.session.call(|node, _| {
            node.consumer(index).stored.insert(TopicPartition::new(topic, partition as u32), kafsim_model::Offset(offset as u64));
        });
        Ok(())
    }

    /// Stores the offset after `message` (the message is done with).
    pub fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()> {
        self.store_offset(message.topic(), message.partition(), message.offset() + 1)
    }

    /// The next offset `recv` hands out of each partition it handed out from.
    pub fn position(&self) -> KafkaResult<TopicPartitionList> {
        let index = self.index()?;
        let positions: Vec<(TopicPartition, kafsim_model::Offset)> = self.session.call(|node, _| node.consumer(index).handed.iter().map(|(tp, offset)| (tp.clone(), *offset)).collect());
        Ok(TopicPartitionList::from_partitions(positions.into_iter().map(|(tp, offset)| (tp, Offset::Offset(offset.0 as i64)))))
    }

    /// The partitions this consumer owns now.
    pub fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        let index = self.index()?;
        let owned: Vec<TopicPartition> = self.session.call(|node, _| {
            let core = node.consumer(index);
            match core.consumer.group() {
                Some(member) => member.owned().to_vec(),
                None => core.consumer.positions().into_keys().collect(),
            }
        });
        Ok(partitions_list(&owned, |_| Offset::Invalid))
    }

    /// The group generation and member id as of the last `recv` (Kafka's
    /// `groupMetadata()`); None before the first message or outside a group.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let index = self.index().ok()?;
        let (generation, member_id) = self.session.call(|node, _| node.consumer(index).group_metadata.clone())?;
        let group = Arc::from(self.settings.group.as_deref()?);
        Some(ConsumerGroupMetadata { group, generation, member_id, consumer: index, node: self.session.node.clone() })
    }

    /// Moves back to the group's committed offsets: only `Offset::Stored` is
    /// supported, and every assigned partition goes back (what a transactional
    /// application does after an abort, KIP-98). Messages not yet handed out are dropped.
    pub async fn seek_partitions<T: Into<Timeout>>(&self, partitions: TopicPartitionList, _timeout: T) -> KafkaResult<TopicPartitionList> {
        let index = self.index()?;
        if let Some(element) = partitions.elements().into_iter().find(|element| element.offset() != Offset::Stored) {
            return Err(KafkaError::Seek(format!("kafsim seeks to Offset::Stored only, not {:?} ({}/{})", element.offset(), element.topic(), element.partition())));
        }
        self.session.call(|node, now| {
            let core = node.consumer(index);
            core.rewind_to_committed(now);
        });
        Ok(partitions)
    }
}
