//! The command line: clap types, layered into a [`WorkerConfig`], then the subcommand.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a usage error, 3 a configuration error.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_text, redact_url};
use jobs_core::{JobDefaults, JobSettings};

use crate::config::{Layer, LogFormat, WorkerConfig};
use crate::ops::{self, OpsContext};
use crate::{Error, Worker};

/// A runtime failure.
const RUNTIME: u8 = 1;
/// A usage error.
const USAGE: u8 = 2;
/// A configuration error.
const CONFIG: u8 = 3;

/// Serves the jobs linked into this binary, and inspects the broker.
#[derive(Debug, Parser)]
#[command(name = "jobs-worker", version)]
struct Cli {
    #[arg(
        long,
        global = true,
        env = "JOBS_AMQP_URL",
        hide_env_values = true,
        value_name = "URL",
        help = "The broker URL [default: amqp://guest:guest@127.0.0.1:5672/%2f]"
    )]
    url: Option<String>,
    /// A TOML file of settings (keys as the long flags, with `_` for `-`).
    #[arg(long, global = true, env = "JOBS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The connection name the broker shows (NAME.publish, NAME.consume) [default: jobs-worker].
    #[arg(long, global = true, env = "JOBS_CONNECTION_NAME", value_name = "NAME")]
    connection_name: Option<String>,
    /// A PEM file of CA certificates to trust for amqps://, besides the system's.
    #[arg(long, global = true, env = "JOBS_TLS_CA", value_name = "FILE")]
    tls_ca: Option<String>,
    /// Log lines as `plain` text or `json`; filter them with `RUST_LOG` [default: plain].
    #[arg(long, global = true, env = "JOBS_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves jobs until SIGTERM or SIGINT (the default command).
    Run(RunArgs),
    /// Lists the jobs linked into this binary.
    Jobs(ops::jobs::JobsArgs),
    /// Prints, declares or verifies the jobs' exchanges, queues and bindings.
    Topology(ops::topology::TopologyArgs),
    /// Lists, shows, replays or purges the messages in error queues.
    Errors(ops::errors::ErrorsArgs),
}

/// Options of `run`.
#[derive(Debug, Clone, Default, Args)]
struct RunArgs {
    /// Serves only these jobs (comma-separated names) [default: every linked job].
    #[arg(long, env = "JOBS_WORKER_JOBS", value_name = "NAMES")]
    jobs: Option<String>,
    /// Handlers run at once per job; overrides each job's own concurrency.
    #[arg(long, env = "JOBS_CONCURRENCY", value_name = "N")]
    concurrency: Option<String>,
    /// Deliveries prefetched per job, running or waiting for a handler slot (at least the
    /// concurrency) [default: the concurrency].
    #[arg(long, env = "JOBS_PREFETCH", value_name = "N")]
    prefetch: Option<String>,
    /// How long running jobs may finish after SIGTERM before they are requeued [default: 25s].
    #[arg(long, env = "JOBS_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    shutdown_timeout: Option<String>,
    /// Where /healthz, /readyz and /metrics are served [default: 0.0.0.0:9090, every
    /// interface, as Kubernetes probes need].
    #[arg(long, env = "JOBS_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,
}

impl RunArgs {
    /// These options, with `other`'s where these are unset.
    fn or(self, other: Self) -> Self {
        Self {
            jobs: self.jobs.or(other.jobs),
            concurrency: self.concurrency.or(other.concurrency),
            prefetch: self.prefetch.or(other.prefetch),
            shutdown_timeout: self.shutdown_timeout.or(other.shutdown_timeout),
            metrics_addr: self.metrics_addr.or(other.metrics_addr),
        }
    }
}

/// Parses `args` (the program name first), resolves the configuration and runs the command.
pub(crate) async fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| {
            let on_command_line =
                matches.value_source("url") == Some(clap::parser::ValueSource::CommandLine);
            Cli::from_arg_matches(&matches).map(|cli| (cli, on_command_line))
        });
    let cli = match parsed {
        Ok((cli, url_on_command_line)) => {
            if url_on_command_line && cli.url.as_deref().is_some_and(has_password) {
                eprintln!(
                    "jobs-worker: warning: --url shows the broker password to anyone who can list \
                     processes; set JOBS_AMQP_URL or `url` in the --config file instead"
                );
            }
            cli
        }
        Err(err) => {
            let code = if err.use_stderr() { USAGE } else { 0 };
            let text = redact_text(&err.render().to_string());
            if err.use_stderr() {
                eprint!("{text}");
            } else {
                #[allow(clippy::print_stdout, reason = "--help and --version go to stdout")]
                {
                    print!("{text}");
                }
            }
            return ExitCode::from(code);
        }
    };
    let (config, command) = match configure(cli) {
        Ok(configured) => configured,
        Err(err) => {
            eprintln!("jobs-worker: {}", redact_text(&format!("{err:#}")));
            return ExitCode::from(CONFIG);
        }
    };
    init_logging(config.log_format);
    let url = config.url.clone();
    let scrub = |text: &str| scrub(text, &url);
    match command {
        Command::Run(_) => match Worker::builder().config(config.clone()).run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err @ (Error::NoJobs | Error::UnknownJob { .. } | Error::TlsCa { .. })) => {
                let err = anyhow::Error::from(err);
                eprintln!("jobs-worker: {err:#}");
                ExitCode::from(CONFIG)
            }
            Err(err) => {
                let err = anyhow::Error::from(err);
                let text = scrub(&format!("{err:#}"));
                tracing::error!(error = %text, "worker failed");
                ExitCode::from(RUNTIME)
            }
        },
        command => match operate(command, &config).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("jobs-worker: {}", scrub(&format!("{err:#}")));
                ExitCode::from(RUNTIME)
            }
        },
    }
}

