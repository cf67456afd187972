//! The controller's decisions: broker registration and fencing by heartbeat
//! (KIP-631), partition leader election, and ISR changes (KIP-497
//! AlterPartition), on the state the metadata log holds.
//!
//! The controller does no IO of its own: `kraft::QuorumController` runs it
//! only while its node leads the controller quorum (KIP-595), logs every
//! change it makes as metadata records, and answers a request only once
//! those records are committed. Fencing follows KRaft: a fenced broker leaves
//! every ISR, except that an ISR never becomes empty (its last member stays,
//! so a clean election remains possible when that broker returns).

use crate::config::BrokerConfig;
use crate::config::NetworkConfig;
use crate::protocol::{ClusterMetadata, Message, PartitionState};
use crate::error::ErrorCode;
use crate::time::Instant;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub mod kraft;
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

/// A registration waits for this version until its records are logged
/// (`Controller::adopt` fills in the real one).
const NOT_YET_LOGGED: u64 = u64::MAX;

pub struct Controller {
    config: ControllerConfig,
    state: ControllerSnapshot,
    last_heartbeat: BTreeMap<NodeId, Instant>,
    /// KIP-631: a registered, fenced broker is unfenced once its heartbeat
    /// reports metadata at least this recent: it has applied its own registration.
    unfence_at: BTreeMap<NodeId, u64>,
    /// Something changed since the last `take_changed`.
    dirty: bool,
    /// What changed, in words, for the trace.
    events: Vec<String>,
}

impl Controller {
    /// The cluster as it is bootstrapped, before the metadata log's first
    /// record: the topics, and no broker registered. Kafka assigns replicas
    /// round-robin from a random broker; here partition `p`'s replicas start
    /// at broker `p mod n`, which is as balanced and needs no randomness.
    pub fn bootstrap(config: &ControllerConfig) -> ControllerSnapshot {
        ControllerSnapshot { next_broker_epoch: 1, registrations: BTreeMap::new(), metadata: bootstrap_metadata(config) }
    }

    /// The controller of a node that has just become the active one, from the
    /// committed metadata. Every registered broker gets a full session before
    /// it is fenced, and a fenced one must catch up with everything committed
    /// so far before it is unfenced.
    pub fn activate(now: Instant, config: ControllerConfig, state: ControllerSnapshot) -> Controller {
        // Every broker, registered or not yet, gets a full session from now.
        let last_heartbeat = config.brokers.iter().map(|broker| (*broker, now)).collect();
        let version = state.metadata.version;
        let unfence_at = state.registrations.iter().filter(|(_, registration)| registration.fenced).map(|(broker, _)| (*broker, version)).collect();
        Controller { config, state, last_heartbeat, unfence_at, dirty: false, events: Vec::new() }
    }

    pub fn state(&self) -> &ControllerSnapshot {
        &self.state
    }

    pub fn metadata(&self) -> &ClusterMetadata {
        &self.state.metadata
    }

    pub fn registrations(&self) -> &BTreeMap<NodeId, BrokerRegistration> {
        &self.state.registrations
    }

    /// Whether anything changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }

    /// Takes the state the logged records rebuild (the same registrations and
    /// partitions, with the log's version and broker list), so the active
    /// controller's state is exactly what its log says.
    pub fn adopt(&mut self, state: ControllerSnapshot) {
        for version in self.unfence_at.values_mut().filter(|version| **version == NOT_YET_LOGGED) {
            *version = state.metadata.version;
        }
        self.state = state;
    }

    fn session_deadline(&self) -> Option<Instant> {
        self.last_heartbeat
            .iter()
            .filter(|(broker, _)| self.has_session(**broker))
            .map(|(_, last)| *last + self.config.broker_session_timeout)
            .min()
    }

    /// Whether `broker`'s heartbeats must keep coming: it is unfenced, or it
    /// still leads a partition. The second happens only to the leaders the
    /// cluster was bootstrapped with, which lead before they register or are
    /// unfenced (Kafka creates topics on registered brokers); one that dies
    /// before then must still lose its leaderships.
    fn has_session(&self, broker: NodeId) -> bool {
        let unfenced = self.state.registrations.get(&broker).is_some_and(|registration| !registration.fenced);
        unfenced || self.state.metadata.partitions.values().any(|state| state.leader == Some(broker))
    }

