//! Golden logs: logs written by earlier versions, committed with the digest and the
//! summary they must replay to. Schema changes must keep every one of them replaying.
//! `UPDATE_GOLDEN=1` regenerates the CURRENT version's files only (v2; never older
//! ones: v1 is read-only). Every event variant is in some golden log.

use std::path::PathBuf;

use dcloud_events::record::{decode_record, RecordView};
use dcloud_events::Event;
use dcloud_events::{EventLog, NewEvent, GENESIS_HASH};
use dcloud_projections::State;
use replay_tests::golden::{encode_file, scenario_v2, split_file};
use replay_tests::scenario::{run_steps, start_writer};

fn golden_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(version)
}

/// Writes the current version's files (v2): its story through the real writer, the
/// last step under an idempotency key.
fn regenerate(dir: &std::path::Path) {
    let tmp = tempfile::tempdir().unwrap();
    let writer = start_writer(tmp.path(), 0);
    let mut steps = scenario_v2();
    let last = steps.pop().expect("a last step");
    let (ok, refused) = run_steps(&writer, &steps);
    assert!(
        ok > 20 && refused > 0,
        "the story must both succeed and be refused: {ok} ok, {refused} refused"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(writer.submit_keyed(
            last.cmd,
            last.actor,
            "keyed".into(),
            Some("golden-request-1".into()),
        ))
        .expect("the keyed step");
    let log = writer.log().clone();
    let envs: Vec<_> = log
        .read_range(1, log.last_seq())
        .map(|e| e.unwrap())
        .collect();
    let state = writer.state();
    let summary = dcloud::offline::summarize(&state, None, envs.len() as u64);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("log.bin"), encode_file(&envs)).unwrap();
    std::fs::write(
        dir.join("digest.txt"),
        format!("{}\n", hex::encode(state.digest())),
    )
    .unwrap();
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap() + "\n",
    )
    .unwrap();
}

fn check_version(version: &str) {
    let dir = golden_dir(version);
    let data = std::fs::read(dir.join("log.bin")).expect("golden log present");
    let records = split_file(&data).unwrap();
    assert!(!records.is_empty());

    // The chain as committed holds, and every record decodes with today's code.
    let mut prev = GENESIS_HASH;
    let mut envs = Vec::new();
    for (i, (seq, bytes)) in records.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "golden seqs are gap-free");
        let view = RecordView::parse(*seq, bytes).unwrap();
        assert!(
            view.body_hash_ok() && view.header.link_ok(),
            "record {seq} hashes"
        );
        assert_eq!(
            view.header.prev_hash, prev,
            "record {seq} chains to the one before"
        );
        prev = view.header.hash;
        envs.push(decode_record(*seq, bytes).unwrap());
    }

    // Replayed into a fresh state it gives the committed digest and summary.
    let mut state = State::default();
    for e in &envs {
        state.apply(e);
    }
    let digest = std::fs::read_to_string(dir.join("digest.txt")).unwrap();
    assert_eq!(
        hex::encode(state.digest()),
        digest.trim(),
        "golden log {version} replays to a different state"
    );
    let summary = dcloud::offline::summarize(&state, None, envs.len() as u64);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&summary).unwrap(), expected);

    // Appended again through today's log it re-creates the same chain, byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let log = dcloud_events::FjallLog::open(tmp.path()).unwrap();
    let batch = envs
        .iter()
        .map(|e| NewEvent {
            time_ms: e.time_ms,
            actor: e.actor.clone(),
            correlation: e.correlation.clone(),
            event: e.event.clone(),
        })
        .collect();
    let again = log.append(0, batch).unwrap();
    assert_eq!(
        again.last().unwrap().hash,
        prev,
        "today's encoder writes the same bytes"
    );
    log.verify().unwrap();
}

#[test]
fn golden_v1_replays_to_its_digest() {
    check_version("v1");
}

#[test]
fn golden_v2_replays_to_its_digest() {
    let dir = golden_dir("v2");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        regenerate(&dir);
    }
    check_version("v2");
}

