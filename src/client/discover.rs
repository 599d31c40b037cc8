//! Where the server listens, for client commands: `--server`/`DCLOUD_SERVER` when
//! given, else the `server.json` a running `dcloud server`/`dcloud dev` wrote into its
//! data directory (`DCLOUD_DATA`, else `./.dcloud`), else `http://127.0.0.1:7070`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The file a server writes into its data directory while it runs.
pub const SERVER_FILE: &str = "server.json";

const DEFAULT: &str = "http://127.0.0.1:7070";

/// Records `url` (and this process id) in `DATA/server.json`.
pub fn write_server_file(data: &Path, url: &str) -> std::io::Result<PathBuf> {
    let path = data.join(SERVER_FILE);
    let body = json!({ "url": url, "pid": std::process::id() });
    std::fs::write(&path, format!("{body}\n"))?;
    Ok(path)
}

/// The URL in `DATA/server.json`, if the file is there and names one.
pub(crate) fn server_in(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join(SERVER_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["url"].as_str().map(str::to_string)
}

/// `flag` (from `--server`/`DCLOUD_SERVER`), else the data directory's server file,
/// else the default.
pub fn discover_server(flag: Option<String>, data: Option<&Path>) -> String {
    if let Some(url) = flag.filter(|u| !u.trim().is_empty()) {
        return url;
    }
    let dirs: Vec<PathBuf> = match data {
        Some(d) => vec![d.to_path_buf()],
        None => vec![PathBuf::from(".dcloud")],
    };
    dirs.iter()
        .find_map(|d| server_in(d))
        .unwrap_or_else(|| DEFAULT.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_server_file_then_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(discover_server(None, Some(dir.path())), DEFAULT);
        write_server_file(dir.path(), "http://127.0.0.1:7171").expect("write");
        assert_eq!(
            discover_server(None, Some(dir.path())),
            "http://127.0.0.1:7171"
        );
        assert_eq!(
            discover_server(Some("http://h:1".into()), Some(dir.path())),
            "http://h:1"
        );
    }
}
