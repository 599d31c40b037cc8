//! The errors a command or a document can be refused with. Variants are ones a
//! caller can act on; one mapping to API codes lives at the edges.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One problem in a document: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Field path in the original document's names, e.g. `resources.ram` or
    /// `port-publish[1].external.ports`.
    pub path: String,
    /// What is wrong and what was expected, lowercase, no trailing period.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a command was refused. Refusal emits no event and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// Every problem found, each with its field path.
    #[error("invalid input: {}", join(.0))]
    Validation(Vec<FieldError>),
    /// The command named a version that is no longer the current one.
    #[error("conflict: expected version {expected}, current is {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The command is well-formed but not allowed in the current state.
    #[error("{0}")]
    Invalid(String),
    /// A deploy would pass its owner's quota; the message names the limit
    /// (`quota exceeded: gpus 2 of 1`).
    #[error("{0}")]
    QuotaExceeded(String),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
