//! The controller: broker registration and fencing by heartbeat, partition leader
//! election, ISR changes (KIP-497 AlterPartition), and metadata propagation.
//!
//! A single controller with durable metadata, in the manner of KRaft's active
//! controller: its state is checkpointed to disk on every change and recovered
//! after its own crash. Fencing follows KRaft: a fenced broker leaves every ISR,
//! except that an ISR never becomes empty (its last member stays, so a clean
//! election remains possible when that broker returns). KIP-966's eligible leader
//! replicas are not modelled yet.

use crate::config::BrokerConfig;
use crate::net::{Channel, ConnectionEvent, Destination, NetworkClient};
use crate::config::NetworkConfig;
use crate::node::{Node, Outbox};
use crate::protocol::{ClusterMetadata, Message, PartitionState};
use crate::error::ErrorCode;
use crate::storage::{Checkpoint, DiskOp, DurableState};
use crate::time::Instant;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub mod records;
pub mod snapshot;

pub use snapshot::{BrokerRegistration, ControllerSnapshot};

/// A topic created when the cluster is bootstrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub brokers: Vec<NodeId>,
    pub topics: Vec<TopicSpec>,
    pub broker_session_timeout: Duration,
    pub unclean_leader_election_enable: bool,
    pub network: NetworkConfig,
}

impl ControllerConfig {
    pub fn new(brokers: Vec<NodeId>, topics: Vec<TopicSpec>, broker: &BrokerConfig) -> ControllerConfig {
        ControllerConfig {
            brokers,
            topics,
            broker_session_timeout: broker.broker_session_timeout,
            unclean_leader_election_enable: broker.unclean_leader_election_enable,
            network: broker.network,
        }
    }
}

/// The controller reports nothing besides its messages and disk writes.
pub type ControllerEvent = std::convert::Infallible;

pub struct Controller {
    config: ControllerConfig,
    state: ControllerSnapshot,
    last_heartbeat: BTreeMap<NodeId, Instant>,
    metadata: Arc<ClusterMetadata>,
    dirty: bool,
    /// The controller's own connections to the brokers, for UpdateMetadata.
    network: NetworkClient<()>,
    /// Per broker, the metadata version pushed on its current connection.
    pushed: BTreeMap<NodeId, u64>,
}

impl Controller {
    /// Starts from the durable metadata, or bootstraps the cluster's topics when
    /// there is none. Kafka assigns replicas round-robin from a random broker; here
    /// partition `p`'s replicas start at broker `p mod n`, which is as balanced and
    /// needs no randomness.
    pub fn recover(now: Instant, config: ControllerConfig, durable: &DurableState, jitter_seed: u64) -> Controller {
        let state = match durable.controller() {
            Some(snapshot) => snapshot.clone(),
            None => ControllerSnapshot { next_broker_epoch: 1, registrations: BTreeMap::new(), metadata: bootstrap_metadata(&config) },
        };
        // A restarted controller gives every registered broker a full session before fencing it.
        let last_heartbeat = state.registrations.keys().map(|broker| (*broker, now)).collect();
        let metadata = Arc::new(state.metadata.clone());
        let network = NetworkClient::new(config.network, jitter_seed);
        Controller { config, state, last_heartbeat, metadata, dirty: durable.controller().is_none(), network, pushed: BTreeMap::new() }
    }

    pub fn metadata(&self) -> &Arc<ClusterMetadata> {
        &self.metadata
    }

    pub fn registrations(&self) -> &BTreeMap<NodeId, BrokerRegistration> {
        &self.state.registrations
    }

    fn session_deadline(&self) -> Option<Instant> {
        self.last_heartbeat
            .iter()
            .filter(|(broker, _)| self.state.registrations.get(broker).is_some_and(|registration| !registration.fenced))
            .map(|(_, last)| *last + self.config.broker_session_timeout)
            .min()
    }

    fn handle_request(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<ControllerEvent>) {
        match message {
            Message::BrokerHeartbeat { correlation_id, broker, broker_epoch, metadata_version } if broker == from => {
                self.handle_heartbeat(now, correlation_id, broker, broker_epoch, metadata_version, out)
            }
            Message::AlterPartitionRequest { correlation_id, broker, broker_epoch, partition, leader_epoch, partition_epoch, new_isr } => {
                let result = self.handle_alter_partition(broker, broker_epoch, &partition, leader_epoch, partition_epoch, new_isr);
                out.send(from, Message::AlterPartitionResponse { correlation_id, partition, result });
            }
            Message::MetadataRequest { correlation_id } => {
                let metadata = self.metadata.clone();
                out.send(from, Message::MetadataResponse { correlation_id, metadata });
            }
            _ => {}
        }
    }

