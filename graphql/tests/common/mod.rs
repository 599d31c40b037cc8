//! Test support: a [`Backend`] that decides and applies against a `State` over a
//! fjall log in a temporary directory (one command at a time), and helpers to run
//! GraphQL requests as a given actor.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_graphql::{Request, Response, Variables};
use dcloud_events::{Envelope, EventLog, FjallLog, NewEvent, VerifyError, VerifyReport};
use dcloud_graphql::{
    schema_with_router, ApiError, Backend, DcloudSchema, RequestId, Router, SchemaOptions,
    StateGuard,
};
use dcloud_projections::{decide, Actor, Command, Ctx, Settings, State};
use futures::future::BoxFuture;
use serde_json::{json, Value};

pub struct TestBackend {
    state: RwLock<State>,
    log: Arc<FjallLog>,
    /// Serialises decide + append + apply, as the writer does.
    writer: Mutex<()>,
    clock: AtomicI64,
    ids: AtomicU64,
    _dir: tempfile::TempDir,
}

impl TestBackend {
    pub fn new() -> Arc<TestBackend> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(FjallLog::open(dir.path()).expect("open log"));
        Arc::new(TestBackend {
            state: RwLock::new(State::new()),
            log,
            writer: Mutex::new(()),
            clock: AtomicI64::new(1_700_000_000_000),
            ids: AtomicU64::new(0),
            _dir: dir,
        })
    }

    pub fn fjall(&self) -> &Arc<FjallLog> {
        &self.log
    }

    pub fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn submit_now(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> Result<Vec<Envelope>, ApiError> {
        let _serial = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.load(Ordering::SeqCst);
        let label = actor.label();
        let ctx = Ctx {
            now_ms: now,
            actor,
            settings: std::sync::Arc::new(Settings::default()),
        };
        let events = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            decide(&state, &cmd, &ctx)?
        };
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let batch = events
            .into_iter()
            .map(|event| NewEvent {
                time_ms: now,
                actor: label.clone(),
                correlation: correlation.clone(),
                event,
            })
            .collect();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let envs = self
            .log
            .append(state.last_seq(), batch)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        for env in &envs {
            state.apply(env);
        }
        Ok(envs)
    }

    /// Submits as `actor` directly (setup steps that are not under test).
    pub fn run(&self, actor: &Actor, cmd: Command) -> Vec<Envelope> {
        self.submit_now(cmd, actor.clone(), "setup".into())
            .expect("setup command")
    }
}