    /// A broker's request; the answer, if it has one. The caller sends it
    /// once the changes it made are committed.
    pub fn handle_request(&mut self, now: Instant, from: NodeId, message: Message) -> Option<Message> {
        match message {
            Message::BrokerHeartbeat { correlation_id, broker, broker_epoch, metadata_version } if broker == from => {
                Some(self.handle_heartbeat(now, correlation_id, broker, broker_epoch, metadata_version))
            }
            Message::AlterPartitionRequest { correlation_id, broker, broker_epoch, partition, leader_epoch, partition_epoch, new_isr } => {
                let result = self.handle_alter_partition(broker, broker_epoch, &partition, leader_epoch, partition_epoch, new_isr);
                Some(Message::AlterPartitionResponse { correlation_id, partition, result })
            }
            _ => None,
        }
    }

    /// KIP-631: a heartbeat without an epoch registers a new incarnation,
    /// fenced until it has caught up with the metadata log; one with the
    /// current epoch keeps the session alive and unfences a broker that has.
    fn handle_heartbeat(&mut self, now: Instant, correlation_id: u64, broker: NodeId, broker_epoch: Option<BrokerEpoch>, metadata_version: u64) -> Message {
        let stale = |epoch| Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: epoch, error: Some(ErrorCode::StaleBrokerEpoch) };
        if !self.config.brokers.contains(&broker) {
            return stale(BrokerEpoch(0));
        }
        let registered = self.state.registrations.get(&broker).copied();
        let epoch = match (broker_epoch, registered) {
            (None, previous) => {
                // A new incarnation: whatever the old one led or followed is suspect,
                // so fence it first.
                if previous.is_some_and(|registration| !registration.fenced) {
                    self.events.push(format!("controller fences broker-{}: it registered anew after a restart", broker.0));
                    self.fence(broker);
                }
                let epoch = BrokerEpoch(self.state.next_broker_epoch);
                self.state.next_broker_epoch += 1;
                self.state.registrations.insert(broker, BrokerRegistration { broker_epoch: epoch, fenced: true });
                self.unfence_at.insert(broker, NOT_YET_LOGGED);
                self.events.push(format!("controller registers broker-{} with broker epoch {}, fenced until it catches up", broker.0, epoch.0));
                self.dirty = true;
                epoch
            }
            (Some(epoch), Some(registration)) if registration.broker_epoch == epoch => {
                let caught_up = self.unfence_at.get(&broker).is_none_or(|version| metadata_version >= *version);
                if registration.fenced && caught_up {
                    self.unfence_at.remove(&broker);
                    self.state.registrations.insert(broker, BrokerRegistration { broker_epoch: epoch, fenced: false });
                    self.events.push(format!("controller unfences broker-{}: its metadata caught up", broker.0));
                    self.dirty = true;
                    self.elect_leaderless();
                }
                epoch
            }
            (Some(epoch), _) => return stale(epoch),
        };
        self.last_heartbeat.insert(broker, now);
        Message::BrokerHeartbeatResponse { correlation_id, broker_epoch: epoch, error: None }
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

