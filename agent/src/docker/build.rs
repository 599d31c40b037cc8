//! Images: reuse the tag when it exists, else build the recipe (a one-file tar context)
//! through the build API, turning its output stream into progress and failure reports.

use std::collections::VecDeque;
use std::sync::Arc;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use tracing::info;

use crate::docker::{is_transport, status_of, DockerDriver};
use crate::driver::{Assignment, Report, ReportSender};
use crate::error::AgentError;

/// Lines of a failed step's output kept in its report.
const TAIL_LINES: usize = 20;
/// Longest output line kept (progress bars redraw with `\r` on one line).
const MAX_LINE: usize = 1000;

/// Follows the classic builder's output (`Step 2/5 : RUN …`, the step's output, ` ---> id`)
/// and remembers the current step, its command and the tail of its output.
#[derive(Debug, Default)]
pub struct BuildLog {
    step: u32,
    steps: u32,
    command: String,
    tail: VecDeque<String>,
    partial: String,
}

impl BuildLog {
    /// Feeds one chunk of the `stream` field; returns a progress report per step begun.
    pub fn feed(&mut self, chunk: &str) -> Vec<Report> {
        self.partial.push_str(chunk);
        let mut reports = Vec::new();
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            if let Some(r) = self.line(line.trim_end_matches(['\n', '\r'])) {
                reports.push(r);
            }
        }
        reports
    }

    fn line(&mut self, line: &str) -> Option<Report> {
        if let Some((step, steps, command)) = parse_step(line) {
            self.step = step;
            self.steps = steps;
            self.command = command.to_string();
            self.tail.clear();
            return Some(Report::BuildProgress { step, steps });
        }
        let noise = line.starts_with(" ---> ")
            || line.starts_with("Removing intermediate container")
            || line.trim().is_empty();
        if !noise {
            let mut kept: String = line.chars().take(MAX_LINE).collect();
            if kept.len() < line.len() {
                kept.push('…');
            }
            self.tail.push_back(kept);
            while self.tail.len() > TAIL_LINES {
                self.tail.pop_front();
            }
        }
        None
    }

    /// The failure of the current step, with the last lines of its output followed by
    /// the engine's message.
    pub fn failed(&mut self, message: &str) -> (Report, AgentError) {
        let rest = std::mem::take(&mut self.partial);
        self.line(rest.trim_end());
        let mut lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        let message = message.trim();
        lines.push(message);
        let report = Report::BuildFailed {
            step: self.step,
            command: self.command.clone(),
            output_tail: lines.join("\n"),
        };
        let error = AgentError::BuildFailed {
            step: self.step,
            command: self.command.clone(),
            message: message.to_string(),
        };
        (report, error)
    }
}

/// `Step 2/5 : RUN pip install x` → `(2, 5, "RUN pip install x")`.
fn parse_step(line: &str) -> Option<(u32, u32, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, command) = rest.split_once(" : ")?;
    let (n, m) = counts.split_once('/')?;
    Some((
        n.trim().parse().ok()?,
        m.trim().parse().ok()?,
        command.trim(),
    ))
}

/// A tar archive holding only `Dockerfile`: the recipe needs no other context.
pub(crate) fn context_tar(dockerfile: &str) -> Result<Vec<u8>, AgentError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|()| builder.into_inner())
        .map_err(|e| AgentError::InvalidAssignment {
            field: "dockerfile".to_string(),
            reason: format!("cannot pack the build context: {e}"),
        })
}

impl DockerDriver {
    /// Reuses `a.image_tag` when present (`ImageReady{cached: true}`), else builds it.
    pub(super) async fn ensure_image(
        &self,
        a: &Assignment,
        tx: &ReportSender,
    ) -> Result<(), AgentError> {
        let send = |r: Report| async move {
            let _ = tx.send((a.deployment_id.clone(), r)).await;
        };
        let lock = {
            let mut locks = self.build_locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(a.image_tag.clone()).or_default())
        };
        let _one_build_per_tag = lock.lock().await;

