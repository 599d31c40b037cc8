//! The GraphQL-over-HTTP client the commands share: one POST per operation with the
//! bearer token, and the server's errors kept with their `extensions` for printing.

use std::fmt;

use anyhow::Context;
use serde_json::{json, Value};

use super::Global;

/// One error of a GraphQL response, as the server sent it.
#[derive(Debug, Clone)]
pub struct GqlError {
    pub message: String,
    /// `extensions.code` (`BAD_USER_INPUT`, `NOT_FOUND`, …), when present.
    pub code: Option<String>,
    /// `extensions.fields` of a validation error: `(path, message)`.
    pub fields: Vec<(String, String)>,
    /// The error object as received.
    pub raw: Value,
}

/// The server refused or failed the operation (a GraphQL-level error, not a transport
/// one): the command exits 1.
#[derive(Debug, Clone)]
pub struct GqlErrors(pub Vec<GqlError>);

impl fmt::Display for GqlErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &e.code {
                Some(code) => write!(f, "error [{code}]: {}", e.message)?,
                None => write!(f, "error: {}", e.message)?,
            }
            for (path, message) in &e.fields {
                write!(f, "\n{path}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for GqlErrors {}

impl GqlErrors {
    /// Parses the `errors` array of a response (or a websocket `error` payload).
    pub fn from_value(errors: &Value) -> Self {
        let list = match errors {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        GqlErrors(list.into_iter().map(parse_error).collect())
    }

    /// Whether any error carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.0.iter().any(|e| e.code.as_deref() == Some(code))
    }
}

fn parse_error(raw: Value) -> GqlError {
    let message = raw
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_string();
    let ext = raw.get("extensions");
    let code = ext
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let fields = ext
        .and_then(|e| e.get("fields"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|f| {
                    let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("path"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default();
    GqlError {
        message,
        code,
        fields,
        raw,
    }
}

/// A connection to the server (or to the first of several that answers: `--server
/// a,b,c`, a leader and its standbys) with one token.
pub struct Api {
    tls: dcloud_agent::runtime::ClientTls,
    http: reqwest::Client,
    servers: std::sync::Arc<dcloud_agent::runtime::Servers>,
    token: String,
}

impl Api {
    /// Needs a token: every client command acts as someone.
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let token = match global.token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => anyhow::bail!(
                "no token: pass --token TOKEN or set DCLOUD_TOKEN (the admin token is in DATA/admin.token)"
            ),
        };
        let tls = dcloud_agent::runtime::ClientTls::from_optional(super::ca_file().as_deref())?;
        let http = tls
            .apply(reqwest::Client::builder())?
            .build()
            .context("cannot build the http client")?;
        let servers = dcloud_agent::runtime::Servers::parse(&global.server)
            .with_context(|| format!("--server {:?}", global.server))?;
        Ok(Api {
            tls,
            http,
            servers: std::sync::Arc::new(servers),
            token,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// What the client trusts for https:// and wss://.
    pub fn tls(&self) -> &dcloud_agent::runtime::ClientTls {
        &self.tls
    }

    /// `ws://…/graphql/ws` (or `wss://`) of the server in use.
    pub fn ws_url(&self) -> String {
        self.servers.current().1.ws.clone()
    }

    /// The server in use went away (its websocket closed): use the next one.
    pub fn move_on(&self) {
        let (index, _) = self.servers.current();
        self.servers.failed(index);
    }

    /// The base URL of the server in use.
    pub fn base(&self) -> String {
        let http = &self.servers.current().1.http;
        http.strip_suffix("/graphql").unwrap_or(http).to_string()
    }

    /// Runs one operation; `Ok(data)` or [`GqlErrors`] (inside the anyhow error) when the
    /// server answered with errors, or a transport error.
    ///
    /// A mutation is sent with a fresh idempotency key and, when no answer came back
    /// (the server unreachable, restarting, or gone mid-request), sent again with the
    /// same key for up to [`RETRY_FOR`]: the server answers a retried key with what the
    /// first attempt did, so a retry never does the work twice.
    pub async fn run(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        if !is_mutation(query) {
            // Each server once: one that cannot be reached is left for the next.
            let mut tries = self.servers.len();
            loop {
                tries -= 1;
                match self.attempt(query, &variables, None).await {
                    Err(Attempt::NoAnswer(e)) if tries > 0 => {
                        tracing::debug!(error = %e, "no answer; asking the next server");
                    }
                    other => return other.map_err(Attempt::into_error),
                }
            }
        }
        let key = uuid::Uuid::new_v4().simple().to_string();
        let deadline = std::time::Instant::now() + RETRY_FOR;
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match self.attempt(query, &variables, Some(&key)).await {
                Ok(data) => return Ok(data),
                Err(Attempt::NoAnswer(e)) if std::time::Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "no answer; retrying with the same idempotency key");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => return Err(e.into_error()),
            }
        }
    }

    async fn attempt(
        &self,
        query: &str,
        variables: &Value,
        key: Option<&str>,
    ) -> Result<Value, Attempt> {
        let (index, endpoints) = self.servers.current();
        let url = endpoints.http.clone();
        let base = self.base();
        // Whatever went wrong with this server, the next try goes to the next one.
        let moved_on = |e: anyhow::Error| {
            self.servers.failed(index);
            Attempt::NoAnswer(e)
        };
        let mut req = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.map_err(|e| {
            moved_on(anyhow::Error::new(e).context(format!("cannot reach the server at {base}")))
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            moved_on(anyhow::Error::new(e).context(format!("cannot read the answer of {url}")))
        })?;
        if let Some(leader) = dcloud_agent::runtime::client::not_leader(&text) {
            // A standby: nothing was done; the leader it names (if one of ours) is next.
            if !leader.as_deref().is_some_and(|l| self.servers.leader_is(l)) {
                self.servers.failed(index);
            }
            return Err(Attempt::NoAnswer(anyhow::anyhow!(
                "{base} is a standby ({})",
                leader.map_or_else(
                    || "no leader elected yet".to_string(),
                    |l| format!("the leader is {l}")
                )
            )));
        }
        if matches!(status.as_u16(), 502..=504) {
            // A proxy without a server behind it, or a server that is stopping.
            return Err(moved_on(anyhow::anyhow!(
                "the server answered http {status} for {url}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                return Err(Attempt::Answered(anyhow::anyhow!(
                    "unexpected answer from {url} (http {status}): {}",
                    text.chars().take(200).collect::<String>()
                )))
            }
        };
        if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
            return Err(Attempt::Answered(GqlErrors::from_value(errors).into()));
        }
        if !status.is_success() {
            return Err(Attempt::Answered(anyhow::anyhow!(
                "the server answered http {status} for {url}"
            )));
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }
}

/// How long a mutation without an answer is retried (same idempotency key).
pub(crate) const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Why one attempt failed: no answer came back (retry is safe with the key), or the
/// server answered (final).
enum Attempt {
    NoAnswer(anyhow::Error),
    Answered(anyhow::Error),
}

impl Attempt {
    fn into_error(self) -> anyhow::Error {
        match self {
            Attempt::NoAnswer(e) | Attempt::Answered(e) => e,
        }
    }
}

/// Whether the document holds a mutation (what gets an idempotency key).
fn is_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Mutation)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_print_their_paths() {
        let errs = GqlErrors::from_value(&json!([{
            "message": "invalid document",
            "extensions": {"code": "BAD_USER_INPUT", "fields": [
                {"path": "resources.ram", "message": "unknown size unit"}
            ]}
        }]));
        assert!(errs.has_code("BAD_USER_INPUT"));
        assert_eq!(
            errs.to_string(),
            "error [BAD_USER_INPUT]: invalid document\nresources.ram: unknown size unit"
        );
    }

    #[test]
    fn ws_url_follows_the_scheme() {
        let g = |server: &str| Global {
            server: server.to_string(),
            token: Some("t".into()),
            output: crate::offline::Output::Table,
        };
        assert_eq!(
            Api::new(&g("http://h:1/")).unwrap().ws_url(),
            "ws://h:1/graphql/ws"
        );
        assert_eq!(
            Api::new(&g("https://h")).unwrap().ws_url(),
            "wss://h/graphql/ws"
        );
    }

    #[test]
    fn a_missing_token_names_the_flag_and_the_variable() {
        let g = Global {
            server: "http://h".into(),
            token: None,
            output: crate::offline::Output::Table,
        };
        let err = Api::new(&g)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--token") && err.contains("DCLOUD_TOKEN"),
            "{err}"
        );
    }
}
