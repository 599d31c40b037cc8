//! GraphQL over HTTP: the bearer-token middleware (the caller and a request id for
//! every request), `POST /graphql`, and `GET /graphql` for queries only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dcloud_graphql::{ApiError, RequestId};
use dcloud_projections::Actor;
use serde_json::json;

use super::{limits, AppState};

/// Who sent the request, as the middleware found it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    Actor(Actor),
    /// A token was sent but is unknown, revoked or malformed.
    BadToken,
}

impl Caller {
    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Caller::Actor(a) => Some(a),
            _ => None,
        }
    }
}

/// The response header carrying the request id (taken from the request when sane).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whom the per-caller limits count a request against: its token (by hash) when it
/// sent one, else its client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientKey {
    /// `addr:IP` of the client.
    pub(super) addr: String,
    /// The hash of the bearer token the request sent, when it has a token's shape.
    pub(super) token_hash: Option<[u8; 32]>,
}

impl ClientKey {
    pub(super) fn key(&self) -> String {
        self.token_hash
            .map_or_else(|| self.addr.clone(), |h| limits::token_key(&h))
    }
}

/// The request header carrying the client's idempotency key (exactly-once requests:
/// a retried request with the same key is answered with the first one's result).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The idempotency key of `headers`: `Ok(None)` without one; a key must be 1 to 128
/// visible ASCII characters.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(format!(
            "header {IDEMPOTENCY_KEY_HEADER}: expected 1 to 128 visible ASCII characters"
        )),
    }
}

/// Refuses every request but liveness and readiness once the writer has stopped
/// (fail-stop: the state it would read may be poisoned or about to be discarded);
/// otherwise resolves the bearer token into a [`Caller`] and assigns a [`RequestId`];
/// both go into the request's extensions, and the id into the response's headers.
pub(super) async fn authenticate(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string);
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let addr = limits::addr_key(ip);
    let mut token_hash = None;
    if let Some(why) = app.writer().fatal() {
        if !matches!(req.uri().path(), "/livez" | "/healthz" | "/readyz") {
            let mut resp = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                &format!("the server is stopping: the writer has stopped: {why}"),
            );
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            return resp;
        }
    }
    let caller = match req.headers().get(header::AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(value) => {
            // An address that failed too often gets no answer about any token.
            if let Err(ms) = app.guards().auth_failures.check(&addr) {
                return api_error_response(
                    &ApiError::RateLimited {
                        message: "too many failed authentications from this address".into(),
                        retry_after_ms: ms,
                    },
                    &request_id,
                );
            }
            let text = value.to_str().ok();
            token_hash = text.and_then(dcloud_graphql::token_hash);
            match text.and_then(|t| dcloud_graphql::authenticate(&app.writer().state(), t)) {
                Some(actor) => Caller::Actor(actor),
                None => {
                    let _ = app.guards().auth_failures.take(&addr);
                    Caller::BadToken
                }
            }
        }
    };
    req.extensions_mut().insert(ClientKey { addr, token_hash });
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

pub(super) async fn post(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    Extension(key): Extension<ClientKey>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let idem = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(why) => return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", &why),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {e}"),
            )
        }
    };
    // A mutation without a token (`joinNode` with a join token) is an authentication
    // attempt: it is held to the failed-authentication limit of its address, and a
    // refused one counts against it; writes with a token are held to their token's.
    let mut request = request;
    let mutation = parse_once(&mut request);
    let anonymous_write = matches!(caller, Caller::Anonymous) && mutation;
    if anonymous_write {
        if let Err(ms) = app.guards().auth_failures.check(&key.addr) {
            let err = ApiError::RateLimited {
                message: "too many failed authentications from this address".into(),
                retry_after_ms: ms,
            };
            return api_error_response(&err, &request_id.0);
        }
    } else if mutation {
        if let Err(ms) = app.guards().writes.take(&key.key()) {
            let err = ApiError::RateLimited {
                message: format!(
                    "more than {} writes per second for this token",
                    app.guards().limits().writes_per_second
                ),
                retry_after_ms: ms,
            };
            return api_error_response(&err, &request_id.0);
        }
    }
    let request = match idem {
        Some(k) => request.data(dcloud_graphql::IdempotencyKey::new(k)),
        None => request,
    };
    let failed_auth = anonymous_write.then_some(key.addr.as_str());
    execute(&app, caller, request_id, request, failed_auth).await
}

pub(super) async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the query string is not a GraphQL request: {e}"),
            )
        }
    };
    // GET carries no mutation, so no idempotency key either.
    let mut request = request;
    if parse_once(&mut request) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "mutations are not accepted over GET; use POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&app, caller, request_id, request, None).await
}

