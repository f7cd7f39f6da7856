//! A private RabbitMQ node started from the Debian package, for faults the shared broker must
//! never see: stopped, killed, alarmed.
//!
//! Each node has its own node name (`jobs-faults-<port>@localhost`), its own AMQP and
//! distribution ports (free ones, never the shared broker's 5672 and 25672), its own data, log
//! and configuration files in a temporary directory removed on drop, its own Erlang cookie (in a
//! `HOME` of its own) and a plugins file empty unless asked, so no management listener clashes
//! with the shared broker. Every `rabbitmqctl` call names the node with `-n`.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The server script of the Debian package. The one in `/usr/sbin` switches to the `rabbitmq`
/// user, who could not write the test's directory; this one runs as the caller.
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The control tool of the Debian package, for the same reason not the `/usr/sbin` wrapper.
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// The cookie of every private node: the nodes of a cluster must share it, and distribution
/// listens on loopback only.
const COOKIE: &str = "JOBSFAULTSPRIVATECOOKIE";
/// How long a node may take to boot: a cold start takes 5 to 15 s on a loaded machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(90);
/// The longest any one `rabbitmqctl` call may take before it counts as hung.
const CTL_DEADLINE: Duration = Duration::from_secs(60);

/// Whether the Debian `rabbitmq-server` package is installed. When it is not, a test should skip:
/// see [`skip_without_rabbitmq`].
#[must_use]
pub fn rabbitmq_installed() -> bool {
    Path::new(SERVER).exists() && Path::new(CTL).exists()
}

/// `true` when a test needing private nodes must skip: the package is missing. Prints why.
///
/// # Panics
///
/// When the package is missing and `JOBS_REQUIRE_BROKER` is set, so that a suite cannot pass by
/// skipping.
#[must_use]
pub fn skip_without_rabbitmq() -> bool {
    log_if_asked();
    if rabbitmq_installed() {
        return false;
    }
    assert!(
        std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
        "the rabbitmq-server package is not installed ({SERVER}) and JOBS_REQUIRE_BROKER is set"
    );
    eprintln!("skipped: the rabbitmq-server package is not installed ({SERVER})");
    true
}

/// Logs to stderr what `JOBS_FAULTS_LOG` selects (a `RUST_LOG`-style filter such as
/// `warn,jobs_core=debug`), to see what the engine and lapin did in a scenario that failed.
fn log_if_asked() {
    if let Ok(filter) = std::env::var("JOBS_FAULTS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(io::stderr)
            .try_init();
    }
}

/// A free TCP port on loopback, as the OS hands it out: for a node's extra listener (TLS).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Settings of a [`PrivateNode`] beyond its ports and directories.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The heartbeat the node proposes, in seconds (`heartbeat`).
    pub heartbeat_secs: u16,
    /// More `rabbitmq.conf` lines, written after the harness's own.
    pub extra_config: Vec<String>,
    /// Plugins to enable (the enabled plugins file); none by default. Never the management
    /// plugin, whose port the shared broker holds.
    pub plugins: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            heartbeat_secs: 10,
            extra_config: Vec::new(),
            plugins: Vec::new(),
        }
    }
}

/// A RabbitMQ node of its own: see the [module docs](self). Dropping it kills the node and
/// removes its directory.
pub struct PrivateNode {
    name: String,
    port: u16,
    dist_port: u16,
    dir: PathBuf,
    server: Option<Child>,
}

impl PrivateNode {
    /// Starts a fresh node with the default options and waits until it serves AMQP.
    ///
    /// # Errors
    ///
    /// When no port is free, the directory cannot be written, or the node does not boot within
    /// its deadline (the error carries the end of its output).
    pub async fn start_new() -> io::Result<Self> {
        Self::start_with(NodeOptions::default()).await
    }

