//! Fuzzing on stable Rust. Each [`Target`] feeds one input to a part of DCloud that
//! reads bytes it did not write (the record and frame decoders, the snapshot loader,
//! the document parsers with Mongo extended JSON, the GraphQL input layer) and checks
//! its properties: it never panics, and what it accepts is consistent (a decoded
//! record has the seq it was asked for, an accepted snapshot saves back to the same
//! bytes, a parsed environment exports and parses back to itself, every refusal names
//! a field). A panic is a finding.
//!
//! [`Fuzzer`] mutates a corpus (`fuzz/corpus/<target>/`, committed) with a seeded RNG
//! and keeps the inputs whose outcome it has not seen before (an outcome-guided
//! search: the error kind and field path stand in for coverage, which stable Rust
//! cannot instrument without nightly tooling). `cargo run -p dcloud-fuzz --release --
//! --seconds 600` runs it for long; `tests/corpus.rs` replays the corpus and runs a
//! bounded, seeded pass in CI.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dcloud_events::frame;
use dcloud_events::record::{decode_record, Decoder, RecordView};
use dcloud_projections::config::{self, Format};
use dcloud_projections::{Actor, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A stored frame value (`frame::entries`), then each record in it.
    Frame,
    /// One stored record (`record::decode_record`).
    Record,
    /// A state snapshot (`State::from_snapshot_bytes`).
    Snapshot,
    /// A JSON document (with Mongo extended JSON) through every document reader.
    Json,
    /// A YAML document through every document reader.
    Yaml,
    /// A GraphQL request (query text) against a real schema over a fresh log, as admin.
    Graphql,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Frame,
        Target::Record,
        Target::Snapshot,
        Target::Json,
        Target::Yaml,
        Target::Graphql,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Record => "record",
            Target::Snapshot => "snapshot",
            Target::Json => "json",
            Target::Yaml => "yaml",
            Target::Graphql => "graphql",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its corpus folder under `root` (`fuzz/corpus`).
    pub fn corpus_dir(self, root: &Path) -> PathBuf {
        root.join(self.name())
    }

    /// Runs one input; returns a short outcome signature (what kind of success or
    /// refusal it met). Panics when a property does not hold.
    pub fn run(self, data: &[u8]) -> String {
        match self {
            Target::Frame => run_frame(data),
            Target::Record => run_record(data),
            Target::Snapshot => run_snapshot(data),
            Target::Json => run_document(data, Format::Json),
            Target::Yaml => run_document(data, Format::Yaml),
            Target::Graphql => run_graphql(data),
        }
    }
}

/// The seq a record input is decoded as: the first 8 bytes (big-endian) when present.
fn split_seq(data: &[u8]) -> (u64, &[u8]) {
    match data.split_first_chunk::<8>() {
        Some((seq, rest)) => (u64::from_be_bytes(*seq), rest),
        None => (1, data),
    }
}

