//! The transaction coordinator (KIP-98, KIP-890): producer ids and epochs, transaction state, kept on `__transaction_state`.
//!
//! A skeleton: it owns no keys yet and ignores every request.

pub mod protocol;

use super::{Coordinator, CoordinatorEffect, CoordinatorType, WriteToken};
use crate::config::BrokerConfig;
use crate::protocol::{ErrorCode, Message};
use crate::record::SharedBatch;
use crate::time::Instant;
use crate::types::{LeaderEpoch, NodeId, Offset};

pub struct TransactionCoordinator {
    #[allow(dead_code)]
    config: BrokerConfig,
}

impl TransactionCoordinator {
    pub fn new(config: BrokerConfig) -> TransactionCoordinator {
        TransactionCoordinator { config }
    }
}

impl Coordinator for TransactionCoordinator {
    fn coordinator_type(&self) -> CoordinatorType {
        CoordinatorType::Transaction
    }

    fn load(&mut self, _now: Instant, _partition: u32, _leader_epoch: LeaderEpoch, _batches: &[SharedBatch], _out: &mut Vec<CoordinatorEffect>) {}

    fn unload(&mut self, _partition: u32) {}

    fn handle_request(&mut self, _now: Instant, _from: NodeId, _message: Message, _out: &mut Vec<CoordinatorEffect>) {}

    fn write_completed(&mut self, _now: Instant, _token: WriteToken, _result: Result<Offset, ErrorCode>, _out: &mut Vec<CoordinatorEffect>) {}

    fn handle_timeout(&mut self, _now: Instant, _out: &mut Vec<CoordinatorEffect>) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}
