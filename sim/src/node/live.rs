//! Handles on the live state of each node of a run, for the nemesis (which
//! aims at a partition's leader) and for the end of the run (the drain's checks
//! and the final snapshot).

use super::broker::BrokerNode;
use super::consumer::ConsumerNode;
use super::controller::ControllerNode;
use super::pipeline::PipelineNode;
use super::producer::ProducerNode;
use kafsim_model::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

/// Handles on the live state of each node, replaced at every restart. They are
/// weak: a node's state belongs to its running task, so a killed node's state
/// goes with it, and nodes (which hold the context) never keep themselves alive
/// through the context.
#[derive(Default)]
pub struct LiveNodes {
    controllers: BTreeMap<NodeId, Weak<Mutex<ControllerNode>>>,
    brokers: BTreeMap<NodeId, Weak<Mutex<BrokerNode>>>,
    producers: BTreeMap<NodeId, Weak<Mutex<ProducerNode>>>,
    consumers: BTreeMap<NodeId, Weak<Mutex<ConsumerNode>>>,
    pipelines: BTreeMap<NodeId, Weak<Mutex<PipelineNode>>>,
    apps: BTreeMap<NodeId, Weak<Mutex<crate::app::node::AppNode>>>,
}

fn upgrade_all<T>(nodes: &BTreeMap<NodeId, Weak<T>>) -> Vec<(NodeId, Arc<T>)> {
    nodes.iter().filter_map(|(id, node)| node.upgrade().map(|node| (*id, node))).collect()
}

impl LiveNodes {
    pub fn set_controller(&mut self, id: NodeId, node: &Arc<Mutex<ControllerNode>>) {
        self.controllers.insert(id, Arc::downgrade(node));
    }

    pub fn set_broker(&mut self, id: NodeId, node: &Arc<Mutex<BrokerNode>>) {
        self.brokers.insert(id, Arc::downgrade(node));
    }

    pub fn set_producer(&mut self, id: NodeId, node: &Arc<Mutex<ProducerNode>>) {
        self.producers.insert(id, Arc::downgrade(node));
    }

    pub fn set_consumer(&mut self, id: NodeId, node: &Arc<Mutex<ConsumerNode>>) {
        self.consumers.insert(id, Arc::downgrade(node));
    }

    pub fn set_pipeline(&mut self, id: NodeId, node: &Arc<Mutex<PipelineNode>>) {
        self.pipelines.insert(id, Arc::downgrade(node));
    }

    pub fn set_app(&mut self, id: NodeId, node: &Arc<Mutex<crate::app::node::AppNode>>) {
        self.apps.insert(id, Arc::downgrade(node));
    }

    pub fn apps(&self) -> Vec<(NodeId, Arc<Mutex<crate::app::node::AppNode>>)> {
        upgrade_all(&self.apps)
    }

    pub fn pipelines(&self) -> Vec<(NodeId, Arc<Mutex<PipelineNode>>)> {
        upgrade_all(&self.pipelines)
    }

    pub fn controllers(&self) -> Vec<(NodeId, Arc<Mutex<ControllerNode>>)> {
        upgrade_all(&self.controllers)
    }

    /// The active controller: the live controller that leads the quorum in
    /// the highest epoch (a deposed leader may not know it yet).
    pub fn active_controller(&self) -> Option<(NodeId, Arc<Mutex<ControllerNode>>)> {
        self.controllers()
            .into_iter()
            .filter_map(|(id, node)| {
                let epoch = {
                    let controller = node.lock().expect("controller lock");
                    controller.controller.is_active().then(|| controller.controller.quorum().epoch())
                };
                epoch.map(|epoch| (epoch, id, node))
            })
            .max_by_key(|(epoch, id, _)| (*epoch, std::cmp::Reverse(*id)))
            .map(|(_, id, node)| (id, node))
    }

    /// The metadata the active controller has committed.
    pub fn active_metadata(&self) -> Option<kafsim_model::protocol::ClusterMetadata> {
        let (_, node) = self.active_controller()?;
        let metadata = node.lock().expect("controller lock").controller.committed().metadata().clone();
        Some(metadata)
    }

    pub fn broker(&self, id: NodeId) -> Option<Arc<Mutex<BrokerNode>>> {
        self.brokers.get(&id)?.upgrade()
    }

    pub fn brokers(&self) -> Vec<(NodeId, Arc<Mutex<BrokerNode>>)> {
        upgrade_all(&self.brokers)
    }

    pub fn producers(&self) -> Vec<(NodeId, Arc<Mutex<ProducerNode>>)> {
        upgrade_all(&self.producers)
    }

    pub fn consumers(&self) -> Vec<(NodeId, Arc<Mutex<ConsumerNode>>)> {
        upgrade_all(&self.consumers)
    }
}
