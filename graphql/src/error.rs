//! The crate's one error enum, [`ApiError`], and the one mapping from it to a GraphQL
//! error with `extensions.code` (shared by every resolver; the server reuses it).

use async_graphql::{Context, ErrorExtensionValues, Value};
use dcloud_projections::{DomainError, FieldError};

use crate::auth::RequestId;

/// Why a request was refused or failed. Every resolver ends in one of these, and
/// [`to_graphql_error`] turns it into the error the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No actor in the request: no token, or one that is unknown or revoked.
    #[error("authentication required: send a valid bearer token")]
    Unauthenticated,
    /// The actor may not do or see this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A command refused by the domain (validation, conflict, not found, …).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Malformed arguments the domain never sees (a bad cursor, a seq past the log).
    #[error("{0}")]
    BadInput(String),
    /// Anything the client cannot act on: storage, a stopped writer, a broken log.
    /// The client gets an opaque message and the request id; the cause is logged once.
    #[error("internal error: {0}")]
    Internal(String),
    /// The server has more work queued than it takes on; nothing was done. Retry after
    /// `retry_after_ms` (`extensions.retryAfterMs`).
    #[error("overloaded: {message}")]
    Overloaded {
        message: String,
        retry_after_ms: u64,
    },
    /// Something the request needs is not reachable now (a node's agent for a logs or
    /// exec session); retrying later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This caller sent too many requests of a kind (failed authentications, writes).
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after_ms: u64,
    },
    /// The data directory's disk is (nearly) full: writes are refused until space is
    /// freed; reads go on. Nothing was written.
    #[error("storage full: {0}; writes are refused until space is freed (reads still work)")]
    StorageFull(String),
    /// This server is a standby (another server writes the log): nothing was done.
    /// `leader` is the leader's URL when known (`extensions.leader`): send it there.
    #[error("not the leader: this server is a standby{}; send writes to the leader", leader.as_deref().map(|l| format!(" (the leader is {l})")).unwrap_or_else(|| ", and no leader is elected yet".into()))]
    NotLeader { leader: Option<String> },
}

impl ApiError {
    pub fn forbidden(why: impl Into<String>) -> Self {
        ApiError::Forbidden(why.into())
    }

    pub fn not_found(kind: &'static str, id: &str) -> Self {
        ApiError::Domain(DomainError::NotFound {
            kind,
            id: id.to_string(),
        })
    }

    pub fn validation(path: &str, message: impl Into<String>) -> Self {
        ApiError::Domain(DomainError::Validation(vec![FieldError::new(
            path, message,
        )]))
    }

    /// The HTTP status matching [`ApiError::code`], for the server's non-GraphQL edges
    /// (GraphQL responses themselves stay 200 with the code in `extensions`).
    pub fn http_status(&self) -> u16 {
        match self.code() {
            "UNAUTHENTICATED" => 401,
            "FORBIDDEN" => 403,
            "BAD_USER_INPUT" => 400,
            "CONFLICT" => 409,
            "NOT_FOUND" => 404,
            "OVERLOADED" => 503,
            "UNAVAILABLE" => 503,
            "QUOTA_EXCEEDED" => 429,
            "RATE_LIMITED" => 429,
            "STORAGE_FULL" => 507,
            "NOT_LEADER" => 503,
            _ => 500,
        }
    }

    /// How long the client should wait before trying again, for the codes that say
    /// so (HTTP `Retry-After`, GraphQL `extensions.retryAfterMs`).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded { retry_after_ms, .. }
            | ApiError::RateLimited { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// The `extensions.code` clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::Internal(_) => "INTERNAL",
            ApiError::Overloaded { .. } => "OVERLOADED",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::StorageFull(_) => "STORAGE_FULL",
            ApiError::NotLeader { .. } => "NOT_LEADER",
            ApiError::Domain(d) => match d {
                DomainError::Validation(_) | DomainError::Invalid(_) => "BAD_USER_INPUT",
                DomainError::Conflict { .. } | DomainError::AlreadyExists { .. } => "CONFLICT",
                DomainError::NotFound { .. } => "NOT_FOUND",
                DomainError::Forbidden(_) => "FORBIDDEN",
                DomainError::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            },
        }
    }
}

/// The GraphQL error for `err`. Extensions: always `code`; `fields: [{path, message}]`
/// for validation errors; `expected`/`actual` for a version conflict; `kind`/`id` for
/// not found; `retryAfterMs` for `OVERLOADED` and `RATE_LIMITED`; `requestId` for
/// internal errors, whose cause is logged here (once) and
/// never sent to the client.
pub fn to_graphql_error(err: &ApiError, request_id: &str) -> async_graphql::Error {
    let message = match err {
        ApiError::Internal(cause) => {
            tracing::error!(request_id, %cause, "internal error");
            format!("internal error (request id {request_id})")
        }
        other => other.to_string(),
    };
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", err.code());
    match err {
        ApiError::Domain(DomainError::Validation(fields)) => {
            let list = fields
                .iter()
                .map(|f| {
                    let mut m = async_graphql::indexmap::IndexMap::new();
                    m.insert(
                        async_graphql::Name::new("path"),
                        Value::from(f.path.clone()),
                    );
                    m.insert(
                        async_graphql::Name::new("message"),
                        Value::from(f.message.clone()),
                    );
                    Value::Object(m)
                })
                .collect::<Vec<_>>();
            ext.set("fields", Value::List(list));
        }
        ApiError::Domain(DomainError::Conflict { expected, actual }) => {
            ext.set("expected", *expected);
            ext.set("actual", *actual);
        }
        ApiError::Domain(DomainError::NotFound { kind, id }) => {
            ext.set("kind", *kind);
            ext.set("id", id.clone());
        }
        ApiError::Internal(_) => ext.set("requestId", request_id),
        ApiError::Overloaded { retry_after_ms, .. }
        | ApiError::RateLimited { retry_after_ms, .. } => {
            ext.set("retryAfterMs", *retry_after_ms);
        }
        ApiError::NotLeader {
            leader: Some(leader),
        } => ext.set("leader", leader.clone()),
        _ => {}
    }
    let mut e = async_graphql::Error::new(message);
    e.extensions = Some(ext);
    e
}