/// Every variant by number. Exhaustive on purpose: a new variant does not compile
/// here until it is numbered, and then fails the test below until a golden log (a
/// new version: older ones are read-only) holds it.
fn variant(e: &Event) -> usize {
    use Event::*;
    match e {
        EnvironmentCreated { .. } => 0,
        EnvironmentUpdated { .. } => 1,
        EnvironmentDeactivated { .. } => 2,
        EnvironmentDeleted { .. } => 3,
        TemplateSaved { .. } => 4,
        TemplateDeleted { .. } => 5,
        CatalogUpserted { .. } => 6,
        DatasetsRegistered { .. } => 7,
        DatasetRemoved { .. } => 8,
        ServiceRegistered { .. } => 9,
        ServiceRefreshed { .. } => 10,
        ServiceDeregistered { .. } => 11,
        ServiceExpired { .. } => 12,
        NodeRegistered { .. } => 13,
        NodeHeartbeat { .. } => 14,
        NodeLost { .. } => 15,
        NodeDrained { .. } => 16,
        NodeUndrained { .. } => 17,
        DeploymentRequested { .. } => 18,
        DeploymentScheduled { .. } => 19,
        DeploymentUnschedulable { .. } => 20,
        DeploymentStopRequested { .. } => 21,
        DeploymentLost { .. } => 22,
        DeploymentStopped { .. } => 23,
        ImageBuildStarted { .. } => 24,
        ImageBuildProgress { .. } => 25,
        ImageBuildFailed { .. } => 26,
        ImageReady { .. } => 27,
        ContainerCreated { .. } => 28,
        ContainerStarted { .. } => 29,
        ContainerExited { .. } => 30,
        ContainerOomKilled { .. } => 31,
        ContainerRemoved { .. } => 32,
        ContainerFailed { .. } => 33,
        TokenCreated { .. } => 34,
        TokenRevoked { .. } => 35,
        DeploymentLogsOpened { .. } => 36,
        ExecSessionStarted { .. } => 37,
        ExecSessionEnded { .. } => 38,
        EnvironmentIdleTimeoutSet { .. } => 39,
        DeploymentIdleStopped { .. } => 40,
        NodeAddressReported { .. } => 41,
        ContainerOomWarning { .. } => 42,
        StaleContainerRemoved { .. } => 43,
        QuotaSet { .. } => 44,
        DeploymentQuotaWaiting { .. } => 45,
        TokenCreatedV2 { .. } => 46,
        JoinTokenCreated { .. } => 47,
        NodeJoined { .. } => 48,
        ContainerOutput { .. } => 49,
        RequestKeyRecorded { .. } => 50,
        TemplateIdleTimeoutSet { .. } => 51,
        CatalogServicesSet { .. } => 52,
        ClusterCreated { .. } => 53,
        DatasetStorageSet { .. } => 54,
        VolumeUsageReported { .. } => 55,
    }
}
const VARIANTS: usize = 56;

#[test]
fn every_event_variant_is_in_a_golden_log() {
    let mut seen = [false; VARIANTS];
    let mut names = vec![""; VARIANTS];
    for version in ["v1", "v2"] {
        let data = std::fs::read(golden_dir(version).join("log.bin")).unwrap();
        for (seq, bytes) in split_file(&data).unwrap() {
            let e = decode_record(seq, &bytes).unwrap().event;
            seen[variant(&e)] = true;
            names[variant(&e)] = e.kind();
        }
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(
        missing.is_empty(),
        "variants in no golden log (by number in `variant`): {missing:?}"
    );
    assert!(names.iter().all(|n| !n.is_empty()));
}

#[test]
fn deciding_is_deterministic() {
    // The same story with the same clock decides the same events, byte for byte.
    let run = || {
        let tmp = tempfile::tempdir().unwrap();
        let writer = start_writer(tmp.path(), 0);
        run_steps(&writer, &scenario_v2());
        let log = writer.log().clone();
        let envs: Vec<_> = log
            .read_range(1, log.last_seq())
            .map(|e| e.unwrap())
            .collect();
        encode_file(&envs)
    };
    assert!(run() == run(), "two runs of the golden story differ");
}
