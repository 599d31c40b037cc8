//! Helpers shared by the replay tests, the crash child and the benchmarks: command
//! generators and load loops. The tests themselves live in `tests/`.

pub mod crash;
pub mod golden;
#[cfg(feature = "storage-fault-tests")]
pub mod lazyfs;
pub mod scenario;
pub mod sim;
pub mod workload;
