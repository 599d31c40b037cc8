//! The field limit: documents selecting too many fields (aliases and fragment spreads
//! included) are refused for every role before any resolver runs, and costly fields
//! weigh on the complexity limit.

mod common;

use common::*;
use dcloud_projections::Actor;
use serde_json::json;

fn aliases(n: usize, field: &str) -> String {
    let mut q = String::from("{ ");
    for i in 0..n {
        q.push_str(&format!("a{i}: {field} "));
    }
    q.push('}');
    q
}

#[tokio::test]
async fn ten_thousand_aliases_are_refused_for_every_role() {
    let api = Api::new();
    let q = aliases(10_000, "me { name }");
    let roles = [
        Some(admin()),
        Some(alice()),
        Some(auditor()),
        Some(Actor::agent(NODE_A)),
        None,
    ];
    for who in &roles {
        let e = api.error(who.as_ref(), &q, json!({})).await;
        assert_eq!(e["ext"]["code"], "BAD_USER_INPUT", "{who:?}: {e}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("20000 fields") && msg.contains("at most 2000"),
            "{who:?}: {msg}"
        );
    }
    // The same shape within the limit runs.
    let ok = api
        .data(&alice(), &aliases(100, "me { name }"), json!({}))
        .await;
    assert_eq!(ok["a99"]["name"], "alice");
}

#[tokio::test]
async fn fragments_count_once_per_spread() {
    let api = Api::with(dcloud_graphql::SchemaOptions {
        field_limit: 8,
        ..dcloud_graphql::SchemaOptions::default()
    });
    let q = "{ a: me { ...F } b: me { ...F } c: me { ...F } } fragment F on Me { name role }";
    let e = api.error(Some(&alice()), q, json!({})).await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("selects 9 fields"),
        "{e}"
    );
    let q = "{ a: me { ...F } b: me { ...F } } fragment F on Me { name role }";
    let ok = api.data(&alice(), q, json!({})).await;
    assert_eq!(ok["b"]["role"], "USER");
}

#[tokio::test]
async fn no_resolver_runs_for_a_refused_document() {
    let api = Api::new();
    let mut q = String::from("mutation { ");
    for i in 0..3_000 {
        q.push_str(&format!(
            "t{i}: createToken(role: USER, name: \"u{i}\") {{ id }} "
        ));
    }
    q.push('}');
    let e = api.error(Some(&admin()), &q, json!({})).await;
    assert_eq!(e["ext"]["code"], "BAD_USER_INPUT", "{e}");
    assert!(api.state().tokens.is_empty(), "a resolver ran");
}

#[tokio::test]
async fn verify_chain_is_costly() {
    let api = Api::new();
    let one = api
        .data(&auditor(), "{ verifyChain { ok } }", json!({}))
        .await;
    assert_eq!(one["verifyChain"]["ok"], true);
    // 3,000 walks of the chain: refused by the field limit; five: by complexity.
    for n in [3_000, 5] {
        let e = api
            .error(
                Some(&auditor()),
                &aliases(n, "verifyChain { ok }"),
                json!({}),
            )
            .await;
        assert!(
            e["message"].as_str().unwrap_or_default().contains("fields")
                || e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("complex"),
            "{n}: {e}"
        );
    }
}
