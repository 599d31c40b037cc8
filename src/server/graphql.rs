//! GraphQL over HTTP: the bearer-token middleware (the caller and a request id for
//! every request), `POST /graphql`, and `GET /graphql` for queries only.

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dcloud_graphql::{ApiError, RequestId};
use dcloud_projections::Actor;
use serde_json::json;

use super::AppState;

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
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|t| dcloud_graphql::authenticate(&app.writer().state(), t))
            .map_or(Caller::BadToken, Caller::Actor),
    };
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
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let key = match idempotency_key(&headers) {
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
    let request = match key {
        Some(k) => request.data(dcloud_graphql::IdempotencyKey::new(k)),
        None => request,
    };
    execute(&app, caller, request_id, request).await
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
    if has_mutation(&request.query) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "mutations are not accepted over GET; use POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&app, caller, request_id, request).await
}

async fn execute(
    app: &AppState,
    caller: Caller,
    request_id: RequestId,
    request: async_graphql::Request,
) -> Response {
    let actor = match caller {
        Caller::BadToken => return unauthenticated(),
        Caller::Anonymous => None,
        Caller::Actor(a) => Some(a),
    };
    let mut request = request.data(request_id);
    if let Some(a) = actor {
        request = request.data(a);
    }
    let response = app.schema().execute(request).await;
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

/// Whether the document holds a mutation (unparsable documents are left to the
/// executor, which reports the syntax error).
fn has_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation)
    })
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
    use super::has_mutation;

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
