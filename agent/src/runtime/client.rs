//! The GraphQL client over HTTP (reqwest): one POST per operation, errors mapped to
//! `AgentError` (unreachable → `ServerUnavailable`, GraphQL errors → `Api` with
//! their `extensions.code`), and the agent protocol's typed calls.

use std::time::Duration;

use dcloud_events::model::{ContainerUsage, NodeFingerprint, Usage};
use serde_json::{json, Value};

use super::protocol::first_error;
use super::servers::Servers;
use super::tls::ClientTls;
use super::wire::{self, Snapshot};
use crate::driver::Report;
use crate::error::AgentError;

/// Path of the GraphQL endpoint (queries and mutations) on the server.
pub const HTTP_PATH: &str = "/graphql";
/// Path of the graphql-transport-ws endpoint on the server.
pub const WS_PATH: &str = "/graphql/ws";

/// Where the server's endpoints are, from its base URL (`http://host:7070`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub http: String,
    pub ws: String,
}

impl Endpoints {
    /// `http(s)://host[:port][/prefix]` → the GraphQL URL and its websocket URL.
    pub fn from_base(base: &str) -> Result<Endpoints, AgentError> {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix(HTTP_PATH).unwrap_or(base);
        let ws_base = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            return Err(AgentError::Protocol {
                op: "server url",
                message: format!("{base:?} is not an http:// or https:// url"),
            });
        };
        Ok(Endpoints {
            http: format!("{base}{HTTP_PATH}"),
            ws: format!("{ws_base}{WS_PATH}"),
        })
    }
}

/// A GraphQL client holding one connection pool; cheap to clone and share.
#[derive(Clone)]
pub struct GqlClient {
    http: reqwest::Client,
    servers: std::sync::Arc<Servers>,
    token: String,
    /// Bounds the requests (so the connections) in flight from this process: a
    /// thousand simulated nodes heartbeating at once must not open a thousand sockets.
    inflight: std::sync::Arc<tokio::sync::Semaphore>,
}

/// The most requests one client has in flight (and connections it keeps).
const MAX_INFLIGHT: usize = 128;

impl GqlClient {
    pub fn new(url: String, token: String) -> Result<GqlClient, AgentError> {
        GqlClient::with_tls(url, token, &ClientTls::default())
    }

    /// A client trusting `tls` for https:// URLs. An empty `token` sends no
    /// `Authorization` header (what `joinNode` needs). `url` is a GraphQL endpoint
    /// (`…/graphql`) or a server's base URL, or several base URLs, comma separated.
    pub fn with_tls(url: String, token: String, tls: &ClientTls) -> Result<GqlClient, AgentError> {
        GqlClient::over(std::sync::Arc::new(Servers::parse(&url)?), token, tls)
    }

