//! The requests and responses of the transaction coordinator and transactional produce: InitProducerId (transactional), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers, TxnOffsetCommit.

/// One request or response; `Message::Txn` carries it.
#[derive(Clone, Debug)]
pub enum TxnMessage {}

impl TxnMessage {
    /// Whether the broker hands this message to its coordinator (requests do;
    /// responses travel to clients, or to the broker itself).
    pub fn routes_to_coordinator(&self) -> bool {
        match *self {}
    }

    pub fn api(&self) -> &'static str {
        match *self {}
    }
}
