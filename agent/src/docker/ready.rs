//! Readiness of a declared service: a container whose assignment declares a check
//! ([`Readiness`], kept on the container as its `dcloud.ready` label) is reported
//! started only once the check passes against the container's own address: a TCP
//! connect, or an HTTP GET answering 2xx or 3xx. A container that stops first is left
//! to the engine's `die` (its exit is reported with its code and output).

use std::time::Duration;

use bollard::Docker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::driver::{Readiness, Report, ReportSender};

/// How often the check is tried.
const EVERY: Duration = Duration::from_millis(250);
/// One try's limit.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a service may take to become ready before a warning is logged; the checks
/// go on while the container runs, from then on every [`SLOW_EVERY`].
const SLOW: Duration = Duration::from_secs(120);
const SLOW_EVERY: Duration = Duration::from_secs(5);

/// Reports `Started` for `deployment` once `ready` passes on `container`; gives up
/// silently when the container stops running or is gone.
pub(super) fn report_when_ready(
    docker: Docker,
    container: String,
    deployment: String,
    ready: Readiness,
    tx: ReportSender,
) {
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            let Ok(c) = docker.inspect_container(&container, None).await else {
                return;
            };
            let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
            if !running {
                debug!(%deployment, "not running: readiness checks end");
                return;
            }
            let ip = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .and_then(|nets| {
                    nets.values()
                        .filter_map(|n| n.ip_address.clone())
                        .find(|ip| !ip.is_empty())
                });
            if let Some(ip) = ip {
                if check(&ip, &ready).await {
                    info!(%deployment, check = %ready.label(), "service ready");
                    let _ = tx.send((deployment, Report::Started)).await;
                    return;
                }
            }
            let slow = started.elapsed() > SLOW;
            if slow && !warned {
                warned = true;
                warn!(%deployment, check = %ready.label(), "service not ready yet");
            }
            tokio::time::sleep(if slow { SLOW_EVERY } else { EVERY }).await;
        }
    });
}

/// One try of the check against `ip`.
pub(crate) async fn check(ip: &str, ready: &Readiness) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((ip, ready.port)).await.ok()?;
        let Some(path) = &ready.http_path else {
            return Some(true);
        };
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {ip}:{}\r\nConnection: close\r\n\r\n",
            ready.port
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(status_ok(&head))
    };
    matches!(
        tokio::time::timeout(TRY_TIMEOUT, attempt).await,
        Ok(Some(true))
    )
}

/// `HTTP/1.x NNN …` with NNN in 200..400.
fn status_ok(head: &[u8]) -> bool {
    let line = String::from_utf8_lossy(head);
    let mut words = line.split_whitespace();
    let proto = words.next().unwrap_or("");
    let code: u16 = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    proto.starts_with("HTTP/") && (200..400).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn status_lines() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_ok(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_ok(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_ok(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!status_ok(b""));
    }

    #[test]
    fn labels_read_back() {
        for ready in [
            Readiness {
                port: 8888,
                http_path: Some("/api".into()),
            },
            Readiness {
                port: 5432,
                http_path: None,
            },
        ] {
            assert_eq!(Readiness::parse(&ready.label()), Some(ready));
        }
        assert_eq!(Readiness::parse("http:x:/"), None);
    }

    #[tokio::test]
    async fn checks_pass_only_when_the_service_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let http = Readiness {
            port,
            http_path: Some("/api".into()),
        };
        let tcp = Readiness {
            port,
            http_path: None,
        };
        // Answers 503 first, then 200.
        let server = tokio::spawn(async move {
            for answer in ["HTTP/1.1 503 No\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.unwrap();
            }
            listener
        });
        assert!(!check("127.0.0.1", &http).await);
        assert!(check("127.0.0.1", &http).await);
        let listener = server.await.unwrap();
        assert!(check("127.0.0.1", &tcp).await);
        drop(listener);
        assert!(!check("127.0.0.1", &tcp).await);
    }
}
