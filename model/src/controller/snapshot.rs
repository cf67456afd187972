//! What the controller keeps durable (what KRaft keeps in its metadata log):
//! the brokers' registrations and the cluster's metadata. Storage checkpoints
//! it; the controller recovers from it.

use crate::protocol::ClusterMetadata;
use crate::types::{BrokerEpoch, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_epoch: BrokerEpoch,
    pub fenced: bool,
}

/// Everything the controller keeps durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerSnapshot {
    pub next_broker_epoch: u64,
    pub registrations: BTreeMap<NodeId, BrokerRegistration>,
    pub metadata: ClusterMetadata,
}
