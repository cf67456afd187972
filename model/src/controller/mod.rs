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
//!
//! With KIP-966's eligible leader replicas on (`eligible.leader.replicas.version`
//! = 1) the ISR may become empty instead: replicas that leave an ISR smaller
//! than min.insync.replicas join the partition's ELR, which a clean election
//! falls back on, and a broker that registers anew after an unclean shutdown
//! leaves every ISR and ELR, since it may have lost what it had not flushed.
//! When every replica that could lead has left both that way, the partition's
//! last known leader is elected once it is back (KIP-966's balanced recovery),
//! whatever it lost. This is what Kafka's ReplicationControlManager and
//! PartitionChangeBuilder do; `partition_change.rs` holds the per-partition rules.

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
mod partition_change;
pub mod records;
pub mod snapshot;

use partition_change::{assert_consistent, change_isr, choose_leader, elect, Election};

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
    /// KIP-966's eligible leader replicas.
    pub eligible_leader_replicas: bool,
    /// Below this many ISR members the ELR keeps the replicas that left (KIP-966).
    pub min_insync_replicas: usize,
    pub network: NetworkConfig,
}

impl ControllerConfig {
    pub fn new(brokers: Vec<NodeId>, topics: Vec<TopicSpec>, broker: &BrokerConfig) -> ControllerConfig {
        ControllerConfig {
            brokers,
            topics,
            broker_session_timeout: broker.broker_session_timeout,
            unclean_leader_election_enable: broker.unclean_leader_election_enable,
            eligible_leader_replicas: broker.eligible_leader_replicas_version >= 1,
            min_insync_replicas: broker.min_insync_replicas,
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
                let result = self.handle_alter_partition(broker, broker_epoch, &partition, leader_epoch, partition_epoch, new_isr).map(Box::new);
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
                if let Some(previous) = previous {
                    self.registered_anew(broker, previous);
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
        change_isr(&self.config, state, ordered, None);
        state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
        assert_consistent(partition, state);
        let result = state.clone();
        tracing::info!(partition = %partition, isr = ?result.isr, "controller alters ISR");
        self.dirty = true;
        Ok(result)
    }

    /// A new incarnation of a registered broker: whatever the old one led or
    /// followed is suspect, so it is fenced first. With ELR on it is also an
    /// unclean shutdown (KIP-966's `handleBrokerUncleanShutdown`): kafsim has no
    /// clean shutdown, so every restart is a crash or a power loss, after which
    /// the broker may lack what it acknowledged but had not flushed.
    fn registered_anew(&mut self, broker: NodeId, previous: BrokerRegistration) {
        if self.config.eligible_leader_replicas {
            self.events.push(format!("controller removes broker-{} from every ISR and ELR: it registered anew after an unclean shutdown (KIP-966)", broker.0));
            self.remove_broker(broker, Departure::UncleanShutdown);
        } else if !previous.fenced {
            self.events.push(format!("controller fences broker-{}: it registered anew after a restart", broker.0));
            self.fence(broker);
        }
    }

    /// Moves leadership away from `broker` and drops it from every ISR it can leave.
    fn fence(&mut self, broker: NodeId) {
        self.remove_broker(broker, Departure::Fenced);
    }

    /// Fences `broker` and takes it out of the partitions it replicates: out of
    /// every ISR (with ELR off, never the last member), out of every ELR too
    /// after an unclean shutdown, and out of leadership, electing another
    /// leader where one may be.
    fn remove_broker(&mut self, broker: NodeId, departure: Departure) {
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
        let unclean_shutdown = (departure == Departure::UncleanShutdown).then_some(broker);
        let mut lost_leader = Vec::new();
        for tp in partitions {
            let state = self.state.metadata.partitions.get_mut(&tp).expect("partition listed above");
            let before = (state.isr.clone(), state.elr.clone(), state.last_known_elr.clone());
            // Without ELR the last member stays so that a clean election remains
            // possible when it returns; with ELR the ELR remembers it instead.
            if self.config.eligible_leader_replicas || state.isr.len() > 1 {
                let target_isr = state.isr.iter().copied().filter(|replica| *replica != broker).collect();
                change_isr(&self.config, state, target_isr, unclean_shutdown);
            }
            let mut changed = (&state.isr, &state.elr, &state.last_known_elr) != (&before.0, &before.1, &before.2);
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
                assert_consistent(&tp, state);
            }
        }
    }

    /// Elects a leader for every partition without one, in the order
    /// `partition_change::choose_leader` gives (Kafka's `electAnyLeader`): a
    /// live ISR member; with ELR on and the ISR empty, a live ELR member, which
    /// holds everything below the high watermark (KIP-966) and becomes the
    /// whole ISR; with both empty, the last known leader once it is live; or,
    /// when unclean election is enabled, the first live replica, whose log
    /// becomes the truth.
    fn elect_leaderless(&mut self) -> Vec<TopicPartition> {
        let mut elected = Vec::new();
        let registrations = &self.state.registrations;
        let live = |replica: NodeId| registrations.get(&replica).is_some_and(|registration| !registration.fenced);
        for (tp, state) in self.state.metadata.partitions.iter_mut().filter(|(_, state)| state.leader.is_none()) {
            let Some((leader, election)) = choose_leader(&self.config, state, live) else { continue };
            elect(&self.config, state, leader, election);
            state.leader_epoch = LeaderEpoch(state.leader_epoch.0 + 1);
            state.partition_epoch = PartitionEpoch(state.partition_epoch.0 + 1);
            assert_consistent(tp, state);
            // The trace line is the one kafsim wrote before KIP-966 (Kafka, too,
            // counts the last known leader's election as unclean), so a run
            // without ELR traces, and hashes, as before; the KIP-966 elections
            // say where their leader came from in an event.
            match election {
                Election::Elr => self.events.push(format!("controller elects broker-{} for {tp} from its ELR: its ISR is empty (KIP-966)", leader.0)),
                Election::LastKnownLeader => {
                    self.events.push(format!("controller elects broker-{} for {tp}, its last known leader: its ISR and ELR are empty (KIP-966 balanced recovery)", leader.0))
                }
                Election::Isr | Election::Unclean => {}
            }
            let unclean = matches!(election, Election::LastKnownLeader | Election::Unclean);
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

/// Why a broker leaves the partitions it replicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Departure {
    /// Its session expired, or it registered anew (KIP-631).
    Fenced,
    /// KIP-966: it registered anew after an unclean shutdown, and may have lost
    /// records it had not flushed.
    UncleanShutdown,
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
                elr: Vec::new(),
                last_known_elr: Vec::new(),
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
        controller_with(unclean, false, 1)
    }

    /// As `controller`, with KIP-966's ELR on or off and a min ISR.
    fn controller_with(unclean: bool, eligible_leader_replicas: bool, min_insync_replicas: usize) -> Controller {
        let mut controller = registered(three_brokers(unclean, eligible_leader_replicas, min_insync_replicas), &[1, 2, 3]);
        for broker in 1..=3 {
            controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, Some(broker as u64), 5));
        }
        assert!(controller.registrations().values().all(|registration| !registration.fenced));
        controller
    }

