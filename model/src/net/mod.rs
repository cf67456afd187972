//! Connections, as Kafka's clients see them: one TCP connection per (client,
//! broker, channel), opened before requests go on it, closed by the peer's crash,
//! by a refused connect, or by the client itself when a request times out.
//!
//! The network itself lives in the simulator; the model only sees connection
//! events (`ConnectionEvent`) as input and asks for connects and disconnects
//! (`ConnectionCommand`) as output. `NetworkClient` is Kafka's `NetworkClient`
//! for every node that sends requests: clients, and brokers towards each other
//! and the controller.

mod client;

pub use client::{NetworkClient, RequestFailure};

use crate::coordinator::txn::protocol::TxnMessage;
use crate::protocol::Message;
use crate::types::NodeId;

/// Which of a node's connections to a peer a message travels on. Kafka's
/// consumer talks to its group coordinator over a connection of its own (the
/// coordinator's node id is `Integer.MAX_VALUE - id` in `AbstractCoordinator`),
/// and a broker's transaction markers go through a channel manager with its own
/// `NetworkClient` (`TransactionMarkerChannelManager`); everything else a node
/// sends to one peer shares one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Default,
    GroupCoordinator,
    TxnMarkers,
    /// A broker's heartbeats to the controller, apart from its AlterPartition
    /// requests (Kafka's "heartbeat" and "alter-partition" channel managers).
    Heartbeat,
    /// The controller quorum's traffic (KIP-595): between voters, and brokers'
    /// fetches of the metadata log (KafkaRaftClient's own NetworkClient).
    Quorum,
}

impl Channel {
    /// The connection a message travels on: a request on its kind's channel,
    /// a response on the channel of the request it answers.
    pub fn of(message: &Message) -> Channel {
        match message {
            Message::Group(_) => Channel::GroupCoordinator,
            Message::Txn(TxnMessage::WriteTxnMarkersRequest { .. } | TxnMessage::WriteTxnMarkersResponse { .. }) => Channel::TxnMarkers,
            Message::BrokerHeartbeat { .. } | Message::BrokerHeartbeatResponse { .. } => Channel::Heartbeat,
            Message::Quorum(_) => Channel::Quorum,
            _ => Channel::Default,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Default => "default",
            Channel::GroupCoordinator => "group coordinator",
            Channel::TxnMarkers => "txn markers",
            Channel::Heartbeat => "heartbeat",
            Channel::Quorum => "quorum",
        }
    }
}

/// One end of a connection as its initiator names it: the peer, and the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub node: NodeId,
    pub channel: Channel,
}

impl Destination {
    pub fn new(node: NodeId, channel: Channel) -> Destination {
        Destination { node, channel }
    }

    /// Where a request goes: to `node`, on the channel its kind travels on.
    pub fn of(node: NodeId, message: &Message) -> Destination {
        Destination { node, channel: Channel::of(message) }
    }
}

/// What the network tells a connection's initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The handshake completed: requests may go.
    Established,
    /// The connection is gone; whatever was in flight on it is lost.
    Closed(CloseReason),
}

/// Why a connection closed, as the initiator's socket reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing listens at the peer: its process is down, its machine up (RST to a SYN).
    Refused,
    /// The peer's process crashed or restarted (its kernel closed the socket), or
    /// its machine came back from a power loss and knows nothing of the connection.
    Reset,
    /// TCP gave up retransmitting (Linux's `tcp_retries2`, about 15 minutes).
    TimedOut,
}

impl CloseReason {
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::Refused => "refused",
            CloseReason::Reset => "reset by peer",
            CloseReason::TimedOut => "timed out (TCP retransmission limit)",
        }
    }
}

/// Why a node closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// A request on it outlived its timeout: Kafka's `NetworkClient` then closes
    /// the connection and fails everything in flight on it.
    RequestTimedOut,
    /// The handshake outlived `socket.connection.setup.timeout.ms` (KIP-601).
    SetupTimedOut,
}

impl DisconnectReason {
    pub fn describe(self) -> &'static str {
        match self {
            DisconnectReason::RequestTimedOut => "request timed out",
            DisconnectReason::SetupTimedOut => "connection setup timed out",
        }
    }
}

/// What a node asks of the network about its own connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionCommand {
    Connect(Destination),
    Disconnect(Destination, DisconnectReason),
}
