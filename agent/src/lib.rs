//! DCloud's node agent core: who this node is and what it offers (`fingerprint`, `gpu`,
//! `usage`), the `Driver` contract for container engines with a Docker implementation
//! on bollard (`docker`) and an in-memory one for scale tests (`sim`), and `reconcile`,
//! which converges what the engine runs onto what the node was assigned.
//!
//! This crate does NOT talk to the control plane: the assignment stream, heartbeats and
//! report delivery (GraphQL) sit above it and only use the types exported here. It holds
//! no assignments of its own: the caller keeps them and calls `Reconciler::run_once`
//! on start, on every change and on reconnect.

pub mod docker;
pub mod driver;
pub mod error;
pub mod fingerprint;
pub mod gpu;
pub mod reconcile;
pub mod sim;
pub mod usage;

pub use docker::{DockerConfig, DockerDriver};
pub use driver::{container_name, Assignment, Driver, Observed, Report, ReportSender};
pub use error::AgentError;
pub use fingerprint::{fingerprint, node_agent_id, FingerprintConfig, Reserved};
pub use reconcile::{plan, Action, Outcome, Reconciler};
pub use sim::{sim_fingerprints, SimConfig, SimDriver};
pub use usage::NodeSampler;
