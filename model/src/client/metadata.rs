//! A client's view of the cluster: which broker leads each partition, at which
//! epoch. Refreshed from any broker (bootstrap), on errors and by age.

use crate::protocol::{ClusterMetadata, Message, PartitionState, Send};
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};
use std::sync::Arc;
use std::time::Duration;

/// A metadata request that gets no answer in this long goes to the next broker:
/// Kafka would see the connection refused or time out and pick another node.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Kafka's retry.backoff.ms between metadata refreshes.
const METADATA_REFRESH_BACKOFF: Duration = Duration::from_millis(100);

pub struct MetadataTracker {
    bootstrap: Vec<NodeId>,
    next_broker: usize,
    metadata: Option<Arc<ClusterMetadata>>,
    in_flight: Option<(u64, Instant)>,
    stale: bool,
    /// When the last answer came; None until the first, which is asked for at once.
    refreshed_at: Option<Instant>,
    max_age: Duration,
    /// Counts the views taken, so what a client derives from `current()` (a
    /// partition's leader, a topic's partition count) can be cached until it changes.
    view_id: u64,
}

impl MetadataTracker {
    /// `first_broker` spreads clients over the bootstrap list.
    pub fn new(bootstrap: Vec<NodeId>, first_broker: usize, max_age: Duration) -> MetadataTracker {
        MetadataTracker { bootstrap, next_broker: first_broker, metadata: None, in_flight: None, stale: true, refreshed_at: None, max_age, view_id: 0 }
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

    pub fn request_update(&mut self) {
        self.stale = true;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.in_flight, self.refreshed_at) {
            (Some((_, sent)), _) => Some(sent + METADATA_REQUEST_TIMEOUT),
            (None, None) => Some(Instant::ZERO),
            (None, Some(refreshed)) if self.stale => Some(refreshed + METADATA_REFRESH_BACKOFF),
            (None, Some(refreshed)) => Some(refreshed + self.max_age),
        }
    }

    /// Sends a metadata request when one is due; `correlation_id` is used if it is.
    pub fn poll(&mut self, now: Instant, correlation_id: u64, out: &mut Vec<Send>) -> bool {
        if let Some((_, sent)) = self.in_flight {
            if now.saturating_since(sent) < METADATA_REQUEST_TIMEOUT {
                return false;
            }
            self.in_flight = None;
            self.stale = true;
        }
        let due = match self.refreshed_at {
            None => true,
            Some(refreshed) if self.stale => now >= refreshed + METADATA_REFRESH_BACKOFF,
            Some(refreshed) => now >= refreshed + self.max_age,
        };
        if !due || self.bootstrap.is_empty() {
            return false;
        }
        let to = self.bootstrap[self.next_broker % self.bootstrap.len()];
        self.next_broker += 1;
        self.in_flight = Some((correlation_id, now));
        out.push(Send { to, message: Message::MetadataRequest { correlation_id } });
        true
    }

    /// Takes a metadata response; returns whether it was the one awaited.
    pub fn handle_response(&mut self, now: Instant, correlation_id: u64, metadata: Arc<ClusterMetadata>) -> bool {
        if self.in_flight.map(|(id, _)| id) != Some(correlation_id) {
            return false;
        }
        self.in_flight = None;
        self.stale = false;
        self.refreshed_at = Some(now);
        // Never go back to an older view than one already seen.
        if self.metadata.as_ref().is_none_or(|current| metadata.version >= current.version) {
            self.metadata = Some(metadata);
            self.view_id += 1;
        }
        true
    }
}