        if self.image_exists(&a.image_tag).await? {
            send(Report::ImageReady { cached: true }).await;
            return Ok(());
        }
        info!(deployment = %a.deployment_id, image = %a.image_tag, "building image");
        send(Report::BuildStarted { steps: a.steps }).await;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&a.image_tag)
            .rm(true)
            .forcerm(true)
            .build();
        let context = context_tar(&a.dockerfile)?;
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut log = BuildLog::default();
        while let Some(item) = stream.next().await {
            let message = match item {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        for report in log.feed(&text) {
                            send(report).await;
                        }
                    }
                    continue;
                }
                Err(e) if is_transport(&e) => {
                    self.set_engine_ok(false);
                    return Err(self.unavailable(&e));
                }
                Err(BollardError::DockerStreamError { error }) => error,
                // Refused before any step ran (e.g. a Dockerfile parse error).
                Err(BollardError::DockerResponseServerError { message, .. }) => message,
                Err(e) => e.to_string(),
            };
            let (report, error) = log.failed(&message);
            send(report).await;
            return Err(error);
        }
        if !self.image_exists(&a.image_tag).await? {
            let (report, error) = log.failed("the build ended without producing the image");
            send(report).await;
            return Err(error);
        }
        send(Report::ImageReady { cached: false }).await;
        Ok(())
    }

    async fn image_exists(&self, tag: &str) -> Result<bool, AgentError> {
        match self
            .call("inspect image", || self.docker.inspect_image(tag))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_become_progress() {
        let mut log = BuildLog::default();
        let mut reports = log.feed("Step 1/3 : FROM dcloud-test/busybox:latest\n ---> 1a2b3c\n");
        reports.extend(log.feed("Step 2/3 : RUN echo hi\n ---> Running in 9f\nhi\n"));
        reports.extend(
            log.feed("Removing intermediate container 9f\n ---> 4d5e\nStep 3/3 : CMD [\"sh\"]\n"),
        );
        assert_eq!(
            reports,
            vec![
                Report::BuildProgress { step: 1, steps: 3 },
                Report::BuildProgress { step: 2, steps: 3 },
                Report::BuildProgress { step: 3, steps: 3 },
            ]
        );
    }

    #[test]
    fn chunks_split_mid_line_are_joined() {
        let mut log = BuildLog::default();
        assert!(log.feed("Step 4/").is_empty());
        assert_eq!(
            log.feed("9 : RUN x\n"),
            vec![Report::BuildProgress { step: 4, steps: 9 }]
        );
    }

    #[test]
    fn failure_names_the_step_command_and_output_tail() {
        let mut log = BuildLog::default();
        log.feed("Step 1/2 : FROM base\n ---> abc\nStep 2/2 : RUN sh -c 'seq 1 30; exit 7'\n ---> Running in f00\n");
        for i in 1..=30 {
            log.feed(&format!("{i}\n"));
        }
        log.feed("partial-without-newline");
        let (report, error) = log.failed(
            "The command '/bin/sh -c sh -c 'seq 1 30; exit 7'' returned a non-zero code: 7\n",
        );
        let Report::BuildFailed {
            step,
            command,
            output_tail,
        } = report
        else {
            panic!("not a build failure: {report:?}");
        };
        assert_eq!(step, 2);
        assert_eq!(command, "RUN sh -c 'seq 1 30; exit 7'");
        let lines: Vec<&str> = output_tail.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines[0], "12");
        assert_eq!(lines[TAIL_LINES - 2], "30");
        assert_eq!(lines[TAIL_LINES - 1], "partial-without-newline");
        assert!(lines[TAIL_LINES].ends_with("returned a non-zero code: 7"));
        assert!(matches!(error, AgentError::BuildFailed { step: 2, .. }));
    }

    #[test]
    fn failure_before_any_step() {
        let mut log = BuildLog::default();
        let (report, _) = log.failed("dockerfile parse error line 1: unknown instruction: FORM");
        assert_eq!(
            report,
            Report::BuildFailed {
                step: 0,
                command: String::new(),
                output_tail: "dockerfile parse error line 1: unknown instruction: FORM".to_string()
            }
        );
    }

    #[test]
    fn context_holds_the_dockerfile() {
        let bytes = context_tar("FROM x\nRUN true\n").unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("Dockerfile"));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
        assert_eq!(s, "FROM x\nRUN true\n");
        assert!(entries.next().is_none());
    }
}
