//! [`Servers`]: the control plane as one URL or several (`--server a,b,c`: a leader and
//! its standbys on a shared log). Every client of a process shares one: requests and
//! websockets go to the current server; one that cannot be reached is left for the next
//! in the list, and a standby's `NOT_LEADER` answer moves writes to the leader it names.
//! Subscriptions resume after the last seq seen wherever they reconnect (every server
//! of a shared log numbers events alike), so a failover loses and repeats nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::client::Endpoints;
use crate::error::AgentError;

/// The servers of one control plane, and which one is used now.
#[derive(Debug)]
pub struct Servers {
    list: Vec<Endpoints>,
    current: AtomicUsize,
}

impl Servers {
    /// `http(s)://host:port[,http(s)://host:port…]`: one base URL per server.
    pub fn parse(spec: &str) -> Result<Servers, AgentError> {
        let list = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Endpoints::from_base)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(AgentError::Protocol {
                op: "server url",
                message: format!("{spec:?}: expected http(s)://HOST:PORT, comma separated"),
            });
        }
        Ok(Servers {
            list,
            current: AtomicUsize::new(0),
        })
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never: [`Servers::parse`] refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The server in use: its index (for [`Servers::failed`]) and endpoints.
    pub fn current(&self) -> (usize, &Endpoints) {
        let i = self.current.load(Ordering::Acquire) % self.list.len();
        (i, &self.list[i])
    }

    /// Server `index` failed: move on to the next one, unless another caller already
    /// moved on from it.
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.list.len();
        if next != index {
            let _ = self
                .current
                .compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// A standby named `leader` (its base URL) as the leader: use it from now on if it
    /// is one of these servers. Returns whether it is.
    pub fn leader_is(&self, leader: &str) -> bool {
        let Ok(named) = Endpoints::from_base(leader) else {
            return false;
        };
        match self.list.iter().position(|e| e.http == named.http) {
            Some(i) => {
                self.current.store(i, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The base URLs, comma separated (for messages).
    pub fn describe(&self) -> String {
        self.list
            .iter()
            .map(|e| e.http.trim_end_matches(super::client::HTTP_PATH))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_on_from_a_failed_server_and_to_a_named_leader() {
        let s = Servers::parse("http://a:1, http://b:2,http://c:3").expect("parse");
        assert_eq!(s.len(), 3);
        assert_eq!(s.current().1.http, "http://a:1/graphql");
        s.failed(0);
        assert_eq!(s.current().0, 1);
        // A late report of the same failure does not skip a server.
        s.failed(0);
        assert_eq!(s.current().0, 1);
        s.failed(1);
        s.failed(2);
        assert_eq!(s.current().0, 0, "round and round");
        assert!(s.leader_is("http://c:3"));
        assert_eq!(s.current().1.ws, "ws://c:3/graphql/ws");
        assert!(!s.leader_is("http://elsewhere:9"));
        assert_eq!(s.current().0, 2);
        assert_eq!(s.describe(), "http://a:1,http://b:2,http://c:3");
    }

    #[test]
    fn one_server_stays_and_bad_lists_are_refused() {
        let s = Servers::parse("https://dc.example/").expect("parse");
        s.failed(0);
        assert_eq!(s.current().0, 0);
        assert!(Servers::parse("").is_err());
        assert!(Servers::parse("http://a:1,ftp://b").is_err());
    }
}
