//! A worker child process: started with the flags of `jobs-worker`'s CLI, probed over HTTP
//! (`/readyz`, `/metrics`), signalled with the `kill` command, measured from `/proc`, and
//! waited for with a bound.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How often [`WorkerProcess::wait_for`] probes.
const POLL: Duration = Duration::from_millis(25);

/// A running worker child, its output collected line by line. Dropping it kills the child.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout and stderr into `lines`; they end at end of file.
    readers: Vec<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts `binary` with `--url url --metrics-addr 127.0.0.1:<free port>`, then `args`, and
    /// the environment variables `env` on top of the inherited ones.
    ///
    /// # Errors
    ///
    /// When no port is free or the binary cannot be started.
    pub fn start<K, V>(binary: &Path, url: &str, args: &[&str], env: &[(K, V)]) -> io::Result<Self>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(["--url", url, "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("JOBS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let outputs: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn Read + Send>),
        ];
        for out in outputs.into_iter().flatten() {
            let lines = Arc::clone(&lines);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }));
        }
        Ok(Self {
            child,
            port,
            lines,
            readers,
            status: None,
        })
    }

    /// The child's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child printed so far, stdout and stderr.
    #[must_use]
    pub fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// `GET path` on the worker's probe port: the status and the body, or `None` when it does
    /// not answer.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.get_within(path, Duration::from_secs(5))
    }

    /// `GET path` as [`get`](Self::get), waiting up to `timeout` for the answer: for a probe
    /// that is itself bounded by a timeout of the worker's.
    #[must_use]
    pub fn get_within(&self, path: &str, timeout: Duration) -> Option<(u16, String)> {
        http_get(self.port, path, timeout)
    }

    /// Whether `/readyz` answers 200: every consumer attached.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.get("/readyz").is_some_and(|(status, _)| status == 200)
    }

    /// The value of the first `/metrics` line that starts with `series` (a metric name with
    /// its labels, e.g. `jobs_in_flight{job="a"}`), when it is an integer.
    #[must_use]
    pub fn metric(&self, series: &str) -> Option<u64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    /// Sends `signal` (`TERM`, `KILL`, …) with the `kill` command.
    ///
    /// # Errors
    ///
    /// When `kill` cannot run or fails.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{signal} {} failed: {status}",
                self.pid()
            )))
        }
    }

    /// The child's peak resident set size (`VmHWM` of `/proc/PID/status`) in KiB, while it
    /// runs.
    #[must_use]
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|line| {
            line.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// The exit status, when the child has exited.
    ///
    /// # Errors
    ///
    /// When the child's state cannot be read.
    pub fn try_exit(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
            if self.status.is_some() {
                // The pipes close with the child: the readers end once they have read it all.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
            }
        }
        Ok(self.status)
    }

    /// Waits at most `timeout` for the child to exit.
    ///
    /// # Errors
    ///
    /// When it is still running then, with its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_exit() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(error) => return Err(format!("cannot wait for the worker: {error}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the worker did not exit within {timeout:?}:\n{}",
                    self.output()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits at most `timeout` until `probe` holds.
    ///
    /// # Errors
    ///
    /// When the time runs out or the child exits first, saying which, with its output.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if probe(self) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.try_exit() {
                return Err(format!(
                    "the worker exited ({status}) while waiting for {what}:\n{}",
                    self.output()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; worker output:\n{}",
                    self.output()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits at most `timeout` for `/readyz` to answer 200.
    ///
    /// # Errors
    ///
    /// As [`WorkerProcess::wait_for`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_for("/readyz 200", timeout, Self::ready)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
