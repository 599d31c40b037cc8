//! Opening the log: connect, refuse a server older than 2.12.1, make or find the
//! stream and the snapshot bucket, and refuse a stream whose echoed configuration
//! lacks what the log relies on (atomic batches, direct gets, its subject, file
//! storage, the configured replicas).

use async_nats::jetstream::{self, object_store, stream};
use async_nats::Client;
use dcloud_events::LogError;

use crate::config::JetStreamConfig;
use crate::remote;

/// The oldest server that has atomic batch publish with `Nats-Msg-Id` de-duplication
/// inside a batch (2.12.0 refused message ids in batches).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 12, 1);

/// What the rest of the backend needs once the log is open.
pub(crate) struct Opened {
    pub(crate) client: Client,
    pub(crate) snapshots: object_store::ObjectStore,
    pub(crate) last_seq: u64,
    pub(crate) first_seq: u64,
}

/// `major.minor.patch` of a server version string such as `2.14.6` or `2.12.0-RC.1`.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

pub(crate) async fn open(cfg: &JetStreamConfig) -> Result<Opened, LogError> {
    let mut servers = Vec::new();
    for url in cfg.url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let addr = url
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| LogError::Unsupported {
                reason: format!(
                    "server URL {url:?}: {e}; expected nats://HOST:PORT, comma separated"
                ),
            })?;
        servers.push(addr);
    }
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(cfg.request_timeout))
        .connect(servers)
        .await
        .map_err(|e| remote(format!("cannot connect to {}: {e}", cfg.url)))?;
    let version = client.server_info().version;
    match parse_version(&version) {
        Some(v) if v >= MIN_SERVER_VERSION => {}
        _ => {
            let (a, b, c) = MIN_SERVER_VERSION;
            return Err(LogError::Unsupported {
                reason: format!(
                    "nats-server {version} at {}: the JetStream log needs {a}.{b}.{c} or later \
                     (atomic batch publish with message ids)",
                    cfg.url
                ),
            });
        }
    }
    let js = jetstream::new(client.clone());
    let subject = cfg.subject();
    let stream = match js.get_stream(&cfg.stream).await {
        Ok(s) => s,
        Err(e) if is_not_found(&e) => js
            .create_stream(stream_config(cfg))
            .await
            .map_err(|e| remote(format!("cannot create stream {}: {e}", cfg.stream)))?,
        Err(e) => return Err(remote(format!("cannot look up stream {}: {e}", cfg.stream))),
    };
    let info = stream.cached_info();
    check_stream(cfg, &info.config, &subject)?;
    let bucket = cfg.snapshot_bucket();
    let snapshots = match js.get_object_store(&bucket).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some(format!("snapshots of the DCloud log {}", cfg.stream)),
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| remote(format!("cannot create object store {bucket}: {e}")))?,
    };
    tracing::info!(
        server = %version,
        stream = %cfg.stream,
        replicas = cfg.replicas,
        last_seq = info.state.last_sequence,
        "JetStream event log opened"
    );
    Ok(Opened {
        client,
        snapshots,
        last_seq: info.state.last_sequence,
        first_seq: info.state.first_sequence,
    })
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(err)
        if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The stream the log makes when it finds none: one subject, file storage, atomic
/// batches, direct gets, and history that cannot be deleted or purged through the API.
fn stream_config(cfg: &JetStreamConfig) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        description: Some("the DCloud event log: one message per frame of records".into()),
        subjects: vec![cfg.subject()],
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        allow_atomic_publish: true,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Refuses a stream (as the server echoed its configuration) that cannot hold the log.
pub(crate) fn check_stream(
    cfg: &JetStreamConfig,
    c: &stream::Config,
    subject: &str,
) -> Result<(), LogError> {
    let mut wrong = Vec::new();
    if !c.allow_atomic_publish {
        wrong.push("allow_atomic is not set (atomic batch publish, nats-server 2.12+)".to_owned());
    }
    if !c.allow_direct {
        wrong.push("allow_direct is not set (reads use direct gets)".to_owned());
    }
    if !c.subjects.iter().any(|s| s == subject) {
        wrong.push(format!("its subjects {:?} lack {subject}", c.subjects));
    }
    if c.storage != stream::StorageType::File {
        wrong.push("storage is not file".to_owned());
    }
    if c.num_replicas != cfg.replicas {
        wrong.push(format!(
            "it has {} replicas, the log is configured for {}",
            c.num_replicas, cfg.replicas
        ));
    }
    if c.persist_mode == Some(stream::PersistenceMode::Async) {
        wrong.push("persist_mode is async (acknowledged before stored)".to_owned());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(LogError::Unsupported {
            reason: format!("stream {}: {}", cfg.stream, wrong.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("2.14.6"), Some((2, 14, 6)));
        assert_eq!(parse_version("v2.12.0-RC.1"), Some((2, 12, 0)));
        assert_eq!(parse_version("2.9"), Some((2, 9, 0)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("2.12.0").expect("v") < MIN_SERVER_VERSION);
        assert!(parse_version("2.9.25").expect("v") < MIN_SERVER_VERSION);
        assert!(parse_version("2.12.1").expect("v") >= MIN_SERVER_VERSION);
        assert!(parse_version("2.14.6").expect("v") >= MIN_SERVER_VERSION);
    }

    #[test]
    fn a_stream_without_what_the_log_needs_is_refused_naming_each_thing() {
        let cfg = JetStreamConfig::new("nats://x", "log").replicas(3);
        assert!(check_stream(&cfg, &stream_config(&cfg), &cfg.subject()).is_ok());
        let old = stream::Config {
            name: "log".into(),
            subjects: vec!["other".into()],
            num_replicas: 1,
            ..Default::default()
        };
        let err = check_stream(&cfg, &old, &cfg.subject()).expect_err("refused");
        let msg = err.to_string();
        for what in [
            "allow_atomic",
            "allow_direct",
            "lack dcloud.log.log",
            "1 replicas",
        ] {
            assert!(msg.contains(what), "{what} not in {msg}");
        }
    }
}
