//! CI's bounded fuzzing pass: every committed corpus input of every target is run
//! (none may panic or break a property), then a seeded mutation pass per target
//! (`DCLOUD_FUZZ_RUNS` mutated inputs each, default 20,000; GraphQL a tenth). A failure
//! prints the input in hex and the seed, so it can be replayed. Long runs:
//! `cargo run -p dcloud-fuzz --release -- --seconds 600`.

use std::path::PathBuf;

use dcloud_fuzz::{check, load_corpus, Fuzzer, Target};

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn every_committed_corpus_input_runs_clean() {
    for target in Target::ALL {
        let corpus = load_corpus(&corpus_root(), target);
        assert!(
            corpus.len() >= 5,
            "the {} corpus is committed (run `cargo run -p dcloud-fuzz -- seed-corpus`)",
            target.name()
        );
        for (name, input) in corpus {
            if let Err(message) = check(target, &input) {
                panic!("{}/{name}: {message}", target.name());
            }
        }
    }
}

#[test]
fn a_bounded_seeded_mutation_pass_finds_nothing() {
    let runs: u64 = std::env::var("DCLOUD_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("DCLOUD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261203);
    for target in Target::ALL {
        let corpus = load_corpus(&corpus_root(), target)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let mut fuzzer = Fuzzer::new(target, corpus, seed);
        let n = if target == Target::Graphql {
            runs / 10
        } else {
            runs
        };
        fuzzer.run(n, None);
        println!(
            "{}: {} executions, {} outcomes, {} new inputs",
            target.name(),
            fuzzer.stats.executions,
            fuzzer.stats.outcomes,
            fuzzer.stats.kept
        );
        if let Some(f) = fuzzer.findings.first() {
            panic!(
                "{} (seed {seed}): {}\ninput: {}",
                target.name(),
                f.message,
                f.input
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
    }
}
