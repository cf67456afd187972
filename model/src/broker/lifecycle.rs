//! The broker's life with the controller (Kafka's `BrokerLifecycleManager`):
//! it registers after every start, heartbeats at `broker.heartbeat.interval.ms`,
//! and learns from the answers its epoch and the cluster's metadata.

use super::{Broker, BrokerEvent, BrokerRequest};
use crate::net::{Channel, Destination};
use crate::node::Outbox;
use crate::protocol::{ClusterMetadata, Message};
use crate::error::ErrorCode;
use crate::time::Instant;
use crate::types::BrokerEpoch;
use std::sync::Arc;
use std::time::Duration;

/// The first retry of a failed heartbeat; it doubles per failure up to the
/// session timeout (`BrokerLifecycleManager`, whose jitter is 2%).
const HEARTBEAT_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The broker's heartbeats to the controller: one at a time, the next
/// `broker.heartbeat.interval.ms` after an answer, sooner after a failure.
pub(super) struct Heartbeat {
    next_at: Instant,
    in_flight: bool,
    /// Due, but the controller's connection is not ready: its event wakes the broker.
    waiting_for_connection: bool,
    failures: u32,
}

impl Heartbeat {
    /// Due at `next_at`, with no failure behind it.
    pub(super) fn due_at(next_at: Instant) -> Heartbeat {
        Heartbeat { next_at, in_flight: false, waiting_for_connection: false, failures: 0 }
    }

    /// When the broker must wake for it, unless an answer or a connection will.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.in_flight && !self.waiting_for_connection).then_some(self.next_at)
    }

    /// The heartbeat failed (timed out or its connection closed): retried after
    /// a backoff that doubles per failure, up to the session timeout.
    pub(super) fn failed(&mut self, now: Instant, session_timeout: Duration) {
        self.in_flight = false;
        let backoff = HEARTBEAT_RETRY_BACKOFF.saturating_mul(1 << self.failures.min(16)).min(session_timeout);
        self.failures += 1;
        self.next_at = now + backoff;
    }
}

impl Broker {
    /// Sends a heartbeat (or, after a restart, a registration) when one is due.
    pub(super) fn maybe_heartbeat(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        self.heartbeat.waiting_for_connection = false;
        if self.heartbeat.in_flight || now < self.heartbeat.next_at {
            return;
        }
        // The active controller is the quorum's leader (KIP-631); until the
        // metadata log finds one, the heartbeat waits for it.
        let Some(controller) = self.metadata_log.controller() else {
            self.heartbeat.waiting_for_connection = true;
            return;
        };
        let controller = Destination::new(controller, Channel::Heartbeat);
        if !self.network.ready(now, controller, out) {
            self.heartbeat.waiting_for_connection = true;
            return;
        }
        self.heartbeat.in_flight = true;
        // How far this broker has applied the metadata log: the controller
        // unfences a new registration once it covers the registration itself.
        let (broker, broker_epoch, metadata_version) = (self.id, self.broker_epoch, self.metadata_log.image().metadata().version);
        // The heartbeat channel's requests time out after half a session (KAFKA-14392).
        let timeout = self.config.broker_session_timeout / 2;
        let message = |correlation_id| Message::BrokerHeartbeat { correlation_id, broker, broker_epoch, metadata_version };
        self.network.send(now, controller, timeout, BrokerRequest::Heartbeat, message, out);
    }

    /// The controller answered: the next heartbeat is due an interval later. A
    /// stale epoch means the controller fenced this incarnation: register anew.
    /// NOT_CONTROLLER: the lead moved; try again soon, wherever the metadata
    /// log says it went.
    pub(super) fn handle_heartbeat_response(&mut self, now: Instant, broker_epoch: BrokerEpoch, error: Option<ErrorCode>, out: &mut Outbox<BrokerEvent>) {
        if error == Some(ErrorCode::NotController) {
            self.heartbeat.failed(now, self.config.broker_session_timeout);
            return;
        }
        self.heartbeat = Heartbeat::due_at(now + self.config.broker_heartbeat_interval);
        if error == Some(ErrorCode::StaleBrokerEpoch) {
            self.broker_epoch = None;
            return;
        }
        self.broker_epoch = Some(broker_epoch);
        self.follow_metadata(now, out);
    }

    /// The metadata log committed more: the broker reports it, and follows it.
    pub(super) fn metadata_applied(&mut self, now: Instant, applied: Option<(u64, Vec<u64>)>, out: &mut Outbox<BrokerEvent>) {
        if let Some((offset, digests)) = applied {
            out.events.push(BrokerEvent::MetadataApplied { offset, digests });
            self.follow_metadata(now, out);
        }
    }

    /// Takes its roles from the metadata log once the log holds this
    /// incarnation's own registration: until then a restarted broker takes no
    /// orders, as what the log says of it may be its previous life's.
    fn follow_metadata(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        let image = self.metadata_log.image();
        let registered = image.state().registrations.get(&self.id).map(|registration| registration.broker_epoch);
        if self.broker_epoch.is_none() || registered != self.broker_epoch || image.metadata().version <= self.metadata.version {
            return;
        }
        let fenced = image.state().registrations.get(&self.id).is_some_and(|registration| registration.fenced);
        let metadata = Arc::new(image.metadata().clone());
        self.apply_metadata(now, metadata, out);
        // Caught up while fenced: tell the controller now rather than at the
        // next interval (BrokerLifecycleManager's `setReadyToUnfence`).
        if fenced && !self.heartbeat.in_flight {
            self.heartbeat.next_at = self.heartbeat.next_at.min(now);
        }
    }

    pub(super) fn apply_metadata(&mut self, now: Instant, metadata: Arc<ClusterMetadata>, out: &mut Outbox<BrokerEvent>) {
        if metadata.version <= self.metadata.version {
            return;
        }
        self.metadata = metadata.clone();
        self.coordinator_deadline.set(None);
        self.transactions.update_metadata(metadata.clone());
        for (tp, state) in &metadata.partitions {
            if !state.replicas.contains(&self.id) {
                continue;
            }
            self.apply_partition_state(now, tp, state, out);
        }
    }
}
