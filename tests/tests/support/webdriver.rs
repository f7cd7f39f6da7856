//! Debian's Chromium, headless, driven through chromedriver's WebDriver API: JSON over HTTP/1.1
//! on a local socket, spoken here with the standard library and `serde_json` (no WebDriver
//! client to build). Used by `amqp_dashboard.rs` through `#[path]`.
//!
//! Waits are bounded polls on the page's state, run in the browser: [`Browser::wait_for`] runs a
//! check until it returns something, under WebDriver's script timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Debian's Chromium.
const CHROMIUM: &str = "chromium";
/// Debian's chromedriver (package chromium-driver).
const CHROMEDRIVER: &str = "chromedriver";
/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What is missing of the browser, if anything: the packages to install.
pub(crate) fn missing() -> Vec<&'static str> {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let mut missing = Vec::new();
    if !runs(CHROMIUM) {
        missing.push("chromium");
    }
    if !runs(CHROMEDRIVER) {
        missing.push("chromium-driver");
    }
    missing
}

/// A free local port.
pub(crate) fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address")
}

/// One HTTP/1.1 request to `addr`, closing the connection after it: the response's status and
/// body. Blocking: call it from a blocking context.
///
/// # Errors
///
/// When the server cannot be reached or answers something that is not HTTP.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read by the response's framing: chromedriver keeps the connection open after it.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    loop {
        if let Some((status, body)) = complete(&response).map_err(invalid)? {
            return Ok((status, body));
        }
        let read = stream.read(&mut buf)?;
        if read == 0 {
            return match complete_at_end(&response) {
                Some(done) => Ok(done),
                None => Err(invalid("the connection closed mid-response")),
            };
        }
        response.extend_from_slice(&buf[..read]);
    }
}

/// The status and body of `response` once it is complete by its `Content-Length` or chunked
/// framing; `None` while more is to come (or, without either, until the connection closes).
fn complete(response: &[u8]) -> Result<Option<(u16, Vec<u8>)>, &'static str> {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status code")?;
    let body = &response[split + 4..];
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(dechunk(body).map(|body| (status, body)));
    }
    match header("content-length") {
        Some(length) => {
            let length: usize = length.parse().map_err(|_| "a bad Content-Length")?;
            Ok((body.len() >= length).then(|| (status, body[..length].to_vec())))
        }
        None => Ok(None),
    }
}

