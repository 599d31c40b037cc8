//! `logs` and `exec`: a deployment's logs over the `deploymentLogs` subscription, and a
//! command in its container over the server's `/exec` websocket (see docs/api.md).

use std::process::ExitCode;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::api::Api;
use super::ws::Subscription;
use crate::offline::Output;

const LOGS_SUB: &str = "subscription($id: ID!, $tail: Int, $sinceMs: Int, $follow: Boolean) { deploymentLogs(id: $id, tail: $tail, sinceMs: $sinceMs, follow: $follow) { stream line timeMs } }";

/// `--since`: a duration before now (`10m`, `2h`) or a Unix time in milliseconds.
pub(super) fn since_ms(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        if ms > 0 {
            return Ok(ms);
        }
    }
    let ago = dcloud_projections::config::parse_duration_ms(text).map_err(|_| {
        anyhow::anyhow!(
            "--since: expected a duration such as 10m or 2h, or a Unix time in milliseconds"
        )
    })?;
    Ok(now_ms.saturating_sub(ago as i64))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prints the logs: stdout lines to stdout, stderr lines to stderr, build lines to
/// stdout prefixed `[build]`; with `--output json`, one object per line.
pub(super) async fn logs(
    api: &Api,
    id: &str,
    follow: bool,
    tail: Option<u32>,
    since: Option<&str>,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let since = since.map(|s| since_ms(s, now_ms())).transpose()?;
    let vars = json!({"id": id, "tail": tail, "sinceMs": since, "follow": follow});
    let mut sub = Subscription::open(api, LOGS_SUB, vars).await?;
    let mut stdout = tokio::io::stdout();
    while let Some(data) = sub.next().await? {
        let l = &data["deploymentLogs"];
        let stream = l["stream"].as_str().unwrap_or("STDOUT");
        let line = l["line"].as_str().unwrap_or("");
        match out {
            Output::Json => {
                let obj = json!({"stream": stream, "line": line, "time_ms": l["timeMs"]});
                stdout.write_all(format!("{obj}\n").as_bytes()).await?;
            }
            Output::Table => match stream {
                "STDERR" => eprintln!("{line}"),
                "BUILD" => {
                    stdout
                        .write_all(format!("[build] {line}\n").as_bytes())
                        .await?
                }
                _ => stdout.write_all(format!("{line}\n").as_bytes()).await?,
            },
        }
        stdout.flush().await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ws://…/exec` for the server's base URL.
fn exec_url(api: &Api) -> String {
    let ws = api.ws_url();
    format!("{}/exec", ws.strip_suffix("/graphql/ws").unwrap_or(&ws))
}

/// Runs `cmd` in the deployment's container; exits with the command's exit code.
/// With `interactive`, standard input is sent (and its end); without, stdin is closed
/// at once. `tty` asks the engine for a terminal.
pub(super) async fn exec(
    api: &Api,
    id: &str,
    cmd: Vec<String>,
    interactive: bool,
    tty: bool,
) -> anyhow::Result<ExitCode> {
    if cmd.is_empty() {
        anyhow::bail!("exec needs a command after --, e.g. dcloud exec ID -- /bin/sh");
    }
    let url = exec_url(api);
    let request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad websocket url {url}"))?;
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot open the websocket {url}"))?;
    // With -t on a terminal: its real size, raw mode (keys such as ^C and arrows go to
    // the container, not to this process) until the session ends, and resizes.
    let terminal = tty && terminal::stdin_is_terminal();
    let (cols, rows) = terminal.then(terminal::size).flatten().unwrap_or((80, 24));
    let hello = json!({
        "token": api.token(), "deployment": id, "cmd": cmd, "tty": tty, "cols": cols, "rows": rows,
    });
    socket.send(Message::text(hello.to_string())).await?;
    if !interactive {
        socket.send(Message::text(r#"{"eof":true}"#)).await?;
    }
    let _raw = if terminal && interactive {
        terminal::RawMode::enter()
    } else {
        None
    };
    let mut resized = if terminal {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut stdin = stdin_chunks(interactive);
    let mut stdin_open = interactive;
    let mut stdout = tokio::io::stdout();
    loop {
        tokio::select! {
            Some(()) = async {
                match resized.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((cols, rows)) = terminal::size() {
                    let resize = json!({ "resize": { "cols": cols, "rows": rows } });
                    socket.send(Message::text(resize.to_string())).await?;
                }
            }
            chunk = stdin.recv(), if stdin_open => match chunk {
                Some(bytes) => socket.send(Message::binary(bytes)).await?,
                None => {
                    stdin_open = false;
                    socket.send(Message::text(r#"{"eof":true}"#)).await?;
                }
            },
            msg = socket.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if let Some(code) = v.get("exit").and_then(Value::as_i64) {
                        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                    }
                    if let Some(e) = v.get("error").and_then(Value::as_str) {
                        let code = v.get("code").and_then(Value::as_str).unwrap_or("ERROR");
                        eprintln!("error [{code}]: {e}");
                        return Ok(ExitCode::from(1));
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    anyhow::bail!("the server closed the session without an exit code")
                }
                Some(Err(e)) => return Err(e).context("websocket error"),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The local terminal under `exec -t`: is it one, its size, raw mode.
mod terminal {
    use std::io::{stdin, stdout};

    use rustix::termios::{self, OptionalActions, Termios};

    pub(super) fn stdin_is_terminal() -> bool {
        termios::isatty(stdin())
    }

    /// Columns and rows of the terminal on stdout, else stdin.
    pub(super) fn size() -> Option<(u16, u16)> {
        let ws = termios::tcgetwinsize(stdout()).or_else(|_| termios::tcgetwinsize(stdin()));
        ws.ok()
            .filter(|ws| ws.ws_col > 0 && ws.ws_row > 0)
            .map(|ws| (ws.ws_col, ws.ws_row))
    }

    /// Raw mode on the terminal on stdin while held; the previous settings come back
    /// on drop (also when the session ends with an error).
    pub(super) struct RawMode {
        saved: Termios,
    }

    impl RawMode {
        pub(super) fn enter() -> Option<RawMode> {
            let saved = termios::tcgetattr(stdin()).ok()?;
            let mut raw = saved.clone();
            raw.make_raw();
            termios::tcsetattr(stdin(), OptionalActions::Now, &raw).ok()?;
            Some(RawMode { saved })
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            let _ = termios::tcsetattr(stdin(), OptionalActions::Now, &self.saved);
        }
    }
}

/// Standard input in chunks, read on a plain thread: a read blocked on a terminal must
/// not keep the runtime from shutting down when the session ends (tokio's stdin would).
/// The channel is bounded: a command that does not read its input stops the reading.
fn stdin_chunks(enabled: bool) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    if enabled {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::since_ms;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(since_ms("10m", 1_000_000).unwrap(), 400_000);
        assert_eq!(since_ms("1700000000000", 5).unwrap(), 1_700_000_000_000);
        assert!(since_ms("yesterday", 5).is_err());
    }
}
