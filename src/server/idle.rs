//! The idle culler (after JupyterHub's): a running deployment whose environment sets an
//! idle timeout, whose container's CPU (from the agent's heartbeats) stayed below the
//! threshold and that had no open logs or exec session for that long, is stopped with
//! the reason recorded (`DeploymentIdleStopped`, then the usual stop: persistent
//! volumes keep their data). The timeouts come from `EnvironmentIdleTimeoutSet`
//! events, which this tracker folds itself (the state's shape is frozen); the clock
//! comes in with each check, so tests drive it.

use std::collections::{BTreeMap, HashMap};

use dcloud_events::Event;
use dcloud_projections::{DeploymentStatus, State};

/// One deployment found idle: stop it with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleStop {
    pub deployment_id: String,
    pub idle_ms: u64,
    pub reason: String,
}

/// Idle timeouts per environment version, and when each deployment was last active.
#[derive(Debug, Default)]
pub struct IdleTracker {
    /// env id → version → timeout (from that version on; 0: none).
    timeouts: HashMap<String, BTreeMap<u32, u64>>,
    /// deployment → (last active ms, sessions opened as of then).
    active: HashMap<String, (i64, u64)>,
    cpu_threshold_millis: u64,
    /// The next seq to fold.
    next_seq: u64,
}

impl IdleTracker {
    pub fn new(cpu_threshold_millis: u64) -> IdleTracker {
        IdleTracker {
            cpu_threshold_millis,
            next_seq: 1,
            ..IdleTracker::default()
        }
    }

    pub fn cpu_threshold_millis(&self) -> u64 {
        self.cpu_threshold_millis
    }

    /// The next seq [`IdleTracker::fold`] expects.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Folds one event of the log (seq `seq`).
    pub fn fold(&mut self, seq: u64, event: &Event) {
        self.next_seq = seq + 1;
        if let Event::EnvironmentIdleTimeoutSet {
            env_id,
            version,
            timeout_ms,
        } = event
        {
            self.timeouts
                .entry(env_id.clone())
                .or_default()
                .insert(*version, *timeout_ms);
        }
    }

    /// The timeout of an environment version (0 or `None`: never idle-stopped).
    pub fn timeout_of(&self, env_id: &str, version: u32) -> Option<u64> {
        let t = *self.timeouts.get(env_id)?.range(..=version).next_back()?.1;
        (t > 0).then_some(t)
    }

    /// The deployments idle as of `now_ms`. `sessions(dep)` is `(open now, opened
    /// ever)` from the session hub. A deployment seen for the first time, busy, with a
    /// session open or opened since the last check, or with no CPU figure yet, counts
    /// as active now.
    pub fn check(
        &mut self,
        state: &State,
        now_ms: i64,
        sessions: impl Fn(&str) -> (usize, u64),
    ) -> Vec<IdleStop> {
        let mut stops = Vec::new();
        let mut seen = HashMap::new();
        for d in state.deployments.values() {
            if d.status != DeploymentStatus::Running {
                continue;
            }
            let Some(timeout) = self.timeout_of(&d.env_id, d.env_version) else {
                continue;
            };
            let cpu = d.node.as_deref().and_then(|n| state.node(n)).and_then(|n| {
                n.containers
                    .iter()
                    .find(|c| c.deployment_id == d.id)
                    .map(|c| c.usage.cpu_millis)
            });
            let (open, opened) = sessions(&d.id);
            let previous = self.active.get(&d.id).copied();
            let busy = cpu.is_none_or(|c| c >= self.cpu_threshold_millis)
                || open > 0
                || previous.is_none_or(|(_, o)| o != opened);
            let since = match previous {
                Some((t, _)) if !busy => t,
                _ => now_ms,
            };
            seen.insert(d.id.clone(), (since, opened));
            let idle_ms = now_ms.saturating_sub(since).max(0) as u64;
            if idle_ms >= timeout {
                stops.push(IdleStop {
                    deployment_id: d.id.clone(),
                    idle_ms,
                    reason: format!(
                        "idle for {}s (cpu below {} millicores, no open session); the idle timeout is {}s",
                        idle_ms / 1000,
                        self.cpu_threshold_millis,
                        timeout / 1000
                    ),
                });
            }
        }
        // Forget deployments that no longer run.
        self.active = seen;
        stops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(env: &str, version: u32, timeout_ms: u64) -> Event {
        Event::EnvironmentIdleTimeoutSet {
            env_id: env.into(),
            version,
            timeout_ms,
        }
    }

    #[test]
    fn a_timeout_holds_from_its_version_on_until_another_is_set() {
        let mut t = IdleTracker::new(50);
        t.fold(1, &set("e1", 2, 60_000));
        t.fold(2, &set("e1", 4, 0));
        t.fold(3, &set("e1", 5, 120_000));
        assert_eq!(t.next_seq(), 4);
        assert_eq!(t.timeout_of("e1", 1), None);
        assert_eq!(t.timeout_of("e1", 2), Some(60_000));
        assert_eq!(t.timeout_of("e1", 3), Some(60_000));
        assert_eq!(t.timeout_of("e1", 4), None);
        assert_eq!(t.timeout_of("e1", 9), Some(120_000));
        assert_eq!(t.timeout_of("e2", 1), None);
    }

    #[test]
    fn nothing_is_idle_without_running_deployments() {
        let mut t = IdleTracker::new(50);
        t.fold(1, &set("e1", 1, 60_000));
        assert!(t.check(&State::default(), 1_000_000, |_| (0, 0)).is_empty());
    }
}
