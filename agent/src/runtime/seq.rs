//! Resume-from-seq: the last assignment sequence number a node acted on, kept in
//! memory and optionally in a file, so a reconnect neither loses nor repeats an item.

use std::path::PathBuf;

use tracing::warn;

/// The last sequence number seen. Items at or below it are repeats and are skipped.
#[derive(Debug)]
pub struct SeqTracker {
    last: u64,
    path: Option<PathBuf>,
    dirty: bool,
}

impl SeqTracker {
    /// Starts from the file's number when there is one (0 otherwise).
    pub fn load(path: Option<PathBuf>) -> SeqTracker {
        let last = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        SeqTracker {
            last,
            path,
            dirty: false,
        }
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    /// Where to resume the subscription after a snapshot taken at `snapshot_seq`: the
    /// snapshot already holds everything up to its seq, so start after the later of
    /// the two (a snapshot older than what we saw would replay items).
    pub fn resume_after(&mut self, snapshot_seq: u64) -> u64 {
        self.advance(snapshot_seq);
        self.last
    }

    /// True when `seq` is new (then it becomes the last seen); false for a repeat.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq <= self.last {
            return false;
        }
        self.advance(seq);
        true
    }

    fn advance(&mut self, seq: u64) {
        if seq > self.last {
            self.last = seq;
            self.dirty = true;
        }
    }

    /// Writes the number (temp file + rename) when it changed since the last write.
    pub fn persist(&mut self) {
        let Some(path) = &self.path else { return };
        if !self.dirty {
            return;
        }
        let tmp = path.with_extension("seq.tmp");
        let result = std::fs::write(&tmp, format!("{}\n", self.last))
            .and_then(|()| std::fs::rename(&tmp, path));
        match result {
            Ok(()) => self.dirty = false,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot persist the assignment seq")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_skipped_and_new_items_advance() {
        let mut t = SeqTracker::load(None);
        assert_eq!(t.last(), 0);
        assert!(t.accept(5));
        assert!(!t.accept(5));
        assert!(!t.accept(3));
        assert!(t.accept(9));
        assert_eq!(t.last(), 9);
    }

    #[test]
    fn resume_after_takes_the_later_of_snapshot_and_last_seen() {
        let mut t = SeqTracker::load(None);
        assert!(t.accept(20));
        // A snapshot older than what we saw does not move us back.
        assert_eq!(t.resume_after(15), 20);
        // A newer one covers everything up to its seq.
        assert_eq!(t.resume_after(30), 30);
        assert!(!t.accept(25));
        assert!(t.accept(31));
    }

    #[test]
    fn the_seq_survives_a_restart_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-n1.seq");
        let mut t = SeqTracker::load(Some(path.clone()));
        assert!(t.accept(41));
        t.persist();
        let mut again = SeqTracker::load(Some(path.clone()));
        assert_eq!(again.last(), 41);
        assert!(!again.accept(41));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(SeqTracker::load(Some(path)).last(), 0);
    }
}
