//! The router: GraphQL (HTTP and websocket), GraphiQL, health, readiness, metrics and
//! the web UI, behind the request-size limit, tracing and the bearer-token middleware.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use super::graphql::{self, Caller};
use super::{exec, ui, ws, AppState};

/// The largest request body accepted (GraphQL documents, uploads of the UI).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Every route of the server over `app` (no sockets: test it with `oneshot`).
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(ws::upgrade))
        .route("/exec", get(exec::upgrade))
        .route("/agent/session/{id}", get(exec::agent_session))
        .route("/graphiql", get(graphiql))
        .route("/livez", get(livez))
        .route("/healthz", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            graphql::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<AppState>) -> Response {
    if app.is_ready() {
        // A full disk keeps the server up for reads: ready, and it says so.
        match app.storage().status() {
            s if s.full => format!(
                "ready (read-only): storage full: {} bytes free, below the reserve of {} bytes; writes are refused until space is freed\n",
                s.free_bytes, s.reserve_bytes
            )
            .into_response(),
            _ if app.log().is_shared() => match (app.writer().is_leader(), app.writer().leader_hint()) {
                (true, _) => "ready (leader)\n".into_response(),
                (false, Some(leader)) => {
                    format!("ready (standby; the leader is {leader})\n").into_response()
                }
                (false, None) => "ready (standby; no leader elected yet)\n".into_response(),
            },
            _ => "ready\n".into_response(),
        }
    } else {
        let why = app.writer().fatal().map_or_else(
            || "starting or stopping".to_string(),
            |f| format!("writer stopped: {f}"),
        );
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let mut text = app.metrics().render(&app.writer().state());
    super::metrics::render_storage(&mut text, &app.storage().status());
    super::metrics::render_leader(
        &mut text,
        app.writer().is_leader(),
        app.writer().leader_hint().as_deref(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// GraphiQL, in dev mode or for an admin's token; hidden (404) otherwise.
async fn graphiql(State(app): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let admin = caller.actor().is_some_and(|a| a.is_admin());
    if !(app.dev_mode() || admin) {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("DCloud GraphiQL")
            .finish(),
    )
    .into_response()
}