    /// Fences every broker whose session ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<NodeId> = self
            .last_heartbeat
            .iter()
            .filter(|(broker, last)| now.saturating_since(**last) >= self.config.broker_session_timeout && self.has_session(**broker))
            .map(|(broker, _)| *broker)
            .collect();
        for broker in expired {
            let event = match self.state.registrations.get(&broker) {
                Some(_) => format!("controller fences broker-{}: session timed out", broker.0),
                None => format!("controller fences broker-{}: it never registered within its session", broker.0),
            };
            self.events.push(event);
            self.fence(broker);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.session_deadline()
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
    // The broker list is the unfenced registered brokers, as the metadata log
    // makes it (`MetadataImage`): none yet.
    ClusterMetadata { version: 1, brokers: Vec::new(), partitions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(broker: u32, broker_epoch: Option<u64>, metadata_version: u64) -> Message {
        Message::BrokerHeartbeat { correlation_id: 1, broker: NodeId(broker), broker_epoch: broker_epoch.map(BrokerEpoch), metadata_version }
    }

    /// Three brokers registered (epochs 1..3) and unfenced, as if each had
    /// reported metadata that holds its registration.
    fn controller(unclean: bool) -> Controller {
        let config = ControllerConfig {
            brokers: vec![NodeId(1), NodeId(2), NodeId(3)],
            topics: vec![TopicSpec { name: "t".into(), partitions: 1, replication_factor: 3 }],
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: unclean,
            network: NetworkConfig::default(),
        };
        let bootstrap = Controller::bootstrap(&config);
        let mut controller = Controller::activate(Instant::ZERO, config, bootstrap);
        for broker in 1..=3 {
            controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, None, 0));
        }
        let mut logged = controller.state().clone();
        logged.metadata.version = 5;
        controller.adopt(logged);
        for broker in 1..=3 {
            controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, Some(broker as u64), 5));
        }
        assert!(controller.registrations().values().all(|registration| !registration.fenced));
        controller
    }

    fn state(controller: &Controller) -> PartitionState {
        controller.metadata().partitions[&TopicPartition::new("t", 0)].clone()
    }

    #[test]
    fn a_new_registration_stays_fenced_until_its_metadata_holds_it() {
        let config = ControllerConfig {
            brokers: vec![NodeId(1)],
            topics: Vec::new(),
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: false,
            network: NetworkConfig::default(),
        };
        let bootstrap = Controller::bootstrap(&config);
        let mut controller = Controller::activate(Instant::ZERO, config, bootstrap);
        controller.handle_request(Instant::ZERO, NodeId(1), heartbeat(1, None, 0));
        let mut logged = controller.state().clone();
        logged.metadata.version = 3;
        controller.adopt(logged);
        controller.handle_request(Instant::ZERO, NodeId(1), heartbeat(1, Some(1), 2));
        assert!(controller.registrations()[&NodeId(1)].fenced, "metadata version 2 predates the registration (3)");
        controller.handle_request(Instant::ZERO, NodeId(1), heartbeat(1, Some(1), 3));
        assert!(!controller.registrations()[&NodeId(1)].fenced, "caught up: unfenced (KIP-631)");
    }

    /// The bootstrapped leader (broker 1) registers and dies before it is
    /// unfenced: its session still runs out and its leadership moves.
    #[test]
    fn a_bootstrapped_leader_that_dies_before_it_is_unfenced_loses_its_leadership() {
        let config = ControllerConfig {
            brokers: vec![NodeId(1), NodeId(2), NodeId(3)],
            topics: vec![TopicSpec { name: "t".into(), partitions: 1, replication_factor: 3 }],
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: false,
            network: NetworkConfig::default(),
        };
        let bootstrap = Controller::bootstrap(&config);
        let mut controller = Controller::activate(Instant::ZERO, config, bootstrap);
        for broker in 1..=3 {
            controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, None, 0));
        }
        let mut logged = controller.state().clone();
        logged.metadata.version = 5;
        controller.adopt(logged);
        let later = Instant::ZERO + Duration::from_secs(9);
        for broker in [2, 3] {
            controller.handle_request(later, NodeId(broker), heartbeat(broker, Some(broker as u64), 5));
        }
        assert!(controller.registrations()[&NodeId(1)].fenced, "broker 1 never caught up");
        assert_eq!(state(&controller).leader, Some(NodeId(1)), "the bootstrapped leader");
        assert_eq!(controller.next_deadline(), Some(later), "broker 1's session still counts");
        controller.handle_timeout(later);
        assert_eq!(state(&controller).leader, Some(NodeId(2)));
        assert!(controller.next_deadline().is_some_and(|deadline| deadline > later), "nothing left to fence now");
    }

    /// The same for a bootstrapped leader that never registers at all.
    #[test]
    fn a_bootstrapped_leader_that_never_registers_loses_its_leadership() {
        let config = ControllerConfig {
            brokers: vec![NodeId(1), NodeId(2), NodeId(3)],
            topics: vec![TopicSpec { name: "t".into(), partitions: 1, replication_factor: 3 }],
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: false,
            network: NetworkConfig::default(),
        };
        let bootstrap = Controller::bootstrap(&config);
        let mut controller = Controller::activate(Instant::ZERO, config, bootstrap);
        for broker in [2, 3] {
            controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, None, 0));
        }
        let mut logged = controller.state().clone();
        logged.metadata.version = 5;
        controller.adopt(logged);
        let later = Instant::ZERO + Duration::from_secs(9);
        for broker in [2, 3] {
            controller.handle_request(later, NodeId(broker), heartbeat(broker, Some(broker as u64 - 1), 5));
        }
        assert_eq!(controller.next_deadline(), Some(later));
        controller.handle_timeout(later);
        assert_eq!(state(&controller).leader, Some(NodeId(2)));
        assert!(controller.take_events().iter().any(|event| event.contains("never registered")));
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_and_bumps_the_epoch() {
        let mut controller = controller(false);
        assert_eq!(state(&controller).leader, Some(NodeId(1)));
        // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
        for broker in [2, 3] {
            controller.handle_request(Instant::from_micros(5_000_000), NodeId(broker), heartbeat(broker, Some(broker as u64), 5));
        }
        controller.handle_timeout(Instant::from_micros(10_000_000));
        let after = state(&controller);
        assert_eq!(after.leader, Some(NodeId(2)));
        assert_eq!(after.leader_epoch, LeaderEpoch(1));
        assert_eq!(after.isr, vec![NodeId(2), NodeId(3)]);
    }

    #[test]
    fn the_last_isr_member_stays_and_only_unclean_election_picks_another_replica() {
        for unclean in [false, true] {
            let mut controller = controller(unclean);
            let current = state(&controller);
            let shrink = Message::AlterPartitionRequest {
                correlation_id: 1,
                broker: NodeId(1),
                broker_epoch: BrokerEpoch(1),
                partition: TopicPartition::new("t", 0),
                leader_epoch: current.leader_epoch,
                partition_epoch: current.partition_epoch,
                new_isr: vec![NodeId(1)],
            };
            controller.handle_request(Instant::ZERO, NodeId(1), shrink);
            assert_eq!(state(&controller).isr, vec![NodeId(1)]);
            for broker in [2, 3] {
                controller.handle_request(Instant::from_micros(5_000_000), NodeId(broker), heartbeat(broker, Some(broker as u64), 5));
            }
            controller.handle_timeout(Instant::from_micros(10_000_000));
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
        let answer = controller.handle_request(Instant::ZERO, NodeId(1), Message::AlterPartitionRequest {
            correlation_id: 1,
            broker: NodeId(1),
            broker_epoch: BrokerEpoch(1),
            partition: TopicPartition::new("t", 0),
            leader_epoch: LeaderEpoch(7),
            partition_epoch: PartitionEpoch(0),
            new_isr: vec![NodeId(1)],
        });
        assert!(matches!(answer, Some(Message::AlterPartitionResponse { result: Err(ErrorCode::FencedLeaderEpoch), .. })));
        assert_eq!(state(&controller).isr.len(), 3);
    }

    #[test]
    fn a_stale_broker_epoch_cannot_alter_the_isr() {
        let mut controller = controller(false);
        let current = state(&controller);
        let answer = controller.handle_request(Instant::ZERO, NodeId(1), Message::AlterPartitionRequest {
            correlation_id: 1,
            broker: NodeId(1),
            broker_epoch: BrokerEpoch(0),
            partition: TopicPartition::new("t", 0),
            leader_epoch: current.leader_epoch,
            partition_epoch: current.partition_epoch,
            new_isr: vec![NodeId(1)],
        });
        assert!(matches!(answer, Some(Message::AlterPartitionResponse { result: Err(ErrorCode::StaleBrokerEpoch), .. })));
        assert_eq!(state(&controller).isr.len(), 3);
    }
}