/// The kind of an error: its text up to the first detail (a colon, parenthesis or
/// quote, or a digit), at most 40 characters, so that inputs differing only in the
/// names and numbers they carry meet the same outcome.
fn error_kind(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    text.split([':', '(', '"', '\'', '`'])
        .next()
        .unwrap_or("")
        .chars()
        .take_while(|c| !c.is_ascii_digit())
        .take(40)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A field path's first name when it is one a document may have (lowercase letters,
/// `-`, `_`), else `?`.
fn path_kind(path: &str) -> String {
    let first = path
        .trim_start_matches('[')
        .split(['.', '[', ']'])
        .next()
        .unwrap_or("");
    let known = first.len() <= 24
        && first
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_' || c.is_ascii_digit());
    if known {
        first.to_string()
    } else {
        "?".to_string()
    }
}

fn run_record(data: &[u8]) -> String {
    let (seq, bytes) = split_seq(data);
    let mut decoder = Decoder::new();
    let checked = decoder.decode_checked(seq, bytes);
    match decode_record(seq, bytes) {
        Ok(env) => {
            assert_eq!(env.seq, seq, "a decoded record has the seq it was read as");
            let view = RecordView::parse(seq, bytes).expect("a decodable record parses");
            // The checked decode accepts exactly the decodable records whose hashes hold.
            let hashes_hold = view.body_hash_ok() && view.header.link_ok();
            assert_eq!(
                checked.is_ok(),
                hashes_hold,
                "decode_checked agrees with the hashes"
            );
            if let Ok(c) = checked {
                assert_eq!(c, env, "both decodes give the same envelope");
            }
            format!("ok:{}:{hashes_hold}", env.event.kind())
        }
        Err(e) => {
            assert!(
                checked.is_err(),
                "what does not decode is not accepted checked"
            );
            format!("err:{}", error_kind(&e))
        }
    }
}

fn run_frame(data: &[u8]) -> String {
    let (key, value) = split_seq(data);
    let mut entries = Vec::new();
    match frame::entries(key, value, &mut entries) {
        Ok(()) => {
            let mut kinds = Vec::new();
            for e in &entries {
                assert!(
                    e.range.start <= e.range.end && e.range.end <= value.len(),
                    "an entry's range lies inside the frame"
                );
                let bytes = &value[e.range.clone()];
                match decode_record(e.seq, bytes) {
                    Ok(env) => {
                        assert_eq!(env.seq, e.seq);
                        kinds.push(env.event.kind().to_string());
                    }
                    Err(err) => kinds.push(format!("err:{}", error_kind(&err))),
                }
            }
            kinds.sort();
            kinds.dedup();
            format!("ok:{}:{}", entries.len().min(3), kinds.join(","))
        }
        Err(damage) => format!("damage:{}", error_kind(&damage.reason)),
    }
}

fn run_snapshot(data: &[u8]) -> String {
    let raw = load_snapshot(data);
    // The same body behind this build's header too, so that a corpus written by an
    // older fold still reaches the body's validation instead of the header check.
    let header_len = dcloud_projections::state::SNAPSHOT_HEADER_LEN;
    if data.len() >= header_len && data.starts_with(b"DCSTATE") {
        let mut rehead = State::default().to_snapshot_bytes()[..header_len].to_vec();
        rehead.extend_from_slice(&data[header_len..]);
        return format!("{raw}|{}", load_snapshot(&rehead));
    }
    raw
}

fn load_snapshot(data: &[u8]) -> String {
    match State::from_snapshot_bytes(data) {
        Ok(state) => {
            let again = State::from_snapshot_bytes(&state.to_snapshot_bytes())
                .expect("a loaded snapshot saves to bytes that load");
            assert_eq!(again, state, "a snapshot round-trips");
            format!("ok:{}", state.nodes.len().min(3))
        }
        Err(e) => format!("err:{}", error_kind(&e)),
    }
}

fn run_document(data: &[u8], format: Format) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not-utf8".to_string();
    };
    // The readers an upload meets, in the order `apply` calls them.
    let names_fields = |errors: &[dcloud_projections::FieldError]| {
        assert!(!errors.is_empty(), "a refusal says what is wrong");
        for e in errors {
            assert!(!e.message.is_empty(), "every refusal has a message: {e:?}");
        }
        format!("{}:{}", path_kind(&errors[0].path), errors.len().min(3))
    };
    let mut outcome = match config::parse_document(text, format) {
        Ok(docs) => {
            for doc in &docs {
                if let config::Document::Environment(spec) = doc {
                    let exported = config::export_environment(spec);
                    let back = config::parse_environment(&exported.to_string(), Format::Json)
                        .expect("an exported environment parses");
                    assert_eq!(&back, spec, "an environment round-trips through export");
                }
            }
            format!("ok:{}", docs.len().min(3))
        }
        Err(errors) => format!("err:{}", names_fields(&errors)),
    };
    for (name, result) in [
        ("idle", config::idle_timeouts(text, format).map(drop)),
        ("services", config::catalog_services(text, format).map(drop)),
        ("storage", config::dataset_storage(text, format).map(drop)),
    ] {
        if let Err(errors) = result {
            outcome.push_str(&format!("|{name}:{}", names_fields(&errors)));
        }
    }
    outcome
}

