//! DCloud's node agent core: who this node is and what it offers (`fingerprint`, `gpu`,
//! `usage`), the `Driver` contract for container engines with a Docker implementation
//! on bollard (`docker`) and an in-memory one for scale tests (`sim`), and `reconcile`,
//! which converges what the engine runs onto what the node was assigned.
//!
//! `runtime` talks to the control plane (GraphQL over HTTP and graphql-transport-ws):
//! registration, heartbeats, the assignment stream resumed by seq, report delivery; it
//! keeps the assignments and calls `Reconciler::run_once` on start and on reconnect.
//! The drivers and the reconciler below it know nothing of the control plane.

pub mod backoff;
pub mod docker;
pub mod driver;
pub mod error;
pub mod fingerprint;
pub mod gpu;
pub mod reconcile;
pub mod runtime;
pub mod session;
pub mod sim;
mod sim_session;
pub mod usage;

pub use docker::{DockerConfig, DockerDriver};
pub use driver::{container_name, Assignment, Driver, Observed, Report, ReportSender};
pub use error::AgentError;
pub use fingerprint::{fingerprint, node_agent_id, FingerprintConfig, Reserved};
pub use reconcile::{plan, Action, Outcome, Reconciler};
pub use sim::{sim_fingerprints, SimConfig, SimDriver};
pub use usage::NodeSampler;
