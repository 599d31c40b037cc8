//! Shared by the CLI end-to-end tests: a real server started in-process on port 0 in a
//! temporary data directory, and the real `dcloud` binary run against it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use dcloud::server::{start, Server, ServerConfig};
use serde_json::Value;

pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) admin: String,
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = ServerConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        let server = runtime.block_on(start(config)).expect("server starts");
        let admin = server.admin_token.clone().expect("a new admin token");
        TestServer {
            url: server.url(),
            admin,
            server: Some(server),
            runtime,
            _dir: dir,
        }
    }

    pub(crate) fn command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcloud"));
        cmd.env_remove("DCLOUD_TOKEN")
            .env_remove("DCLOUD_SERVER")
            .arg("--server")
            .arg(&self.url);
        if let Some(t) = token {
            cmd.arg("--token").arg(t);
        }
        cmd.args(args);
        cmd
    }

    /// Runs the CLI to the end.
    pub(crate) fn cli(&self, token: &str, args: &[&str]) -> Run {
        Run::from(
            self.command(Some(token), args)
                .output()
                .expect("run dcloud"),
        )
    }

    /// Runs the CLI as the admin.
    pub(crate) fn admin(&self, args: &[&str]) -> Run {
        self.cli(&self.admin.clone(), args)
    }

    /// Starts the CLI with piped stdout and stderr.
    pub(crate) fn spawn(&self, token: &str, args: &[&str]) -> Child {
        self.command(Some(token), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dcloud")
    }

    /// A new token of `role` (through the CLI).
    pub(crate) fn token(&self, role: &str, name: &str) -> String {
        let run = self.admin(&[
            "token", "create", "--role", role, "--name", name, "--output", "json",
        ]);
        run.ok();
        run.json()["token"]
            .as_str()
            .expect("a token field")
            .to_string()
    }

    /// One GraphQL request straight to the server (for what the CLI has no command for,
    /// like registering a node as its agent).
    pub(crate) fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        let url = format!("{}/graphql", self.url);
        self.runtime.block_on(async {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"query": query, "variables": variables}))
                .send()
                .await
                .expect("graphql request")
                .json::<Value>()
                .await
                .expect("graphql json")
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// A test data file.
pub(crate) fn data(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", "cli", name]
        .iter()
        .collect();
    path.to_string_lossy().into_owned()
}

/// A finished CLI run.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts exit 0 and returns itself.
    pub(crate) fn ok(&self) -> &Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not json ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// Applies the catalog and dataset catalog, then the two example environments.
pub(crate) fn seed(server: &TestServer) {
    server.admin(&["apply", "-f", &data("setup.json")]).ok();
    server
        .admin(&["apply", "-f", &data("environment.json")])
        .ok();
    server
        .admin(&["apply", "-f", &data("environment.yaml")])
        .ok();
}
