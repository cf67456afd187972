//! A consumer workload node: reads every partition of its topic through Kafka's
//! consumer and records each poll (partition, offset, value) and each seek.

use super::Machine;
use crate::context::RunContext;
use crate::history::{OpBody, OpType, PolledRecord, Value};
use kafsim_model::client::consumer::{Consumer, ConsumerOutput};
use kafsim_model::protocol::{Message, Send};
use kafsim_model::{Instant, NodeId};
use std::sync::Arc;

pub struct ConsumerNode {
    ctx: Arc<RunContext>,
    name: Arc<str>,
    pub consumer: Consumer,
    out: Vec<ConsumerOutput>,
}

impl ConsumerNode {
    pub fn start(ctx: Arc<RunContext>, id: NodeId, spec: usize, number: u32) -> ConsumerNode {
        let name = ctx.roster.entry(id).name.clone();
        let spec = &ctx.scenario.consumers[spec];
        ctx.record(&name, OpType::Invoke, OpBody::ClientStart);
        let consumer = Consumer::new(spec.config.clone(), vec![spec.topic.as_str().into()], ctx.roster.brokers(), number as usize);
        ConsumerNode { name, consumer, out: Vec::new(), ctx }
    }

    fn carry_out(&mut self, sends: &mut Vec<Send>) {
        for output in self.out.drain(..) {
            match output {
                ConsumerOutput::Send(send) => sends.push(send),
                ConsumerOutput::Records(records) => {
                    let records = records
                        .into_iter()
                        .filter_map(|(partition, offset, record)| {
                            Value::decode(&record.value).map(|value| PolledRecord { partition, offset, value })
                        })
                        .collect();
                    self.ctx.record(&self.name, OpType::Ok, OpBody::Poll { records });
                }
                ConsumerOutput::Seek { partition, offset, reason } => {
                    self.ctx.record(&self.name, OpType::Ok, OpBody::Seek { partition, offset, reason: reason.to_string() });
                }
                ConsumerOutput::Error { partition, error } => {
                    let reason = format!("{error}: position lost, auto.offset.reset=none");
                    self.ctx.record(&self.name, OpType::Fail, OpBody::Seek { partition, offset: kafsim_model::Offset(0), reason });
                }
            }
        }
    }
}

impl Machine for ConsumerNode {
    fn handle_message(&mut self, now: Instant, from: NodeId, message: Message, sends: &mut Vec<Send>) {
        self.consumer.handle_message(now, from, message, &mut self.out);
        self.carry_out(sends);
    }

    fn handle_timeout(&mut self, now: Instant, sends: &mut Vec<Send>) {
        self.consumer.handle_timeout(now, &mut self.out);
        self.carry_out(sends);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.consumer.next_deadline()
    }
}
