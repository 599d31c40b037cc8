//! The `EventLog` test suite (`dcloud-log-tests`) on the JetStream backend, against a
//! real nats-server: the same tests the fjall log runs (`events/tests/suite.rs`).

mod common;

dcloud_log_tests::log_suite!(common::Nats::new());