    /// Brokers 1..3 and one partition `t/0` of replication factor 3, led by broker 1.
    fn three_brokers(unclean: bool, eligible_leader_replicas: bool, min_insync_replicas: usize) -> ControllerConfig {
        ControllerConfig {
            brokers: vec![NodeId(1), NodeId(2), NodeId(3)],
            topics: vec![TopicSpec { name: "t".into(), partitions: 1, replication_factor: 3 }],
            broker_session_timeout: Duration::from_secs(9),
            unclean_leader_election_enable: unclean,
            eligible_leader_replicas,
            min_insync_replicas,
            network: NetworkConfig::default(),
        }
    }

    /// The active controller of a bootstrapped cluster where `brokers` (given
    /// broker epochs 1, 2, ... in that order) have registered, still fenced,
    /// with their registrations logged at metadata version 5.
    fn registered(config: ControllerConfig, brokers: &[u32]) -> Controller {
        let bootstrap = Controller::bootstrap(&config);
        let mut controller = Controller::activate(Instant::ZERO, config, bootstrap);
        for broker in brokers {
            controller.handle_request(Instant::ZERO, NodeId(*broker), heartbeat(*broker, None, 0));
        }
        let mut logged = controller.state().clone();
        logged.metadata.version = 5;
        controller.adopt(logged);
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
            eligible_leader_replicas: false,
            min_insync_replicas: 1,
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
        let mut controller = registered(three_brokers(false, false, 1), &[1, 2, 3]);
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
        let mut controller = registered(three_brokers(false, false, 1), &[2, 3]);
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

    fn nodes(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    /// The records so far are committed, and the controller's state is what they rebuild.
    fn commit(controller: &mut Controller) {
        let mut logged = controller.state().clone();
        logged.metadata.version += 1;
        controller.adopt(logged);
    }

    /// A heartbeat from `broker`'s current incarnation, with metadata caught up:
    /// a fenced broker comes back.
    fn resume(controller: &mut Controller, broker: u32) {
        let epoch = controller.registrations()[&NodeId(broker)].broker_epoch;
        let version = controller.metadata().version;
        controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, Some(epoch.0), version));
    }