/// [`to_graphql_error`] with the request id from the context.
pub(crate) fn gql(ctx: &Context<'_>, err: ApiError) -> async_graphql::Error {
    let id = ctx.data_opt::<RequestId>().map_or("-", |r| r.0.as_str());
    to_graphql_error(&err, id)
}

/// Runs a resolver body that fails with [`ApiError`] and maps its error. Resolvers go
/// through this (never `?` on an `ApiError` straight into `async_graphql::Error`, which
/// would compile through async-graphql's blanket `Display` conversion and lose the code).
pub(crate) trait Gql<T> {
    fn gql(self, ctx: &Context<'_>) -> async_graphql::Result<T>;
}

impl<T> Gql<T> for Result<T, ApiError> {
    fn gql(self, ctx: &Context<'_>) -> async_graphql::Result<T> {
        self.map_err(|e| gql(ctx, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(err: &ApiError) -> async_graphql::ErrorExtensionValues {
        to_graphql_error(err, "r1").extensions.unwrap_or_default()
    }

    #[test]
    fn not_leader_names_the_leader_when_known() {
        let known = ApiError::NotLeader {
            leader: Some("http://10.0.0.1:7070".into()),
        };
        let e = ext(&known);
        assert_eq!(e.get("code"), Some(&Value::from("NOT_LEADER")));
        assert_eq!(e.get("leader"), Some(&Value::from("http://10.0.0.1:7070")));
        assert!(known.to_string().contains("http://10.0.0.1:7070"));
        assert_eq!(known.http_status(), 503);
        let unknown = ApiError::NotLeader { leader: None };
        assert_eq!(ext(&unknown).get("leader"), None);
        assert!(unknown.to_string().contains("no leader is elected yet"));
    }

    #[test]
    fn codes_follow_the_variant() {
        let cases = [
            (ApiError::Unauthenticated, "UNAUTHENTICATED"),
            (ApiError::forbidden("no"), "FORBIDDEN"),
            (
                ApiError::Domain(DomainError::Forbidden("x".into())),
                "FORBIDDEN",
            ),
            (
                ApiError::Domain(DomainError::Invalid("x".into())),
                "BAD_USER_INPUT",
            ),
            (
                ApiError::Domain(DomainError::Conflict {
                    expected: 1,
                    actual: 2,
                }),
                "CONFLICT",
            ),
            (
                ApiError::Domain(DomainError::AlreadyExists {
                    kind: "token",
                    id: "t".into(),
                }),
                "CONFLICT",
            ),
            (ApiError::not_found("node", "n1"), "NOT_FOUND"),
            (
                ApiError::Domain(DomainError::QuotaExceeded(
                    "quota exceeded: gpus 2 of 1".into(),
                )),
                "QUOTA_EXCEEDED",
            ),
            (ApiError::BadInput("cursor".into()), "BAD_USER_INPUT"),
            (ApiError::Internal("disk".into()), "INTERNAL"),
        ];
        for (err, code) in cases {
            assert_eq!(ext(&err).get("code"), Some(&Value::from(code)), "{err:?}");
        }
        assert_eq!(ApiError::Unauthenticated.http_status(), 401);
        assert_eq!(ApiError::not_found("node", "n").http_status(), 404);
        assert_eq!(
            ApiError::Domain(DomainError::Conflict {
                expected: 1,
                actual: 2
            })
            .http_status(),
            409
        );
        assert_eq!(ApiError::Internal("x".into()).http_status(), 500);
    }

    #[test]
    fn pushback_carries_its_retry_after() {
        let limited = ApiError::RateLimited {
            message: "too many failed authentications".into(),
            retry_after_ms: 1500,
        };
        assert_eq!(
            ext(&limited).get("code"),
            Some(&Value::from("RATE_LIMITED"))
        );
        assert_eq!(
            ext(&limited).get("retryAfterMs"),
            Some(&Value::from(1500u64))
        );
        assert_eq!(limited.http_status(), 429);
        let busy = ApiError::Overloaded {
            message: "too many open connections".into(),
            retry_after_ms: 1000,
        };
        assert_eq!(ext(&busy).get("code"), Some(&Value::from("OVERLOADED")));
        assert_eq!(busy.http_status(), 503);
        assert_eq!(busy.retry_after_ms(), Some(1000));
        assert_eq!(ApiError::Unauthenticated.retry_after_ms(), None);
    }

    #[test]
    fn validation_errors_carry_their_field_paths() {
        let err = ApiError::Domain(DomainError::Validation(vec![
            FieldError::new("resources.ram", "\"1 GB\" is not a size"),
            FieldError::new("os", "missing"),
        ]));
        let json = serde_json::to_value(ext(&err).get("fields")).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!([
                {"path": "resources.ram", "message": "\"1 GB\" is not a size"},
                {"path": "os", "message": "missing"}
            ])
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = to_graphql_error(&ApiError::Internal("fjall: disk on fire".into()), "req-9");
        assert!(!e.message.contains("disk"), "{}", e.message);
        assert!(e.message.contains("req-9"));
        let ext = e.extensions.unwrap_or_default();
        assert_eq!(ext.get("requestId"), Some(&Value::from("req-9")));
    }
}
