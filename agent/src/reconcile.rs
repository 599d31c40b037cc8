//! Reconcile: compare what this node was assigned with what the engine holds (by label)
//! and converge, without duplicates or orphans. `plan` decides (pure); `Reconciler`
//! carries the plan out through a `Driver`.
//!
//! Decisions:
//! - assigned, no container (or only a created-never-started one) → `Ensure`;
//! - assigned, container from another image → `Replace` (remove, then ensure);
//! - assigned, container exited → `ReportExited` once, and it is NOT restarted: an exit
//!   is an outcome the control plane records (a job that ended, a crash with its code);
//!   restarting would hide it and crash-loop. The control plane redeploys if it wants.
//!   The exited container stays (its logs are kept) until the deployment is stopped;
//! - several containers for one deployment → keep one (the one with the deterministic
//!   name, else a running one, else the lowest id), `Remove` the others;
//! - our node label but not assigned (or no deployment label) → `Remove`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::driver::{
    container_name, Assignment, Driver, Observed, Readiness, Report, ReportSender,
};
use crate::error::AgentError;

/// One step towards the assigned state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove a container that must not exist: an orphan or a duplicate.
    Remove {
        container_id: String,
        deployment_id: String,
        why: RemoveReason,
    },
    /// Remove the container built from an outdated image, then ensure the deployment.
    Replace {
        deployment_id: String,
        container_id: String,
    },
    /// Build/create/start (or start an existing created container).
    Ensure { deployment_id: String },
    /// The assigned deployment's container has exited: tell the control plane.
    ReportExited {
        deployment_id: String,
        container_id: String,
        code: i64,
    },
    /// The assigned deployment's container runs (adopted after a restart, or found
    /// after the deployment was placed here again): tell the control plane, once per
    /// container.
    ReportRunning {
        deployment_id: String,
        container_id: String,
        /// The assignment's readiness check: a declared service is reported running
        /// only once it passes ([`Driver::report_running`]).
        ready: Option<Readiness>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Carries our node label but the deployment is not assigned here.
    NotAssigned,
    /// A second container for a deployment that already has one.
    Duplicate,
}

/// Decides the actions: removals first (they free ports and memory), then replacements,
/// then ensures and reports, each group ordered by deployment id.
pub fn plan(assigned: &[Assignment], observed: &[Observed]) -> Vec<Action> {
    let mut by_deployment: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_deployment
            .entry(o.deployment_id.as_str())
            .or_default()
            .push(o);
    }
    let wanted: BTreeMap<&str, &Assignment> = assigned
        .iter()
        .map(|a| (a.deployment_id.as_str(), a))
        .collect();

    let mut removes = Vec::new();
    let mut replaces = Vec::new();
    let mut rest = Vec::new();

    for (dep, containers) in &by_deployment {
        let Some(a) = wanted.get(dep).filter(|_| !dep.is_empty()) else {
            for o in containers {
                removes.push(Action::Remove {
                    container_id: o.container_id.clone(),
                    deployment_id: o.deployment_id.clone(),
                    why: RemoveReason::NotAssigned,
                });
            }
            continue;
        };
        let keep = keeper(&container_name(dep, &a.node_id), containers);
        for o in containers
            .iter()
            .filter(|o| o.container_id != keep.container_id)
        {
            removes.push(Action::Remove {
                container_id: o.container_id.clone(),
                deployment_id: o.deployment_id.clone(),
                why: RemoveReason::Duplicate,
            });
        }
        if keep.image != a.image_tag {
            replaces.push(Action::Replace {
                deployment_id: a.deployment_id.clone(),
                container_id: keep.container_id.clone(),
            });
        } else if keep.running {
            rest.push(Action::ReportRunning {
                deployment_id: a.deployment_id.clone(),
                container_id: keep.container_id.clone(),
                ready: a.ready.clone(),
            });
        } else if let Some(code) = keep.exit_code {
            rest.push(Action::ReportExited {
                deployment_id: a.deployment_id.clone(),
                container_id: keep.container_id.clone(),
                code,
            });
        } else {
            rest.push(Action::Ensure {
                deployment_id: a.deployment_id.clone(),
            });
        }
    }
    for (dep, _) in wanted
        .iter()
        .filter(|(d, _)| !by_deployment.contains_key(*d))
    {
        rest.push(Action::Ensure {
            deployment_id: dep.to_string(),
        });
    }
    rest.sort_by(|a, b| action_deployment(a).cmp(action_deployment(b)));
    removes.extend(replaces);
    removes.extend(rest);
    removes
}

fn keeper<'a>(name: &str, containers: &[&'a Observed]) -> &'a Observed {
    let mut sorted: Vec<&Observed> = containers.to_vec();
    sorted.sort_by(|a, b| {
        (a.name != name, !a.running, &a.container_id).cmp(&(
            b.name != name,
            !b.running,
            &b.container_id,
        ))
    });
    sorted[0]
}

