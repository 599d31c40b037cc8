//! The agent's one error type: what went wrong with the host, the engine, a build or an
//! assignment, in variants a caller can act on.

/// Errors of the node agent (fingerprint, drivers, reconcile).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container engine cannot be reached: the socket is missing, refuses
    /// connections, or stopped answering. Transient: retry later, keep the assignments.
    #[error("docker engine not reachable at {socket}: {reason}")]
    EngineUnavailable { socket: String, reason: String },

    /// The engine answered but refused the request.
    #[error("docker {op} failed: {message}")]
    Engine {
        op: &'static str,
        /// HTTP status of the engine's answer, when there was one.
        status: Option<u16>,
        message: String,
    },

    /// A step of the image build failed (already reported as `Report::BuildFailed`).
    #[error("image build failed at step {step} ({command}): {message}")]
    BuildFailed {
        step: u32,
        command: String,
        message: String,
    },

    /// The assignment itself cannot be run as given (bad id, path or value).
    #[error("invalid assignment: {field}: {reason}")]
    InvalidAssignment { field: String, reason: String },

    /// The node has not got what the assignment asks for (simulated driver).
    #[error("node {node_id} cannot run {deployment_id}: {reason}")]
    Insufficient {
        node_id: String,
        deployment_id: String,
        reason: String,
    },

    /// Reading the host's own facts failed.
    #[error("cannot read {what} from the system: {message}")]
    System { what: &'static str, message: String },

    /// The control plane cannot be reached (connection refused, dropped, timed out).
    /// Transient: the runtime retries with backoff.
    #[error("server not reachable at {url}: {reason}")]
    ServerUnavailable { url: String, reason: String },

    /// The control plane answered with a GraphQL error (`extensions.code`).
    #[error("server refused {op}: {code}: {message}")]
    Api {
        op: &'static str,
        code: String,
        message: String,
    },

    /// The control plane's answer is not what the protocol says it should be.
    #[error("unexpected answer from the server to {op}: {message}")]
    Protocol { op: &'static str, message: String },

    /// No interface with a usable MAC address, and no node id configured.
    #[error("no network interface with a mac address found; set the node id explicitly")]
    NoNodeId,

    /// A logs or exec session asked for a deployment this node runs no container of.
    #[error("deployment {deployment_id} has no container on this node")]
    NoContainer { deployment_id: String },

    /// The driver does not offer this (e.g. logs or exec in a driver without them).
    #[error("the {driver} driver does not support {what}")]
    Unsupported {
        driver: &'static str,
        what: &'static str,
    },
}

impl AgentError {
    /// True when retrying later may succeed without any change: the engine or server
    /// is away, the engine reported a conflict (409: a name still held by a container
    /// being removed) that passes once the other operation ends, or the server pushed
    /// back (`RATE_LIMITED`, `OVERLOADED`: retried with backoff, never dropped), is
    /// stopping or not leading (`UNAVAILABLE`, `NOT_LEADER`), or failed itself
    /// (`INTERNAL`: e.g. its writer stopped under this very request; the outcome is
    /// settled by retrying with the same idempotency key once it is back).
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::EngineUnavailable { .. } | AgentError::ServerUnavailable { .. } => true,
            AgentError::Engine {
                status: Some(409), ..
            } => true,
            // Pushback, a server that is stopping or away for now (its writer stopped:
            // a restart, or another server leads), or its own failure: the request was
            // not at fault, and retrying it (with its idempotency key) is safe.
            AgentError::Api { code, .. } => matches!(
                code.as_str(),
                "RATE_LIMITED" | "OVERLOADED" | "UNAVAILABLE" | "INTERNAL" | "NOT_LEADER"
            ),
            _ => false,
        }
    }
}