/// One schema over a log in a temporary directory, shared by every GraphQL input of
/// the process (its writes accumulate, as on a real server).
struct GraphqlRig {
    runtime: tokio::runtime::Runtime,
    app: dcloud::server::AppState,
    _dir: tempfile::TempDir,
}

fn rig() -> &'static GraphqlRig {
    static RIG: OnceLock<GraphqlRig> = OnceLock::new();
    RIG.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dcloud::server::ServerConfig::new(dir.path().join("data"));
        let (app, _) = runtime
            .block_on(dcloud::server::AppState::open(&config))
            .expect("the server state opens");
        GraphqlRig {
            runtime,
            app,
            _dir: dir,
        }
    })
}

fn run_graphql(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let rig = rig();
    let request = async_graphql::Request::new(text.as_ref()).data(Actor::admin("fuzz"));
    let response = rig.runtime.block_on(rig.app.schema().execute(request));
    if response.errors.is_empty() {
        return "ok".to_string();
    }
    let e = &response.errors[0];
    let code = e
        .extensions
        .as_ref()
        .and_then(|x| x.get("code"))
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert!(!e.message.is_empty(), "every GraphQL error has a message");
    format!("err:{code}:{}", error_kind(&e.message))
}

/// Runs `target` on `data`, turning a panic into `Err(message)`.
pub fn check(target: Target, data: &[u8]) -> Result<String, String> {
    catch_unwind(AssertUnwindSafe(|| target.run(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".to_string())
    })
}

/// The corpus of `target` under `root`, in file-name order.
pub fn load_corpus(root: &Path, target: Target) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(target.corpus_dir(root)) {
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// A crash: the input and what broke.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: Target,
    pub input: Vec<u8>,
    pub message: String,
}

/// Tallies of one fuzzing run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub executions: u64,
    pub outcomes: usize,
    pub kept: usize,
}

/// A seeded, outcome-guided mutation fuzzer over one target's corpus.
pub struct Fuzzer {
    pub target: Target,
    rng: StdRng,
    pool: Vec<Vec<u8>>,
    seen: HashSet<String>,
    pub stats: Stats,
    pub findings: Vec<Finding>,
    /// Inputs kept for a new outcome (written back to the corpus by the CLI).
    pub new_inputs: Vec<Vec<u8>>,
    max_len: usize,
}

/// Most inputs a run keeps to mutate.
const MAX_POOL: usize = 2_000;

/// Byte values that tend to matter to decoders and parsers.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xd1, 0xf1, b'{', b'}', b'[', b']', b'"', b':', b',', b'$',
    b'\n', b'-', b'#', b'&', b'*', b'!', b'|', b'>',
];
/// Fragments spliced into text inputs.
const TOKENS: &[&str] = &[
    "{\"$oid\":\"5f6e4b6e4b50\"}",
    "{\"$date\":\"2024-01-01T00:00:00Z\"}",
    "{\"$numberLong\":\"9223372036854775807\"}",
    "\"shared-storage\": {\"type\": \"none\", \"o\": \"bind\", \"device\": \"/x\"}",
    "\"idle-timeout\": \"1h\"",
    "\"services\": {}",
    "resources:\n  ram: 1G\n",
    "&a [*a, *a]",
    "!!binary aGk=",
    "__schema { types { name } }",
    "mutation { apply(document: \"{}\") { events } }",
    "query { deployments { nodes { id } } }",
    "...on Query { me { name } }",
    "99999999999999999999999",
    "-1",
    "\u{0}",
];

