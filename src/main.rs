//! The `dcloud` binary: CLI, server wiring and the single writer.
fn main() {}
