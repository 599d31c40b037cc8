//! `dcloud-fuzz`: runs the fuzzer for long (`--seconds`), or writes the seed corpus.
//!
//! ```text
//! cargo run -p dcloud-fuzz --release -- [--target NAME|all] [--seconds N] [--runs N]
//!                                        [--seed N] [--save] [--corpus DIR]
//! cargo run -p dcloud-fuzz --release -- seed-corpus
//! ```
//! Crashing inputs are written to `fuzz/crashes/<target>-<hash>` and the exit status
//! is 1; `--save` adds inputs that met a new outcome to the corpus.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dcloud_fuzz::{input_name, load_corpus, Fuzzer, Target};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = root.join("corpus");
    let mut targets = Target::ALL.to_vec();
    let mut seconds = 60u64;
    let mut runs = u64::MAX;
    let mut seed = 1u64;
    let mut save = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "seed-corpus" => return seed_corpus(&corpus),
            "--target" => {
                let v = value("--target");
                targets = if v == "all" {
                    Target::ALL.to_vec()
                } else {
                    match Target::parse(&v) {
                        Some(t) => vec![t],
                        None => {
                            eprintln!("--target: {v:?} is not one of frame, record, snapshot, json, yaml, graphql, all");
                            return ExitCode::from(2);
                        }
                    }
                }
            }
            "--seconds" => seconds = number("--seconds", &value("--seconds")),
            "--runs" => runs = number("--runs", &value("--runs")),
            "--seed" => seed = number("--seed", &value("--seed")),
            "--corpus" => corpus = PathBuf::from(value("--corpus")),
            "--save" => save = true,
            other => {
                eprintln!(
                    "unknown argument {other:?}; see the comment at the top of fuzz/src/main.rs"
                );
                return ExitCode::from(2);
            }
        }
    }
    let per_target = Duration::from_secs(seconds) / targets.len().max(1) as u32;
    let mut crashed = false;
    for target in targets {
        let inputs = load_corpus(&corpus, target)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let mut fuzzer = Fuzzer::new(target, inputs, seed);
        let started = Instant::now();
        fuzzer.run(runs, Some(started + per_target));
        let s = &fuzzer.stats;
        println!(
            "{:<9} {:>9} executions in {:>6.1}s ({:>7.0}/s), {:>4} outcomes, {:>3} new inputs, {} crash(es)",
            target.name(),
            s.executions,
            started.elapsed().as_secs_f64(),
            s.executions as f64 / started.elapsed().as_secs_f64().max(1e-9),
            s.outcomes,
            s.kept,
            fuzzer.findings.len()
        );
        if save {
            let dir = target.corpus_dir(&corpus);
            let _ = std::fs::create_dir_all(&dir);
            for input in &fuzzer.new_inputs {
                let _ = std::fs::write(dir.join(input_name(input)), input);
            }
        }
        for f in &fuzzer.findings {
            crashed = true;
            let dir = root.join("crashes");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{}-{}", target.name(), input_name(&f.input)));
            let _ = std::fs::write(&path, &f.input);
            println!("  crash: {} (input in {})", f.message, path.display());
        }
    }
    if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn number(flag: &str, v: &str) -> u64 {
    v.parse().unwrap_or_else(|_| {
        eprintln!("{flag}: {v:?} is not a whole number");
        std::process::exit(2)
    })
}

/// Writes the seed corpus: records and frames of the golden log, snapshots of the
/// states along it, the repository's example documents (JSON and YAML, Mongo extended
/// JSON among them) and a set of GraphQL requests.
fn seed_corpus(corpus: &std::path::Path) -> ExitCode {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let write = |target: Target, data: &[u8]| {
        let dir = target.corpus_dir(corpus);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        std::fs::write(dir.join(input_name(data)), data).expect("corpus file");
    };
    let golden = std::fs::read(repo.join("replay-tests/golden/v1/log.bin")).expect("golden log");
    let records = replay_split(&golden);
    let mut state = dcloud_projections::State::default();
    for (i, (seq, bytes)) in records.iter().enumerate() {
        let mut input = seq.to_be_bytes().to_vec();
        input.extend_from_slice(bytes);
        write(Target::Record, &input);
        if i % 8 == 0 {
            let chunk: Vec<(u64, &[u8])> = records[i..(i + 8).min(records.len())]
                .iter()
                .map(|(s, b)| (*s, b.as_slice()))
                .collect();
            let mut frame = seq.to_be_bytes().to_vec();
            frame.extend_from_slice(&dcloud_events::frame::encode_frame(chunk));
            write(Target::Frame, &frame);
        }
        let env = dcloud_events::record::decode_record(*seq, bytes).expect("golden record");
        state.apply(&env);
        if i % 6 == 5 || i + 1 == records.len() {
            write(Target::Snapshot, &state.to_snapshot_bytes());
        }
    }
    for dir in ["examples", "projections/tests/data/examples"] {
        let Ok(entries) = std::fs::read_dir(repo.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            if name.ends_with(".json") {
                write(Target::Json, &bytes);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                write(Target::Yaml, &bytes);
            }
        }
    }
    for starter in [
        "src/server/starter/catalog.json",
        "src/server/starter/templates.json",
    ] {
        if let Ok(bytes) = std::fs::read(repo.join(starter)) {
            write(Target::Json, &bytes);
        }
    }
    for y in YAML_SEEDS {
        write(Target::Yaml, y.as_bytes());
    }
    for q in GRAPHQL_SEEDS {
        write(Target::Graphql, q.as_bytes());
    }
    println!("seed corpus written to {}", corpus.display());
    ExitCode::SUCCESS
}