    /// `broker` restarted: its new incarnation registers (a heartbeat without an epoch).
    fn register_anew(controller: &mut Controller, broker: u32) {
        controller.handle_request(Instant::ZERO, NodeId(broker), heartbeat(broker, None, 0));
        commit(controller);
    }

    /// The leader asks for `new_isr`; the answer's result.
    fn alter_isr(controller: &mut Controller, new_isr: &[u32]) -> Result<PartitionState, ErrorCode> {
        let current = state(controller);
        let leader = current.leader.expect("a leader to ask");
        let request = Message::AlterPartitionRequest {
            correlation_id: 1,
            broker: leader,
            broker_epoch: controller.registrations()[&leader].broker_epoch,
            partition: TopicPartition::new("t", 0),
            leader_epoch: current.leader_epoch,
            partition_epoch: current.partition_epoch,
            new_isr: nodes(new_isr),
        };
        match controller.handle_request(Instant::ZERO, leader, request) {
            Some(Message::AlterPartitionResponse { result, .. }) => result.map(|state| *state),
            other => panic!("an AlterPartition response, not {other:?}"),
        }
    }

    #[test]
    fn with_elr_fencing_below_min_isr_fills_the_elr_and_the_last_member_leaves_the_isr_empty() {
        let mut controller = controller_with(false, true, 2);
        controller.fence(NodeId(3));
        let after = state(&controller);
        assert_eq!((after.isr, after.elr, after.partition_epoch), (nodes(&[1, 2]), nodes(&[]), PartitionEpoch(1)), "at min ISR the ELR stays empty");
        controller.fence(NodeId(2));
        let after = state(&controller);
        assert_eq!((after.isr, after.elr, after.partition_epoch), (nodes(&[1]), nodes(&[2]), PartitionEpoch(2)), "below min ISR the one that left is eligible");
        assert_eq!(after.leader, Some(NodeId(1)));
        controller.fence(NodeId(1));
        let after = state(&controller);
        assert_eq!(after.leader, None, "KIP-966: the last ISR member leaves too");
        assert_eq!((after.isr, after.elr), (nodes(&[]), nodes(&[1, 2])));
        assert_eq!((after.leader_epoch, after.partition_epoch), (LeaderEpoch(1), PartitionEpoch(3)), "one bump each for one change");
    }

    #[test]
    fn an_elr_member_is_elected_when_it_comes_back_and_becomes_the_isr() {
        let mut controller = controller_with(false, true, 2);
        for broker in [3, 2, 1] {
            controller.fence(NodeId(broker));
        }
        resume(&mut controller, 3);
        assert_eq!(state(&controller).leader, None, "broker 3 left a large enough ISR, so it is not eligible");
        resume(&mut controller, 2);
        let after = state(&controller);
        assert_eq!(after.leader, Some(NodeId(2)));
        assert_eq!((after.isr, after.elr), (nodes(&[2]), nodes(&[1])), "the new leader leaves the ELR; below min ISR the rest stay");
        assert_eq!(after.leader_epoch, LeaderEpoch(2));
        let after = alter_isr(&mut controller, &[2, 3]).expect("broker 3 is unfenced");
        assert_eq!((after.isr, after.elr), (nodes(&[2, 3]), nodes(&[])), "back at min ISR the ELR empties");
    }

    #[test]
    fn an_alter_partition_below_min_isr_fills_the_elr_and_a_rejoining_replica_leaves_it() {
        let mut controller = controller_with(false, true, 3);
        let after = alter_isr(&mut controller, &[1, 3]).expect("the leader may shrink its ISR");
        assert_eq!((after.isr, after.elr), (nodes(&[1, 3]), nodes(&[2])));
        let after = alter_isr(&mut controller, &[1]).expect("the leader may shrink its ISR");
        assert_eq!((after.isr, after.elr), (nodes(&[1]), nodes(&[2, 3])));
        let after = alter_isr(&mut controller, &[1, 2]).expect("broker 2 is unfenced");
        assert_eq!((after.isr, after.elr), (nodes(&[1, 2]), nodes(&[3])));
    }

