//! The broker's replica fetchers: for the partitions it follows, one request at
//! a time per leader, first finding where its log diverges from the leader's by
//! leader epoch (KIP-101, KIP-279, or the legacy high-watermark truncation behind
//! a test switch), then fetching and appending what the leader has.

use super::{Broker, BrokerEvent, BrokerRequest, Fetcher};
use crate::net::{Channel, Destination};
use crate::node::Outbox;
use crate::config::BrokerMutation;
use crate::partition::Role;
use crate::protocol::{EpochEndOffset, FetchPartition, FetchedData, Message};
use crate::error::ErrorCode;
use crate::time::Instant;
use crate::types::{NodeId, TopicPartition};

impl Broker {
    /// For each leader with an idle fetcher: first find divergence for partitions
    /// that need it (OffsetsForLeaderEpoch), otherwise fetch for all of them.
    /// Runs after every message; most often every fetcher is busy, which the
    /// check, always inlined (`handle_message` is large enough that a plain hint
    /// is not taken), finds without a call.
    #[inline(always)]
    pub(super) fn send_fetches(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        if self.fetchers.iter().any(|(_, fetcher)| is_idle(fetcher, now) && !fetcher.waiting_for_connection) {
            self.send_fetches_slow(now, out);
        }
    }

    /// A connection of the broker's changed: fetchers waiting for it may go.
    pub(super) fn connection_changed(&mut self, destination: crate::net::Destination) {
        if let Some(fetcher) = fetcher_mut(&mut self.fetchers, destination.node) {
            fetcher.waiting_for_connection = false;
        }
    }

    fn send_fetches_slow(&mut self, now: Instant, out: &mut Outbox<BrokerEvent>) {
        // Leaders in id order; a fetcher with nothing left to fetch is dropped.
        let mut index = 0;
        while index < self.fetchers.len() {
            let (leader, fetcher) = &self.fetchers[index];
            if !is_idle(fetcher, now) {
                index += 1;
                continue;
            }
            let leader = *leader;
            // Kafka's fetcher waits for its connection to the leader (`awaitReady`).
            let destination = Destination::new(leader, Channel::Default);
            if !self.network.ready(now, destination, out) {
                self.fetchers[index].1.waiting_for_connection = true;
                index += 1;
                continue;
            }
            let mut to_truncate = Vec::new();
            // Sized once for the most it can hold (every partition here), so the
            // pushes below never grow it.
            let mut to_fetch = Vec::with_capacity(self.partitions.len());
            for (tp, partition) in &mut self.partitions {
                let Role::Follower(state) = &mut partition.role else { continue };
                if state.leader != leader {
                    continue;
                }
                if !state.truncated {
                    match partition.log.latest_epoch() {
                        Some(epoch) => to_truncate.push((tp.clone(), partition.leader_epoch, epoch)),
                        // An empty log has nothing to disagree about.
                        None => state.truncated = true,
                    }
                }
                if state.truncated {
                    to_fetch.push(FetchPartition { partition: tp.clone(), fetch_offset: partition.log.log_end_offset(), current_leader_epoch: partition.leader_epoch });
                }
            }
            if to_truncate.is_empty() && to_fetch.is_empty() {
                self.fetchers.remove(index);
                continue;
            }
            let (me, max_wait) = (self.id, self.config.replica_fetch_wait_max);
            let message = |correlation_id| {
                if !to_truncate.is_empty() {
                    Message::OffsetsForLeaderEpochRequest { correlation_id, partitions: to_truncate }
                } else {
                    Message::FetchRequest { correlation_id, replica_id: Some(me), max_wait, partitions: to_fetch, read_committed: false }
                }
            };
            self.fetchers[index].1.in_flight = true;
            self.network.send(now, destination, self.config.request_timeout, BrokerRequest::Fetcher { leader }, message, out);
            index += 1;
        }
    }

    fn take_in_flight(&mut self, leader: NodeId) -> bool {
        match fetcher_mut(&mut self.fetchers, leader) {
            Some(fetcher) if fetcher.in_flight => {
                fetcher.in_flight = false;
                true
            }
            _ => false,
        }
    }

