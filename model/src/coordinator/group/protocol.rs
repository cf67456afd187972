//! The requests and responses of the group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch.

/// One request or response; `Message::Group` carries it.
#[derive(Clone, Debug)]
pub enum GroupMessage {}

impl GroupMessage {
    /// Whether the broker hands this message to its coordinator (requests do;
    /// responses travel to clients, or to the broker itself).
    pub fn routes_to_coordinator(&self) -> bool {
        match *self {}
    }

    pub fn api(&self) -> &'static str {
        match *self {}
    }
}
