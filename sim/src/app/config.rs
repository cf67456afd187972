//! `ClientConfig`, as the `rdkafka` crate has it: properties under Kafka's
//! names, then `create::<FutureProducer>()` or `create::<StreamConsumer>()`.
//!
//! Properties are checked as a scenario's are (`kafsim_model::config`): a name
//! neither client knows, or a value of the wrong shape, fails `create` with
//! `KafkaError::ClientCreation` naming the property and what was expected. A
//! property of the other kind of client (`group.id` given to a producer) is
//! ignored, as librdkafka ignores it with a warning. Defaults are Kafka's,
//! `enable.auto.commit = true` and `auto.offset.reset = latest` included.

use super::error::{KafkaError, KafkaResult};
use super::session::AppSession;
use kafsim_model::config::{ConsumerConfig, ProducerConfig, Properties, PropertyValue, CONSUMER_PROPERTIES, PRODUCER_PROPERTIES};
use kafsim_model::NodeId;
use std::collections::BTreeMap;

/// Properties every client takes, besides its own kind's.
const COMMON_PROPERTIES: &[&str] = &["bootstrap.servers", "client.id"];
/// Consumer properties of librdkafka that Kafka's Java client does not have.
const RDKAFKA_CONSUMER_PROPERTIES: &[&str] = &["group.id", "enable.auto.offset.store", "enable.partition.eof"];
/// librdkafka's names for Kafka properties: (librdkafka's, Kafka's).
const ALIASES: &[(&str, &str)] = &[("message.timeout.ms", "delivery.timeout.ms"), ("queue.buffering.max.ms", "linger.ms")];

/// A client's configuration, built up with `set` (rdkafka's `ClientConfig`).
///
/// ```
/// use kafsim::rdkafka::config::ClientConfig;
/// use kafsim::rdkafka::consumer::StreamConsumer;
///
/// let mut config = ClientConfig::new();
/// config.set("group.id", "audit").set("enable.auto.commit", "false");
/// assert_eq!(config.get("group.id"), Some("audit"));
/// // Clients exist only inside a simulated application (`kafsim::app::Harness`).
/// assert!(config.create::<StreamConsumer>().is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    properties: BTreeMap<String, String>,
}

impl ClientConfig {
    pub fn new() -> ClientConfig {
        ClientConfig::default()
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn set<K: Into<String>, V: Into<String>>(&mut self, key: K, value: V) -> &mut ClientConfig {
        self.properties.insert(key.into(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    pub fn remove(&mut self, key: &str) -> &mut ClientConfig {
        self.properties.remove(key);
        self
    }

    /// Makes the client: `create::<FutureProducer>()`, `create::<StreamConsumer>()`.
    /// Only inside a simulated application (`Harness::run`); elsewhere an error.
    pub fn create<T: FromClientConfig>(&self) -> KafkaResult<T> {
        T::from_config(self)
    }

    /// `create` with a consumer context (rebalance callbacks).
    pub fn create_with_context<C, T: FromClientConfigAndContext<C>>(&self, context: C) -> KafkaResult<T> {
        T::from_config_and_context(self, context)
    }

    /// Checks every property, then the brokers named by `bootstrap.servers`.
    fn checked(&self) -> KafkaResult<(AppSession, Vec<NodeId>)> {
        let session = AppSession::current().ok_or_else(|| KafkaError::ClientCreation("kafsim clients run only inside a simulated application (kafsim::Harness::run)".into()))?;
        for key in self.properties.keys() {
            let known = COMMON_PROPERTIES.contains(&key.as_str())
                || RDKAFKA_CONSUMER_PROPERTIES.contains(&key.as_str())
                || PRODUCER_PROPERTIES.contains(&key.as_str())
                || CONSUMER_PROPERTIES.contains(&key.as_str())
                || ALIASES.iter().any(|(alias, _)| alias == key);
            if !known {
                return Err(KafkaError::ClientCreation(format!("No such configuration property: \"{key}\"")));
            }
        }
        let servers = self.get("bootstrap.servers").ok_or_else(|| KafkaError::ClientCreation("\"bootstrap.servers\": expected a comma-separated list of brokers (AppContext::bootstrap_servers)".into()))?;
        // kafsim's `recv` never yields PartitionEOF (rdkafka's default is off too).
        if self.get("enable.partition.eof").is_some_and(|value| value != "false") {
            return Err(KafkaError::ClientCreation("\"enable.partition.eof\": expected false (kafsim does not report partition ends)".into()));
        }
        let bootstrap = session.brokers_named(servers).map_err(KafkaError::ClientCreation)?;
        Ok((session, bootstrap))
    }

    /// The properties in `known`, aliases turned into Kafka's names.
    fn properties_for(&self, known: &[&str]) -> Properties {
        let mut properties = Properties::new();
        for (key, value) in &self.properties {
            let key = ALIASES.iter().find(|(alias, _)| alias == key).map_or(key.as_str(), |(_, kafka)| kafka);
            if known.contains(&key) {
                properties.insert(key.to_string(), PropertyValue::Text(value.clone()));
            }
        }
        properties
    }

    pub(crate) fn producer_config(&self) -> KafkaResult<(AppSession, Vec<NodeId>, ProducerConfig)> {
        let (session, bootstrap) = self.checked()?;
        let config = ProducerConfig::from_properties(&self.properties_for(PRODUCER_PROPERTIES)).map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        Ok((session, bootstrap, config))
    }

    /// The consumer's configuration, its group and whether offsets are stored
    /// as messages are handed out (`enable.auto.offset.store`).
    pub(crate) fn consumer_config(&self) -> KafkaResult<(AppSession, ConsumerSettings)> {
        let (session, bootstrap) = self.checked()?;
        let mut properties = self.properties_for(CONSUMER_PROPERTIES);
        // Kafka's default; the scenario reader defaults it off for the built-in workloads.
        properties.entry("enable.auto.commit".into()).or_insert(PropertyValue::Bool(true));
        let config = ConsumerConfig::from_properties(&properties, "latest").map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        let group = self.get("group.id").map(str::to_string).filter(|group| !group.is_empty());
        let auto_store = match self.get("enable.auto.offset.store") {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(KafkaError::ClientCreation("\"enable.auto.offset.store\": expected true or false".into())),
        };
        Ok((session, ConsumerSettings { bootstrap, config, group, auto_store }))
    }
}

/// What a consumer is made with.
pub(crate) struct ConsumerSettings {
    pub(crate) bootstrap: Vec<NodeId>,
    pub(crate) config: ConsumerConfig,
    pub(crate) group: Option<String>,
    pub(crate) auto_store: bool,
}

/// A client made from a `ClientConfig` (rdkafka's trait of the same name).
pub trait FromClientConfig: Sized {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self>;
}

/// A client made from a `ClientConfig` and a context.
pub trait FromClientConfigAndContext<C>: Sized {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self>;
}
