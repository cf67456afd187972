//! Fetching: one Fetch per leader for the partitions whose position is known,
//! with the leader epoch (KIP-320), and the records each answer hands out,
//! read_committed ones filtered by the aborted transactions (KIP-98).

use super::*;

impl Consumer {
    pub(super) fn send_fetches(&mut self, now: Instant, out: &mut Outbox<ConsumerEvent>) {
        if self.paused {
            return;
        }
        // Per leader in id order, the partitions to fetch from it, planned in
        // `fetch_plan` (the fields are borrowed apart so it needs no moving out).
        let plan = &mut self.fetch_plan;
        let mut leaderless = false;
        for (tp, assignment) in &self.assignments {
            let Some(position) = assignment.position else { continue };
            if assignment.backoff_until.is_some() || assignment.validating || self.view.needs_validation(tp, assignment) {
                continue;
            }
            let Some((leader, current_leader_epoch)) = self.view.leader_of(tp) else {
                leaderless = true;
                continue;
            };
            if self.fetching.contains(&leader) {
                continue;
            }
            let index = match plan.binary_search_by_key(&leader, |(leader, _)| *leader) {
                Ok(index) => index,
                Err(index) => {
                    plan.insert(index, (leader, Vec::new()));
                    index
                }
            };
            plan[index].1.push(FetchPartition { partition: tp.clone(), fetch_offset: position, current_leader_epoch });
        }
        if leaderless {
            // Kafka's consumer asks for fresh metadata while a partition has no leader.
            self.metadata.request_update();
        }
        let timeout = self.config.request_timeout;
        for (leader, partitions) in std::mem::take(&mut self.fetch_plan) {
            // Kafka's fetcher skips nodes it is not connected to, connecting to them.
            let destination = Destination::new(leader, Channel::Default);
            if !self.network.ready(now, destination, out) {
                continue;
            }
            self.fetching.push(leader);
            if self.group.is_some() {
                for fetch in &partitions {
                    self.fetch_offsets.insert(fetch.partition.clone(), fetch.fetch_offset);
                }
            }
            let (max_wait, read_committed) = (self.config.fetch_max_wait, self.config.read_committed);
            let message = |correlation_id| Message::FetchRequest { correlation_id, replica_id: None, max_wait, partitions, read_committed };
            self.network.send(now, destination, timeout, ConsumerRequest::Fetch { node: leader }, message, out);
        }
    }

    pub(super) fn handle_fetch_response(&mut self, now: Instant, partitions: Vec<(TopicPartition, Result<crate::protocol::FetchedData, ErrorCode>)>, out: &mut Outbox<ConsumerEvent>) {
        let mut records = Vec::new();
        let max_records = self.config.max_poll_records;
        for (tp, result) in partitions {
            let Some(assignment) = self.assignments.get_mut(&tp) else { continue };
            let Some(position) = assignment.position else { continue };
            if self.group.is_some() && self.fetch_offsets.remove(&tp) != Some(position) {
                // Fetched for an earlier ownership of this partition.
                continue;
            }
            // KIP-320: a partition whose position awaits validation against a new
            // leader is not fetchable (Kafka's AWAIT_VALIDATION): what a fetch
            // sent before brings is dropped, so the position the validation
            // speaks of stays put.
            if assignment.validating || self.view.needs_validation(&tp, assignment) {
                continue;
            }
            match result {
                Ok(data) => {
                    let mut next = position;
                    // KIP-98: read_committed reads below the last stable offset only.
                    let end = if self.config.read_committed { data.last_stable_offset.min(data.high_watermark) } else { data.high_watermark };
                    let mut isolation = ReadIsolation::new(self.config.read_committed, &data.aborted_transactions);
                    for batch in &data.batches {
                        let skipped = isolation.skips(batch);
                        if !skipped {
                            records.reserve(batch.records.len().min(max_records.saturating_sub(records.len())));
                        }
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
                        out.event(ConsumerEvent::Error { partition: tp.clone(), error: ErrorCode::OffsetOutOfRange });
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
            out.event(ConsumerEvent::Records(records));
        }
    }
}
