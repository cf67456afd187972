//! Kafka's consumer with manual assignment: positions per partition, reset by
//! auto.offset.reset through ListOffsets, fetches to each partition's leader
//! carrying the leader epoch (KIP-320), and records handed out as they arrive.
//! When a partition's leader epoch changes, the position is validated against
//! the new leader (KIP-320's OffsetsForLeaderEpoch): if the log was truncated
//! below it, the consumer moves back to where the logs diverge.
//! Consumer groups come later; `assign` takes every partition of its topics.

use super::isolation::ReadIsolation;
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
    /// The leader epoch of the last record consumed (KIP-320).
    position_epoch: Option<LeaderEpoch>,
    /// The leader epoch the position was last known good under.
    validated_epoch: Option<LeaderEpoch>,
    /// Set while an OffsetsForLeaderEpoch validation is out.
    validation_in_flight: Option<(u64, Instant)>,
    /// Set while a ListOffsets request for this partition is out.
    reset_in_flight: Option<(u64, Instant)>,
    backoff_until: Option<Instant>,
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
            for (_, sent) in assignment.reset_in_flight.iter().chain(&assignment.validation_in_flight) {
                deadline = earliest(deadline, Some(*sent + self.config.request_timeout));
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
            if assignment.validation_in_flight.is_some_and(|(_, sent)| now.saturating_since(sent) >= timeout) {
                assignment.validation_in_flight = None;
            }
        }
        let correlation_id = self.correlation();
        let mut sends = Vec::new();
        self.metadata.poll(now, correlation_id, &mut sends);
        out.extend(sends.into_iter().map(ConsumerOutput::Send));
        self.assign_from_metadata();
        self.reset_positions(now, out);
        self.validate_positions(now, out);
        self.send_fetches(now, out);
    }

    /// A position consumed under an older leader epoch than the partition now has
    /// must be checked before fetching on: the new leader's log may end earlier.
    fn needs_validation(&self, tp: &TopicPartition, assignment: &Assignment) -> bool {
        let Some(current) = self.metadata.partition(tp).map(|state| state.leader_epoch) else { return false };
        assignment.position.is_some() && assignment.position_epoch.is_some() && assignment.validated_epoch.is_some_and(|validated| validated < current)
    }

    fn validate_positions(&mut self, now: Instant, out: &mut Vec<ConsumerOutput>) {
        let due: Vec<TopicPartition> = self
            .assignments
            .iter()
            .filter(|(tp, assignment)| assignment.validation_in_flight.is_none() && assignment.backoff_until.is_none() && self.needs_validation(tp, assignment))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            let Some((leader, current_leader_epoch)) = self.leader_of(&tp) else {
                self.metadata.request_update();
                continue;
            };
            let correlation_id = self.correlation();
            let assignment = self.assignments.get_mut(&tp).expect("listed above");
            let epoch = assignment.position_epoch.expect("validation needs a position epoch");
            assignment.validation_in_flight = Some((correlation_id, now));
            let message = Message::OffsetsForLeaderEpochRequest { correlation_id, partitions: vec![(tp, current_leader_epoch, epoch)] };
            out.push(ConsumerOutput::Send(Send { to: leader, message }));
        }
    }

    fn handle_validation(&mut self, now: Instant, correlation_id: u64, partitions: Vec<(TopicPartition, Result<crate::protocol::EpochEndOffset, ErrorCode>)>, out: &mut Vec<ConsumerOutput>) {
        for (tp, result) in partitions {
            let current = self.metadata.partition(&tp).map(|state| state.leader_epoch);
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
            if assignment.validation_in_flight.map(|(id, _)| id) != Some(correlation_id) {
                continue;
            }
            assignment.validation_in_flight = None;
            match result {
                Ok(answer) => {
                    assignment.validated_epoch = current;
                    let position = assignment.position.unwrap_or_default();
                    if answer.leader_epoch.is_some() && answer.end_offset < position {
                        tracing::info!(partition = %tp, from = position.0, to = answer.end_offset.0, "consumer detected log truncation");
                        assignment.position = Some(answer.end_offset);
                        assignment.position_epoch = answer.leader_epoch;
                        out.push(ConsumerOutput::Seek { partition: tp, offset: answer.end_offset, reason: "log truncation detected (KIP-320)" });
                    }
                }
                Err(_) => {
                    assignment.backoff_until = Some(now + self.config.retry_backoff);
                    self.metadata.request_update();
                }
            }
        }
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
            if assignment.backoff_until.is_some() || assignment.validation_in_flight.is_some() || self.needs_validation(tp, assignment) {
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
            let message = Message::FetchRequest { correlation_id, replica_id: None, max_wait: self.config.fetch_max_wait, partitions, read_committed: self.config.read_committed };
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
                    Ok((offset, leader_epoch)) => {
                        assignment.position = Some(offset);
                        assignment.position_epoch = None;
                        assignment.validated_epoch = Some(leader_epoch);
                        out.push(ConsumerOutput::Seek { partition, offset, reason: "auto.offset.reset" });
                    }
                    Err(_) => {
                        assignment.backoff_until = Some(now + self.config.retry_backoff);
                        self.metadata.request_update();
                    }
                }
            }
            Message::OffsetsForLeaderEpochResponse { correlation_id, partitions } => self.handle_validation(now, correlation_id, partitions, out),
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
                    let mut next = position;
                    // KIP-98: read_committed reads below the last stable offset only.
                    let end = if self.config.read_committed { data.last_stable_offset.min(data.high_watermark) } else { data.high_watermark };
                    let mut isolation = ReadIsolation::new(self.config.read_committed, &data.aborted_transactions);
                    for batch in &data.batches {
                        let skipped = isolation.skips(batch);
                        for (offset, record) in batch.iter() {
                            if offset < next || offset >= end || records.len() >= max_records {
                                continue;
                            }
                            if !skipped {
                                records.push((tp.clone(), offset, record.clone()));
                            }
                            next = offset.next();
                            assignment.position_epoch = Some(batch.partition_leader_epoch);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::protocol::{ClusterMetadata, EpochEndOffset, FetchedData, PartitionState};
    use crate::record::RecordBatch;
    use crate::types::PartitionEpoch;
    use bytes::Bytes;

    fn metadata(version: u64, leader_epoch: u32) -> Arc<ClusterMetadata> {
        let state = PartitionState {
            replicas: vec![NodeId(1)],
            leader: Some(NodeId(1)),
            leader_epoch: LeaderEpoch(leader_epoch),
            partition_epoch: PartitionEpoch(0),
            isr: vec![NodeId(1)],
        };
        Arc::new(ClusterMetadata { version, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() })
    }

    fn sent(out: &[ConsumerOutput]) -> Vec<Message> {
        out.iter().filter_map(|output| if let ConsumerOutput::Send(send) = output { Some(send.message.clone()) } else { None }).collect()
    }

    /// KIP-320: after a leader change, a consumer whose position is past the new
    /// leader's log end for its epoch moves back to where the logs diverge.
    #[test]
    fn a_truncated_log_under_a_new_leader_moves_the_position_back() {
        let config = ConsumerConfig::from_properties(&Properties::new(), "earliest").unwrap();
        let mut consumer = Consumer::new(config, vec!["t".into()], vec![NodeId(1)], 0);
        let mut out = Vec::new();
        let tp = TopicPartition::new("t", 0);
        consumer.handle_timeout(Instant::ZERO, &mut out);
        let correlation_of = |messages: Vec<Message>, want: &str| -> u64 {
            messages
                .iter()
                .find_map(|message| match message {
                    Message::MetadataRequest { correlation_id } if want == "metadata" => Some(*correlation_id),
                    Message::ListOffsetsRequest { correlation_id, .. } if want == "list" => Some(*correlation_id),
                    Message::FetchRequest { correlation_id, .. } if want == "fetch" => Some(*correlation_id),
                    Message::OffsetsForLeaderEpochRequest { correlation_id, .. } if want == "validate" => Some(*correlation_id),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no {want} request among {messages:?}"))
        };
        let id = correlation_of(sent(&out), "metadata");
        out.clear();
        consumer.handle_message(Instant::ZERO, NodeId(1), Message::MetadataResponse { correlation_id: id, metadata: metadata(1, 0) }, &mut out);
        let id = correlation_of(sent(&out), "list");
        out.clear();
        consumer.handle_message(Instant::ZERO, NodeId(1), Message::ListOffsetsResponse { correlation_id: id, partition: tp.clone(), result: Ok((Offset(0), LeaderEpoch(0))) }, &mut out);
        let id = correlation_of(sent(&out), "fetch");
        out.clear();
        let records = (0..5).map(|index| Record { key: None, value: Bytes::from(format!("v{index}")) }).collect();
        let batch = Arc::new(RecordBatch::new(Offset(0), LeaderEpoch(0), None, records));
        let data = FetchedData { high_watermark: Offset(5), log_end_offset: Offset(5), batches: vec![batch], last_stable_offset: Offset(5), aborted_transactions: Vec::new() };
        consumer.handle_message(Instant::ZERO, NodeId(1), Message::FetchResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(data))] }, &mut out);
        assert_eq!(consumer.positions()[&tp], Offset(5));
        // A new leader at epoch 1: the next metadata refresh reveals it.
        consumer.metadata.request_update();
        out.clear();
        consumer.handle_timeout(Instant::from_micros(1_000_000), &mut out);
        let id = correlation_of(sent(&out), "metadata");
        out.clear();
        consumer.handle_message(Instant::from_micros(1_000_000), NodeId(1), Message::MetadataResponse { correlation_id: id, metadata: metadata(2, 1) }, &mut out);
        let id = correlation_of(sent(&out), "validate");
        assert!(!sent(&out).iter().any(|message| matches!(message, Message::FetchRequest { .. })), "no fetch before the position is validated");
        out.clear();
        let answer = EpochEndOffset { leader_epoch: Some(LeaderEpoch(0)), end_offset: Offset(3) };
        consumer.handle_message(Instant::from_micros(1_000_000), NodeId(1), Message::OffsetsForLeaderEpochResponse { correlation_id: id, partitions: vec![(tp.clone(), Ok(answer))] }, &mut out);
        assert_eq!(consumer.positions()[&tp], Offset(3));
        assert!(out.iter().any(|output| matches!(output, ConsumerOutput::Seek { offset: Offset(3), .. })));
    }
}
