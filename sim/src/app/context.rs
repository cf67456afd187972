//! What the application's code is given when its process starts: which
//! instance it is, where the brokers are, and the two calls that tell the
//! checkers what the code did with a message (lineage and processing).

use super::message::{Message, OwnedHeaders, DERIVED_FROM_HEADER};
use super::session::AppSession;
use crate::history::{OpBody, OpType, PolledRecord};
use kafsim_model::{Offset, TopicPartition};

/// The application's handle on its run (the `ctx` of `Harness::run`).
#[derive(Clone)]
pub struct AppContext {
    pub(crate) session: AppSession,
}

impl AppContext {
    /// This instance's number, from 1.
    pub fn instance(&self) -> u32 {
        self.session.node.lock().expect("app node lock").number
    }

    /// This instance's node name (`app-1`), as traces and reports show it.
    pub fn name(&self) -> String {
        self.session.node.lock().expect("app node lock").name.to_string()
    }

    /// The value for `bootstrap.servers`: every broker of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        super::session::bootstrap_servers(&self.session.ctx)
    }

    /// Headers that declare a record made from `input`, for
    /// `FutureRecord::headers`: the checkers then follow the input to its
    /// output. `eos-violation` judges every group whose input became output
    /// this way; a non-transactional send of it also counts as processing
    /// `input` once it is acknowledged (`at-least-once`, `at-most-once`), a
    /// transactional one once its transaction commits. One output per input:
    /// an output's value is derived from its input's, so two outputs of one
    /// input read as a duplicate. Add headers of your own with `insert`.
    pub fn derived_from<M: Message>(&self, input: &M) -> OwnedHeaders {
        let Some(lineage) = input.lineage() else { return OwnedHeaders::new() };
        let group = lineage.group.as_deref().unwrap_or("");
        let text = format!("{group}\t{}\t{}\t{}\t{}", input.topic(), input.partition(), input.offset(), lineage.value);
        OwnedHeaders::new().insert(super::message::Header { key: DERIVED_FROM_HEADER, value: Some(text.as_str()) })
    }

    /// Tells the checkers that the application processed `input` (its side
    /// effect happened: a row written, an email sent). `at-least-once` and
    /// `at-most-once` judge a group's processing against its commits. Not
    /// needed for records made with `derived_from`, whose processing is
    /// their output.
    pub fn processed<M: Message>(&self, input: &M) {
        let Some(lineage) = input.lineage() else { return };
        let Some(group) = lineage.group.clone() else { return };
        let record = PolledRecord { partition: TopicPartition::new(input.topic(), input.partition() as u32), offset: Offset(input.offset() as u64), value: lineage.value };
        let name = self.session.node.lock().expect("app node lock").name.clone();
        self.session.ctx.record(&name, OpType::Ok, OpBody::Process { group, records: vec![record] });
    }
}
