//! Load generators for the crash test's child process: raw log appends and commands
//! through the single writer. Each acknowledged unit is printed on stdout as
//! `ack LAST_SEQ CORRELATION SIZE` the moment it is acknowledged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use dcloud::writer::{system_clock, WriterConfig};
use dcloud_events::model::{
    GpuDevice, LanguageCatalog, LanguageSpec, LibraryCatalog, NodeFingerprint, OriginalMeta,
    Resources, Usage,
};
use dcloud_events::{Event, EventLog, NewEvent};
use dcloud_projections::{Actor, Command, Settings};
use rand::{Rng, SeedableRng};

/// A heartbeat-sized event for raw appends.
pub fn filler_event(correlation: &str, i: usize) -> NewEvent {
    NewEvent {
        time_ms: 1_700_000_000_000 + i as i64,
        actor: "agent:crash".into(),
        correlation: correlation.into(),
        event: Event::NodeHeartbeat {
            node_id: format!("0x{:012x}", i),
            usage: Usage {
                cpu_millis: 100 + i as u64,
                memory_bytes: 1 << 20,
            },
            containers: vec![],
            engine_ok: true,
        },
    }
}

/// A catalog with one os (`ubuntu`) and python with numpy and pandas.
pub fn small_catalog() -> LibraryCatalog {
    let mut libraries = BTreeMap::new();
    libraries.insert("numpy".to_string(), vec!["pip install numpy".to_string()]);
    libraries.insert("pandas".to_string(), vec!["pip install pandas".to_string()]);
    let mut specifications = BTreeMap::new();
    specifications.insert(
        "python".to_string(),
        LanguageCatalog {
            installation_steps: vec!["apt-get install -y python3-pip".into()],
            libraries,
        },
    );
    LibraryCatalog {
        os: "ubuntu".into(),
        base_image: None,
        init_steps: vec!["apt-get -y update".into()],
        specifications,
        meta: OriginalMeta::default(),
    }
}

/// A node with `cpus` CPUs, `mem_gib` GiB and `gpus` GPUs.
pub fn node_fingerprint(name: &str, cpus: u64, mem_gib: u64, gpus: u32) -> NodeFingerprint {
    NodeFingerprint {
        hostname: name.into(),
        os: "linux".into(),
        capacity: Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: mem_gib << 30,
            gpus,
            storage_bytes: 500 << 30,
        },
        reserved: Resources::default(),
        gpus: (0..gpus)
            .map(|i| GpuDevice {
                index: i,
                uuid: format!("GPU-{name}-{i}"),
                model: "test".into(),
                memory_bytes: 16 << 30,
            })
            .collect(),
        labels: BTreeMap::new(),
        datasets: vec![],
        agent_version: "test".into(),
    }
}

/// A python environment asking for `cpu_millis`, `mem_mib` and `gpus`.
pub fn env_spec(
    name: &str,
    cpu_millis: u64,
    mem_mib: u64,
    gpus: u32,
) -> dcloud_events::model::EnvironmentSpec {
    dcloud_events::model::EnvironmentSpec {
        name: name.into(),
        version_label: "1".into(),
        os: "ubuntu".into(),
        languages: vec![LanguageSpec {
            name: "python".into(),
            libraries: vec!["numpy".into()],
        }],
        resources: Resources {
            cpu_millis,
            memory_bytes: mem_mib << 20,
            gpus,
            storage_bytes: 1 << 30,
        },
        datasets: vec![],
        ports: vec![],
        storage: vec![],
        node_labels: BTreeMap::new(),
        is_active: true,
        meta: OriginalMeta::default(),
    }
}

/// Runs the writer over `dir` and submits commands from 16 concurrent tasks forever.
pub fn writer_load(dir: &Path, seed: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let log = dcloud::store::open_log(dir)?;
        let (state, _) = dcloud::store::recover(&*log, None, true)?;
        let config = WriterConfig {
            settings: Settings::default(),
            snapshot_every: 500,
            keep_snapshots: dcloud::writer::DEFAULT_KEEP_SNAPSHOTS,
            clock: system_clock(),
        };
        let log: Arc<dyn EventLog> = log;
        let writer = dcloud::spawn_writer(log, state, config);
        let admin = Actor::admin("crash");
        let setup = [
            Command::UpsertCatalog {
                catalog: small_catalog(),
            },
            Command::RegisterNode {
                node_id: "0x000000000001".into(),
                fingerprint: node_fingerprint("n1", 64, 256, 4),
            },
            Command::RegisterNode {
                node_id: "0x000000000002".into(),
                fingerprint: node_fingerprint("n2", 64, 256, 4),
            },
            Command::CreateEnvironment {
                env_id: format!("env-{seed}"),
                spec: env_spec("crash", 100, 64, 0),
            },
        ];
        for (i, cmd) in setup.into_iter().enumerate() {
            let corr = format!("s{seed}-setup-{i}");
            let envs = writer
                .submit(cmd, admin.clone(), corr.clone())
                .await
                .context("setup")?;
            ack(&corr, &envs);
        }
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let writer = writer.clone();
            let admin = admin.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + t);
                let mut mine: Vec<String> = Vec::new();
                for i in 0u64.. {
                    let corr = format!("s{seed}-t{t}-{i}");
                    let cmd = if !mine.is_empty() && rng.random_bool(0.3) {
                        let id = mine.swap_remove(rng.random_range(0..mine.len()));
                        Command::Stop { deployment_id: id }
                    } else {
                        let id = format!("d-{seed}-{t}-{i}");
                        mine.push(id.clone());
                        Command::Deploy {
                            deployment_id: id,
                            env_id: format!("env-{seed}"),
                            wait_for_quota: false,
                            policy: None,
                        }
                    };
                    match writer.submit(cmd, admin.clone(), corr.clone()).await {
                        Ok(envs) => ack(&corr, &envs),
                        Err(dcloud::WriterError::Domain(_)) => ack(&corr, &[]),
                        Err(e) => return Err(anyhow::anyhow!(e)),
                    }
                }
                Ok::<(), anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
}

fn ack(correlation: &str, envs: &[dcloud_events::Envelope]) {
    let last = envs.last().map_or(0, |e| e.seq);
    let mut out = std::io::stdout().lock();
    // The parent reads this line as "durable": it is printed only after the append returned.
    let _ = writeln!(out, "ack {last} {correlation} {}", envs.len());
    let _ = out.flush();
}