    /// Starts a fresh node with `options` and waits until it serves AMQP.
    ///
    /// # Errors
    ///
    /// As [`start_new`](Self::start_new).
    pub async fn start_with(options: NodeOptions) -> io::Result<Self> {
        const TRIES: u32 = 3;
        let mut tries = 1;
        loop {
            let mut node = Self::prepare(&options)?;
            match node.start().await {
                Ok(()) => return Ok(node),
                // The ports were free when picked, and another process took one before the node
                // bound it: a fresh node on fresh ports (this one is removed as it drops).
                Err(error) if tries < TRIES && error.to_string().contains("eaddrinuse") => {
                    tries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes the node's directory and configuration without starting it.
    fn prepare(options: &NodeOptions) -> io::Result<Self> {
        let port = free_port()?;
        let mut dist_port = free_port()?;
        while dist_port == port {
            dist_port = free_port()?;
        }
        let name = format!("jobs-faults-{port}@localhost");
        let dir =
            std::env::temp_dir().join(format!("jobs-faults-node-{port}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let cookie = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie, COOKIE)?;
        restrict_to_owner(&cookie)?;
        // Only the plugins asked for: the management plugin would take port 15672 from the
        // shared broker.
        std::fs::write(
            dir.join("enabled_plugins"),
            format!("[{}].\n", options.plugins.join(",")),
        )?;
        // An empty environment file, so /etc/rabbitmq/rabbitmq-env.conf (the shared broker's
        // node name) is not read.
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        let mut config = format!(
            "listeners.tcp.default = 127.0.0.1:{port}\n\
             loopback_users = none\n\
             heartbeat = {}\n\
             vm_memory_high_watermark.relative = 0.6\n\
             disk_free_limit.absolute = 10MB\n\
             max_message_size = 16777216\n",
            options.heartbeat_secs
        );
        for line in &options.extra_config {
            config.push_str(line);
            config.push('\n');
        }
        std::fs::write(dir.join("rabbitmq.conf"), config)?;
        Ok(Self {
            name,
            port,
            dist_port,
            dir,
            server: None,
        })
    }

    /// The node's name, as `rabbitmqctl -n` takes it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's AMQP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The AMQP URL of the node, as guest on the default virtual host.
    #[must_use]
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Whether the node's server process is running (it may still be booting).
    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the node on its data directory (again, after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)) and waits until it has booted and its AMQP port answers.
    ///
    /// # Errors
    ///
    /// When the server cannot be spawned, exits while booting, or is not up within the
    /// deadline; the error carries the end of its output.
    pub async fn start(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))?;
        let mut command = Command::new(SERVER);
        self.environment(&mut command);
        command
            .current_dir(&self.dir)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", self.pid_file())
            // Distribution on loopback only, like the shared broker's.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        let _ = std::fs::remove_file(self.pid_file());
        self.server = Some(command.spawn()?);
        self.await_boot().await
    }

    /// Polls `rabbitmqctl await_startup` until the node has booted, then the AMQP port.
    async fn await_boot(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + BOOT_DEADLINE;
        loop {
            if !self.is_running() {
                return Err(self.failure("the node exited while booting"));
            }
            // await_startup fails at once while the node has not registered with epmd yet, and
            // waits for the boot once it has.
            let booted = self
                .ctl(&["await_startup", "--timeout", "30"])
                .await
                .is_ok();
            if booted && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failure("the node did not boot in time"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the node gracefully (`rabbitmqctl shutdown`, which waits for the process to end).
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails or the server process does not end.
    pub async fn stop(&mut self) -> io::Result<()> {
        self.ctl(&["shutdown", "--timeout", "60"]).await?;
        self.reap().await
    }

    /// Kills the node's Erlang VM with SIGKILL: no goodbye to clients or peers.
    ///
    /// # Errors
    ///
    /// When the VM's pid cannot be found or signalled, or the server does not end.
    pub async fn kill(&mut self) -> io::Result<()> {
        let pid = match self.beam_pid() {
            Ok(pid) => pid,
            // The pid file is written late in the boot; the VM knows its pid from the start.
            Err(_) => self
                .eval("os:getpid().")
                .await?
                .trim()
                .trim_matches('"')
                .parse()
                .map_err(|_| io::Error::other("the node's pid is not a number"))?,
        };
        signal_kill(pid)?;
        self.reap().await
    }

    /// Waits for the server script to end after its VM did, and forgets the VM's pid, which the
    /// OS may hand to another process from now on.
    async fn reap(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.pid_file());
        if let Some(mut child) = self.server.take() {
            match tokio::time::timeout(CTL_DEADLINE, child.wait()).await {
                Ok(status) => {
                    status?;
                }
                Err(_) => {
                    child.start_kill()?;
                    return Err(self.failure("the server did not end after its node stopped"));
                }
            }
        }
        Ok(())
    }

    /// The OS pid of the node's Erlang VM (`beam.smp`), from the pid file it writes at boot.
    ///
    /// # Errors
    ///
    /// When the node is not running or the pid file is missing or malformed.
    pub fn beam_pid(&self) -> io::Result<u32> {
        let text = std::fs::read_to_string(self.pid_file())?;
        text.trim()
            .parse()
            .map_err(|_| io::Error::other(format!("malformed pid file: {text:?}")))
    }

    /// Closes every client connection on the node (`rabbitmqctl close_all_connections`).
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails.
    pub async fn close_all_connections(&self) -> io::Result<String> {
        self.ctl(&["close_all_connections", "closed by the fault battery"])
            .await
    }

    /// Raises (`true`) or clears the memory alarm, by setting the high watermark so low that any
    /// use exceeds it, or back to the configured fraction.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails.
    pub async fn memory_alarm(&self, on: bool) -> io::Result<()> {
        let watermark = if on { "0.0000001" } else { "0.6" };
        self.ctl(&["set_vm_memory_high_watermark", watermark])
            .await
            .map(drop)
    }

    /// Raises (`true`) or clears the disk alarm, by asking for more free disk than any machine
    /// has, or for the configured 10 MB.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails.
    pub async fn disk_alarm(&self, on: bool) -> io::Result<()> {
        let limit = if on { "1000000GB" } else { "10MB" };
        self.ctl(&["set_disk_free_limit", limit]).await.map(drop)
    }

    /// The node's resource alarms, as Erlang terms (`rabbit_alarm:get_alarms()`); `[]` when
    /// none is raised.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails.
    pub async fn alarms(&self) -> io::Result<String> {
        self.eval("rabbit_alarm:get_alarms().").await
    }

    /// Evaluates an Erlang expression on the node.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails.
    pub async fn eval(&self, expression: &str) -> io::Result<String> {
        self.ctl(&["eval", expression]).await
    }

    /// Runs `rabbitmqctl -n NODE args…` and returns its standard output.
    ///
    /// # Errors
    ///
    /// When it exits with a failure (with its output in the error) or takes longer than a
    /// minute.
    pub async fn ctl(&self, args: &[&str]) -> io::Result<String> {
        let mut command = Command::new(CTL);
        self.environment(&mut command);
        command
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_DEADLINE, command.output())
            .await
            .map_err(|_| io::Error::other(format!("rabbitmqctl {args:?} hung")))??;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        Err(io::Error::other(format!(
            "rabbitmqctl -n {} {args:?} failed ({}): {stdout}{}",
            self.name,
            describe(output.status),
            String::from_utf8_lossy(&output.stderr)
        )))
    }

    /// The environment common to the server and `rabbitmqctl`: the node's own cookie and files.
    fn environment(&self, command: &mut Command) {
        command
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env_remove("RABBITMQ_NODENAME")
            .env_remove("RABBITMQ_NODE_PORT")
            .env_remove("RABBITMQ_ERLANG_COOKIE");
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("beam.pid")
    }

    /// An error naming the node, with the end of its output and log.
    fn failure(&self, what: &str) -> io::Error {
        let tail = |path: PathBuf| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let start = text.len().saturating_sub(2000);
            text.get(start..).unwrap_or_default().to_owned()
        };
        io::Error::other(format!(
            "{what}: node {} in {}\n--- output ---\n{}\n--- log ---\n{}",
            self.name,
            self.dir.display(),
            tail(self.dir.join("server.out")),
            tail(self.dir.join("log").join(format!("{}.log", self.name))),
        ))
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        // Nothing graceful here: a test that ends (or panics) must not leave a node behind. The
        // pid file is trusted only while the server script that wrote it still runs.
        if self.is_running()
            && let Ok(pid) = self.beam_pid()
        {
            let _ = signal_kill(pid);
        }
        if let Some(child) = self.server.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl fmt::Debug for PrivateNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateNode")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("dist_port", &self.dist_port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Sends SIGKILL to `pid` with `kill(1)`: the crate forbids unsafe code, so no libc call.
fn signal_kill(pid: u32) -> io::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -KILL {pid} failed")))
    }
}

/// Makes the cookie readable by its owner only, as Erlang insists.
fn restrict_to_owner(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
}

fn describe(status: ExitStatus) -> String {
    status
        .code()
        .map_or_else(|| "killed".to_owned(), |code| format!("exit {code}"))
}
