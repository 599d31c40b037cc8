//! Logs and exec end to end without Docker (see `sessions_support`): the sim driver's
//! lines reach the CLI, `exec` runs the driver's built-in commands, roles are checked,
//! every session is recorded and closed when its deployment stops.

use std::io::Write;
use std::process::Stdio;

use dcloud_agent::session::LogStream;
use serde_json::{json, Value};

mod sessions_support;

use sessions_support::{lines_of, text, wait_exit, wait_line, Harness};

#[test]
fn sim_log_lines_flow_from_the_driver_to_the_cli() {
    let h = Harness::start();
    let id = h.running_deployment("logs-env", None);

    // The backlog: the build steps and the start line.
    let o = h.run(&h.alice, &["logs", &id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("[build] Step 1/"), "{out}");
    assert!(
        out.contains(&format!("sim: deployment {id} started")),
        "{out}"
    );

    // --tail and json output.
    let o = h.run(&h.alice, &["logs", &id, "--tail", "1", "--output", "json"]);
    let out = text(&o.stdout);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["stream"], "STDOUT");

    // --follow shows a line printed after it started, and ends when the deployment stops.
    let mut child = h
        .cli(&h.alice, &["logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs");
    let rx = lines_of(&mut child);
    wait_line(&rx, "started on node");
    h.driver
        .print(&id, LogStream::Stdout, "printed after the follow began");
    wait_line(&rx, "printed after the follow began");
    assert!(h.run(&h.alice, &["stop", &id]).status.success());
    assert!(wait_exit(&mut child).success());

    // Who opened the logs is in the log; the lines are not.
    let opened = h.events(&id, "DeploymentLogsOpened");
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert!(
        opened.iter().all(|(actor, _)| actor == "user:alice"),
        "{opened:?}"
    );
}

#[test]
fn logs_are_for_the_owner_admins_and_auditors_only() {
    let h = Harness::start();
    let id = h.running_deployment("logs-roles", None);
    for token in [&h.admin, &h.auditor] {
        let o = h.run(token, &["logs", &id]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("started on node"));
    }
    for token in [&h.bob, &h.agent] {
        let o = h.run(token, &["logs", &id]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("FORBIDDEN"), "{}", text(&o.stderr));
    }
    let o = h.run(&h.alice, &["logs", "no-such-deployment"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("NOT_FOUND"), "{}", text(&o.stderr));
    let actors: Vec<String> = h
        .events(&id, "DeploymentLogsOpened")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        actors,
        ["admin:admin", "auditor:audrey"].map(String::from).to_vec(),
        "{actors:?}"
    );
}

#[test]
fn exec_runs_commands_over_the_sim_driver_and_records_each_session() {
    let h = Harness::start();
    let id = h.running_deployment("exec-env", None);
    let node = h.driver.node_id().to_string();

    let o = h.run(&h.alice, &["exec", &id, "--", "cat", "/etc/hostname"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), node);

    let o = h.run(&h.admin, &["exec", &id, "--", "hostname"]);
    assert_eq!(text(&o.stdout).trim(), node);

    let o = h.run(&h.alice, &["exec", &id, "--", "false"]);
    assert_eq!(o.status.code(), Some(1));

    // stdin goes through with -i, and its end too.
    let mut child = h
        .cli(&h.alice, &["exec", &id, "-i", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn exec");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello over the relay\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("exec ends");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "hello over the relay\n");

    // Refused: another user, the auditor, an agent token.
    for token in [&h.bob, &h.auditor, &h.agent] {
        let o = h.run(token, &["exec", &id, "--", "hostname"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text(&o.stderr).contains("[FORBIDDEN]"),
            "{}",
            text(&o.stderr)
        );
    }

    let started = h.events(&id, "ExecSessionStarted");
    assert_eq!(started.len(), 4, "{started:?}");
    assert_eq!(started[0].0, "user:alice");
    assert_eq!(started[0].1["command"], json!(["cat", "/etc/hostname"]));
    assert_eq!(started[1].0, "admin:admin");
    let ended = h.events(&id, "ExecSessionEnded");
    let codes: Vec<Value> = ended.iter().map(|e| e.1["exit_code"].clone()).collect();
    assert_eq!(
        codes,
        vec![json!(0), json!(0), json!(1), json!(0)],
        "{ended:?}"
    );
}

#[test]
fn exec_sessions_close_when_the_deployment_stops() {
    let h = Harness::start();
    let id = h.running_deployment("exec-stop", None);
    let mut child = h
        .cli(&h.alice, &["exec", &id, "-i", "-t", "--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exec");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"echo shell is up\n").expect("write");
    let rx = lines_of(&mut child);
    wait_line(&rx, "shell is up");
    assert_eq!(h.server_sessions(&id), 1);
    assert!(h.run(&h.alice, &["stop", &id]).status.success());
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
    drop(stdin);
    let ended = h.events(&id, "ExecSessionEnded");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1["exit_code"], Value::Null);
    assert_eq!(h.server_sessions(&id), 0);
}

#[test]
fn session_requests_are_only_for_the_nodes_agent() {
    use dcloud_agent::runtime::protocol::SubEvent;
    use dcloud_agent::runtime::WsConnection;
    let h = Harness::start();
    let node = h.driver.node_id().to_string();
    let other_agent = h.token("AGENT", "other", Some("0x0200000000ff"));
    let ws = format!("{}/graphql/ws", h.url.replace("http://", "ws://"));
    let q = "subscription($n: ID!) { agentRequests(nodeId: $n) { sessionId } }";
    for token in [&h.alice, &h.auditor, &other_agent] {
        let first = h.runtime.block_on(async {
            let conn = WsConnection::connect(&ws, token).await.expect("connects");
            let mut sub = conn.subscribe(q, json!({"n": node})).expect("subscribes");
            sub.next().await
        });
        match first {
            Some(SubEvent::Error { code, .. }) => assert_eq!(code, "FORBIDDEN"),
            other => panic!("expected FORBIDDEN, got {other:?}"),
        }
    }
    // A session socket nobody asked for is refused, whoever brings it.
    let url = format!("{}/agent/session/unknown", h.url);
    for token in [&h.alice, &h.agent] {
        let status = h.runtime.block_on(async {
            reqwest::Client::new()
                .get(&url)
                .bearer_auth(token)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .expect("request")
                .status()
        });
        assert!(status.is_client_error(), "{status}");
    }
}

/// `exec -it` on a terminal puts it in raw mode, so ^C reaches the command instead of
/// killing the client, and gives the terminal back as it was when the session ends.
#[test]
fn exec_with_a_terminal_runs_raw_and_restores_it() {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use rustix::termios::{tcgetattr, LocalModes};
    use std::io::Read;
    use std::time::{Duration, Instant};

    let h = Harness::start();
    let id = h.running_deployment("tty-env", None);
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let name = name.to_str().expect("utf-8 pty name").to_string();
    let open_slave = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
            .expect("open the pty's terminal end")
    };
    let slave = open_slave();
    let cooked = tcgetattr(&slave).expect("tcgetattr");
    assert!(cooked
        .local_modes
        .contains(LocalModes::ICANON | LocalModes::ISIG));

    // `setsid -c` makes the pty the client's controlling terminal, as a shell would:
    // without raw mode, the ^C below would be a SIGINT for the client.
    let mut child = std::process::Command::new("setsid")
        .args(["-w", "-c", env!("CARGO_BIN_EXE_dcloud")])
        .args(["--server", &h.url, "--token", &h.alice])
        .args(["exec", &id, "-it", "--", "sh"])
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .stdin(open_slave())
        .stdout(open_slave())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exec under setsid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tcgetattr(&slave)
        .expect("tcgetattr")
        .local_modes
        .contains(LocalModes::ICANON)
    {
        assert!(
            Instant::now() < deadline,
            "exec -it never put the terminal in raw mode"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = tcgetattr(&slave).expect("tcgetattr");
    assert!(!raw.local_modes.contains(LocalModes::ISIG));
    assert!(!raw.local_modes.contains(LocalModes::ECHO));

    let mut keys = std::fs::File::from(master.try_clone().expect("dup master"));
    keys.write_all(b"\x03\necho still here\nexit 7\n")
        .expect("type into the terminal");
    // Drain what the command prints so the client never blocks on a full pty.
    let mut screen = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("still here") {
            match screen.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = child.wait().expect("exec ends");
    assert_eq!(status.code(), Some(7), "the client did not run to `exit 7`");
    let seen = reader.join().expect("reader");
    assert!(seen.contains("still here"), "{seen:?}");
    let after = tcgetattr(&slave).expect("tcgetattr");
    assert!(
        after
            .local_modes
            .contains(LocalModes::ICANON | LocalModes::ISIG | LocalModes::ECHO),
        "the terminal was not restored"
    );
}