fn action_deployment(a: &Action) -> &str {
    match a {
        Action::Remove { deployment_id, .. }
        | Action::Replace { deployment_id, .. }
        | Action::Ensure { deployment_id }
        | Action::ReportExited { deployment_id, .. }
        | Action::ReportRunning { deployment_id, .. } => deployment_id,
    }
}

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Actions that failed, keyed by deployment id (or container id for removals of
    /// containers without a deployment). Transient ones are retried by the next pass.
    pub failures: Vec<(String, AgentError)>,
}

/// Carries plans out. Holds only what it already reported (so an exited container is
/// reported once, not on every pass); the assignments stay with the caller, so nothing
/// is lost while the engine is away: the next pass after it returns converges.
pub struct Reconciler {
    grace: Duration,
    concurrency: usize,
    reported_exits: HashSet<String>,
    /// Containers whose running this reconciler has reported.
    reported_running: HashSet<String>,
    /// The node it acts for: stale containers it removes are reported for it.
    node_id: Option<String>,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler {
            grace: Duration::from_secs(10),
            concurrency: 4,
            reported_exits: HashSet::new(),
            reported_running: HashSet::new(),
            node_id: None,
        }
    }
}

impl Reconciler {
    pub fn new() -> Self {
        Reconciler::default()
    }

