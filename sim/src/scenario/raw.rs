//! The scenario file as written: serde structs that mirror the TOML and refuse
//! unknown keys. Numbers are read wide (i64) and range-checked in `validate`,
//! which can then say what range it wanted.

use super::duration::DurationText;
use super::error::{from_data_error, from_syntax_error, Problem};
use super::keyword::Word;
use super::{Action, Delivery, FaultKind};
use crate::check::CheckerKind;
use kafsim_model::config::Properties;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Option<String>,
    pub description: Option<String>,
    pub duration: DurationText,
    pub drain: Option<DurationText>,
    pub time_limit: Option<DurationText>,
    pub seeds: Option<i64>,
    pub cluster: RawCluster,
    #[serde(default)]
    pub topics: Vec<RawTopic>,
    #[serde(default)]
    pub producers: Vec<RawProducer>,
    #[serde(default)]
    pub consumers: Vec<RawConsumer>,
    /// Consume-transform-produce pipelines (KIP-98, KIP-447).
    #[serde(default)]
    pub pipelines: Vec<RawPipeline>,
    pub faults: Option<RawFaults>,
    pub expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub brokers: i64,
    pub controllers: Option<i64>,
    #[serde(default)]
    pub config: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopic {
    pub name: String,
    pub partitions: i64,
    pub replication_factor: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProducer {
    pub count: Option<i64>,
    pub topic: String,
    pub messages: i64,
    pub rate: f64,
    pub keys: Option<i64>,
    pub transaction_size: Option<i64>,
    pub abort_ratio: Option<f64>,
    #[serde(default)]
    pub config: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    pub count: Option<i64>,
    pub topic: String,
    pub group: Option<String>,
    pub delivery: Option<Word<Delivery>>,
    #[serde(default)]
    pub config: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub count: Option<i64>,
    pub from: String,
    pub to: String,
    pub group: String,
    pub transactional: Option<bool>,
    /// Consumer and producer properties together; each key goes to the client
    /// that knows it (both, when both do).
    #[serde(default)]
    pub config: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    #[serde(default)]
    pub kinds: Vec<Word<FaultKind>>,
    pub interval: Option<DurationText>,
    pub max_concurrent: Option<i64>,
    /// `kafsim run --swarm` draws each seed's interval from this range.
    pub swarm_interval: Option<Vec<DurationText>>,
    /// `kafsim run --swarm` draws each seed's max_concurrent from this range.
    pub swarm_max_concurrent: Option<Vec<i64>>,
    /// Code-level fault points (madsim's buggify) in the node shells.
    pub buggify: Option<bool>,
    #[serde(default)]
    pub schedule: Vec<RawScheduledFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScheduledFault {
    pub at: DurationText,
    pub action: Word<Action>,
    pub target: String,
    pub duration: Option<DurationText>,
    pub rate: Option<f64>,
    pub latency: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    #[serde(default)]
    pub never: Vec<Word<CheckerKind>>,
    #[serde(default)]
    pub finds: Vec<Word<CheckerKind>>,
}

/// Parses the text as TOML, then reads it into the raw structs, keeping the
/// path to whatever key fails.
pub(super) fn read(text: &str) -> Result<RawScenario, Problem> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| from_syntax_error(&error, text))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| from_data_error(&error, text))
}
