//! Kafka's consumer with manual assignment: positions per partition, reset by
//! auto.offset.reset through ListOffsets, fetches to each partition's leader
//! carrying the leader epoch (KIP-320), and records handed out as they arrive.
//! Consumer groups come later; `assign` takes every partition of its topics.

use super::metadata::MetadataTracker;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::protocol::{ErrorCode, FetchPartition, Message, OffsetSpec, Send};
use crate::record::Record;
use crate::time::{earliest, Instant};
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum ConsumerOutput {
    Send(Send),
    /// Records from one fetch, in offset order per partition.
    Records(Vec<(TopicPartition, Offset, Record)>),
    /// The position moved without reading.
    Seek { partition: TopicPartition, offset: Offset, reason: &'static str },
    /// A partition's position is out of range and auto.offset.reset is "none".
    Error { partition: TopicPartition, error: ErrorCode },
}

#[derive(Default)]
struct Assignment {
    position: Option<Offset>,
    /// Set while a ListOffsets request for this partition is out.
    reset_in_flight: Option<(u64, Instant)>,
    backoff_until: Option<Instant>,
    high_watermark: Offset,
}

pub struct Consumer {
    config: ConsumerConfig,
    topics: Vec<Arc<str>>,
    metadata: MetadataTracker,
    assignments: BTreeMap<TopicPartition, Assignment>,
    /// One fetch at a time per broker, as Kafka's fetcher keeps one per node.
    fetches: BTreeMap<NodeId, (u64, Instant)>,
    next_correlation_id: u64,
}

impl Consumer {
    pub fn new(config: ConsumerConfig, topics: Vec<Arc<str>>, bootstrap: Vec<NodeId>, first_broker: usize) -> Consumer {
        let metadata = MetadataTracker::new(bootstrap, first_broker, config.metadata_max_age);
        Consumer { config, topics, metadata, assignments: BTreeMap::new(), fetches: BTreeMap::new(), next_correlation_id: 0 }
    }

    pub fn positions(&self) -> BTreeMap<TopicPartition, Offset> {
        self.assignments.iter().filter_map(|(tp, assignment)| assignment.position.map(|position| (tp.clone(), position))).collect()
    }

    /// Whether every assigned partition's position reached the high watermark its
    /// leader last reported.
    pub fn caught_up(&self) -> bool {
        !self.assignments.is_empty()
            && self.assignments.values().all(|assignment| assignment.position.is_some_and(|position| position >= assignment.high_watermark))
    }

    fn correlation(&mut self) -> u64 {
        self.next_correlation_id += 1;
        self.next_correlation_id
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.metadata.next_deadline();
        for (_, sent) in self.fetches.values() {
            deadline = earliest(deadline, Some(*sent + self.config.fetch_max_wait + self.config.request_timeout));
        }
        for assignment in self.assignments.values() {
            deadline = earliest(deadline, assignment.backoff_until);
            if let Some((_, sent)) = assignment.reset_in_flight {
                deadline = earliest(deadline, Some(sent + self.config.request_timeout));
            }
        }
        deadline
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<ConsumerOutput>) {
        let timeout = self.config.request_timeout;
        let max_wait = self.config.fetch_max_wait;
        let before = self.fetches.len();
        self.fetches.retain(|_, (_, sent)| now.saturating_since(*sent) < max_wait + timeout);
        if self.fetches.len() != before {
            tracing::info!("consumer fetch timed out");
            self.metadata.request_update();
        }
        for assignment in self.assignments.values_mut() {
            if assignment.backoff_until.is_some_and(|until| until <= now) {
                assignment.backoff_until = None;
            }
            if assignment.reset_in_flight.is_some_and(|(_, sent)| now.saturating_since(sent) >= timeout) {
                assignment.reset_in_flight = None;
            }
        }
        let correlation_id = self.correlation();
        let mut sends = Vec::new();
        self.metadata.poll(now, correlation_id, &mut sends);
        out.extend(sends.into_iter().map(ConsumerOutput::Send));
        self.assign_from_metadata();
        self.reset_positions(now, out);
        self.send_fetches(now, out);
    }

    fn assign_from_metadata(&mut self) {
        let Some(metadata) = self.metadata.current() else { return };
        let mut known = false;
        for tp in metadata.partitions.keys().filter(|tp| self.topics.contains(&tp.topic)) {
            known = true;
            if !self.assignments.contains_key(tp) {
                self.assignments.insert(tp.clone(), Assignment::default());
            }
        }
        if !known {
            // The broker answered before it knew the topic: ask again.
            self.metadata.request_update();
        }
    }

    fn leader_of(&self, tp: &TopicPartition) -> Option<(NodeId, LeaderEpoch)> {
        let state = self.metadata.partition(tp)?;
        Some((state.leader?, state.leader_epoch))
    }

    fn reset_positions(&mut self, now: Instant, out: &mut Vec<ConsumerOutput>) {
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => return,
        };
        let needing: Vec<TopicPartition> = self
            .assignments
            .iter()
            .filter(|(_, assignment)| assignment.position.is_none() && assignment.reset_in_flight.is_none() && assignment.backoff_until.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in needing {
            let Some((leader, current_leader_epoch)) = self.leader_of(&tp) else {
                self.metadata.request_update();
                continue;
            };
            let correlation_id = self.correlation();
            if let Some(assignment) = self.assignments.get_mut(&tp) {
                assignment.reset_in_flight = Some((correlation_id, now));
            }
            let message = Message::ListOffsetsRequest { correlation_id, partition: tp, spec, current_leader_epoch };
            out.push(ConsumerOutput::Send(Send { to: leader, message }));
        }
    }

    fn send_fetches(&mut self, now: Instant, out: &mut Vec<ConsumerOutput>) {
        let mut by_leader: BTreeMap<NodeId, Vec<FetchPartition>> = BTreeMap::new();
        let mut leaderless = false;
        for (tp, assignment) in &self.assignments {
            let Some(position) = assignment.position else { continue };
            if assignment.backoff_until.is_some() {
                continue;
            }
            let Some((leader, current_leader_epoch)) = self.leader_of(tp) else {
                leaderless = true;
                continue;
            };
            if self.fetches.contains_key(&leader) {
                continue;
            }
            by_leader.entry(leader).or_default().push(FetchPartition { partition: tp.clone(), fetch_offset: position, current_leader_epoch });
        }
        if leaderless {
            // Kafka's consumer asks for fresh metadata while a partition has no leader.
            self.metadata.request_update();
        }
        for (leader, partitions) in by_leader {
            let correlation_id = self.correlation();
            self.fetches.insert(leader, (correlation_id, now));
            let message = Message::FetchRequest { correlation_id, replica_id: None, max_wait: self.config.fetch_max_wait, partitions };
            out.push(ConsumerOutput::Send(Send { to: leader, message }));
        }
    }

    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, out: &mut Vec<ConsumerOutput>) {
        match message {
            Message::MetadataResponse { correlation_id, metadata } => {
                self.metadata.handle_response(now, correlation_id, metadata);
            }
            Message::ListOffsetsResponse { correlation_id, partition, result } => {
                let Some(assignment) = self.assignments.get_mut(&partition) else { return };
                if assignment.reset_in_flight.map(|(id, _)| id) != Some(correlation_id) {
                    return;
                }
                assignment.reset_in_flight = None;
                match result {
                    Ok((offset, _)) => {
                        assignment.position = Some(offset);
                        out.push(ConsumerOutput::Seek { partition, offset, reason: "auto.offset.reset" });
                    }
                    Err(_) => {
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                        self.metadata.request_update();
                    }
                }
            }
            Message::FetchResponse { correlation_id, partitions } => {
                if self.fetches.get(&from).map(|(id, _)| *id) != Some(correlation_id) {
                    return;
                }
                self.fetches.remove(&from);
                self.handle_fetch_response(now, partitions, out);
            }
            _ => {}
        }
        self.handle_timeout(now, out);
    }

    fn handle_fetch_response(&mut self, now: Instant, partitions: Vec<(TopicPartition, Result<crate::protocol::FetchedData, ErrorCode>)>, out: &mut Vec<ConsumerOutput>) {
        let mut records = Vec::new();
        let max_records = self.config.max_poll_records;
        for (tp, result) in partitions {
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
            let Some(position) = assignment.position else { continue };
            match result {
                Ok(data) => {
                    assignment.high_watermark = data.high_watermark;
                    let mut next = position;
                    for batch in &data.batches {
                        for (offset, record) in batch.iter() {
                            if offset < next || offset >= data.high_watermark || records.len() >= max_records {
                                continue;
                            }
                            records.push((tp.clone(), offset, record.clone()));
                            next = offset.next();
                        }
                    }
                    assignment.position = Some(next);
                }
                Err(ErrorCode::OffsetOutOfRange) => {
                    if self.config.auto_offset_reset == OffsetReset::None {
                        out.push(ConsumerOutput::Error { partition: tp.clone(), error: ErrorCode::OffsetOutOfRange });
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                    } else {
                        assignment.position = None;
                    }
                }
                Err(error) => {
                    tracing::info!(partition = %tp, %error, "consumer fetch failed");
                    assignment.backoff_until = Some(now + self.config.retry_backoff);
                    self.metadata.request_update();
                }
            }
        }
        if !records.is_empty() {
            out.push(ConsumerOutput::Records(records));
        }
    }
}
