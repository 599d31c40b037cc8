//! The schema as an API boundary: the committed SDL, introspection only for admins
//! outside dev mode, depth and complexity limits.

mod common;

use std::path::PathBuf;

use common::*;
use dcloud_graphql::SchemaOptions;
use serde_json::json;

/// `docs/schema.graphql` must be the schema's SDL. Regenerate it with
/// `UPDATE_SCHEMA=1 cargo test -p dcloud-graphql --test schema`.
#[test]
fn committed_sdl_matches_the_schema() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql");
    let sdl = dcloud_graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).expect("write docs/schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "docs/schema.graphql is out of date with the schema; review the change and run \
         `UPDATE_SCHEMA=1 cargo test -p dcloud-graphql --test schema`"
    );
}

#[test]
fn the_sdl_names_the_api() {
    let sdl = dcloud_graphql::sdl();
    for needle in [
        "deployments(filter: DeploymentFilter, after: String, first: Int): DeploymentConnection!",
        "at(seq: Int!): StateAt!",
        "assignments(nodeId: ID!, after: Int): Assignment!",
        "apply(document: String!, format: DocumentFormat): ApplyResult!",
        "type PageInfo",
    ] {
        assert!(sdl.contains(needle), "SDL lacks {needle:?}");
    }
}

/// The introspection query GraphiQL sends, trimmed to its deepest part.
const INTROSPECTION: &str = r#"{ __schema { queryType { name } types { name fields { name args { name type { ...T } }
    type { ...T } } } } }
    fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } } }"#;

#[tokio::test]
async fn introspection_is_for_admins_outside_dev_mode() {
    let api = Api::new();
    let admin_view = api.exec(Some(&admin()), INTROSPECTION, json!({})).await;
    assert!(admin_view.errors.is_empty(), "{:?}", admin_view.errors);
    let data = admin_view.data.into_json().expect("json");
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    for who in [Some(alice()), Some(auditor()), None] {
        let resp = api.exec(who.as_ref(), INTROSPECTION, json!({})).await;
        let data = resp.data.into_json().expect("json");
        assert!(
            data["__schema"].is_null() || !resp.errors.is_empty(),
            "{who:?} introspected: {data}"
        );
        assert!(data["__schema"]["types"].is_null(), "{who:?} saw types");
    }
    // Plain queries still work for them.
    assert_eq!(
        api.data(&alice(), "{ me { name } }", json!({})).await["me"]["name"],
        "alice"
    );

    let dev = Api::with(SchemaOptions {
        dev_mode: true,
        ..SchemaOptions::default()
    });
    for who in [Some(alice()), None] {
        let resp = dev.exec(who.as_ref(), INTROSPECTION, json!({})).await;
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
    }
}

#[tokio::test]
async fn depth_and_complexity_are_limited() {
    let api = Api::with(SchemaOptions {
        depth_limit: 4,
        complexity_limit: 50,
        ..SchemaOptions::default()
    });
    fleet(&api).await;
    assert!(api
        .exec(
            Some(&admin()),
            "{ nodes(first: 2) { edges { node { id } } } }",
            json!({})
        )
        .await
        .errors
        .is_empty());
    let deep = api
        .exec(
            Some(&admin()),
            "{ nodes(first: 2) { edges { node { capacity { cpuMillis } } } } }",
            json!({}),
        )
        .await;
    assert!(
        deep.errors
            .iter()
            .any(|e| e.message.contains("nested too deep")),
        "{:?}",
        deep.errors
    );
    // Pages multiply: 3 fields of 20 nodes exceed 50, and so does the default page.
    let wide = api
        .exec(
            Some(&admin()),
            "{ nodes(first: 20) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert!(
        wide.errors
            .iter()
            .any(|e| e.message.to_lowercase().contains("complex")),
        "{:?}",
        wide.errors
    );
    let wide = api
        .exec(
            Some(&admin()),
            "{ nodes { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert!(
        wide.errors
            .iter()
            .any(|e| e.message.to_lowercase().contains("complex")),
        "{:?}",
        wide.errors
    );
    let narrow = api
        .exec(
            Some(&admin()),
            "{ nodes(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert!(narrow.errors.is_empty(), "{:?}", narrow.errors);
}
