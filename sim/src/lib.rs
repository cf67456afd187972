//! kafsim: the laboratory around the Kafka model. Scenarios, madsim shells,
//! nemesis, workloads, history, checkers, runner and reports.

pub mod app;
pub mod bench;
pub mod check;
pub mod cli;
pub mod context;
pub mod faults;
pub mod final_state;
pub mod history;
pub mod invariants;
pub mod matrix;
pub mod merge;
pub mod node;
pub mod rdkafka;
pub mod replica_records;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod simulate;
pub mod summary;
pub mod trace;
pub mod transaction_fates;
pub mod workload;

pub use app::Harness;
