//! The engine's event stream (containers labelled with this node) turned into reports:
//! start → Started, die → Exited{code} (or OomKilled), oom → OomWarning while the
//! container runs on, destroy → Removed. Reconnects with backoff and resumes from the
//! last event seen, so a restart of the engine loses nothing. While a watch runs it is
//! the only source of `Started`, so a container's start is always reported before its
//! exit.
//!
//! OOM kills: the engine's `oom` event is the kernel's cgroup OOM notification, sent
//! whenever ANY process of the container is killed for memory — a child of a shell, a
//! worker of a notebook — while the container itself may run on. So `oom` never ends a
//! deployment: only the container's own end (`die`) does. A die by SIGKILL (137) after
//! an `oom` event, or with the engine's `OOMKilled` flag set, is `OomKilled`; any other
//! die is `Exited` with its code. An `oom` after which the container is still running
//! (checked [`OOM_SETTLE`] later) is reported as a warning on the deployment.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptionsBuilder, LogsOptionsBuilder};
use futures::StreamExt;
use tracing::{debug, warn};

use crate::docker::{is_transport, DockerDriver};
use crate::driver::{Report, ReportSender, LABEL_DEPLOYMENT};
use crate::error::AgentError;

/// How long after an `oom` event the container is looked at: still running then means
/// a process inside was killed, not the container's main process.
pub const OOM_SETTLE: Duration = Duration::from_millis(1500);

/// The warning recorded when a process inside a running container is OOM-killed.
pub const OOM_WARNING: &str =
    "a process inside the container was killed for lack of memory; the container runs on";

/// A container event the agent cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Started,
    Died { code: i64 },
    Oom,
    Destroyed,
}

/// `(deployment_id, container_id, event)` of an engine event, if it concerns one of our
/// deployments' containers.
pub fn translate(msg: &EventMessage) -> Option<(String, String, EngineEvent)> {
    if msg.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = msg.actor.as_ref()?;
    let attributes = actor.attributes.as_ref()?;
    let deployment = attributes.get(LABEL_DEPLOYMENT)?.clone();
    let container = actor.id.clone()?;
    let event = match msg.action.as_deref()? {
        "start" => EngineEvent::Started,
        "die" => EngineEvent::Died {
            code: attributes
                .get("exitCode")
                .and_then(|c| c.parse().ok())
                .unwrap_or(-1),
        },
        "oom" => EngineEvent::Oom,
        "destroy" => EngineEvent::Destroyed,
        _ => return None,
    };
    Some((deployment, container, event))
}