/// The golden file's `(seq, record)` pairs (seq u64 BE, length u32 BE, record).
fn replay_split(mut data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while data.len() >= 12 {
        let seq = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
        data = &data[12..];
        if data.len() < len {
            break;
        }
        out.push((seq, data[..len].to_vec()));
        data = &data[len..];
    }
    out
}

const YAML_SEEDS: &[&str] = &[
    "template-name: small\nversion: \"1\"\nos: ubuntu\nlanguages: []\nresources: {ram: 1G, cpu: \"1\", gpu: \"0\", storage: 1}\nidle-timeout: 2h\n",
    "os: debian\nbase-image: debian:12\ninit-steps: [\"apt-get update\"]\nspecifications:\n  python:\n    installation-steps: [\"apt-get install -y python3\"]\n    libraries:\n      jupyter-notebook: [\"apt-get install -y jupyter-notebook\"]\nservices:\n  jupyter-notebook: {command: [jupyter-notebook], port: 8888, ready: \"http:/api\", token-env: JUPYTER_TOKEN, open: /tree}\n",
    "- service-name: dfs\n  ip: 10.0.0.5\n  port: 9000\n- category-name: vision\n  shared-storage: null\n  db: [{db-name: coco, dataset: [{dataset-name: val, version: \"2017\"}]}]\n",
    "template:\n  env-name: wrapped\n  version: \"1\"\n  os: ubuntu\n  languages: [{language-name: python, libraries: [numpy]}]\n  resources: {ram: 512M, cpu: \"0.5\", gpu: \"0\", storage: 2}\n",
    "env-name: anchors\nversion: &v \"1\"\nos: ubuntu\nlanguages: []\nresources: &r {ram: 1G, cpu: \"1\", gpu: \"0\", storage: 1}\nport-publish: [{external: {ports: \"8080\"}, internal: {ports: \"80\", protocol: tcp}}]\nstorage: [{target: /data, size: 1G, lifecycle: persistent}]\n",
];

const GRAPHQL_SEEDS: &[&str] = &[
    "{ me { name role } }",
    "{ clusterId counts { nodes deployments } }",
    "{ nodes(first: 5) { nodes { id hostname health } } }",
    "{ deployments(first: 3) { nodes { id status volumes { target usedBytes } } } }",
    "{ datasets { category sharedStorage { type device } } }",
    "query($id: ID!) { deployment(id: $id) { status } }",
    "mutation { apply(document: \"{\\\"env-name\\\": \\\"x\\\", \\\"version\\\": \\\"1\\\", \\\"os\\\": \\\"ubuntu\\\", \\\"languages\\\": [], \\\"resources\\\": {\\\"ram\\\": \\\"1G\\\", \\\"cpu\\\": \\\"1\\\", \\\"gpu\\\": \\\"0\\\", \\\"storage\\\": 1}}\") { events documents { kind id } } }",
    "mutation { registerNode(nodeId: \"n1\", fingerprint: { hostname: \"h\", os: \"linux\", agentVersion: \"t\", capacity: { cpuMillis: 1000, memoryBytes: 1073741824, gpus: 0, storageBytes: 1073741824 }, labels: [] }) { id } }",
    "mutation { heartbeat(nodeId: \"n1\", usage: { cpuMillis: 1, memoryBytes: 2 }) { logged } }",
    "mutation { reportVolumeUsage(nodeId: \"n1\", deploymentId: \"d\", volumes: [{ target: \"/x\", usedBytes: 1, sizeBytes: 2, enforced: false }]) }",
    "{ events(first: 5) { seq kind } }",
    "{ a: me { name } b: me { name } c: __typename }",
    "fragment F on Query { me { name } } { ...F }",
    "{ __schema { queryType { name } } }",
];
