//! The README's quick start, run as written: every ```sh block of its "Quick start"
//! section, in order, in one `bash -euo pipefail` script, against a real
//! `dcloud dev --driver sim` started in a fresh directory (with a copy of
//! `examples/`). The CLI finds that server the way a user's does, through
//! `.dcloud/server.json`; the test fails when any command of the README fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```sh blocks between `## Quick start` and the next `## ` heading.
fn quick_start_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Quick start")
        .expect("README has a Quick start section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read examples") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Kills the child (ours) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dcloud")
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let blocks = quick_start_blocks(&readme);
    assert!(blocks.len() >= 3, "quick start blocks: {blocks:?}");
    assert!(
        blocks
            .iter()
            .any(|b| b.contains("dcloud deploy --template notebook-cpu --watch")),
        "the quick start deploys the starter template"
    );
    for b in &blocks {
        assert!(
            !b.contains("../"),
            "the quick start stays inside the repository: {b}"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("examples"), &dir.path().join("examples"));
    let log = std::fs::File::create(dir.path().join("dev.log")).expect("log file");
    let server = Command::new(bin())
        .args(["dev", "--driver", "sim", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .env_remove("DCLOUD_DATA")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start dcloud dev");
    let mut server = Guard(server);

    // The server writes its URL once it listens, with the starter documents loaded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = dir.path().join(".dcloud").join("server.json");
    while !state.exists() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "dcloud dev exited ({status}):\n{}",
                std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "dcloud dev did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let bin_dir = Path::new(bin()).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_path = dir.path().join("quickstart.out");
    let out = std::fs::File::create(&out_path).expect("out file");
    let mut run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("DCLOUD_TOKEN")
        .env_remove("DCLOUD_SERVER")
        .env_remove("DCLOUD_DATA")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("out"))
        .stderr(out)
        .spawn()
        .expect("run the quick start");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = run.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the README quick start failed ({status:?}):\n--- script\n{script}\n--- output\n{output}\n--- dev.log\n{}",
        std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default()
    );
    for expected in [
        "status: running",
        "notebook-cpu",
        "analysis-notebook",
        "deployments 1 of 2",
        "ok: ",
    ] {
        assert!(
            output.contains(expected),
            "quick start output lacks {expected:?}:\n{output}"
        );
    }
}

#[test]
fn only_the_quick_start_section_is_extracted() {
    let text = "# x\n```sh\nnot this\n```\n## Quick start\n```sh\na\nb\n```\n```text\nno\n```\n### Sub\n```sh\nc\n```\n## Layout\n```sh\nnot this either\n```\n";
    assert_eq!(quick_start_blocks(text), vec!["a\nb\n", "c\n"]);
}
