//! The `dcloud` binary as a process: a closed stdout ends it quietly, logs to a file
//! carry no colour codes, a running server tells clients where it listens
//! (`DATA/server.json`), `audit verify` on a running server's data directory verifies
//! through the server, and an error is printed once.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::TestServer;

fn dcloud() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcloud"));
    cmd.env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .env_remove("DCLOUD_DATA")
        .env_remove("NO_COLOR");
    cmd
}

/// Kills the child (ours) when the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dcloud server` on port 0 in `data`, logging at info into `log`; returns once it
/// wrote `DATA/server.json`, with its URL.
fn start_server(data: &Path, log: &Path) -> (Guard, String) {
    let file = std::fs::File::create(log).expect("log file");
    let child = dcloud()
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("DCLOUD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start the server");
    let mut guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = data.join("server.json");
    loop {
        if let Ok(text) = std::fs::read_to_string(&state) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(url) = v["url"].as_str() {
                    return (guard, url.to_string());
                }
            }
        }
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!(
                "server exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let server = TestServer::start();
    let mut child = server
        .command(Some(&server.admin), &["events", "--after", "0", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Make sure there is something to print, read one line, then close the pipe.
    server
        .admin(&["token", "create", "--role", "user", "--name", "p1"])
        .ok();
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    assert!(!first.is_empty());
    // Each new event is printed into the closed pipe: the command must end, quietly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        server
            .admin(&["token", "create", "--role", "user", "--name", "p2"])
            .ok();
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its stdout closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn logs_to_a_file_have_no_colour_and_clients_find_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (guard, url) = start_server(&data, &log);
    assert!(!url.ends_with(":7070"), "port 0 became a real port: {url}");
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");

    // No --server: the client reads DATA/server.json (DCLOUD_DATA here).
    let out = dcloud()
        .args(["me", "--output", "json"])
        .env("DCLOUD_DATA", &data)
        .env("DCLOUD_TOKEN", token.trim())
        .output()
        .expect("run me");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(me["role"], "ADMIN");
    // … and so does one run in the directory holding ./.dcloud.
    let cwd = dir.path().join("project");
    std::fs::create_dir_all(cwd.join(".dcloud")).expect("mkdir");
    std::fs::copy(data.join("server.json"), cwd.join(".dcloud/server.json")).expect("copy");
    let out = dcloud()
        .args(["me"])
        .current_dir(&cwd)
        .env("DCLOUD_TOKEN", token.trim())
        .output()
        .expect("run me");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("server listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    drop(guard);
}

#[test]
fn audit_verify_on_a_running_servers_data_verifies_through_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_guard, _url) = start_server(&data, &dir.path().join("server.log"));
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");

    // Without a token: a clear message, not a raw "Locked".
    let out = dcloud()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .expect("verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("held by a running server"), "{stderr}");
    assert!(
        stderr.contains("dcloud audit verify --server http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains("Locked"), "{stderr}");

    // With an admin token: verified through the server.
    let out = dcloud()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .env("DCLOUD_TOKEN", token.trim())
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let out = dcloud()
        .args(["audit", "verify", "--output", "json"])
        .env("DCLOUD_SERVER", &_url)
        .env("DCLOUD_TOKEN", token.trim())
        .output()
        .expect("verify");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);

    // `replay` says the same instead of "Locked".
    let out = dcloud()
        .args(["replay", "--data"])
        .arg(&data)
        .output()
        .expect("replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("held by a running server"), "{stderr}");
}

#[test]
fn a_connection_error_is_printed_once() {
    let out = dcloud()
        .args(["nodes", "--server", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach the server at http://127.0.0.1:9"),
        "{stderr}"
    );
    let once = |s: &str| stderr.matches(s).count() <= 1;
    assert!(
        once("Connection refused") && once("error sending request"),
        "{stderr}"
    );
}
