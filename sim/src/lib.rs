//! kafsim: the laboratory around the Kafka model. Scenarios, madsim shells,
//! nemesis, workloads, history, checkers, runner and reports.

pub mod check;
pub mod final_state;
pub mod history;
pub mod scenario;
