//! A producer batch (Kafka's ProducerBatch): the records the accumulator
//! gathers for one partition, open while records join it, then closed when it
//! is first sent and sent again on every retry until it completes.

use crate::record::Record;
use crate::time::Instant;
use crate::types::{ProducerId, Sequence, TopicPartition};
use std::sync::Arc;

pub(super) struct Batch {
    /// Unique within this producer, for the in-flight window.
    pub(super) id: u64,
    pub(super) partition: TopicPartition,
    pub(super) handles: Handles,
    records: BatchRecords,
    pub(super) created: Instant,
    pub(super) size_bytes: usize,
    pub(super) base_sequence: Option<Sequence>,
    /// The producer id and epoch `base_sequence` belongs to.
    pub(super) stamped_with: Option<(ProducerId, u16)>,
    pub(super) attempts: u32,
    pub(super) maybe_written: bool,
    pub(super) retry_at: Instant,
}

/// The sends whose records a batch holds, in record order. The first is kept
/// apart, as the first record is: a batch of one record, the common case, then
/// costs no allocation for its handles (and a second record only one).
pub(super) struct Handles {
    first: u64,
    rest: Vec<u64>,
}

impl Handles {
    pub(super) fn len(&self) -> usize {
        1 + self.rest.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }
}

/// No more records join a batch once it was sent, so from then on its records
/// are frozen and shared: every attempt's ProduceRequest carries the same
/// records, and the partition leader appends them to its log as they are,
/// instead of each attempt copying them.
enum BatchRecords {
    /// Never sent. The first record is kept apart so that a batch of one record,
    /// the common case when nothing lingers, needs no Vec before it is frozen.
    Open { first: Record, rest: Vec<Record> },
    Closed(Arc<[Record]>),
}

impl Batch {
    /// A new open batch holding its first record, never sent.
    pub(super) fn open(id: u64, partition: TopicPartition, handle: u64, record: Record, created: Instant, size_bytes: usize) -> Batch {
        Batch {
            id,
            partition,
            handles: Handles { first: handle, rest: Vec::new() },
            records: BatchRecords::Open { first: record, rest: Vec::new() },
            created,
            size_bytes,
            base_sequence: None,
            stamped_with: None,
            attempts: 0,
            maybe_written: false,
            retry_at: Instant::ZERO,
        }
    }

    /// Whether the batch was sent, so no more records may join it.
    pub(super) fn is_closed(&self) -> bool {
        matches!(self.records, BatchRecords::Closed(_))
    }

    pub(super) fn record_count(&self) -> usize {
        match &self.records {
            BatchRecords::Open { rest, .. } => 1 + rest.len(),
            BatchRecords::Closed(records) => records.len(),
        }
    }

    /// Adds the record of the send `handle` to this open batch.
    pub(super) fn push(&mut self, handle: u64, record: Record, size_bytes: usize) {
        let BatchRecords::Open { rest, .. } = &mut self.records else { panic!("a record joins only a batch never sent") };
        rest.push(record);
        self.handles.rest.push(handle);
        self.size_bytes += size_bytes;
    }

    /// Closes the batch if it is still open, and returns its records to send.
    pub(super) fn close(&mut self) -> Arc<[Record]> {
        // An empty shared slice stands in meanwhile; making one allocates nothing.
        let records: Arc<[Record]> = match std::mem::replace(&mut self.records, BatchRecords::Closed(Arc::default())) {
            BatchRecords::Open { first, rest } if rest.is_empty() => Arc::new([first]),
            BatchRecords::Open { first, rest } => std::iter::once(first).chain(rest).collect(),
            BatchRecords::Closed(records) => records,
        };
        self.records = BatchRecords::Closed(records.clone());
        records
    }
}