/// `response` read until the connection closed, as a response without framing.
fn complete_at_end(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A headless Chromium under a chromedriver of its own, with a fresh profile; both end when
/// this is dropped.
pub(crate) struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium `width` by `height` pixels.
    pub(crate) fn start(width: u32, height: u32) -> Self {
        tokio::task::block_in_place(|| Self::start_blocking(width, height))
    }

    fn start_blocking(width: u32, height: u32) -> Self {
        let addr = free_addr();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile =
            std::env::temp_dir().join(format!("jobs-chromium-{}-{nanos}", std::process::id()));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        // chromedriver answers /status once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http(addr, "GET", "/status", None, Duration::from_secs(2))
                .ok()
                .and_then(|(_, body)| serde_json::from_slice::<Value>(&body).ok())
                .is_some_and(|status| status["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", browser.profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let created = browser.request(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"args": args},
            }}}),
        );
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// A WebDriver command; its `value`. A WebDriver error fails the test with its message.
    fn request(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = (method == "POST").then_some(body);
        let (status, answer) = http(self.addr, method, path, body, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!("chromedriver {method} {path} answered {status} and no JSON: {e}")
        });
        let value = answer["value"].clone();
        assert!(
            status == 200,
            "chromedriver {method} {path}: {status} {}: {}",
            value["error"],
            value["message"]
        );
        value
    }

    /// A command of this session.
    fn command(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        tokio::task::block_in_place(|| self.request(method, &path, body))
    }

    /// Loads `url`.
    pub(crate) fn goto(&self, url: &str) {
        self.command("POST", "/url", &json!({ "url": url }));
    }

    /// Runs `body`, the body of a JavaScript function of `args` (`arguments[0]`, …), and
    /// returns what it returns (elements as WebDriver element references).
    pub(crate) fn run(&self, body: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            &json!({ "script": body, "args": args }),
        )
    }

    /// Runs `check` (the body of a JavaScript function of `args` as `args[0]`, …) in the page
    /// every 50 ms until it returns something other than `null`, `undefined` or `false`, and
    /// returns that; fails the test, naming `what` and showing the page's state, when `timeout`
    /// passes first.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        check: &str,
        args: &[Value],
        timeout: Duration,
    ) -> Value {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.command("POST", "/timeouts", &json!({ "script": millis }));
        let script = format!(
            "const done = arguments[arguments.length - 1];\n\
             const args = Array.prototype.slice.call(arguments, 0, -1);\n\
             const check = () => {{ {check}\n}};\n\
             const tick = () => {{\n\
               let found = null;\n\
               try {{ found = check(); }} catch (e) {{ found = null; }}\n\
               if (found !== null && found !== undefined && found !== false) done(found);\n\
               else setTimeout(tick, 50);\n\
             }};\n\
             tick();"
        );
        let path = format!("/session/{}/execute/async", self.session);
        let body = json!({ "script": script, "args": args });
        let (status, answer) = tokio::task::block_in_place(|| {
            http(
                self.addr,
                "POST",
                &path,
                Some(&body),
                timeout + COMMAND_TIMEOUT,
            )
        })
        .unwrap_or_else(|e| panic!("chromedriver, waiting for {what}: {e}"));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status == 200 {
            return answer["value"].clone();
        }
        let page = self.run(
            "const s = document.querySelector('[data-testid=status]');\n\
             const groups = Array.from(document.querySelectorAll('[data-testid=error-group]'))\n\
               .map(g => `${g.dataset.job} ${g.dataset.kind} \"${g.dataset.error}\" ${g.dataset.count}`);\n\
             const c = document.querySelector('[data-testid=connection]');\n\
             return `status: ${s ? s.textContent : 'none'}; connection: ${c ? c.textContent : 'none'}; groups: ${groups.join(' | ')}`;",
            &[],
        );
        panic!(
            "waited {timeout:?} for {what} in the browser ({status} {}); the page shows {}",
            answer["value"]["error"],
            page.as_str().unwrap_or_default()
        );
    }

    /// Clicks `element` (a reference [`run`](Self::run) or [`wait_for`](Self::wait_for)
    /// returned), scrolled to the middle of the viewport first: WebDriver does not scroll an
    /// element already in view, even under the page's sticky header.
    pub(crate) fn click(&self, element: &Value) {
        self.run(
            "arguments[0].scrollIntoView({block: 'center', inline: 'center'});",
            std::slice::from_ref(element),
        );
        let id = element_id(element);
        self.command("POST", &format!("/element/{id}/click"), &json!({}));
    }

    /// Types `text` into `element`.
    pub(crate) fn type_into(&self, element: &Value, text: &str) {
        let id = element_id(element);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            &json!({ "text": text }),
        );
    }

    /// A PNG of the viewport, the pointer moved off the page first (no hover styles).
    pub(crate) fn screenshot(&self) -> Vec<u8> {
        let away = json!({"actions": [{"type": "pointer", "id": "mouse", "actions": [
            {"type": "pointerMove", "x": 0, "y": 0, "origin": "viewport"},
        ]}]});
        self.command("POST", "/actions", &away);
        let shot = self.command("GET", "/screenshot", &Value::Null);
        base64_decode(shot.as_str().expect("base64 text")).expect("a base64 screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http(self.addr, "DELETE", &path, None, Duration::from_secs(10));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The id of a WebDriver element reference.
fn element_id(element: &Value) -> &str {
    element["element-6066-11e4-a52e-4f735466cecf"]
        .as_str()
        .unwrap_or_else(|| panic!("not an element: {element}"))
}

/// Standard base64, padded, as WebDriver's screenshots are.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(
            match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            }
            .into(),
        )
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}