impl Fuzzer {
    pub fn new(target: Target, corpus: Vec<Vec<u8>>, seed: u64) -> Fuzzer {
        let mut pool = corpus;
        if pool.is_empty() {
            pool.push(Vec::new());
        }
        Fuzzer {
            target,
            rng: StdRng::seed_from_u64(seed),
            pool,
            seen: HashSet::new(),
            stats: Stats::default(),
            findings: Vec::new(),
            new_inputs: Vec::new(),
            max_len: 1 << 16,
        }
    }

    /// Runs the unmutated corpus once (recording its outcomes), then `runs` mutated
    /// inputs (or until `deadline`).
    pub fn run(&mut self, runs: u64, deadline: Option<std::time::Instant>) {
        for input in self.pool.clone() {
            self.execute(input, false);
        }
        for _ in 0..runs {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break;
            }
            let input = self.mutate();
            self.execute(input, true);
        }
        self.stats.outcomes = self.seen.len();
    }

    fn execute(&mut self, input: Vec<u8>, keep_new: bool) {
        self.stats.executions += 1;
        match check(self.target, &input) {
            Ok(outcome) => {
                if self.seen.insert(outcome) && keep_new && self.pool.len() < MAX_POOL {
                    self.stats.kept += 1;
                    self.new_inputs.push(input.clone());
                    self.pool.push(input);
                }
            }
            Err(message) => self.findings.push(Finding {
                target: self.target,
                input,
                message,
            }),
        }
    }

    fn mutate(&mut self) -> Vec<u8> {
        let mut data = self.pool[self.rng.random_range(0..self.pool.len())].clone();
        let rounds = 1 + self.rng.random_range(0..4);
        for _ in 0..rounds {
            let len = data.len();
            match self.rng.random_range(0..9) {
                0 if len > 0 => {
                    let i = self.rng.random_range(0..len);
                    data[i] ^= 1 << self.rng.random_range(0..8);
                }
                1 if len > 0 => {
                    let i = self.rng.random_range(0..len);
                    data[i] = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
                }
                2 if len > 0 => {
                    let start = self.rng.random_range(0..len);
                    let end = (start + self.rng.random_range(1..=16)).min(len);
                    data.drain(start..end);
                }
                3 => {
                    let i = self.rng.random_range(0..=len);
                    let token = TOKENS[self.rng.random_range(0..TOKENS.len())];
                    data.splice(i..i, token.bytes());
                }
                4 if len > 0 => {
                    // Truncate: torn writes and cut uploads.
                    data.truncate(self.rng.random_range(0..len));
                }
                5 if len > 1 => {
                    // Repeat a chunk.
                    let start = self.rng.random_range(0..len);
                    let end = (start + self.rng.random_range(1..=64)).min(len);
                    let chunk = data[start..end].to_vec();
                    let at = self.rng.random_range(0..=len);
                    data.splice(at..at, chunk);
                }
                6 => {
                    // Splice with another corpus entry.
                    let other = &self.pool[self.rng.random_range(0..self.pool.len())];
                    if !other.is_empty() {
                        let from = self.rng.random_range(0..other.len());
                        let at = self.rng.random_range(0..=len);
                        let tail = other[from..].to_vec();
                        data.truncate(at);
                        data.extend_from_slice(&tail);
                    }
                }
                7 if len >= 4 => {
                    // Overwrite a length-like field with a boundary value.
                    let i = self.rng.random_range(0..=len - 4);
                    let v: u32 = match self.rng.random_range(0..4) {
                        0 => 0,
                        1 => u32::MAX,
                        2 => len as u32,
                        _ => self.rng.random(),
                    };
                    let bytes = if self.rng.random() {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    };
                    data[i..i + 4].copy_from_slice(&bytes);
                }
                _ => {
                    let i = self.rng.random_range(0..=len);
                    data.insert(i, self.rng.random());
                }
            }
        }
        data.truncate(self.max_len);
        data
    }
}

/// The file name a corpus input is saved under: its blake3 hash, short.
pub fn input_name(data: &[u8]) -> String {
    hex::encode(&blake3::hash(data).as_bytes()[..8])
}