    fn backoff(&mut self, leader: NodeId, now: Instant) {
        if let Some(fetcher) = fetcher_mut(&mut self.fetchers, leader) {
            fetcher.backoff_until = now + self.config.replica_fetch_backoff;
        }
    }

    /// KIP-279 on the follower, as Kafka's `getOffsetTruncationState`.
    pub(super) fn handle_offsets_for_leader_epoch_response(
        &mut self,
        now: Instant,
        leader: NodeId,
        partitions: Vec<(TopicPartition, Result<EpochEndOffset, ErrorCode>)>,
        out: &mut Outbox<BrokerEvent>,
    ) {
        if !self.take_in_flight(leader) {
            return;
        }
        let mut failed = false;
        for (tp, result) in partitions {
            let Some(partition) = self.partitions.get_mut(&tp) else { continue };
            let Role::Follower(state) = &partition.role else { continue };
            if state.leader != leader || state.truncated {
                continue;
            }
            let answer = match result {
                Ok(answer) => answer,
                Err(_) => {
                    failed = true;
                    continue;
                }
            };
            let before = partition.high_watermark;
            if self.config.mutation == Some(BrokerMutation::FollowerSkipsTruncation) {
                if let Role::Follower(state) = &mut partition.role {
                    state.truncated = true;
                }
            } else {
                partition.truncate_to_leader_answer(answer, &mut out.disk);
            }
            if partition.high_watermark != before {
                out.event(BrokerEvent::HighWatermarkMoved { partition: tp });
            }
        }
        if failed {
            self.backoff(leader, now);
        }
    }

    pub(super) fn handle_fetch_response(&mut self, now: Instant, leader: NodeId, partitions: Vec<(TopicPartition, Result<FetchedData, ErrorCode>)>, out: &mut Outbox<BrokerEvent>) {
        if !self.take_in_flight(leader) {
            return;
        }
        let mut failed = false;
        let flush_interval = self.config.log_flush_interval_messages;
        for (tp, result) in partitions {
            let Some(partition) = self.partitions.get_mut(&tp) else { continue };
            let Role::Follower(state) = &mut partition.role else { continue };
            if state.leader != leader || !state.truncated {
                continue;
            }
            let data = match result {
                Ok(data) => data,
                Err(ErrorCode::OffsetOutOfRange) => {
                    // Our log runs past the leader's: find the divergence again.
                    state.truncated = false;
                    continue;
                }
                Err(_) => {
                    failed = true;
                    continue;
                }
            };
            let before = partition.high_watermark;
            partition.append_fetched(data.batches, data.high_watermark, flush_interval, &mut out.disk);
            if self.config.mutation == Some(BrokerMutation::FollowerHighWatermarkPastLogEnd) {
                partition.high_watermark = data.high_watermark;
            }
            if partition.high_watermark != before {
                out.event(BrokerEvent::HighWatermarkMoved { partition: tp });
            }
        }
        if failed {
            self.backoff(leader, now);
        }
    }
}

/// Adds an idle fetcher for `leader` unless it has one; `fetchers` stays in leader order.
pub(super) fn add_fetcher(fetchers: &mut Vec<(NodeId, Fetcher)>, leader: NodeId) {
    if let Err(index) = fetchers.binary_search_by_key(&leader, |(id, _)| *id) {
        fetchers.insert(index, (leader, Fetcher::default()));
    }
}

/// Whether a fetcher may send: nothing in flight, and not backing off.
fn is_idle(fetcher: &Fetcher, now: Instant) -> bool {
    !fetcher.in_flight && fetcher.backoff_until <= now
}

pub(super) fn fetcher_mut(fetchers: &mut [(NodeId, Fetcher)], leader: NodeId) -> Option<&mut Fetcher> {
    let index = fetchers.binary_search_by_key(&leader, |(id, _)| *id).ok()?;
    Some(&mut fetchers[index].1)
}