/// Runs `request`; with `failed_auth` (the address of an anonymous write), a refusal
/// (`FORBIDDEN`, `UNAUTHENTICATED`) counts as a failed authentication of that address.
async fn execute(
    app: &AppState,
    caller: Caller,
    request_id: RequestId,
    request: async_graphql::Request,
    failed_auth: Option<&str>,
) -> Response {
    let actor = match caller {
        Caller::BadToken => return unauthenticated(),
        Caller::Anonymous => None,
        Caller::Actor(a) => Some(a),
    };
    let id = request_id.0.clone();
    let mut request = request.data(request_id);
    if let Some(a) = actor {
        request = request.data(a);
    }
    let timeout = app.guards().limits().request_timeout;
    match within(timeout, app.schema().execute(request)).await {
        Ok(response) => {
            if let Some(addr) = failed_auth {
                let refused = response.errors.iter().any(|e| {
                    let code = e.extensions.as_ref().and_then(|x| x.get("code"));
                    matches!(
                        code,
                        Some(async_graphql::Value::String(c))
                            if c == "FORBIDDEN" || c == "UNAUTHENTICATED"
                    )
                });
                if refused {
                    let _ = app.guards().auth_failures.take(addr);
                }
            }
            async_graphql_axum::GraphQLResponse::from(response).into_response()
        }
        Err(err) => api_error_response(&err, &id),
    }
}

/// `fut`'s output, or `OVERLOADED` once `timeout` has passed.
pub(super) async fn within<T>(
    timeout: std::time::Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ApiError::Overloaded {
            message: format!(
                "the request ran past the server's limit of {} ms",
                timeout.as_millis()
            ),
            retry_after_ms: 1000,
        })
}

/// The response for an error of the edge itself (rate limits, timeouts): its HTTP
/// status, `Retry-After` when it has one, and a GraphQL-shaped body with the same
/// extensions a resolver's error would carry.
pub(super) fn api_error_response(err: &ApiError, request_id: &str) -> Response {
    let e = dcloud_graphql::to_graphql_error(err, request_id);
    let ext = serde_json::to_value(e.extensions.unwrap_or_default()).unwrap_or_default();
    let body = json!({ "errors": [{ "message": e.message, "extensions": ext }] });
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(body)).into_response();
    if let Some(ms) = err.retry_after_ms() {
        let secs = ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Whether the document holds a mutation (unparsable documents are left to the
/// executor, which reports the syntax error); asked twice, the second answer comes
/// from the cache.
#[cfg(test)]
fn has_mutation(query: &str) -> bool {
    let first = parse_once(&mut async_graphql::Request::new(query));
    let mut again = async_graphql::Request::new(query);
    let second = parse_once(&mut again);
    assert_eq!(first, second, "the cached answer differs for {query:?}");
    if let Ok(doc) = again.parsed_query() {
        assert_eq!(is_mutation(doc), second);
    }
    first
}

fn is_mutation(doc: &ExecutableDocument) -> bool {
    doc.operations
        .iter()
        .any(|(_, op)| op.node.ty == OperationType::Mutation)
}

/// Documents up to this long are kept parsed.
const CACHED_QUERY_MAX: usize = 16 << 10;
/// How many parsed documents are kept (the set is emptied when it is full: clients
/// send a handful of documents again and again, agents above all).
const CACHED_QUERIES: usize = 1024;

type ParsedCache = HashMap<String, (ExecutableDocument, bool)>;

/// Parses `request`'s document once for both the server's checks and the executor
/// (which takes the parsed document from the request), from a cache of recent
/// documents: parsing is most of what a small request costs. Returns whether it holds
/// a mutation; an unparsable document is left to the executor to report.
pub(super) fn parse_once(request: &mut async_graphql::Request) -> bool {
    static CACHE: OnceLock<Mutex<ParsedCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let hit = cache
        .lock()
        .ok()
        .and_then(|c| c.get(&request.query).cloned());
    if let Some((doc, mutation)) = hit {
        request.set_parsed_query(doc);
        return mutation;
    }
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let mutation = is_mutation(&doc);
    if request.query.len() <= CACHED_QUERY_MAX {
        if let Ok(mut c) = cache.lock() {
            if c.len() >= CACHED_QUERIES {
                c.clear();
            }
            c.insert(request.query.clone(), (doc.clone(), mutation));
        }
    }
    request.set_parsed_query(doc);
    mutation
}

/// 401 with a GraphQL-shaped body coded `UNAUTHENTICATED` (a token was sent but is not valid).
pub(super) fn unauthenticated() -> Response {
    let mut resp = error_response(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        &ApiError::Unauthenticated.to_string(),
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A response with a GraphQL-shaped error body.
pub(super) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::{has_mutation, within};

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_time_is_overloaded() {
        let err = within(
            std::time::Duration::from_millis(50),
            futures::future::pending::<()>(),
        )
        .await
        .expect_err("never finishes");
        assert_eq!(err.code(), "OVERLOADED");
        assert_eq!(err.retry_after_ms(), Some(1000));
        assert!(err.to_string().contains("50 ms"), "{err}");
        assert_eq!(
            within(std::time::Duration::from_millis(50), async { 7 }).await,
            Ok(7)
        );
    }

    #[test]
    fn mutations_are_found_in_any_operation() {
        assert!(has_mutation("mutation { a }"));
        assert!(has_mutation("query Q { a } mutation M { b }"));
        assert!(!has_mutation("{ a }"));
        assert!(!has_mutation("query Q { a } subscription S { b }"));
        assert!(
            !has_mutation("mutation {"),
            "a syntax error is the executor's to report"
        );
    }
}
