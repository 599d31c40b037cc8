//! Logs and exec for the simulated driver: each deployment keeps a bounded backlog of
//! lines (build steps, its start, whatever a test prints) and a live feed for
//! followers; exec runs a tiny built-in shell (`hostname` answers the node id, `echo`,
//! `cat` copies stdin, `sh` reads commands line by line, `exit N`), so the relay path is
//! tested without Docker. A stopped container ends its followers and sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

use crate::error::AgentError;
use crate::session::{
    ExecEnds, ExecExit, ExecInput, ExecRequest, ExecSession, LogLine, LogLines, LogOptions,
    LogStream, SESSION_BUFFER,
};

/// Lines of backlog kept per deployment.
const BACKLOG_LINES: usize = 1000;

struct DepLog {
    backlog: VecDeque<LogLine>,
    /// `None` once the container exited: followers have ended.
    live: Option<broadcast::Sender<LogLine>>,
    /// True while the container is not running; dropped when it is removed.
    stopped: watch::Sender<bool>,
}

impl DepLog {
    fn new() -> DepLog {
        DepLog {
            backlog: VecDeque::new(),
            live: Some(broadcast::channel(SESSION_BUFFER).0),
            stopped: watch::channel(true).0,
        }
    }
}

/// The simulated engine's logs, CPU figures and exec sessions, per deployment.
pub(crate) struct SimSessions {
    node_id: String,
    logs: Mutex<HashMap<String, DepLog>>,
    cpu: Mutex<HashMap<String, u64>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl SimSessions {
    pub(crate) fn new(node_id: &str) -> SimSessions {
        SimSessions {
            node_id: node_id.to_string(),
            logs: Mutex::default(),
            cpu: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, DepLog>) -> T) -> T {
        f(&mut self.logs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Appends a line to the deployment's logs (and sends it to followers).
    pub(crate) fn print(&self, deployment_id: &str, stream: LogStream, line: &str) {
        let line = LogLine {
            stream,
            line: line.to_string(),
            time_ms: Some(now_ms()),
        };
        self.with(|m| {
            let log = m
                .entry(deployment_id.to_string())
                .or_insert_with(DepLog::new);
            if log.backlog.len() == BACKLOG_LINES {
                log.backlog.pop_front();
            }
            log.backlog.push_back(line.clone());
            if let Some(live) = &log.live {
                let _ = live.send(line);
            }
        });
    }

    pub(crate) fn started(&self, deployment_id: &str) {
        self.with(|m| {
            let log = m
                .entry(deployment_id.to_string())
                .or_insert_with(DepLog::new);
            if log.live.is_none() {
                log.live = Some(broadcast::channel(SESSION_BUFFER).0);
            }
            log.stopped.send_replace(false);
        });
        let msg = format!(
            "sim: deployment {deployment_id} started on node {}",
            self.node_id
        );
        self.print(deployment_id, LogStream::Stdout, &msg);
    }

    /// The container exited: followers and exec sessions end; the backlog stays.
    pub(crate) fn exited(&self, deployment_id: &str) {
        self.with(|m| {
            if let Some(log) = m.get_mut(deployment_id) {
                log.live = None;
                log.stopped.send_replace(true);
            }
        });
    }

    /// The container is removed: its logs go with it.
    pub(crate) fn removed(&self, deployment_id: &str) {
        self.with(|m| m.remove(deployment_id));
        self.cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(deployment_id);
    }

    pub(crate) fn set_cpu(&self, deployment_id: &str, millis: u64) {
        self.cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(deployment_id.to_string(), millis);
    }

    pub(crate) fn cpu(&self, deployment_id: &str) -> Option<u64> {
        self.cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(deployment_id)
            .copied()
    }

    pub(crate) fn logs(
        &self,
        deployment_id: &str,
        opts: &LogOptions,
    ) -> Result<LogLines, AgentError> {
        let (backlog, live) = self.with(|m| {
            let log = m
                .get(deployment_id)
                .ok_or_else(|| AgentError::NoContainer {
                    deployment_id: deployment_id.to_string(),
                })?;
            let mut lines: Vec<LogLine> = log
                .backlog
                .iter()
                .filter(|l| opts.since_ms.is_none_or(|s| l.time_ms.unwrap_or(0) >= s))
                .cloned()
                .collect();
            if let Some(tail) = opts.tail {
                let skip = lines.len().saturating_sub(tail as usize);
                lines.drain(..skip);
            }
            // Subscribed under the same lock as the backlog copy: no gap, no repeat.
            let live = if opts.follow {
                log.live.as_ref().map(broadcast::Sender::subscribe)
            } else {
                None
            };
            Ok::<_, AgentError>((lines, live))
        })?;
        let backlog = futures::stream::iter(backlog.into_iter().map(Ok));
        let Some(live) = live else {
            return Ok(backlog.boxed());
        };
        // A follower more than SESSION_BUFFER lines behind skips, and is told so.
        let live = BroadcastStream::new(live).map(|item| match item {
            Ok(line) => Ok(line),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Ok(LogLine {
                    stream: LogStream::Stderr,
                    line: format!("[{n} lines skipped: the reader fell behind]"),
                    time_ms: None,
                })
            }
        });
        Ok(backlog.chain(live).boxed())
    }

    pub(crate) fn exec(
        &self,
        deployment_id: &str,
        req: ExecRequest,
    ) -> Result<ExecSession, AgentError> {
        let stopped = self.with(|m| {
            m.get(deployment_id)
                .filter(|l| !*l.stopped.borrow())
                .map(|l| l.stopped.subscribe())
        });
        let Some(stopped) = stopped else {
            return Err(AgentError::NoContainer {
                deployment_id: deployment_id.to_string(),
            });
        };
        let (session, ends) = ExecSession::channels();
        let node_id = self.node_id.clone();
        tokio::spawn(async move {
            let ExecEnds {
                input,
                output,
                exit,
            } = ends;
            let code = tokio::select! {
                code = builtin(&node_id, &req.cmd, input, &output) => code,
                _ = wait_stopped(stopped) => Err("the container stopped".to_string()),
            };
            drop(output);
            let _ = exit.send(code);
        });
        Ok(session)
    }
}

async fn wait_stopped(mut stopped: watch::Receiver<bool>) {
    // A dropped sender (container removed) counts as stopped.
    let _ = stopped.wait_for(|s| *s).await;
}

/// The built-in commands; returns the exit code.
async fn builtin(
    node_id: &str,
    cmd: &[String],
    mut input: tokio::sync::mpsc::Receiver<ExecInput>,
    out: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> ExecExit {
    let name = cmd.first().map(String::as_str).unwrap_or("");
    let name = name.rsplit('/').next().unwrap_or(name);
    match name {
        "sh" | "bash" => {
            let mut pending = Vec::new();
            while let Some(msg) = input.recv().await {
                match msg {
                    ExecInput::Stdin(bytes) => pending.extend_from_slice(&bytes),
                    ExecInput::Eof => break,
                    ExecInput::Resize { .. } => continue,
                }
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                    if words.first().map(String::as_str) == Some("exit") {
                        let code = words.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                        return Ok(code);
                    }
                    if !words.is_empty() {
                        let (text, _) = one_shot(node_id, &words);
                        if out.send(text.into_bytes()).await.is_err() {
                            return Err("the output was closed".to_string());
                        }
                    }
                }
            }
            Ok(0)
        }
        "cat" if cmd.len() == 1 => {
            while let Some(msg) = input.recv().await {
                match msg {
                    ExecInput::Stdin(bytes) => {
                        if out.send(bytes).await.is_err() {
                            return Err("the output was closed".to_string());
                        }
                    }
                    ExecInput::Eof => break,
                    ExecInput::Resize { .. } => {}
                }
            }
            Ok(0)
        }
        _ => {
            let (text, code) = one_shot(node_id, cmd);
            if !text.is_empty() && out.send(text.into_bytes()).await.is_err() {
                return Err("the output was closed".to_string());
            }
            Ok(code)
        }
    }
}

/// A command that needs no input: its output and exit code.
fn one_shot(node_id: &str, cmd: &[String]) -> (String, i64) {
    let name = cmd.first().map(String::as_str).unwrap_or("");
    let name = name.rsplit('/').next().unwrap_or(name);
    match name {
        "hostname" => (format!("{node_id}\n"), 0),
        "echo" => (format!("{}\n", cmd[1..].join(" ")), 0),
        "true" => (String::new(), 0),
        "false" => (String::new(), 1),
        "cat" if cmd.get(1).map(String::as_str) == Some("/etc/hostname") => {
            (format!("{node_id}\n"), 0)
        }
        _ => (format!("sim: {name}: command not found\n"), 127),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &[&str]) -> ExecRequest {
        ExecRequest {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            cols: 80,
            rows: 24,
        }
    }

    async fn run(s: &SimSessions, cmd: &[&str], input: &[ExecInput]) -> (String, ExecExit) {
        let mut session = s.exec("d1", req(cmd)).expect("exec");
        for msg in input {
            session.input.send(msg.clone()).await.expect("send");
        }
        let mut out = Vec::new();
        while let Some(chunk) = session.output.recv().await {
            out.extend(chunk);
        }
        let code = session.exit.await.expect("exit");
        (String::from_utf8_lossy(&out).into_owned(), code)
    }

    #[tokio::test]
    async fn logs_give_the_backlog_then_follow_until_the_container_exits() {
        let s = SimSessions::new("n1");
        assert!(matches!(
            s.logs("d1", &LogOptions::default()),
            Err(AgentError::NoContainer { .. })
        ));
        s.print("d1", LogStream::Build, "Step 1/1 : RUN true");
        s.started("d1");
        let tail = LogOptions {
            tail: Some(1),
            ..LogOptions::default()
        };
        let lines: Vec<_> = s.logs("d1", &tail).unwrap().collect().await;
        assert_eq!(lines.len(), 1);
        assert!(lines[0]
            .as_ref()
            .unwrap()
            .line
            .contains("started on node n1"));

        let follow = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let mut stream = s.logs("d1", &follow).unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap().stream,
            LogStream::Build
        );
        stream.next().await.unwrap().unwrap();
        s.print("d1", LogStream::Stderr, "later");
        assert_eq!(stream.next().await.unwrap().unwrap().line, "later");
        s.exited("d1");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn the_built_in_shell_answers_and_ends_when_the_container_stops() {
        let s = SimSessions::new("n1");
        assert!(s.exec("d1", req(&["hostname"])).is_err());
        s.started("d1");
        assert_eq!(run(&s, &["hostname"], &[]).await, ("n1\n".into(), Ok(0)));
        assert_eq!(
            run(&s, &["echo", "a", "b"], &[]).await,
            ("a b\n".into(), Ok(0))
        );
        assert_eq!(run(&s, &["nope"], &[]).await.1, Ok(127));
        let cat = [ExecInput::Stdin(b"x\n".to_vec()), ExecInput::Eof];
        assert_eq!(run(&s, &["cat"], &cat).await, ("x\n".into(), Ok(0)));
        let sh = [ExecInput::Stdin(b"hostname\nexit 3\n".to_vec())];
        assert_eq!(run(&s, &["/bin/sh"], &sh).await, ("n1\n".into(), Ok(3)));

        let mut shell = s.exec("d1", req(&["sh"])).unwrap();
        s.removed("d1");
        assert!(shell.output.recv().await.is_none());
        assert_eq!(
            shell.exit.await.unwrap(),
            Err("the container stopped".into())
        );
    }
}