/// Whether `url` carries a password.
fn has_password(url: &str) -> bool {
    redact_url(url) != url
}

/// `text` with every URL's password redacted, and the configured password itself wherever it
/// appears: a library may quote it outside a URL, or cut a URL where it cannot be recognised.
fn scrub(text: &str, url: &str) -> String {
    let mut text = redact_text(text);
    if let Some(password) = password_of(url)
        // Too short to replace without mangling the rest; such a password is no secret.
        && password.chars().count() >= 4
    {
        text = text.replace(password, "**");
    }
    text
}

/// The password of `url`, as written in it.
fn password_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let shown = redact_url(url);
    let (_, shown_rest) = shown.split_once("://")?;
    // The redacted URL keeps what follows the password: the password is what it replaced.
    let (user, after) = shown_rest.split_once(":**@")?;
    let tail_len = after.len() + 1;
    rest.get(user.len() + 1..rest.len().checked_sub(tail_len)?)
}

/// Runs an operator command. `jobs` and `topology print` need no broker, so they run on an
/// in-memory one.
async fn operate(command: Command, config: &WorkerConfig) -> anyhow::Result<ExitCode> {
    let offline = matches!(
        &command,
        Command::Jobs(_)
            | Command::Topology(ops::topology::TopologyArgs {
                action: ops::topology::TopologyAction::Print,
                ..
            })
    );
    let transport: Arc<dyn Transport> = if offline {
        Arc::new(MemoryTransport::new())
    } else {
        let transport = crate::worker::transport_builder(config)?
            .connect()
            .await
            .with_context(|| format!("could not connect to {}", redact_url(&config.url)))?;
        Arc::new(transport)
    };
    let worker = Worker::builder().config(config.clone());
    let jobs = match worker.resolve_jobs() {
        Ok(jobs) => jobs,
        Err(Error::NoJobs) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let defaults = JobDefaults::default();
    let ctx = OpsContext {
        transport,
        jobs: jobs
            .into_iter()
            .map(|job| JobSettings::resolve(job, &defaults))
            .collect(),
    };
    let mut out = std::io::stdout();
    let code = match command {
        Command::Jobs(args) => ops::jobs::run(args, &ctx, &mut out).await?,
        Command::Topology(args) => ops::topology::run(args, &ctx, &mut out).await?,
        Command::Errors(args) => ops::errors::run(args, &ctx, &mut out).await?,
        Command::Run(_) => ExitCode::SUCCESS,
    };
    Ok(code)
}

/// The configuration from flags and environment over the `--config` file over the defaults.
fn configure(cli: Cli) -> anyhow::Result<(WorkerConfig, Command)> {
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(RunArgs::default()));
    // `run`'s options may come before or after the word `run`; after wins.
    let run = match &command {
        Command::Run(run) => run.clone().or(cli.run),
        _ => cli.run,
    };
    let args = Layer::default()
        .with("url", cli.url)
        .with("connection_name", cli.connection_name)
        .with("tls_ca", cli.tls_ca)
        .with("log_format", cli.log_format)
        .with("jobs", run.jobs.clone())
        .with("concurrency", run.concurrency.clone())
        .with("prefetch", run.prefetch.clone())
        .with("shutdown_timeout", run.shutdown_timeout.clone())
        .with("metrics_addr", run.metrics_addr.clone());
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read the config file {}", path.display()))?;
            Layer::from_toml(&text)
                .with_context(|| format!("in the config file {}", path.display()))?
        }
        None => Layer::default(),
    };
    Ok((WorkerConfig::resolve(&args, &file)?, command))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_hides_the_configured_password_wherever_it_appears() {
        let url = "amqp://app:pa ss/w@rd@mq:5672/%2f";
        assert_eq!(password_of(url), Some("pa ss/w@rd"));
        assert_eq!(password_of("amqp://mq/%2f"), None);
        assert_eq!(
            scrub(
                "login as app with 'pa ss/w@rd' failed at amqp://app:pa ss/w@rd@mq",
                url
            ),
            "login as app with '**' failed at amqp://app:**@mq"
        );
        assert!(has_password(url));
        assert!(!has_password("amqp://mq:5672/%2f"));
    }

    #[test]
    fn flags_override_and_run_is_the_default() {
        let cli = Cli::try_parse_from(["w", "--shutdown-timeout", "3s", "--jobs", "a,b"]).unwrap();
        let (config, _) = configure(cli).unwrap();
        assert_eq!(config.shutdown_timeout, std::time::Duration::from_secs(3));
        assert_eq!(config.jobs, Some(vec!["a".to_owned(), "b".to_owned()]));
        let cli = Cli::try_parse_from(["w", "run", "--concurrency", "4"]).unwrap();
        let (config, _) = configure(cli).unwrap();
        assert_eq!(config.concurrency, Some(4));
    }
}
