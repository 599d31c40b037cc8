//! Join tokens and token expiry: an admin makes a join token for N nodes; each node
//! that presents it (with no bearer token) receives its own node-bound agent token;
//! spent, expired or revoked join tokens admit no one; tokens can expire.

mod common;

use common::*;
use dcloud_events::EventLog;
use dcloud_graphql::{authenticate_at, token_hash};
use dcloud_projections::Actor;
use serde_json::json;

const CREATE_JOIN: &str = "mutation($uses: Int!, $exp: Int) {
  createJoinToken(name: \"rack\", uses: $uses, expiresInMs: $exp) { id token uses expiresMs } }";
const JOIN: &str = "mutation($t: String!, $n: ID!) { joinNode(joinToken: $t, nodeId: $n) { nodeId tokenId token } }";

#[tokio::test]
async fn a_join_token_admits_n_nodes_each_with_its_own_token() {
    let api = Api::new();
    let j = api
        .data(&admin(), CREATE_JOIN, json!({"uses": 2, "exp": 3_600_000}))
        .await;
    let join = j["createJoinToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(j["createJoinToken"]["uses"], 2);

    // No bearer token is needed: the join token is the authority.
    let a = Api::ok(api.exec(None, JOIN, json!({"t": join, "n": NODE_A})).await);
    let b = Api::ok(api.exec(None, JOIN, json!({"t": join, "n": NODE_B})).await);
    let ta = a["joinNode"]["token"]
        .as_str()
        .expect("token a")
        .to_string();
    let tb = b["joinNode"]["token"]
        .as_str()
        .expect("token b")
        .to_string();
    assert_ne!(ta, tb);
    assert_ne!(ta, join);
    let now = 1_700_000_000_000;
    {
        let state = api.state();
        assert_eq!(
            authenticate_at(&state, &ta, now),
            Some(Actor::agent(NODE_A)),
            "bound to its node"
        );
        assert_eq!(
            authenticate_at(&state, &tb, now),
            Some(Actor::agent(NODE_B))
        );
        assert_eq!(
            authenticate_at(&state, &join, now),
            None,
            "a join token is no bearer token"
        );
        let jt = state
            .join_token_by_secret_hash(&token_hash(&join).expect("hash"))
            .expect("join token");
        assert_eq!(jt.uses_left, 0);
        assert_eq!(jt.joined, vec![NODE_A.to_string(), NODE_B.to_string()]);
    }
    // Spent.
    let e = api.error(None, JOIN, json!({"t": join, "n": "0xcc"})).await;
    assert_eq!(e["ext"]["code"], "FORBIDDEN", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no uses left"),
        "{e}"
    );

    // The list shows it (admins and auditors only).
    let l = api
        .data(&auditor(), "{ joinTokens { usesLeft joined } }", json!({}))
        .await;
    assert_eq!(l["joinTokens"][0]["usesLeft"], 0);
    for who in [alice(), Actor::agent(NODE_A)] {
        assert_eq!(
            api.code(Some(&who), "{ joinTokens { id } }", json!({}))
                .await,
            "FORBIDDEN"
        );
    }
}

#[tokio::test]
async fn only_admins_make_join_tokens_and_bad_ones_admit_no_one() {
    let api = Api::new();
    for who in [alice(), auditor(), Actor::agent(NODE_A)] {
        assert_eq!(
            api.code(Some(&who), CREATE_JOIN, json!({"uses": 1})).await,
            "FORBIDDEN",
            "{who:?}"
        );
    }
    assert_eq!(
        api.code(None, CREATE_JOIN, json!({"uses": 1})).await,
        "UNAUTHENTICATED"
    );
    let e = api
        .error(Some(&admin()), CREATE_JOIN, json!({"uses": 0}))
        .await;
    assert_eq!(e["ext"]["fields"][0]["path"], "uses", "{e}");
    let e = api
        .error(Some(&admin()), CREATE_JOIN, json!({"uses": 1, "exp": -5}))
        .await;
    assert_eq!(e["ext"]["fields"][0]["path"], "expiresInMs", "{e}");

    // Unknown, malformed, expired and revoked join tokens.
    let (unknown, _) = dcloud_graphql::new_token([9; 32]);
    for t in [unknown.as_str(), "not-a-token"] {
        assert_eq!(
            api.code(None, JOIN, json!({"t": t, "n": NODE_A})).await,
            "FORBIDDEN"
        );
    }
    let j = api
        .data(&admin(), CREATE_JOIN, json!({"uses": 5, "exp": 1_000}))
        .await;
    let expiring = j["createJoinToken"]["token"]
        .as_str()
        .expect("t")
        .to_string();
    api.backend.advance(1_000);
    let e = api
        .error(None, JOIN, json!({"t": expiring, "n": NODE_A}))
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{e}"
    );

    let j = api.data(&admin(), CREATE_JOIN, json!({"uses": 5})).await;
    let (id, t) = (
        j["createJoinToken"]["id"].as_str().expect("id").to_string(),
        j["createJoinToken"]["token"]
            .as_str()
            .expect("t")
            .to_string(),
    );
    let e = api
        .error(None, JOIN, json!({"t": t, "n": "bad node/id"}))
        .await;
    assert_eq!(e["ext"]["fields"][0]["path"], "nodeId", "{e}");
    api.data(
        &admin(),
        "mutation($id: ID!) { revokeToken(id: $id) }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        api.code(None, JOIN, json!({"t": t, "n": NODE_A})).await,
        "FORBIDDEN"
    );
    assert!(api.state().tokens.is_empty(), "no node token was made");
}

#[tokio::test]
async fn tokens_expire() {
    let api = Api::new();
    let t = api
        .data(
            &admin(),
            r#"mutation { createToken(role: USER, name: "temp", expiresInMs: 60000) { token expiresMs } }"#,
            json!({}),
        )
        .await;
    let token = t["createToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let expires = t["createToken"]["expiresMs"].as_i64().expect("expiry");
    let state = api.state();
    assert_eq!(
        authenticate_at(&state, &token, expires - 1),
        Some(Actor::user("temp"))
    );
    assert_eq!(authenticate_at(&state, &token, expires), None);
    drop(state);
    let l = api
        .data(&admin(), "{ tokens { expiresMs } }", json!({}))
        .await;
    assert_eq!(l["tokens"][0]["expiresMs"], expires);
    // Tokens without expiry keep the release-1 event.
    api.data(
        &admin(),
        r#"mutation { createToken(role: USER, name: "forever") { id } }"#,
        json!({}),
    )
    .await;
    let kinds: Vec<String> = api
        .backend
        .fjall()
        .read_range(1, api.backend.fjall().last_seq())
        .map(|e| e.expect("envelope").event.kind().to_string())
        .collect();
    assert_eq!(kinds, ["TokenCreatedV2", "TokenCreated"]);
}
