//! The fold's fingerprint: a hash of the source of everything that decides what a
//! snapshot holds (the state's types and `apply`, the event and model types). A
//! snapshot records it, and one written by another fold is skipped and the log
//! replayed instead, so a change to `apply` can never be masked by an old snapshot.
//! Any edit of these files (a comment too) changes it: that costs one replay.

use std::path::Path;

const FOLD_SOURCES: &[&str] = &[
    "src/state",
    "../events/src/event.rs",
    "../events/src/model.rs",
    "../events/src/envelope.rs",
];

fn main() {
    let mut files = Vec::new();
    for source in FOLD_SOURCES {
        let path = Path::new(source);
        println!("cargo:rerun-if-changed={source}");
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .expect("the fold's source folder")
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.to_path_buf());
        }
    }
    // FNV-1a, 64 bits: stable across compilers, enough to tell folds apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_name().expect("a file name").to_string_lossy();
        eat(name.as_bytes());
        eat(&[0]);
        let text = std::fs::read_to_string(file).expect("a fold source file");
        // Line endings do not change the fold.
        eat(text.replace("\r\n", "\n").as_bytes());
        eat(&[0]);
    }
    println!("cargo:rustc-env=DCLOUD_FOLD_FINGERPRINT={hash:016x}");
}