    /// Grace period between SIGTERM and SIGKILL when removing containers.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The node it acts for: a container of a deployment not assigned here that it
    /// removes is reported as `StaleRemoved` for this node.
    pub fn with_node(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// How many deployments are built/started at the same time.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// One pass: list, plan, act. Fails only when the engine cannot even be listed.
    pub async fn run_once(
        &mut self,
        driver: &dyn Driver,
        assigned: &[Assignment],
        tx: &ReportSender,
    ) -> Result<Outcome, AgentError> {
        let observed = driver.list().await?;
        let actions = plan(assigned, &observed);
        let wanted: BTreeMap<&str, &Assignment> = assigned
            .iter()
            .map(|a| (a.deployment_id.as_str(), a))
            .collect();
        let mut failures = Vec::new();
        let mut ensures = Vec::new();

        for action in &actions {
            match action {
                Action::Remove {
                    container_id,
                    deployment_id,
                    why,
                } => {
                    info!(container = %container_id, deployment = %deployment_id, ?why, "removing container");
                    match driver.remove_container(container_id, self.grace).await {
                        Err(e) => failures.push((key(deployment_id, container_id), e)),
                        Ok(()) => {
                            let stale =
                                *why == RemoveReason::NotAssigned && !deployment_id.is_empty();
                            if let (true, Some(node_id)) = (stale, &self.node_id) {
                                let report = Report::StaleRemoved {
                                    node_id: node_id.clone(),
                                    container_id: container_id.clone(),
                                };
                                let _ = tx.send((deployment_id.clone(), report)).await;
                            }
                        }
                    }
                }
                Action::Replace {
                    deployment_id,
                    container_id,
                } => {
                    info!(deployment = %deployment_id, container = %container_id, "replacing container of an outdated image");
                    match driver.remove_container(container_id, self.grace).await {
                        Ok(()) => ensures.push(deployment_id.as_str()),
                        Err(e) => failures.push((deployment_id.clone(), e)),
                    }
                }
                Action::Ensure { deployment_id } => ensures.push(deployment_id.as_str()),
                Action::ReportExited {
                    deployment_id,
                    container_id,
                    code,
                } => {
                    if self.reported_exits.insert(container_id.clone()) {
                        let _ = tx
                            .send((deployment_id.clone(), Report::Exited { code: *code }))
                            .await;
                    }
                }
                Action::ReportRunning {
                    deployment_id,
                    container_id,
                    ready,
                } => {
                    if self.reported_running.insert(container_id.clone()) {
                        driver
                            .report_running(deployment_id, container_id, ready.as_ref(), tx)
                            .await;
                    }
                }
            }
        }

        let jobs: Vec<_> = ensures
            .into_iter()
            .filter_map(|dep| wanted.get(dep).copied())
            .map(|a| ensure_one(driver, a, tx))
            .collect();
        let results: Vec<(String, Result<(), AgentError>)> = stream::iter(jobs)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (dep, result) in results {
            let Err(e) = result else { continue };
            match &e {
                AgentError::BuildFailed { .. } => {}
                e if e.is_transient() => {
                    warn!(deployment = %dep, error = %e, "engine away: will retry")
                }
                e => {
                    let _ = tx
                        .send((
                            dep.clone(),
                            Report::Failed {
                                message: e.to_string(),
                            },
                        ))
                        .await;
                }
            }
            failures.push((dep, e));
        }
        Ok(Outcome { actions, failures })
    }
}

async fn ensure_one(
    driver: &dyn Driver,
    a: &Assignment,
    tx: &ReportSender,
) -> (String, Result<(), AgentError>) {
    (a.deployment_id.clone(), driver.ensure_running(a, tx).await)
}

fn key(deployment_id: &str, container_id: &str) -> String {
    if deployment_id.is_empty() {
        container_id.to_string()
    } else {
        deployment_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::tests::assignment;

    fn obs(dep: &str, id: &str, running: bool, exit_code: Option<i64>) -> Observed {
        Observed {
            deployment_id: dep.to_string(),
            container_id: id.to_string(),
            name: container_name(dep, "0x020000000001"),
            image: "dcloud/env:abc123".to_string(),
            running,
            exit_code,
        }
    }

    fn ensure(dep: &str) -> Action {
        Action::Ensure {
            deployment_id: dep.to_string(),
        }
    }

    #[test]
    fn missing_deployments_are_ensured_in_order() {
        let assigned = vec![assignment("d2"), assignment("d1")];
        assert_eq!(plan(&assigned, &[]), vec![ensure("d1"), ensure("d2")]);
    }

    #[test]
    fn running_assigned_is_reported_running() {
        let assigned = vec![assignment("d1")];
        assert_eq!(
            plan(&assigned, &[obs("d1", "c1", true, None)]),
            vec![Action::ReportRunning {
                deployment_id: "d1".into(),
                container_id: "c1".into(),
                ready: None
            }]
        );
    }

    #[test]
    fn created_never_started_is_ensured() {
        let assigned = vec![assignment("d1")];
        assert_eq!(
            plan(&assigned, &[obs("d1", "c1", false, None)]),
            vec![ensure("d1")]
        );
    }

    #[test]
    fn exited_is_reported_not_restarted() {
        let assigned = vec![assignment("d1")];
        assert_eq!(
            plan(&assigned, &[obs("d1", "c1", false, Some(3))]),
            vec![Action::ReportExited {
                deployment_id: "d1".into(),
                container_id: "c1".into(),
                code: 3
            }]
        );
    }

    #[test]
    fn orphans_are_removed_first() {
        let assigned = vec![assignment("d1")];
        let mut nolabel = obs("", "c9", true, None);
        nolabel.name = "whatever".into();
        let observed = vec![obs("gone", "c2", true, None), nolabel];
        assert_eq!(
            plan(&assigned, &observed),
            vec![
                Action::Remove {
                    container_id: "c9".into(),
                    deployment_id: "".into(),
                    why: RemoveReason::NotAssigned
                },
                Action::Remove {
                    container_id: "c2".into(),
                    deployment_id: "gone".into(),
                    why: RemoveReason::NotAssigned
                },
                ensure("d1"),
            ]
        );
    }

    #[test]
    fn duplicates_keep_the_named_one() {
        let assigned = vec![assignment("d1")];
        let mut stray = obs("d1", "c0", true, None);
        stray.name = "old-name".into();
        let observed = vec![stray, obs("d1", "c5", false, Some(1))];
        assert_eq!(
            plan(&assigned, &observed),
            vec![
                Action::Remove {
                    container_id: "c0".into(),
                    deployment_id: "d1".into(),
                    why: RemoveReason::Duplicate
                },
                Action::ReportExited {
                    deployment_id: "d1".into(),
                    container_id: "c5".into(),
                    code: 1
                },
            ]
        );
    }

    #[test]
    fn duplicates_without_named_one_keep_running_then_lowest_id() {
        let assigned = vec![assignment("d1")];
        let mut a = obs("d1", "c1", false, Some(0));
        let mut b = obs("d1", "c2", true, None);
        a.name = "x".into();
        b.name = "y".into();
        let actions = plan(&assigned, &[a.clone(), b.clone()]);
        assert_eq!(
            actions,
            vec![
                Action::Remove {
                    container_id: "c1".into(),
                    deployment_id: "d1".into(),
                    why: RemoveReason::Duplicate
                },
                Action::ReportRunning {
                    deployment_id: "d1".into(),
                    container_id: "c2".into(),
                    ready: None
                }
            ]
        );
        b.running = false;
        b.exit_code = Some(0);
        let actions = plan(&assigned, &[b, a]);
        assert_eq!(
            actions[0],
            Action::Remove {
                container_id: "c2".into(),
                deployment_id: "d1".into(),
                why: RemoveReason::Duplicate
            }
        );
    }

    #[test]
    fn outdated_image_is_replaced() {
        let assigned = vec![assignment("d1")];
        let mut o = obs("d1", "c1", true, None);
        o.image = "dcloud/env:old".into();
        assert_eq!(
            plan(&assigned, &[o]),
            vec![Action::Replace {
                deployment_id: "d1".into(),
                container_id: "c1".into()
            }]
        );
    }

    #[test]
    fn nothing_assigned_removes_everything() {
        let observed = vec![obs("d1", "c1", true, None), obs("d2", "c2", false, Some(0))];
        let actions = plan(&[], &observed);
        assert_eq!(actions.len(), 2);
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::Remove {
                why: RemoveReason::NotAssigned,
                ..
            }
        )));
    }
}
