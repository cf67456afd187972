//! What the clients of a run *do*: the producers' sends and transactions, the
//! values they draw, the pipelines' read-process-write loop. The shells in
//! `node/` only drive the model's machines; each hands a workload its client's
//! events and lets it decide the next call, and the workload records the
//! operations the checkers judge.

pub mod consumer;
pub mod pipeline;
pub mod producer;
pub mod values;