    fn handle_heartbeat(&mut self, now: Instant, correlation_id: u64, broker: NodeId, broker_epoch: Option<BrokerEpoch>, metadata_version: u64, out: &mut Outbox<ControllerEvent>) {
        if !self.config.brokers.contains(&broker) {
            return;
        }
        let registered = self.state.registrations.get(&broker).copied();
        let epoch = match (broker_epoch, registered) {
            (None, previous) => {
                // A new incarnation: whatever the old one led or followed is suspect,
                // so fence it first, then register the new one unfenced.
                if previous.is_some_and(|registration| !registration.fenced) {
                    tracing::info!(broker = broker.0, "controller fences broker: it registered anew after a restart");
                    self.fence(broker);
                }
                let epoch = BrokerEpoch(self.state.next_broker_epoch);
                self.state.next_broker_epoch += 1;
                self.state.registrations.insert(broker, BrokerRegistration { broker_epoch: epoch, fenced: false });
                self.dirty = true;
                self.elect_leaderless();
                epoch
            }
            (Some(epoch), Some(registration)) if registration.broker_epoch == epoch => {
                if registration.fenced {
                    self.state.registrations.insert(broker, BrokerRegistration { broker_epoch: epoch, fenced: false });
                    self.dirty = true;
                    self.elect_leaderless();
                }
                epoch
            }
            (Some(epoch), _) => {
                let message = Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: epoch, metadata: None, error: Some(ErrorCode::StaleBrokerEpoch) };
                out.send(broker, message);
                return;
            }
        };
        self.last_heartbeat.insert(broker, now);
        self.refresh_metadata();
        let metadata = (broker_epoch.is_none() || metadata_version < self.metadata.version).then(|| self.metadata.clone());
        out.send(broker, Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: epoch, metadata, error: None });
    }

    fn handle_alter_partition(
        &mut self,
        broker: NodeId,
        broker_epoch: BrokerEpoch,
        partition: &TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: Vec<NodeId>,
    ) -> Result<PartitionState, ErrorCode> {
        if self.state.registrations.get(&broker).map(|registration| registration.broker_epoch) != Some(broker_epoch) {
            return Err(ErrorCode::StaleBrokerEpoch);
        }
        let registrations = &self.state.registrations;
        let state = self.state.metadata.partitions.get_mut(partition).ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if state.leader != Some(broker) || state.leader_epoch != leader_epoch {
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if state.partition_epoch != partition_epoch {
            return Err(ErrorCode::InvalidUpdateVersion);
        }
        let eligible = |replica: &NodeId| {
            state.replicas.contains(replica) && registrations.get(replica).is_some_and(|registration| !registration.fenced)
        };
        // KIP-841: only unfenced replicas may join the ISR; the leader must stay in it.
        let added_ineligible = new_isr.iter().any(|replica| !state.isr.contains(replica) && !eligible(replica));
        if added_ineligible || !new_isr.contains(&broker) {
            return Err(ErrorCode::IneligibleReplica);
        }
        let mut ordered: Vec<NodeId> = state.replicas.iter().copied().filter(|replica| new_isr.contains(replica)).collect();
        ordered.dedup();
        state.isr = ordered;
        state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
        let result = state.clone();
        tracing::info!(partition = %partition, isr = ?result.isr, "controller alters ISR");
        self.dirty = true;
        Ok(result)
    }

    /// Moves leadership away from `broker` and drops it from every ISR it can leave.
    fn fence(&mut self, broker: NodeId) {
        if let Some(registration) = self.state.registrations.get_mut(&broker) {
            registration.fenced = true;
        }
        let partitions: Vec<TopicPartition> = self
            .state
            .metadata
            .partitions
            .iter()
            .filter(|(_, state)| state.replicas.contains(&broker))
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut lost_leader = Vec::new();
        for tp in partitions {
            let state = self.state.metadata.partitions.get_mut(&tp).expect("partition listed above");
            let mut changed = false;
            if state.isr.len() > 1 && state.isr.contains(&broker) {
                state.isr.retain(|replica| *replica != broker);
                changed = true;
            }
            if state.leader == Some(broker) {
                state.leader = None;
                lost_leader.push(tp.clone());
                changed = true;
            }
            if changed {
                state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
            }
        }
        self.dirty = true;
        // One change per partition, as KRaft writes one PartitionChangeRecord: the
        // election below bumps the leader epoch once; a partition left without a
        // leader gets its bump here.
        let elected = self.elect_leaderless();
        for tp in lost_leader {
            if !elected.contains(&tp) {
                let state = self.state.metadata.partitions.get_mut(&tp).expect("partition listed above");
                state.leader_epoch = LeaderEpoch(state.leader_epoch.0 + 1);
            }
        }
    }

    /// Elects a leader for every partition without one: the first live ISR member in
    /// replica order, or, when unclean election is enabled and no ISR member is live,
    /// the first live replica, whose log becomes the truth.
    fn elect_leaderless(&mut self) -> Vec<TopicPartition> {
        let mut elected = Vec::new();
        let registrations = &self.state.registrations;
        let live = |replica: &NodeId| registrations.get(replica).is_some_and(|registration| !registration.fenced);
        for (tp, state) in self.state.metadata.partitions.iter_mut().filter(|(_, state)| state.leader.is_none()) {
            let clean = state.replicas.iter().copied().find(|replica| state.isr.contains(replica) && live(replica));
            let (leader, unclean) = match clean {
                Some(leader) => (leader, false),
                None if self.config.unclean_leader_election_enable => match state.replicas.iter().copied().find(|replica| live(replica)) {
                    Some(leader) => (leader, true),
                    None => continue,
                },
                None => continue,
            };
            state.leader = Some(leader);
            state.leader_epoch = LeaderEpoch(state.leader_epoch.0 + 1);
            state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
            if unclean {
                state.isr = vec![leader];
            }
            tracing::info!(partition = %tp, leader = leader.0, epoch = state.leader_epoch.0, unclean, "controller elects leader");
            self.dirty = true;
            elected.push(tp.clone());
        }
        elected
    }

    fn refresh_metadata(&mut self) {
        if self.dirty {
            self.state.metadata.version += 1;
            self.metadata = Arc::new(self.state.metadata.clone());
        }
    }

    /// After a change: persist, then push the new metadata to every live broker.
    fn publish(&mut self, now: Instant, out: &mut Outbox<ControllerEvent>) {
        self.start(out);
        self.push_metadata(now, out);
    }

    /// UpdateMetadata to every unfenced broker that has not had the current
    /// version on its connection, opening connections as needed.
    fn push_metadata(&mut self, now: Instant, out: &mut Outbox<ControllerEvent>) {
        let version = self.metadata.version;
        for (broker, registration) in &self.state.registrations {
            if registration.fenced || self.pushed.get(broker).is_some_and(|pushed| *pushed >= version) {
                continue;
            }
            let destination = Destination::new(*broker, Channel::Default);
            if self.network.ready(now, destination, out) {
                self.network.send_one_way(destination, Message::UpdateMetadata { metadata: self.metadata.clone() }, out);
                self.pushed.insert(*broker, version);
            }
        }
    }

    /// Persists the bootstrap metadata on first start; the metadata goes out
    /// with the first `handle_timeout`, once the controller's driver runs it.
    pub fn start(&mut self, out: &mut Outbox<ControllerEvent>) {
        if self.dirty {
            self.refresh_metadata();
            self.dirty = false;
            out.disk.push(DiskOp::Checkpoint(Checkpoint::Controller(self.state.clone())));
        }
    }
}

