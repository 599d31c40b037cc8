//! Logs and exec on Docker: `GET /containers/{name}/logs` (with timestamps, split into
//! lines per stream) and exec create/start/resize/inspect. Output flows through bounded
//! channels; a slow reader stops the engine's stream from being read.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{LogsOptionsBuilder, ResizeExecOptionsBuilder};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{api_error, DockerDriver};
use crate::driver::container_name;
use crate::error::AgentError;
use crate::session::{
    ExecInput, ExecRequest, ExecSession, LogLine, LogLines, LogOptions, LogStream,
};

/// A partial line longer than this is sent as it is.
const MAX_LINE: usize = 64 * 1024;

impl DockerDriver {
    pub(super) async fn container_logs(
        &self,
        deployment_id: &str,
        opts: LogOptions,
    ) -> Result<LogLines, AgentError> {
        let name = container_name(deployment_id, &self.config.node_id);
        self.docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| match &e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => AgentError::NoContainer {
                    deployment_id: deployment_id.to_string(),
                },
                _ => api_error("inspect container", e),
            })?;
        let mut b = LogsOptionsBuilder::new()
            .follow(opts.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if let Some(tail) = opts.tail {
            b = b.tail(&tail.to_string());
        }
        if let Some(since) = opts.since_ms {
            b = b.since(i32::try_from(since / 1000).unwrap_or(i32::MAX));
        }
        let raw = self.docker.logs(&name, Some(b.build()));
        let mut carry: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let lines = raw
            .map(move |chunk| -> Vec<Result<LogLine, AgentError>> {
                let (stream, bytes) = match chunk {
                    Ok(LogOutput::StdErr { message }) => (LogStream::Stderr, message),
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        (LogStream::Stdout, message)
                    }
                    Ok(LogOutput::StdIn { .. }) => return Vec::new(),
                    Err(e) => return vec![Err(api_error("logs", e))],
                };
                let buf = &mut carry[usize::from(stream == LogStream::Stderr)];
                buf.extend_from_slice(&bytes);
                let mut out = Vec::new();
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    out.push(Ok(parse_line(stream, &line[..line.len() - 1])));
                }
                if buf.len() > MAX_LINE {
                    let line = std::mem::take(buf);
                    out.push(Ok(parse_line(stream, &line)));
                }
                out
            })
            .flat_map(futures::stream::iter);
        Ok(lines.boxed())
    }

    pub(super) async fn container_exec(
        &self,
        deployment_id: &str,
        req: ExecRequest,
    ) -> Result<ExecSession, AgentError> {
        let name = container_name(deployment_id, &self.config.node_id);
        let running = self
            .docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            return Err(AgentError::NoContainer {
                deployment_id: deployment_id.to_string(),
            });
        }
        let created = self
            .docker
            .create_exec(
                &name,
                CreateExecOptions {
                    cmd: Some(req.cmd.clone()),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(req.tty),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api_error("create exec", e))?;
        let exec_id = created.id;
        let started = self
            .docker
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: req.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| api_error("start exec", e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(AgentError::Engine {
                op: "start exec",
                status: None,
                message: "the engine did not attach the session".to_string(),
            });
        };
        let (session, ends) = ExecSession::channels();
        let docker = self.docker.clone();
        if req.tty {
            let size = ResizeExecOptionsBuilder::new()
                .w(i32::from(req.cols))
                .h(i32::from(req.rows))
                .build();
            let _ = docker.resize_exec(&exec_id, size).await;
        }
        let mut input_rx = ends.input;
        let resize_docker = docker.clone();
        let resize_id = exec_id.clone();
        // Stdin: written as it comes; EOF (or a dropped sender) shuts the write side.
        tokio::spawn(async move {
            while let Some(msg) = input_rx.recv().await {
                match msg {
                    ExecInput::Stdin(bytes) => {
                        if input.write_all(&bytes).await.is_err() {
                            break;
                        }
                        let _ = input.flush().await;
                    }
                    ExecInput::Eof => break,
                    ExecInput::Resize { cols, rows } => {
                        let size = ResizeExecOptionsBuilder::new()
                            .w(i32::from(cols))
                            .h(i32::from(rows))
                            .build();
                        let _ = resize_docker.resize_exec(&resize_id, size).await;
                    }
                }
            }
            let _ = input.shutdown().await;
        });
        let out_tx = ends.output;
        let exit_tx = ends.exit;
        tokio::spawn(async move {
            let mut failed = None;
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdIn { .. }) => {}
                    Ok(c) => {
                        if out_tx.send(c.into_bytes().to_vec()).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            drop(out_tx);
            let code = match docker.inspect_exec(&exec_id).await {
                Ok(i) => i.exit_code.ok_or_else(|| {
                    failed.unwrap_or_else(|| "the command has no exit code".to_string())
                }),
                Err(e) => Err(e.to_string()),
            };
            let _ = exit_tx.send(code);
        });
        Ok(session)
    }
}

/// A line as the engine sends it with timestamps: `RFC3339NANO message`.
fn parse_line(stream: LogStream, raw: &[u8]) -> LogLine {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let stamped = text
        .split_once(' ')
        .and_then(|(ts, rest)| rfc3339_ms(ts).map(|ms| (ms, rest)));
    match stamped {
        Some((ms, rest)) => LogLine {
            stream,
            line: rest.to_string(),
            time_ms: Some(ms),
        },
        None => LogLine {
            stream,
            line: text.to_string(),
            time_ms: None,
        },
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` as Unix milliseconds.
fn rfc3339_ms(ts: &str) -> Option<i64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_lines_are_split_from_their_timestamps() {
        let l = parse_line(
            LogStream::Stdout,
            b"2024-01-02T03:04:05.678901234Z hello world",
        );
        assert_eq!(l.line, "hello world");
        assert_eq!(l.time_ms, Some(1_704_164_645_678));
        let l = parse_line(LogStream::Stderr, b"no timestamp here");
        assert_eq!(l.line, "no timestamp here");
        assert_eq!(l.time_ms, None);
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
    }
}
