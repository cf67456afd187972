//! Helpers for the nodes' unit tests: a network that accepts every connection.

use crate::net::{ConnectionCommand, ConnectionEvent};
use crate::node::{Node, Outbox};
use crate::protocol::{ClusterMetadata, PartitionState};
use crate::time::Instant;
use crate::types::{LeaderEpoch, NodeId, PartitionEpoch, TopicPartition};
use std::sync::Arc;

/// Completes every connect `out` asks for (and forgets the disconnects), as a
/// network whose brokers all listen would, until no new connect is asked.
pub fn connect_all<N: Node>(node: &mut N, now: Instant, out: &mut Outbox<N::Event>) {
    for _ in 0..8 {
        let commands = std::mem::take(&mut out.connections);
        if commands.is_empty() {
            return;
        }
        for (_, command) in commands {
            if let ConnectionCommand::Connect(destination) = command {
                node.handle_connection(now, destination, ConnectionEvent::Established, out);
            }
        }
    }
}

/// Topic `t` with one partition, led by broker 1.
pub fn single_partition_metadata() -> Arc<ClusterMetadata> {
    let state = PartitionState { replicas: vec![NodeId(1)], leader: Some(NodeId(1)), leader_epoch: LeaderEpoch(0), partition_epoch: PartitionEpoch(0), isr: vec![NodeId(1)], elr: Vec::new(), last_known_elr: Vec::new() };
    Arc::new(ClusterMetadata { version: 1, brokers: vec![NodeId(1)], partitions: [(TopicPartition::new("t", 0), state)].into_iter().collect() })
}
