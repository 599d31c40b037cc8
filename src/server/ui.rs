//! The web console: `web/index.html`, `web/style.css` and the scripts in `web/`,
//! embedded in the binary at build time and served at `/`, `/style.css` and `/NAME.js`.
//!
//! The console is plain HTML, CSS and JavaScript with no build step and nothing fetched
//! from elsewhere; it talks only to `/graphql`, `/graphql/ws` and (the terminal) `/exec`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const STYLE_CSS: &str = include_str!("../../web/style.css");
/// The scripts, in the order `index.html` loads them (classic scripts sharing one
/// global scope: `app.js` holds the helpers and the router, the others add pages).
const SCRIPTS: [(&str, &str); 4] = [
    ("app.js", include_str!("../../web/app.js")),
    ("lists.js", include_str!("../../web/lists.js")),
    ("deployment.js", include_str!("../../web/deployment.js")),
    ("term.js", include_str!("../../web/term.js")),
];

/// The console's files, for any router state (merge it into the server's router).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        );
    for (name, body) in SCRIPTS {
        router = router.route(
            &format!("/{name}"),
            get(move || async move { asset("text/javascript; charset=utf-8", body) }),
        );
    }
    router
}

/// One embedded file. `no-cache` makes browsers revalidate, so an upgraded binary's
/// console is picked up at the next load.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let app: Router = routes();
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn serves_each_file_with_its_content_type() {
        let (status, ctype, body) = get_path("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/html"), "{ctype}");
        assert!(body.contains(r#"<script src="/app.js">"#));
        assert!(body.contains(r#"href="/style.css""#));

        let (status, ctype, body) = get_path("/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/javascript"), "{ctype}");
        assert!(body.contains("/graphql/ws"));
        // Every script is served, and index.html loads each of them.
        for (name, text) in SCRIPTS {
            let (status, ctype, body) = get_path(&format!("/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert!(ctype.starts_with("text/javascript"), "{name}: {ctype}");
            assert_eq!(body, text);
            let (_, _, index) = get_path("/").await;
            assert!(
                index.contains(&format!(r#"<script src="/{name}">"#)),
                "{name}"
            );
        }

        let (status, ctype, body) = get_path("/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/css"), "{ctype}");
        assert!(body.contains(".bar"));
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let (status, _, _) = get_path("/nope.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// The console must work offline: it loads nothing from another origin.
    #[test]
    fn nothing_is_fetched_from_elsewhere() {
        for (name, text) in [("index.html", INDEX_HTML), ("style.css", STYLE_CSS)]
            .into_iter()
            .chain(SCRIPTS)
        {
            for needle in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
                // The SVG namespace is an identifier, not a fetch.
                let hits: Vec<&&str> = hits
                    .iter()
                    .filter(|l| !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} mentions {needle}: {hits:?}");
            }
        }
    }
}
