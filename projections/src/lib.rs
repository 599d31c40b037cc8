//! DCloud's pure core: the state folded from events (nodes, capacity and allocation,
//! environments and their versions, templates, catalogs, services, deployments),
//! commands and their `decide` functions (all business rules), placement, and the
//! parsing and validation of user documents.
//!
//! This crate does NO I/O, reads no clock and no randomness: the same events give the
//! same state, and the same command against the same state decides the same events
//! (time and fresh ids come in with the command).

pub mod actor;
pub mod command;
pub mod config;
pub mod decide;
pub mod error;
pub mod placement;
pub mod state;

pub use actor::Actor;
pub use command::{Command, Ctx, Report, Settings, SpecOverrides};
pub use decide::decide;
pub use error::{DomainError, FieldError};
pub use placement::{place, Decision, Placement, PlacementRequest};
pub use state::{Deployment, DeploymentStatus, Node, NodeHealth, SnapshotError, State};
