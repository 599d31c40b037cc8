//! `audit verify` through a running server: the `verifyChain` query (admins and
//! auditors), printed as the offline verifier prints it.

use std::process::ExitCode;

use serde_json::json;

use super::api::Api;
use super::format::{i, s};
use crate::offline::Output;

const VERIFY: &str = "query { verifyChain { ok events lastSeq lastHash firstBadSeq reason } }";

pub(super) async fn verify(api: &Api, out: Output) -> anyhow::Result<ExitCode> {
    let data = api.run(VERIFY, json!({})).await?;
    let r = &data["verifyChain"];
    let ok = r["ok"].as_bool() == Some(true);
    match (out, ok) {
        (Output::Json, true) => println!(
            "{}",
            json!({"ok": true, "events": r["events"], "last_seq": r["lastSeq"], "last_hash": r["lastHash"]})
        ),
        (Output::Json, false) => println!(
            "{}",
            json!({"ok": false, "first_bad_seq": r["firstBadSeq"], "reason": r["reason"]})
        ),
        (Output::Table, true) => println!(
            "ok: {} events, chain verified up to seq {} (last hash {})",
            i(r, "events"),
            i(r, "lastSeq"),
            s(r, "lastHash")
        ),
        (Output::Table, false) => println!(
            "FAILED: first bad seq {}: {}",
            i(r, "firstBadSeq"),
            s(r, "reason")
        ),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
