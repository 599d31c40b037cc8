//! A minimal WebDriver client (JSON over HTTP to chromedriver) for the browser test:
//! starts chromedriver on a free port, opens a headless Chromium session, finds
//! elements, clicks, types, runs scripts, waits and takes PNG screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Finds `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// chromedriver and the browser it drives; panics (the test fails, never skips) when
/// either is missing.
pub(crate) fn locate() -> (PathBuf, PathBuf) {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"))
        .unwrap_or_else(|| {
            panic!(
                "browser-tests: chromedriver not found on PATH (install Debian's \
                 `chromium` and `chromium-driver`, or set CHROMEDRIVER)"
            )
        });
    let browser = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| which("chromium"))
        .or_else(|| which("chromium-browser"))
        .or_else(|| which("google-chrome"))
        .unwrap_or_else(|| {
            panic!(
                "browser-tests: chromium not found on PATH (install Debian's \
                 `chromium` and `chromium-driver`, or set CHROME_BIN)"
            )
        });
    (driver, browser)
}

/// A running chromedriver; killed on drop.
pub(crate) struct Driver {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) async fn start(binary: &Path, http: &reqwest::Client) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("browser-tests: starting {}: {e}", binary.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = ready {
                if body.await.ok().and_then(|v| v["value"]["ready"].as_bool()) == Some(true) {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One browser session.
pub(crate) struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    pub(crate) async fn new(driver: &Driver, browser: &Path, http: reqwest::Client) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1366,1400", "--lang=en-GB"]
            }
        }}});
        let res: Value = http
            .post(format!("{}/session", driver.base))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session body");
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("browser-tests: no session: {res}"))
            .to_string();
        Session {
            http,
            url: format!("{}/session/{id}", driver.base),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver body");
        if let Some(err) = res["value"]["error"].as_str() {
            panic!("webdriver {path}: {err}: {}", res["value"]["message"]);
        }
        res["value"].clone()
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    pub(crate) async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub(crate) async fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Elements matching the CSS selector now.
    pub(crate) async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to `secs`) for an element matching `css`, and returns the first.
    pub(crate) async fn wait_for(&self, css: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(first) = self.find_all(css).await.into_iter().next() {
                return first;
            }
            if Instant::now() > deadline {
                let body = self
                    .exec("return document.body.innerText;", json!([]))
                    .await;
                panic!("timed out after {secs}s waiting for `{css}`; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub(crate) async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub(crate) async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub(crate) async fn text(&self, element: &str) -> String {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Saves a PNG of the viewport to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).expect("writing the screenshot");
    }

    pub(crate) async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, d| (acc << 6) | d) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decodes_padded_and_unpadded_text() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}