impl Node for Controller {
    type Event = ControllerEvent;

    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Outbox<ControllerEvent>) {
        self.handle_request(now, from, message, out);
        self.publish(now, out);
    }

    fn handle_connection(&mut self, now: Instant, destination: Destination, event: ConnectionEvent, out: &mut Outbox<ControllerEvent>) {
        self.network.handle_connection(now, destination, event);
        if matches!(event, ConnectionEvent::Closed(_)) {
            // What reaches the broker on its next connection starts afresh.
            self.pushed.remove(&destination.node);
        }
        self.publish(now, out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<ControllerEvent>) {
        self.network.poll_timeouts(now, out);
        let expired: Vec<NodeId> = self
            .last_heartbeat
            .iter()
            .filter(|(broker, last)| {
                now.saturating_since(**last) >= self.config.broker_session_timeout
                    && self.state.registrations.get(broker).is_some_and(|registration| !registration.fenced)
            })
            .map(|(broker, _)| *broker)
            .collect();
        for broker in expired {
            tracing::info!(broker = broker.0, "controller fences broker: session timed out");
            self.fence(broker);
        }
        self.publish(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        crate::time::earliest(self.session_deadline(), self.network.next_deadline())
    }
}

fn bootstrap_metadata(config: &ControllerConfig) -> ClusterMetadata {
    let mut partitions = BTreeMap::new();
    let broker_count = config.brokers.len();
    for topic in &config.topics {
        let topic_name: Arc<str> = topic.name.as_str().into();
        for partition in 0..topic.partitions {
            let replicas: Vec<NodeId> = (0..topic.replication_factor as usize)
                .map(|index| config.brokers[(partition as usize + index) % broker_count])
                .collect();
            let state = PartitionState {
                leader: replicas.first().copied(),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
                isr: replicas.clone(),
                replicas,
            };
            partitions.insert(TopicPartition { topic: topic_name.clone(), partition }, state);
        }
    }
    ClusterMetadata { version: 1, brokers: config.brokers.clone(), partitions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(unclean: bool) -> Controller {
        let config = ControllerConfig {
            brokers: vec![NodeId(1), NodeId(2), NodeId(3)],
            topics: vec![TopicSpec { name: "t".into(), partitions: 1, replication_factor: 3 }],
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: unclean,
            network: NetworkConfig::default(),
        };
        let mut controller = Controller::recover(Instant::ZERO, config, &DurableState::default(), 1);
        let mut out = Outbox::new(NodeId(1000));
        for broker in 1..=3 {
            controller.handle_message(Instant::ZERO, NodeId(broker), Message::BrokerHeartbeat { correlation_id: 1, broker: NodeId(broker), broker_epoch: None, metadata_version: 0 }, &mut out);
        }
        controller
    }

    fn state(controller: &Controller) -> PartitionState {
        controller.metadata().partitions[&TopicPartition::new("t", 0)].clone()
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_and_bumps_the_epoch() {
        let mut controller = controller(false);
        assert_eq!(state(&controller).leader, Some(NodeId(1)));
        let mut out = Outbox::new(NodeId(1000));
        // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
        for broker in [2, 3] {
            controller.handle_message(Instant::from_micros(5_000_000), NodeId(broker), Message::BrokerHeartbeat { correlation_id: 1, broker: NodeId(broker), broker_epoch: Some(BrokerEpoch(broker as u64)), metadata_version: 0 }, &mut out);
        }
        controller.handle_timeout(Instant::from_micros(10_000_000), &mut out);
        let after = state(&controller);
        assert_eq!(after.leader, Some(NodeId(2)));
        assert_eq!(after.leader_epoch, LeaderEpoch(1));
        assert_eq!(after.isr, vec![NodeId(2), NodeId(3)]);
    }

    #[test]
    fn the_last_isr_member_stays_and_only_unclean_election_picks_another_replica() {
        for unclean in [false, true] {
            let mut controller = controller(unclean);
            let mut out = Outbox::new(NodeId(1000));
            let shrink = |controller: &mut Controller, isr: Vec<NodeId>, out: &mut Outbox<ControllerEvent>| {
                let current = state(controller);
                controller.handle_message(Instant::ZERO, NodeId(1), Message::AlterPartitionRequest {
                    correlation_id: 1,
                    broker: NodeId(1), broker_epoch: BrokerEpoch(1), partition: TopicPartition::new("t", 0),
                    leader_epoch: current.leader_epoch, partition_epoch: current.partition_epoch, new_isr: isr,
                }, out);
            };
            shrink(&mut controller, vec![NodeId(1)], &mut out);
            assert_eq!(state(&controller).isr, vec![NodeId(1)]);
            for broker in [2, 3] {
                controller.handle_message(Instant::from_micros(5_000_000), NodeId(broker), Message::BrokerHeartbeat { correlation_id: 1, broker: NodeId(broker), broker_epoch: Some(BrokerEpoch(broker as u64)), metadata_version: 0 }, &mut out);
            }
            controller.handle_timeout(Instant::from_micros(10_000_000), &mut out);
            let after = state(&controller);
            if unclean {
                assert_eq!(after.leader, Some(NodeId(2)), "unclean election picks a live out-of-sync replica");
                assert_eq!(after.isr, vec![NodeId(2)]);
            } else {
                assert_eq!(after.leader, None, "a clean election waits for the last ISR member");
                assert_eq!(after.isr, vec![NodeId(1)]);
            }
        }
    }

    #[test]
    fn a_stale_leader_epoch_cannot_alter_the_isr() {
        let mut controller = controller(false);
        let mut out = Outbox::new(NodeId(1000));
        controller.handle_message(Instant::ZERO, NodeId(1), Message::AlterPartitionRequest {
                    correlation_id: 1,
            broker: NodeId(1), broker_epoch: BrokerEpoch(1), partition: TopicPartition::new("t", 0),
            leader_epoch: LeaderEpoch(7), partition_epoch: PartitionEpoch(0), new_isr: vec![NodeId(1)],
        }, &mut out);
        assert_eq!(state(&controller).isr.len(), 3);
    }
}
