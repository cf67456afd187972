//! A client's view of the cluster: which broker leads each partition, at which
//! epoch. Asked of the least loaded broker (Kafka's `leastLoadedNode`) when
//! first needed, again after errors and disconnects (after `retry.backoff.ms`),
//! and by age (`metadata.max.age.ms`).

use crate::net::{Channel, Destination, NetworkClient};
use crate::node::Outbox;
use crate::protocol::{ClusterMetadata, Message, PartitionState};
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
use std::sync::Arc;
use std::time::Duration;

pub struct MetadataTracker {
    bootstrap: Vec<NodeId>,
    /// Where the search for the least loaded node starts next, so clients and
    /// successive requests spread over the brokers.
    next_broker: usize,
    metadata: Option<Arc<ClusterMetadata>>,
    /// A request is out (its correlation id is in the client's `NetworkClient`).
    in_flight: bool,
    /// A request is due, but no broker's connection is ready yet: the
    /// connection's event (or the `NetworkClient`'s deadline) wakes the client.
    waiting_for_connection: bool,
    stale: bool,
    /// When the last request was answered or failed; None until the first.
    last_attempt: Option<Instant>,
    refreshed_at: Option<Instant>,
    max_age: Duration,
    retry_backoff: Duration,
    request_timeout: Duration,
    /// Counts the views taken, so what a client derives from `current()` (a
    /// partition's leader, a topic's partition count) can be cached until it changes.
    view_id: u64,
}

impl MetadataTracker {
    /// `first_broker` spreads clients over the bootstrap list.
    pub fn new(bootstrap: Vec<NodeId>, first_broker: usize, max_age: Duration, retry_backoff: Duration, request_timeout: Duration) -> MetadataTracker {
        MetadataTracker {
            bootstrap,
            next_broker: first_broker,
            metadata: None,
            in_flight: false,
            waiting_for_connection: false,
            stale: true,
            last_attempt: None,
            refreshed_at: None,
            max_age,
            retry_backoff,
            request_timeout,
            view_id: 0,
        }
    }

    pub fn current(&self) -> Option<&Arc<ClusterMetadata>> {
        self.metadata.as_ref()
    }

    /// Changes whenever `current()` does.
    pub fn view_id(&self) -> u64 {
        self.view_id
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.metadata.as_ref()?.partitions.get(tp)
    }

    pub fn bootstrap(&self) -> &[NodeId] {
        &self.bootstrap
    }

    pub fn request_update(&mut self) {
        self.stale = true;
    }

    fn due_at(&self) -> Option<Instant> {
        if self.in_flight {
            return None;
        }
        match (self.last_attempt, self.refreshed_at) {
            (None, _) => Some(Instant::ZERO),
            (Some(attempt), _) if self.stale => Some(attempt + self.retry_backoff),
            (Some(attempt), refreshed) => Some(refreshed.unwrap_or(attempt) + self.max_age),
        }
    }

    /// When the next request is due; while one is out, its client's
    /// `NetworkClient` keeps the deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.waiting_for_connection {
            return None;
        }
        self.due_at()
    }

    /// Sends a metadata request when one is due and a broker can take it;
    /// `tag` names it in the client's `NetworkClient`.
    pub fn poll<T, E>(&mut self, now: Instant, network: &mut NetworkClient<T>, tag: impl FnOnce() -> T, out: &mut Outbox<E>) {
        self.waiting_for_connection = false;
        if self.due_at().is_none_or(|due| now < due) || self.bootstrap.is_empty() {
            return;
        }
        let Some(node) = network.least_loaded_node(now, &self.bootstrap, self.next_broker, Channel::Default) else {
            // Every broker is backing off: wake when the first may be tried.
            network.want_any(&self.bootstrap, Channel::Default);
            self.waiting_for_connection = true;
            return;
        };
        let destination = Destination::new(node, Channel::Default);
        if !network.ready(now, destination, out) {
            self.waiting_for_connection = true;
            return;
        }
        self.next_broker += 1;
        self.in_flight = true;
        network.send(now, destination, self.request_timeout, tag(), |correlation_id| Message::MetadataRequest { correlation_id }, out);
    }

    /// Takes the answer to this tracker's request.
    pub fn handle_response(&mut self, now: Instant, metadata: Arc<ClusterMetadata>) {
        self.in_flight = false;
        self.stale = false;
        self.last_attempt = Some(now);
        self.refreshed_at = Some(now);
        // Never go back to an older view than one already seen.
        if self.metadata.as_ref().is_none_or(|current| metadata.version >= current.version) {
            self.metadata = Some(metadata);
            self.view_id += 1;
        }
    }

    /// The request got no answer (its connection closed, or it timed out): ask
    /// again, of another broker, after `retry.backoff.ms`.
    pub fn handle_failure(&mut self, now: Instant) {
        self.in_flight = false;
        self.stale = true;
        self.last_attempt = Some(now);
    }
}
