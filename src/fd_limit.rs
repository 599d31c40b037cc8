//! Open files: a server holds a socket per agent and client, and a simulated fleet an
//! agent connection per node, so both raise their soft `RLIMIT_NOFILE` to the hard
//! limit at start (the common soft default, 1024, is far below a 10,000-node fleet).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tracing::{info, warn};

/// Raises the soft open-files limit to the hard one; returns the limit in force
/// afterwards (`None`: unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return now.current;
    }
    let raised = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            info!(from = ?now.current, to = ?now.maximum, "open files limit raised");
            now.maximum
        }
        Err(e) => {
            warn!(error = %e, limit = ?now.current, "cannot raise the open files limit");
            now.current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        // Lower the soft limit first (always allowed), as on a host with a low default;
        // not too low, as other tests of this process run meanwhile.
        let low = before.maximum.map_or(4096, |m| m.min(4097) - 1);
        let lowered = Rlimit {
            current: Some(low),
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, lowered).expect("lower the soft limit");
        assert_eq!(getrlimit(Resource::Nofile).current, Some(low));
        let after = raise_fd_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(after, now.current);
        assert_eq!(now.maximum, before.maximum, "the hard limit is left alone");
    }
}
