//! A producer workload node: sends unique values (`producer:sequence`) at the
//! scenario's rate through Kafka's producer, and records every send as invoke,
//! then ok (with partition and offset), fail or info (outcome unknown).

use super::Machine;
use crate::context::RunContext;
use crate::history::{OpBody, OpType, Value};
use kafsim_model::client::producer::{Producer, ProducerOutput};
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What outlives a producer's restarts: its counter, so values stay unique, and
/// the sends still in flight, which become `info` when the process dies.
#[derive(Debug, Default)]
pub struct ProducerProgress {
    pub next_sequence: u64,
    pub pending: BTreeSet<u64>,
}

pub struct ProducerNode {
    ctx: Arc<RunContext>,
    name: Arc<str>,
    number: u32,
    producer: Producer,
    progress: Arc<Mutex<ProducerProgress>>,
    topic: Arc<str>,
    keys: u32,
    messages: u64,
    interval: Duration,
    next_send: Instant,
    out: Vec<ProducerOutput>,
}

impl ProducerNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> ProducerNode {
        let name = ctx.roster.entry(id).name.clone();
        let scenario = ctx.scenario.clone();
        let spec = &scenario.producers[spec];
        let progress = ctx.producer_progress[&id].clone();
        let orphans: Vec<u64> = std::mem::take(&mut progress.lock().expect("progress lock").pending).into_iter().collect();
        for sequence in orphans {
            let value = Value { producer: number, sequence };
            ctx.record(&name, OpType::Info, OpBody::Send { value, partition: None, offset: None, error: Some("producer process crashed".into()) });
        }
        ctx.record(&name, OpType::Invoke, OpBody::ClientStart);
        let producer = Producer::new(spec.config.clone(), ctx.roster.brokers(), number);
        let interval = Duration::from_secs_f64(1.0 / spec.rate);
        ProducerNode {
            name,
            number,
            producer,
            progress,
            topic: spec.topic.as_str().into(),
            keys: spec.keys,
            messages: spec.messages,
            interval,
            next_send: ctx.now(),
            out: Vec::new(),
            ctx,
        }
    }

    /// Sends not yet acknowledged, failed or given up.
    pub fn pending_count(&self) -> usize {
        self.progress.lock().expect("progress lock").pending.len()
    }

    fn active(&self) -> bool {
        !self.ctx.stop_producing.load(Ordering::Relaxed) && self.progress.lock().expect("progress lock").next_sequence < self.messages
    }

    fn send_due(&mut self, now: Instant) {
        while self.next_send <= now && self.active() {
            self.next_send = self.next_send + self.interval;
            let sequence = {
                let mut progress = self.progress.lock().expect("progress lock");
                let sequence = progress.next_sequence;
                progress.next_sequence += 1;
                progress.pending.insert(sequence);
                sequence
            };
            let value = Value { producer: self.number, sequence };
            let key = (self.keys > 0).then(|| bytes::Bytes::from(format!("k{}", madsim::rand::thread_rng().gen_range(0..self.keys))));
            self.ctx.record(&self.name, OpType::Invoke, OpBody::Send { value, partition: None, offset: None, error: None });
            self.producer.send(now, sequence, self.topic.clone(), key, value.encode(), &mut self.out);
        }
    }

    fn carry_out(&mut self, sends: &mut Vec<Send>) {
        for output in self.out.drain(..) {
            match output {
                ProducerOutput::Send(send) => sends.push(send),
                ProducerOutput::Partitioned { .. } => {}
                ProducerOutput::Completed { handle, result } => {
                    self.progress.lock().expect("progress lock").pending.remove(&handle);
                    let value = Value { producer: self.number, sequence: handle };
                    let (kind, body) = match result {
                        Ok((partition, offset)) => (OpType::Ok, OpBody::Send { value, partition: Some(partition), offset: Some(offset), error: None }),
                        Err(error) => {
                            let kind = if error.maybe_written { OpType::Info } else { OpType::Fail };
                            (kind, OpBody::Send { value, partition: None, offset: None, error: Some(error.error) })
                        }
                    };
                    self.ctx.record(&self.name, kind, body);
                }
            }
        }
    }
}

impl Machine for ProducerNode {
    fn handle_message(&mut self, now: Instant, _from: NodeId, message: Message, sends: &mut Vec<Send>) {
        self.producer.handle_message(now, message, &mut self.out);
        self.carry_out(sends);
    }

    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>) {
        self.send_due(now);
        self.producer.handle_timeout(now, &mut self.out);
        self.carry_out(sends);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let next_send = self.active().then_some(self.next_send);
        kafsim_model::time::earliest(self.producer.next_deadline(), next_send)
    }
}
