//! Opening the log's directory so that a power cut at any moment leaves a log that
//! opens: fjall does not fsync the directories it makes for new keyspaces, so after
//! every open the whole tree is fsynced before the log takes an append; and a first
//! open cut short (fjall's files half made) is started again from nothing, which loses
//! nothing since no append was ever taken there.

use std::path::Path;

use crate::error::LogError;

/// Written (durably) once the log directory was made completely; a directory without
/// it, and without fjall's own `version` marker (a log made before this file existed),
/// holds a creation that was cut short.
const CREATED_MARKER: &str = "dcloud-log-created";
/// fjall's marker of a finished database (written last when it creates one).
const FJALL_VERSION_MARKER: &str = "version";

fn io(e: std::io::Error) -> LogError {
    LogError::Storage(fjall::Error::Io(e))
}

/// Before fjall opens `dir`: clears a creation that was cut short.
pub(crate) fn before_open(dir: &Path) -> Result<(), LogError> {
    let started = dir.is_dir() && std::fs::read_dir(dir).map_err(io)?.next().is_some();
    let finished = dir.join(CREATED_MARKER).exists() || dir.join(FJALL_VERSION_MARKER).exists();
    if started && !finished {
        tracing::warn!(dir = %dir.display(), "the log's creation was cut short (no append was ever taken); making it again");
        std::fs::remove_dir_all(dir).map_err(io)?;
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    Ok(())
}

/// After fjall opened `dir`: every directory of the tree is fsynced, and the marker
/// written, before the log takes its first append.
pub(crate) fn after_open(dir: &Path) -> Result<(), LogError> {
    sync_tree(dir).map_err(io)?;
    let marker = dir.join(CREATED_MARKER);
    if !marker.exists() {
        let f = std::fs::File::create(&marker).map_err(io)?;
        f.sync_all().map_err(io)?;
        sync_dir(dir).map_err(io)?;
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Fsyncs every directory under `dir`, children first.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}
