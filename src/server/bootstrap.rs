//! First start: the admin token, created when no unrevoked admin token exists, written
//! durably to `DATA/admin.token` (mode 0600; file and directory fsynced) before it is
//! made durable in the log.

use std::path::Path;

use anyhow::Context;
use dcloud_events::model::Role;
use dcloud_graphql::{new_token, Backend};
use dcloud_projections::{Actor, Command};
use tracing::info;

use super::AppState;

/// The admin token's file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Names the cluster when its log has no id yet (the first start, or the first start
/// after an upgrade): `c-` and 16 random hex digits, recorded as `ClusterCreated`.
pub(super) async fn ensure_cluster_id(app: &AppState) -> anyhow::Result<String> {
    if let Some(id) = app.writer().state().cluster_id.clone() {
        return Ok(id);
    }
    let backend = app.backend();
    let secret = backend.new_secret();
    let cluster_id = format!("c-{}", hex::encode(&secret[..8]));
    let cmd = Command::CreateCluster {
        cluster_id: cluster_id.clone(),
    };
    backend
        .submit_cmd(cmd, Actor::system(), "bootstrap".into())
        .await
        .context("naming the cluster")?;
    info!(%cluster_id, "cluster named");
    Ok(cluster_id)
}

/// Creates the admin token when there is none; returns it (the only time it is seen).
pub(super) async fn ensure_admin_token(
    app: &AppState,
    data: &Path,
) -> anyhow::Result<Option<String>> {
    let exists = app
        .writer()
        .state()
        .tokens
        .values()
        .any(|t| t.role == Role::Admin && !t.revoked);
    if exists {
        return Ok(None);
    }
    let backend = app.backend();
    let (token, secret_hash) = new_token(backend.new_secret());
    // The file first, durably (the rename is fsynced in the directory): a power cut
    // before the append leaves no admin token in the log, and the next start makes a
    // new one (overwriting the file); a cut after it finds both.
    let path = data.join(ADMIN_TOKEN_FILE);
    crate::durable_file::write_durably(&path, format!("{token}\n").as_bytes(), true)
        .with_context(|| format!("writing {}", path.display()))?;
    let cmd = Command::CreateToken {
        token_id: backend.new_id(),
        name: "admin".into(),
        role: Role::Admin,
        secret_hash,
        node_id: None,
    };
    if let Err(e) = backend
        .submit_cmd(cmd, Actor::system(), "bootstrap".into())
        .await
    {
        let _ = std::fs::remove_file(&path);
        return Err(e).context("creating the admin token");
    }
    info!(file = %path.display(), "admin token created");
    Ok(Some(token))
}

/// Writes a secret (a token) and a newline to `path`, readable by the owner only
/// (mode 0600), replacing the file whole and durably (file and directory fsynced).
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    crate::durable_file::write_durably(path, format!("{secret}\n").as_bytes(), true)
}