    /// A client of `servers` (shared with the process's websocket pools).
    pub fn over(
        servers: std::sync::Arc<Servers>,
        token: String,
        tls: &ClientTls,
    ) -> Result<GqlClient, AgentError> {
        let url = servers.describe();
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(MAX_INFLIGHT);
        let http = tls
            .apply(builder)?
            .build()
            .map_err(|e| AgentError::ServerUnavailable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(GqlClient {
            http,
            servers,
            token,
            inflight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT)),
        })
    }

    /// The same server and connection pool, acting with another token.
    pub fn with_token(&self, token: String) -> GqlClient {
        GqlClient {
            http: self.http.clone(),
            servers: self.servers.clone(),
            token,
            inflight: self.inflight.clone(),
        }
    }

    /// The GraphQL endpoint of the server in use.
    pub fn url(&self) -> String {
        self.servers.current().1.http.clone()
    }

    /// The servers this client (and the pools made from it) use.
    pub fn servers(&self) -> &std::sync::Arc<Servers> {
        &self.servers
    }

    /// Runs one operation; returns its `data`.
    pub async fn request(
        &self,
        op: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<Value, AgentError> {
        self.request_keyed(op, query, variables, None).await
    }

    /// [`GqlClient::request`] with an idempotency key: a caller that retries a
    /// mutation after a transient error sends the same key, and the server answers it
    /// with what the first attempt did (exactly-once reports).
    pub async fn request_keyed(
        &self,
        op: &'static str,
        query: &str,
        variables: Value,
        key: Option<&str>,
    ) -> Result<Value, AgentError> {
        let _permit = self
            .inflight
            .acquire()
            .await
            .map_err(|e| AgentError::ServerUnavailable {
                url: self.url(),
                reason: e.to_string(),
            })?;
        // Each server at most once, plus the leader a standby names.
        let mut last = None;
        for _ in 0..=self.servers.len() {
            let (index, endpoints) = self.servers.current();
            let url = endpoints.http.clone();
            match self.send(&url, op, query, &variables, key).await {
                Err(Retry::Unavailable(e)) => {
                    self.servers.failed(index);
                    last = Some(e);
                }
                Err(Retry::NotLeader(leader)) => {
                    let moved = leader.as_deref().is_some_and(|l| self.servers.leader_is(l));
                    if !moved {
                        self.servers.failed(index);
                    }
                    last = Some(AgentError::ServerUnavailable {
                        url,
                        reason: match leader {
                            Some(l) => format!("a standby; the leader is {l}"),
                            None => "a standby, and no leader is elected yet".into(),
                        },
                    });
                }
                Ok(answer) => return answer,
            }
        }
        Err(last.unwrap_or_else(|| AgentError::ServerUnavailable {
            url: self.servers.describe(),
            reason: "no server answered".into(),
        }))
    }

    /// One try at `url`: `Err` for a server that cannot be reached or is a standby,
    /// else its answer.
    async fn send(
        &self,
        url: &str,
        op: &'static str,
        query: &str,
        variables: &Value,
        key: Option<&str>,
    ) -> Result<Result<Value, AgentError>, Retry> {
        let unavailable = |reason: String| {
            Retry::Unavailable(AgentError::ServerUnavailable {
                url: url.to_string(),
                reason,
            })
        };
        let mut req = self
            .http
            .post(url)
            .json(&json!({ "query": query, "variables": variables }));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let response = req.send().await.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if let Some(leader) = not_leader(&body) {
            return Err(Retry::NotLeader(leader));
        }
        match parse_response(op, status.as_u16(), &body) {
            Err(AgentError::Protocol { .. }) if status.is_server_error() => {
                Err(unavailable(format!("http {status}")))
            }
            answer => Ok(answer),
        }
    }

    pub async fn register_node(
        &self,
        node_id: &str,
        fingerprint: &NodeFingerprint,
    ) -> Result<(), AgentError> {
        let vars =
            json!({ "nodeId": node_id, "fingerprint": wire::fingerprint_input(fingerprint) });
        self.request("registerNode", wire::REGISTER_NODE, vars)
            .await
            .map(drop)
    }

    pub async fn heartbeat(
        &self,
        node_id: &str,
        usage: &Usage,
        containers: &[ContainerUsage],
        engine_ok: bool,
    ) -> Result<(), AgentError> {
        let vars = json!({
            "nodeId": node_id,
            "usage": wire::usage_input(usage),
            "containers": wire::containers_input(containers),
            "engineOk": engine_ok,
        });
        self.request("heartbeat", wire::HEARTBEAT, vars)
            .await
            .map(drop)
    }

    /// Reports a container state change seen on `node_id`; `key` is the idempotency
    /// key, the same for every retry of one report. The server refuses a report about
    /// a deployment not assigned to that node (it moved away), even from an admin token
    /// running many nodes.
    pub async fn report_status(
        &self,
        node_id: &str,
        deployment_id: &str,
        report: &Report,
        image: &str,
        key: &str,
    ) -> Result<(), AgentError> {
        if let Report::StaleRemoved {
            node_id,
            container_id,
        } = report
        {
            let vars = json!({ "nodeId": node_id, "deploymentId": deployment_id,
                               "containerId": container_id });
            return self
                .request("reportStaleContainer", wire::REPORT_STALE_CONTAINER, vars)
                .await
                .map(drop);
        }
        let vars = json!({ "deploymentId": deployment_id, "nodeId": node_id,
                           "report": wire::report_input(report, image) });
        self.request_keyed("reportStatus", wire::REPORT_STATUS, vars, Some(key))
            .await
            .map(drop)
    }

    /// The address users reach the node at.
    pub async fn report_node_address(
        &self,
        node_id: &str,
        address: &str,
    ) -> Result<(), AgentError> {
        let vars = json!({ "nodeId": node_id, "address": address });
        self.request("reportNodeAddress", wire::REPORT_NODE_ADDRESS, vars)
            .await
            .map(drop)
    }

    /// The server's cluster id (`None` when the server has none yet).
    pub async fn cluster_id(&self) -> Result<Option<String>, AgentError> {
        let data = self
            .request("clusterId", wire::CLUSTER_ID, json!({}))
            .await?;
        Ok(data
            .get("clusterId")
            .and_then(|v| v.as_str())
            .map(str::to_string))
    }

    /// How full a deployment's storage targets are; answers whether it was recorded.
    pub async fn report_volume_usage(
        &self,
        node_id: &str,
        deployment_id: &str,
        volumes: &[dcloud_events::model::VolumeUsage],
    ) -> Result<bool, AgentError> {
        let volumes: Vec<_> = volumes
            .iter()
            .map(|v| {
                json!({
                    "target": v.target,
                    "usedBytes": v.used_bytes,
                    "sizeBytes": v.size_bytes,
                    "enforced": v.enforced,
                })
            })
            .collect();
        let vars = json!({ "nodeId": node_id, "deploymentId": deployment_id, "volumes": volumes });
        let data = self
            .request("reportVolumeUsage", wire::REPORT_VOLUME_USAGE, vars)
            .await?;
        Ok(data
            .get("reportVolumeUsage")
            .and_then(|v| v.as_bool())
            .unwrap_or(false))
    }

    pub async fn node_assignments(&self, node_id: &str) -> Result<Snapshot, AgentError> {
        let data = self
            .request(
                "nodeAssignments",
                &wire::node_assignments_query(),
                json!({ "nodeId": node_id }),
            )
            .await?;
        decode("nodeAssignments", data.get("nodeAssignments"))
    }

    /// An agent token for `node_id` (needs an admin token).
    pub async fn create_agent_token(&self, node_id: &str) -> Result<String, AgentError> {
        let vars = json!({ "name": format!("agent-{node_id}"), "nodeId": node_id });
        let data = self
            .request("createToken", wire::CREATE_AGENT_TOKEN, vars)
            .await?;
        decode("createToken", data.pointer("/createToken/token"))
    }

    /// Joins `node_id` with a join token; returns the node's own agent token.
    pub async fn join_node(&self, join_token: &str, node_id: &str) -> Result<String, AgentError> {
        let vars = json!({ "joinToken": join_token, "nodeId": node_id });
        let data = self.request("joinNode", wire::JOIN_NODE, vars).await?;
        decode("joinNode", data.pointer("/joinNode/token"))
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    op: &'static str,
    value: Option<&Value>,
) -> Result<T, AgentError> {
    let value = value.ok_or_else(|| AgentError::Protocol {
        op,
        message: "missing field in data".to_string(),
    })?;
    serde_json::from_value(value.clone()).map_err(|e| AgentError::Protocol {
        op,
        message: e.to_string(),
    })
}

/// A GraphQL response body → its `data`, or the first error.
/// Why one try at a server is retried at another.
enum Retry {
    /// It cannot be reached (or answered 5xx without a GraphQL body).
    Unavailable(AgentError),
    /// It is a standby; the leader's base URL when it named one.
    NotLeader(Option<String>),
}

/// `Some(leader)` when `body` is a standby's `NOT_LEADER` answer (`leader`: the URL it
/// names, if any). The CLI reads answers with it too.
pub fn not_leader(body: &str) -> Option<Option<String>> {
    if !body.contains("NOT_LEADER") {
        return None;
    }
    let value: Value = serde_json::from_str(body).ok()?;
    let (code, _) = first_error(&value)?;
    (code == "NOT_LEADER").then(|| {
        value
            .pointer("/errors/0/extensions/leader")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

pub fn parse_response(op: &'static str, status: u16, body: &str) -> Result<Value, AgentError> {
    let value: Value = serde_json::from_str(body).map_err(|e| AgentError::Protocol {
        op,
        message: format!("http {status}, body is not json ({e}): {}", tail(body)),
    })?;
    if let Some((code, message)) = first_error(&value) {
        return Err(AgentError::Api { op, code, message });
    }
    match value.get("data") {
        Some(data) if !data.is_null() => Ok(data.clone()),
        _ => Err(AgentError::Protocol {
            op,
            message: format!("http {status}, no data: {}", tail(body)),
        }),
    }
}

fn tail(body: &str) -> &str {
    let start = body.len().saturating_sub(200);
    let start = (start..body.len())
        .find(|i| body.is_char_boundary(*i))
        .unwrap_or(body.len());
    &body[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_the_base_url() {
        let e = Endpoints::from_base("http://127.0.0.1:7070/").unwrap();
        assert_eq!(e.http, "http://127.0.0.1:7070/graphql");
        assert_eq!(e.ws, "ws://127.0.0.1:7070/graphql/ws");
        let e = Endpoints::from_base("https://dc.example/graphql").unwrap();
        assert_eq!(e.http, "https://dc.example/graphql");
        assert_eq!(e.ws, "wss://dc.example/graphql/ws");
        assert!(Endpoints::from_base("ftp://x").is_err());
    }

    #[test]
    fn responses_map_to_data_or_coded_errors() {
        let data = parse_response("op", 200, r#"{"data": {"heartbeat": {"logged": true}}}"#);
        assert_eq!(data.unwrap()["heartbeat"]["logged"], true);

        let err = parse_response(
            "reportStatus",
            200,
            r#"{"data": null, "errors": [{"message": "deployment d is not assigned to node n",
                 "extensions": {"code": "FORBIDDEN", "requestId": "r1"}}]}"#,
        )
        .unwrap_err();
        match err {
            AgentError::Api { op, code, message } => {
                assert_eq!(op, "reportStatus");
                assert_eq!(code, "FORBIDDEN");
                assert!(message.contains("not assigned"), "{message}");
            }
            other => panic!("expected an api error, got {other:?}"),
        }

        let err = parse_response(
            "heartbeat",
            429,
            r#"{"errors": [{"message": "rate limited", "extensions": {"code": "RATE_LIMITED", "retryAfterMs": 5}}]}"#,
        )
        .unwrap_err();
        assert!(err.is_transient(), "pushback is retried: {err:?}");
        for code in ["UNAVAILABLE", "INTERNAL"] {
            let body = format!(
                r#"{{"errors": [{{"message": "stopping", "extensions": {{"code": "{code}"}}}}]}}"#
            );
            let err = parse_response("reportStatus", 200, &body).unwrap_err();
            assert!(err.is_transient(), "a server stopping is retried: {err:?}");
        }
        let err = parse_response(
            "reportStatus",
            200,
            r#"{"errors": [{"message": "no", "extensions": {"code": "BAD_USER_INPUT"}}]}"#,
        )
        .unwrap_err();
        assert!(!err.is_transient(), "a refusal is final: {err:?}");

        let err = parse_response("op", 502, "<html>bad gateway</html>").unwrap_err();
        assert!(matches!(err, AgentError::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains("bad gateway"), "{err}");
    }

    #[test]
    fn a_snapshot_decodes_from_recorded_json() {
        let data: Value = serde_json::from_str(
            r#"{"nodeAssignments": {"seq": 12, "items": [
                {"seq": 12, "kind": "STOP", "deploymentId": "d1", "nodeId": "n", "status": "STOPPING", "run": null}]}}"#,
        )
        .unwrap();
        let snap: Snapshot = decode("nodeAssignments", data.get("nodeAssignments")).unwrap();
        assert_eq!(snap.seq, 12);
        assert_eq!(snap.items[0].deployment_id, "d1");
        assert!(decode::<Snapshot>("nodeAssignments", data.get("nope")).is_err());
    }
}
