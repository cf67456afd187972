//! What the clients of a run *do*: the producers' sends and transactions, the
//! values they draw, the pipelines' read-process-write loop. The shells in
//! `node/` only drive the model's machines; each hands a workload its client's
//! events and lets it decide the next call, and the workload records the
//! operations the checkers judge.

pub mod consumer;
pub mod pipeline;
pub mod producer;
pub mod values;

use crate::history::OpType;
use kafsim_model::error::ErrorCode;

/// How an offset commit's answer is recorded: ok, fail, or `info` when no
/// answer came (the commit may have been applied all the same).
pub(crate) fn commit_outcome(result: Result<(), ErrorCode>) -> (OpType, Option<String>) {
    match result {
        Ok(()) => (OpType::Ok, None),
        Err(error @ (ErrorCode::NetworkTimeout | ErrorCode::NetworkException)) => (OpType::Info, Some(error.to_string())),
        Err(error) => (OpType::Fail, Some(error.to_string())),
    }
}
