//! Idle stop without Docker (see `sessions_support`): the idle check, driven with its own
//! clock, stops a deployment idle past its environment's timeout and records why, and
//! leaves busy, watched and untimed ones alone; a bad `idle-timeout` is refused.

use std::time::{Duration, Instant};

use dcloud::server::{check_idle, IdleTracker};
use serde_json::json;

mod sessions_support;

use sessions_support::{environment, Harness, WAIT};

#[test]
fn idle_deployments_are_stopped_with_the_reason_and_busy_ones_are_not() {
    let h = Harness::start();
    let idle = h.running_deployment("idle-env", Some("2m"));
    let busy = h.running_deployment("busy-env", Some("2m"));
    let watched = h.running_deployment("watched-env", Some("2m"));
    let untimed = h.running_deployment("untimed-env", None);
    for dep in [&idle, &watched, &untimed] {
        h.driver.set_cpu(dep, 0);
    }
    h.driver.set_cpu(&busy, 900);
    // Wait until the heartbeats carrying those figures are in the state.
    let app = h.server.as_ref().expect("server").app().clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = {
            let state = app.writer().state();
            let node = state.node(h.driver.node_id()).expect("node");
            let cpu = |d: &str| {
                node.containers
                    .iter()
                    .find(|c| c.deployment_id == d)
                    .map(|c| c.usage.cpu_millis)
            };
            cpu(&idle) == Some(0) && cpu(&busy) == Some(900) && cpu(&watched) == Some(0)
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeats did not carry the cpu figures"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // An open session keeps `watched` active.
    let guard = app.sessions().track(&watched);
    let mut tracker = IdleTracker::new(50);
    let t0 = 1_000_000_000_000;
    let stops = h.runtime.block_on(check_idle(&app, &mut tracker, t0));
    assert!(stops.is_empty(), "{stops:?}");
    let stops = h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0 + 119_000));
    assert!(stops.is_empty(), "{stops:?}");
    let stops = h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0 + 120_000));
    let stopped: Vec<&str> = stops.iter().map(|s| s.deployment_id.as_str()).collect();
    assert_eq!(stopped, [idle.as_str()]);
    h.wait_status(&idle, "STOPPED");
    for dep in [&busy, &watched, &untimed] {
        assert_eq!(h.status(dep), "RUNNING");
    }
    let recorded = h.events(&idle, "DeploymentIdleStopped");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, "system");
    assert_eq!(recorded[0].1["idle_ms"], json!(120_000));
    assert!(recorded[0].1["reason"]
        .as_str()
        .unwrap_or("")
        .contains("idle for 120s"));
    drop(guard);
}

#[test]
fn a_bad_idle_timeout_names_the_field_and_changes_nothing() {
    let h = Harness::start();
    let q = "mutation($d: String!) { apply(document: $d) { events } }";
    let body = h.gql_raw(
        &h.alice,
        q,
        json!({"d": environment("bad-idle", Some("soon"))}),
    );
    let err = &body["errors"][0];
    assert_eq!(err["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert_eq!(
        err["extensions"]["fields"][0]["path"], "idle-timeout",
        "{body}"
    );
    let d = h.gql(
        &h.alice,
        "{ environments(first: 10) { nodes { id } } }",
        json!({}),
    );
    assert_eq!(d["environments"]["nodes"], json!([]));
}

/// A template's `idle-timeout` is shown on the template and carried into every
/// environment created from it; saving the template again without it clears it.
#[test]
fn a_template_idle_timeout_reaches_the_environments_made_from_it() {
    let h = Harness::start();
    let mut template: serde_json::Value =
        serde_json::from_str(&environment("tpl", Some("2m"))).expect("json");
    let doc = template.as_object_mut().expect("object");
    let name = doc.remove("env-name").expect("env-name");
    doc.insert("template-name".into(), name);
    let apply = "mutation($d: String!) { apply(document: $d) { documents { kind id } } }";
    h.gql(&h.admin, apply, json!({"d": template.to_string()}));
    let q = "{ templates { name idleTimeout idleTimeoutMs } }";
    let d = h.gql(&h.alice, q, json!({}));
    assert_eq!(
        d["templates"],
        json!([{"name": "tpl", "idleTimeout": "2m", "idleTimeoutMs": 120_000}])
    );

    // Alice makes an environment from it and deploys; left idle, it is stopped at 2m.
    let create = "mutation { createFromTemplate(template: \"tpl\") { id } }";
    let env = h.gql(&h.alice, create, json!({}))["createFromTemplate"]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let d = h.gql(
        &h.alice,
        "mutation($e: String!) { deploy(environment: $e) { id } }",
        json!({"e": env}),
    );
    let dep = d["deploy"]["id"].as_str().expect("id").to_string();
    h.wait_status(&dep, "RUNNING");
    h.driver.set_cpu(&dep, 0);
    let app = h.server.as_ref().expect("server").app().clone();
    // Wait until a heartbeat carries the idle figure.
    let deadline = Instant::now() + WAIT;
    loop {
        let cpu = {
            let state = app.writer().state();
            let node = state.node(h.driver.node_id()).expect("node");
            let c = node.containers.iter().find(|c| c.deployment_id == dep);
            c.map(|c| c.usage.cpu_millis)
        };
        if cpu == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat with cpu 0");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut tracker = IdleTracker::new(50);
    let t0 = 1_000_000_000_000;
    assert!(h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0))
        .is_empty());
    let stops = h
        .runtime
        .block_on(check_idle(&app, &mut tracker, t0 + 120_000));
    let stopped: Vec<&str> = stops.iter().map(|s| s.deployment_id.as_str()).collect();
    assert_eq!(stopped, [dep.as_str()]);
    h.wait_status(&dep, "STOPPED");

    // Saved again without the field: no timeout, for the template and new environments.
    template
        .as_object_mut()
        .expect("object")
        .remove("idle-timeout");
    h.gql(&h.admin, apply, json!({"d": template.to_string()}));
    let d = h.gql(&h.alice, q, json!({}));
    assert_eq!(d["templates"][0]["idleTimeout"], json!(null));
    let q =
        "mutation { createFromTemplate(template: \"tpl\", overrides: {name: \"again\"}) { id } }";
    let again = h.gql(&h.alice, q, json!({}))["createFromTemplate"]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let q = "query($f: EventFilter) { events(first: 500, filter: $f) { nodes { seq } } }";
    let timeouts = |env: &str| {
        let f =
            json!({"type": "EnvironmentIdleTimeoutSet", "entity": format!("environment:{env}")});
        let d = h.gql(&h.admin, q, json!({"f": f}));
        d["events"]["nodes"].as_array().expect("events").len()
    };
    assert_eq!(timeouts(&env), 1);
    assert_eq!(timeouts(&again), 0);
}

/// A template's timeout is held to the same bounds as an environment's.
#[test]
fn a_template_with_a_too_short_idle_timeout_is_refused() {
    let h = Harness::start();
    let doc = r#"{"template-name": "quick", "os": "busybox", "languages": [],
        "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1},
        "idle-timeout": "10s"}"#;
    let body = h.gql_raw(
        &h.admin,
        "mutation($d: String!) { apply(document: $d) { events } }",
        json!({"d": doc}),
    );
    let err = &body["errors"][0];
    assert_eq!(
        err["extensions"]["fields"][0]["path"], "idle-timeout",
        "{body}"
    );
    let d = h.gql(&h.admin, "{ templates { name } }", json!({}));
    assert_eq!(d["templates"], json!([]));
}