    #[test]
    fn an_unclean_re_registration_drops_the_broker_from_every_isr_and_elr() {
        let mut controller = controller_with(false, true, 2);
        controller.fence(NodeId(3));
        controller.fence(NodeId(2));
        resume(&mut controller, 2);
        assert_eq!((state(&controller).leader, state(&controller).elr), (Some(NodeId(1)), nodes(&[2])), "broker 2 is back but not yet in sync");
        // The leader restarts: it may have lost what it had not flushed.
        let before = state(&controller);
        register_anew(&mut controller, 1);
        let after = state(&controller);
        assert_eq!(after.leader, Some(NodeId(2)), "the eligible replica is elected, not the restarted leader");
        assert_eq!((after.isr, after.elr), (nodes(&[2]), nodes(&[])));
        assert_eq!(after.leader_epoch, LeaderEpoch(before.leader_epoch.0 + 1));
        // An ELR member that restarts leaves the ELR.
        let mut controller = controller_with(false, true, 2);
        for broker in [3, 2, 1] {
            controller.fence(NodeId(broker));
        }
        register_anew(&mut controller, 1);
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr), (None, nodes(&[]), nodes(&[2])));
        resume(&mut controller, 1);
        assert_eq!(state(&controller).leader, None, "a replica back from an unclean shutdown is not eligible");
    }

    #[test]
    fn with_elr_off_the_elr_stays_empty_and_a_restarted_last_member_is_elected_again() {
        let mut controller = controller_with(false, false, 2);
        for broker in [3, 2, 1] {
            controller.fence(NodeId(broker));
        }
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr), (None, nodes(&[1]), nodes(&[])), "the last ISR member stays");
        register_anew(&mut controller, 1);
        assert_eq!(state(&controller).isr, nodes(&[1]), "without KIP-966 a restart is no reason to leave the ISR");
        resume(&mut controller, 1);
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr), (Some(NodeId(1)), nodes(&[1]), nodes(&[])), "the restarted broker leads again, whatever it lost");
        assert!(after.last_known_elr.is_empty(), "without KIP-966 no last known leader is kept");
    }

    /// KIP-966's balanced recovery: once every replica that could lead is back
    /// from an unclean shutdown, the leader the partition had when its ISR
    /// emptied leads again, with unclean election off, as soon as it is live.
    #[test]
    fn with_isr_and_elr_emptied_by_unclean_shutdowns_the_last_known_leader_is_elected_once_live() {
        let mut controller = controller_with(false, true, 2);
        for broker in [3, 2, 1] {
            controller.fence(NodeId(broker));
        }
        let after = state(&controller);
        assert_eq!((after.isr, after.elr, after.last_known_elr), (nodes(&[]), nodes(&[1, 2]), nodes(&[1])), "the leader when the ISR emptied");
        register_anew(&mut controller, 1);
        register_anew(&mut controller, 2);
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr, after.last_known_elr), (None, nodes(&[]), nodes(&[]), nodes(&[1])), "an unclean shutdown leaves the last known leader in place");
        resume(&mut controller, 2);
        resume(&mut controller, 3);
        assert_eq!(state(&controller).leader, None, "no other replica may lead with unclean election off");
        let before = state(&controller);
        resume(&mut controller, 1);
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr, after.last_known_elr), (Some(NodeId(1)), nodes(&[1]), nodes(&[]), nodes(&[])), "the ISR is forced to the leader");
        assert_eq!((after.leader_epoch, after.partition_epoch), (LeaderEpoch(before.leader_epoch.0 + 1), PartitionEpoch(before.partition_epoch.0 + 1)));
        assert!(controller.take_events().iter().any(|event| event.contains("last known leader")));

        // With min ISR 1 the last ISR member is never in the ELR while it leads,
        // so its own restart leaves it the last known leader, elected again
        // whatever it lost: what happened before KIP-966.
        let mut controller = controller_with(false, true, 1);
        controller.fence(NodeId(3));
        controller.fence(NodeId(2));
        register_anew(&mut controller, 1);
        let after = state(&controller);
        assert_eq!((after.leader, after.isr, after.elr, after.last_known_elr), (None, nodes(&[]), nodes(&[]), nodes(&[1])));
        resume(&mut controller, 1);
        assert_eq!(state(&controller).leader, Some(NodeId(1)));
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The broker's session runs out.
        Fence(u32),
        /// The broker's current incarnation heartbeats, caught up.
        Resume(u32),
        /// The broker restarts and registers anew.
        RegisterAnew(u32),
        /// The leader asks for an ISR of itself and these.
        AlterIsr(Vec<u32>),
    }

    fn any_step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (1u32..=3).prop_map(Step::Fence),
            (1u32..=3).prop_map(Step::Resume),
            (1u32..=3).prop_map(Step::RegisterAnew),
            proptest::sample::subsequence(vec![1u32, 2, 3], 0..=3).prop_map(Step::AlterIsr),
        ]
    }

    proptest::proptest! {
        /// KIP-966 under any interleaving of fencing, returning, restarting and
        /// ISR changes: a leader is in the ISR, the ISR and ELR are disjoint sets
        /// of replicas, a fenced broker is in no ISR, a restarted one is in
        /// neither, a last known leader is kept only while the partition has no
        /// leader and no ISR, a new leader comes from the ISR, the ELR or (both
        /// empty) the last known leader unless unclean election is on, and no
        /// partition stays leaderless while someone may lead it.
        #[test]
        fn with_elr_every_leader_is_elected_from_the_isr_elr_or_last_known_leader(
            unclean in proptest::bool::ANY,
            min_insync_replicas in 1usize..=3,
            steps in proptest::collection::vec(any_step(), 1..40),
        ) {
            let mut controller = controller_with(unclean, true, min_insync_replicas);
            for step in steps {
                let before = state(&controller);
                let fenced = |controller: &Controller, broker: u32| controller.registrations()[&NodeId(broker)].fenced;
                match &step {
                    Step::Fence(broker) if !fenced(&controller, *broker) => controller.fence(NodeId(*broker)),
                    Step::Fence(_) => {}
                    Step::Resume(broker) => resume(&mut controller, *broker),
                    Step::RegisterAnew(broker) => register_anew(&mut controller, *broker),
                    Step::AlterIsr(others) => {
                        if let Some(leader) = before.leader {
                            let mut new_isr = others.clone();
                            new_isr.push(leader.0);
                            let _ = alter_isr(&mut controller, &new_isr);
                        }
                    }
                }
                commit(&mut controller);
                let after = state(&controller);
                let context = format!("{step:?}: {before:?} -> {after:?}");
                if let Some(leader) = after.leader {
                    proptest::prop_assert!(after.isr.contains(&leader), "leader outside the ISR after {}", context);
                    if after.leader != before.leader && !unclean {
                        let last_known_leader = before.last_known_elr == [leader];
                        proptest::prop_assert!(
                            before.isr.contains(&leader) || before.elr.contains(&leader) || last_known_leader,
                            "leader from outside the ISR, ELR and last known leader after {}",
                            context
                        );
                        if !before.isr.contains(&leader) && !before.elr.contains(&leader) {
                            proptest::prop_assert!(after.isr == [leader] && after.elr.is_empty(), "a last known leader elected beside others after {}", context);
                        }
                    }
                }
                proptest::prop_assert!(after.last_known_elr.len() <= 1, "{}", context);
                if !after.last_known_elr.is_empty() {
                    proptest::prop_assert!(after.leader.is_none() && after.isr.is_empty(), "a last known leader beside a leader or ISR after {}", context);
                }
                let registrations = controller.registrations();
                let live = |replica: NodeId| registrations.get(&replica).is_some_and(|registration| !registration.fenced);
                if after.leader.is_none() {
                    proptest::prop_assert_eq!(choose_leader(&controller.config, &after, live), None, "a partition left leaderless that may be led after {}", context);
                }
                proptest::prop_assert!(after.isr.iter().all(|replica| after.replicas.contains(replica) && !after.elr.contains(replica)), "{}", context);
                proptest::prop_assert!(after.elr.iter().all(|replica| after.replicas.contains(replica)), "{}", context);
                proptest::prop_assert!(after.isr.iter().all(|replica| !fenced(&controller, replica.0)), "a fenced ISR member after {}", context);
                if after.isr.len() >= min_insync_replicas {
                    proptest::prop_assert!(after.elr.is_empty(), "an ELR at min ISR after {}", context);
                }
                if let Step::RegisterAnew(broker) = step {
                    proptest::prop_assert!(!after.isr.contains(&NodeId(broker)) && !after.elr.contains(&NodeId(broker)), "{}", context);
                }
                if (&after.leader, &after.isr, &after.elr, &after.last_known_elr) != (&before.leader, &before.isr, &before.elr, &before.last_known_elr) {
                    proptest::prop_assert!(after.partition_epoch > before.partition_epoch, "a change without a partition epoch bump: {}", context);
                }
            }
        }
    }
}