impl DockerDriver {
    pub(super) async fn watch_events(&self, tx: ReportSender) -> Result<(), AgentError> {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let _watching = Watching(&self.watchers);
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", self.own_filters()),
            (
                "event",
                ["start", "die", "oom", "destroy"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        // Resume point: the last event seen, else when we first subscribed.
        let mut last_nanos: i64 = now_nanos();
        let mut oom_seen: HashSet<String> = HashSet::new();
        let mut retry = 0u32;
        loop {
            let since = format!(
                "{}.{:09}",
                last_nanos / 1_000_000_000,
                last_nanos % 1_000_000_000
            );
            let options = EventsOptionsBuilder::default()
                .since(&since)
                .filters(&filters)
                .build();
            let mut stream = self.docker.events(Some(options));
            let failure = loop {
                let item = tokio::select! {
                    _ = tx.closed() => return Ok(()),
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(msg)) => {
                        self.set_engine_ok(true);
                        retry = 0;
                        let nanos = msg.time_nano.unwrap_or(0);
                        if nanos != 0 && nanos < last_nanos {
                            continue; // replayed after a reconnect: already handled
                        }
                        last_nanos = last_nanos.max(nanos + 1);
                        // An event's attributes carry the container's labels.
                        if !self.owns(msg.actor.as_ref().and_then(|a| a.attributes.as_ref())) {
                            continue;
                        }
                        for report in self.reports_for(&msg, &mut oom_seen, &tx).await {
                            if tx.send(report).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            };
            if let Some(e) = &failure {
                if is_transport(e) {
                    self.set_engine_ok(false);
                }
                warn!(error = %e, "docker event stream broken: reconnecting");
            } else {
                debug!("docker event stream ended: reconnecting");
            }
            retry += 1;
            let delay = self.config.backoff.delay(retry);
            tokio::select! {
                _ = tx.closed() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            let reachable = self.docker.ping().await.is_ok();
            self.set_engine_ok(reachable);
        }
    }

    async fn reports_for(
        &self,
        msg: &EventMessage,
        oom_seen: &mut HashSet<String>,
        tx: &ReportSender,
    ) -> Vec<(String, Report)> {
        let Some((dep, id, event)) = translate(msg) else {
            return Vec::new();
        };
        let mut reports = Vec::new();
        match event {
            EngineEvent::Started => {
                // A declared service counts as started once its check passes.
                let ready = msg
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|at| at.get(crate::driver::LABEL_READY))
                    .and_then(|label| crate::driver::Readiness::parse(label));
                match ready {
                    Some(_) => {
                        self.report_running_now_or_when_ready(&dep, &id, ready.as_ref(), tx)
                            .await
                    }
                    None => reports.push((dep, Report::Started)),
                }
            }
            EngineEvent::Oom => {
                oom_seen.insert(id.clone());
                // Looked at a little later, off the event loop: when the main process
                // was the one killed, its `die` comes meanwhile and ends it instead.
                let (docker, tx) = (self.docker.clone(), tx.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(OOM_SETTLE).await;
                    let running = matches!(
                        docker.inspect_container(&id, None).await,
                        Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true)
                    );
                    if running {
                        let message = OOM_WARNING.to_string();
                        let _ = tx.send((dep, Report::OomWarning { message })).await;
                    }
                });
            }
            EngineEvent::Died { code } => {
                if let Some(tail) = self.last_output(&id).await {
                    reports.push((dep.clone(), Report::Output { tail }));
                }
                let oom = oom_seen.remove(&id);
                if code == 137 {
                    let flagged = oom
                        || matches!(
                            self.inspect(&id).await,
                            Ok(Some(c)) if c.state.as_ref().and_then(|s| s.oom_killed) == Some(true)
                        );
                    if flagged {
                        reports.push((dep.clone(), Report::OomKilled));
                    }
                }
                reports.push((dep, Report::Exited { code }));
            }
            EngineEvent::Destroyed => {
                oom_seen.remove(&id);
                reports.push((dep, Report::Removed));
            }
        }
        reports
    }
}

/// Lines of a dead container's output kept as its last output.
const OUTPUT_LINES: &str = "20";
/// Most bytes of it kept (the end).
const OUTPUT_BYTES: usize = 4096;

impl DockerDriver {
    /// The last [`OUTPUT_LINES`] lines (at most [`OUTPUT_BYTES`]) the container wrote to
    /// stdout and stderr; `None` when it wrote nothing or the logs cannot be read.
    async fn last_output(&self, id: &str) -> Option<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(OUTPUT_LINES)
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut bytes = Vec::new();
        let read = async {
            while let Some(Ok(chunk)) = stream.next().await {
                bytes.extend_from_slice(&chunk.into_bytes());
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        if bytes.is_empty() {
            return None;
        }
        let start = bytes.len().saturating_sub(OUTPUT_BYTES);
        Some(String::from_utf8_lossy(&bytes[start..]).into_owned())
    }
}

/// Counts a running watch for as long as it lives (however its future ends).
struct Watching<'a>(&'a AtomicUsize);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn msg(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some("c1".to_string()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_events_translate() {
        let dep = ("dcloud.deployment", "d1");
        let t = |m: EventMessage| translate(&m);
        assert_eq!(
            t(msg("start", &[dep])),
            Some(("d1".into(), "c1".into(), EngineEvent::Started))
        );
        assert_eq!(
            t(msg("die", &[dep, ("exitCode", "3")])).map(|x| x.2),
            Some(EngineEvent::Died { code: 3 })
        );
        assert_eq!(t(msg("oom", &[dep])).map(|x| x.2), Some(EngineEvent::Oom));
        assert_eq!(
            t(msg("destroy", &[dep])).map(|x| x.2),
            Some(EngineEvent::Destroyed)
        );
    }

    #[test]
    fn other_events_are_ignored() {
        let dep = ("dcloud.deployment", "d1");
        assert_eq!(translate(&msg("exec_start: sh", &[dep])), None);
        assert_eq!(
            translate(&msg("start", &[("dcloud.node", "n")])),
            None,
            "no deployment label"
        );
        let mut m = msg("start", &[dep]);
        m.typ = Some(EventMessageTypeEnum::NETWORK);
        assert_eq!(translate(&m), None);
    }
}