impl Backend for TestBackend {
    fn submit(
        &self,
        cmd: Command,
        actor: Actor,
        correlation: String,
    ) -> BoxFuture<'static, Result<Vec<Envelope>, ApiError>> {
        let out = self.submit_now(cmd, actor, correlation);
        Box::pin(async move { out })
    }

    fn state(&self) -> StateGuard<'_> {
        Box::new(self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    fn verify_chain(&self) -> Result<VerifyReport, VerifyError> {
        self.log.verify()
    }

    fn now_ms(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn new_id(&self) -> String {
        format!("id{}", self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn new_secret(&self) -> [u8; 32] {
        let n = self.ids.fetch_add(1, Ordering::SeqCst) + 1;
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }
}

/// The backend and a schema over it (production limits, not dev mode).
pub struct Api {
    pub backend: Arc<TestBackend>,
    pub schema: DcloudSchema,
    /// The schema's subscription router (its counters prove who was woken).
    pub router: Arc<Router>,
}

impl Api {
    pub fn new() -> Api {
        Api::with(SchemaOptions::default())
    }

    pub fn with(opts: SchemaOptions) -> Api {
        let backend = TestBackend::new();
        let (schema, router) = schema_with_router(backend.clone(), opts);
        Api {
            backend,
            schema,
            router,
        }
    }

    pub fn state(&self) -> impl Deref<Target = State> + '_ {
        self.backend.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(actor: Option<&Actor>, query: &str, vars: Value) -> Request {
        let mut req = Request::new(query)
            .variables(Variables::from_json(vars))
            .data(RequestId("req-test".into()));
        if let Some(a) = actor {
            req = req.data(a.clone());
        }
        req
    }

    pub async fn exec(&self, actor: Option<&Actor>, query: &str, vars: Value) -> Response {
        self.schema.execute(Api::request(actor, query, vars)).await
    }

    /// The data of a request that must succeed.
    #[track_caller]
    pub fn ok(resp: Response) -> Value {
        assert!(
            resp.errors.is_empty(),
            "unexpected errors: {:?}",
            resp.errors
        );
        resp.data.into_json().expect("data is json")
    }

    pub async fn data(&self, actor: &Actor, query: &str, vars: Value) -> Value {
        Api::ok(self.exec(Some(actor), query, vars).await)
    }

    /// The first error's `extensions` (as JSON) of a request that must fail.
    pub async fn error(&self, actor: Option<&Actor>, query: &str, vars: Value) -> Value {
        let resp = self.exec(actor, query, vars).await;
        let e = resp
            .errors
            .first()
            .unwrap_or_else(|| panic!("expected an error, got {:?}", resp.data));
        let ext = serde_json::to_value(&e.extensions).expect("extensions are json");
        json!({ "message": e.message, "ext": ext })
    }

    pub async fn code(&self, actor: Option<&Actor>, query: &str, vars: Value) -> String {
        let e = self.error(actor, query, vars).await;
        e["ext"]["code"].as_str().unwrap_or_default().to_string()
    }
}

pub fn admin() -> Actor {
    Actor::admin("root")
}

pub fn alice() -> Actor {
    Actor::user("alice")
}

pub fn bob() -> Actor {
    Actor::user("bob")
}

pub fn auditor() -> Actor {
    Actor::auditor("audrey")
}

pub const NODE_A: &str = "0x5f6e4b6e4b50";
pub const NODE_B: &str = "0x5f6e4b6e4b51";

pub const CATALOG: &str = r#"{
  "os": "ubuntu",
  "base-image": "ubuntu:22.04",
  "init-steps": ["apt-get -y update"],
  "specifications": {
    "python": {
      "installation-steps": ["apt-get install -y python3-pip"],
      "libraries": {"numpy": ["pip install numpy"], "pandas": ["pip install pandas"]}
    }
  }
}"#;

/// A small environment named `name` (1 CPU, 1G, no GPU, a port).
pub fn environment(name: &str, ram: &str, port: u16) -> String {
    json!({
        "env-name": name,
        "version": "1",
        "os": "ubuntu",
        "languages": [{"language-name": "python", "libraries": ["numpy"]}],
        "resources": {"ram": ram, "cpu": "1.0", "gpu": "0", "storage": 1},
        "port-publish": [{"external": {"ports": port.to_string()}, "internal": {"ports": "8888", "protocol": "tcp"}}],
        "is_active": 1
    })
    .to_string()
}

pub const REGISTER_NODE: &str = r#"mutation($id: ID!, $cpu: Int!) {
  registerNode(nodeId: $id, fingerprint: {
    hostname: "h", os: "linux", agentVersion: "test",
    capacity: {cpuMillis: $cpu, memoryBytes: 17179869184, gpus: 0, storageBytes: 107374182400},
    labels: [{key: "zone", value: "a"}]
  }) { id state }
}"#;

pub const CREATE_ENV: &str =
    r#"mutation($doc: String!) { createEnvironment(document: $doc) { id version name owner } }"#;

pub const DEPLOY: &str =
    r#"mutation($env: String!) { deploy(environment: $env) { id status nodeId } }"#;

/// The catalog loaded, nodes A (4 CPU) and B (2 CPU) registered by their agents.
pub async fn fleet(api: &Api) {
    api.data(
        &admin(),
        "mutation($d: String!) { upsertCatalog(document: $d) { os } }",
        json!({"d": CATALOG}),
    )
    .await;
    api.data(
        &Actor::agent(NODE_A),
        REGISTER_NODE,
        json!({"id": NODE_A, "cpu": 4000}),
    )
    .await;
    api.data(
        &Actor::agent(NODE_B),
        REGISTER_NODE,
        json!({"id": NODE_B, "cpu": 2000}),
    )
    .await;
}

/// `user` creates an environment and deploys it; returns (env id, deployment id, node).
pub async fn deployed(api: &Api, user: &Actor, name: &str, port: u16) -> (String, String, String) {
    let env = api
        .data(
            user,
            CREATE_ENV,
            json!({"doc": environment(name, "1G", port)}),
        )
        .await;
    let env_id = env["createEnvironment"]["id"]
        .as_str()
        .expect("env id")
        .to_string();
    let d = api.data(user, DEPLOY, json!({"env": env_id})).await;
    let id = d["deploy"]["id"]
        .as_str()
        .expect("deployment id")
        .to_string();
    let node = d["deploy"]["nodeId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (env_id, id, node)
}
