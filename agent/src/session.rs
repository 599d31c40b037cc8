//! Logs and exec sessions as a driver serves them: the log line and exec types of the
//! `Driver::logs` and `Driver::exec` calls. Every channel here is bounded
//! ([`SESSION_BUFFER`]): a slow reader slows the producer down, it never grows memory.

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::AgentError;

/// Capacity of every session channel (chunks of output, lines, stdin writes).
pub const SESSION_BUFFER: usize = 64;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Output of the image build.
    Build,
}

/// One line of a deployment's logs (without its line break).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
    /// When the engine received it (Unix ms), when it says.
    pub time_ms: Option<i64>,
}

/// What part of the logs to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// Only the last `tail` lines of the backlog (`None`: all of it).
    pub tail: Option<u32>,
    /// Only lines from this time on (Unix ms).
    pub since_ms: Option<i64>,
    /// Keep sending new lines until the container is gone.
    pub follow: bool,
}

/// The lines of a logs session; ends when the backlog is sent (no follow) or the
/// container is gone.
pub type LogLines = BoxStream<'static, Result<LogLine, AgentError>>;

/// A command to run in a deployment's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub cols: u16,
    pub rows: u16,
}

/// What the caller sends into an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    /// Standard input is closed.
    Eof,
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// How an exec session ended: the command's exit code, or why it has none.
pub type ExecExit = Result<i64, String>;

/// A running exec session. Dropping `input` closes standard input; `output` ends when
/// the command's output does; `exit` resolves after that.
pub struct ExecSession {
    pub input: mpsc::Sender<ExecInput>,
    pub output: mpsc::Receiver<Vec<u8>>,
    pub exit: oneshot::Receiver<ExecExit>,
}

impl ExecSession {
    /// The three channels of a session, and the driver's ends of them.
    pub fn channels() -> (ExecSession, ExecEnds) {
        let (input_tx, input_rx) = mpsc::channel(SESSION_BUFFER);
        let (output_tx, output_rx) = mpsc::channel(SESSION_BUFFER);
        let (exit_tx, exit_rx) = oneshot::channel();
        (
            ExecSession {
                input: input_tx,
                output: output_rx,
                exit: exit_rx,
            },
            ExecEnds {
                input: input_rx,
                output: output_tx,
                exit: exit_tx,
            },
        )
    }
}

/// The driver's side of an [`ExecSession`].
pub struct ExecEnds {
    pub input: mpsc::Receiver<ExecInput>,
    pub output: mpsc::Sender<Vec<u8>>,
    pub exit: oneshot::Sender<ExecExit>,
}

/// The error a driver without sessions returns.
pub(crate) fn unsupported(driver: &'static str, what: &'static str) -> AgentError {
    AgentError::Unsupported { driver, what }
}
