//! The GraphQL output types, each a thin copy of what the state holds.

pub mod assignment;
pub mod common;
pub mod config;
pub mod deployment;
pub mod event;
pub mod node;
pub mod usage;
