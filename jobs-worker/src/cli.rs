//! The command line: the settings layered into a [`WorkerConfig`], then the subcommand.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a usage error, 3 a configuration error.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_text, redact_url, split_urls};

use crate::config::{LogFormat, Settings, WorkerConfig};
use crate::ops::{self, OpsContext};
use crate::{Error, WorkerBuilder};

/// A runtime failure.
const RUNTIME: u8 = 1;
/// A usage error.
const USAGE: u8 = 2;
/// A configuration error.
const CONFIG: u8 = 3;

/// Serves the jobs of this binary, and inspects the broker.
#[derive(Debug, Parser)]
#[command(name = "jobs-worker", version)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// A TOML file of settings (keys as the long flags, with `_` for `-`).
    #[arg(long, global = true, env = "JOBS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves jobs until SIGTERM or SIGINT (the default command).
    Run,
    /// Prints the configuration the flags, environment and file resolve to, as a `--config`
    /// file (the URL's password hidden).
    Config,
    /// Lists the jobs of this binary.
    Jobs(ops::jobs::JobsArgs),
    /// Prints, declares or verifies the jobs' exchanges, queues and bindings.
    Topology(ops::topology::TopologyArgs),
    /// Lists, shows, replays or purges the messages in error queues.
    Errors(ops::error_queue::ErrorsArgs),
    /// Lists the periodic jobs: schedule, last slot fired and by which worker, next slot.
    Schedules(ops::schedules::SchedulesArgs),
    /// Pauses a job on every worker, now and after restarts: they stop taking its jobs, which
    /// wait in its queue.
    Pause(ops::pause::PauseArgs),
    /// Resumes a paused job on every worker.
    Resume(ops::pause::PauseArgs),
    /// Runs only the outbox relay of --outbox-url, serving no jobs, until SIGTERM or SIGINT:
    /// it publishes the jobs applications wrote to their outbox.
    #[cfg(feature = "outbox")]
    OutboxRelay,
}

/// Parses `args` (the program name first), resolves the configuration over `worker`'s and runs
/// the command.
pub(crate) async fn run(
    args: impl IntoIterator<Item = OsString>,
    worker: WorkerBuilder,
) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    // Messages and help name the binary the user ran (`upload-worker`), not this crate.
    let program = args
        .first()
        .and_then(|first| std::path::Path::new(first).file_name())
        .map_or_else(
            || "jobs-worker".to_owned(),
            |name| name.to_string_lossy().into_owned(),
        );
    let parsed = Cli::command()
        .bin_name(program.clone())
        .try_get_matches_from(args)
        .and_then(|matches| {
            let on_command_line =
                matches.value_source("url") == Some(clap::parser::ValueSource::CommandLine);
            Cli::from_arg_matches(&matches).map(|cli| (cli, on_command_line))
        });
    let cli = match parsed {
        Ok((cli, url_on_command_line)) => {
            if url_on_command_line
                && cli
                    .settings
                    .url
                    .iter()
                    .flatten()
                    .any(|url| has_password(url))
            {
                eprintln!(
                    "{program}: warning: --url shows the broker password to anyone who can list \
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
    let (config, command) = match configure(cli, worker.base_config()) {
        Ok(configured) => configured,
        Err(err) => {
            eprintln!("{program}: {}", redact_text(&format!("{err:#}")));
            return ExitCode::from(CONFIG);
        }
    };
    if matches!(command, Command::Config) {
        #[allow(clippy::print_stdout, reason = "the command's output")]
        {
            print!("{}", config.to_toml());
        }
        return ExitCode::SUCCESS;
    }
    init_logging(config.log_format);
    let url = config.url.clone();
    let scrub = |text: &str| scrub(text, &url);
    let worker = worker.with_config(config);
    match command {
        Command::Run => match worker.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.is_configuration() => {
                let err = anyhow::Error::from(err);
                eprintln!("{program}: {}", scrub(&format!("{err:#}")));
                ExitCode::from(CONFIG)
            }
            Err(err) => {
                let err = anyhow::Error::from(err);
                let text = scrub(&format!("{err:#}"));
                tracing::error!(error = %text, "worker failed");
                ExitCode::from(RUNTIME)
            }
        },
        #[cfg(feature = "outbox")]
        Command::OutboxRelay => match relay_outbox(&worker).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("{program}: {}", scrub(&format!("{err:#}")));
                ExitCode::from(RUNTIME)
            }
        },
        command => match operate(command, &worker).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("{program}: {}", scrub(&format!("{err:#}")));
                ExitCode::from(RUNTIME)
            }
        },
    }
}

/// Runs an operator command. `topology print` needs no broker, and `jobs` does without one
/// (it then does not count delayed jobs): they run on an in-memory stand-in.
async fn operate(command: Command, worker: &WorkerBuilder) -> anyhow::Result<ExitCode> {
    let config = worker.base_config();
    let offline = matches!(
        &command,
        Command::Topology(ops::topology::TopologyArgs {
            action: ops::topology::TopologyAction::Print,
            ..
        })
    );
    let connect = || async {
        let transport = crate::worker::transport_builder(config)?
            .connect()
            .await
            .with_context(|| format!("could not connect to {}", redact_url(&config.url)))?;
        anyhow::Ok(Arc::new(transport) as Arc<dyn Transport>)
    };
    let stand_in = || Arc::new(MemoryTransport::new()) as Arc<dyn Transport>;
    let (transport, connected) = if let Some(given) = worker.given_transport() {
        (Arc::clone(given), true)
    } else if offline {
        (stand_in(), false)
    } else if matches!(command, Command::Jobs(_)) {
        match connect().await {
            Ok(transport) => (transport, true),
            Err(err) => {
                tracing::debug!(error = %format!("{err:#}"), "jobs: no broker");
                (stand_in(), false)
            }
        }
    } else {
        (connect().await?, true)
    };
    let jobs = match worker.settings() {
        Ok(jobs) => jobs,
        Err(Error::NoJobs) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let ctx = OpsContext {
        transport,
        connected,
        jobs,
    };
    let mut out = std::io::stdout();
    let code = match command {
        Command::Jobs(args) => ops::jobs::run(args, &ctx, &mut out).await?,
        Command::Topology(args) => ops::topology::run(args, &ctx, &mut out).await?,
        Command::Errors(args) => ops::error_queue::run(args, &ctx, &mut out).await?,
        Command::Schedules(args) => ops::schedules::run(args, &ctx, &mut out).await?,
        Command::Pause(args) => ops::pause::pause(args, &ctx, &mut out).await?,
        Command::Resume(args) => ops::pause::resume(args, &ctx, &mut out).await?,
        Command::Run | Command::Config => ExitCode::SUCCESS,
        #[cfg(feature = "outbox")]
        Command::OutboxRelay => ExitCode::SUCCESS,
    };
    Ok(code)
}

/// The `outbox-relay` command: the relay alone, on a connection of its own.
#[cfg(feature = "outbox")]
async fn relay_outbox(worker: &WorkerBuilder) -> anyhow::Result<ExitCode> {
    let config = worker.base_config();
    let Some(url) = config.outbox_url.clone() else {
        eprintln!("outbox-relay: set --outbox-url, JOBS_OUTBOX_URL or `outbox_url` in the file");
        return Ok(ExitCode::from(CONFIG));
    };
    // Before anything else, as the worker does: a signal sent while the relay starts asks
    // for a graceful stop.
    let signals =
        crate::shutdown::Signals::install().context("could not install signal handlers")?;
    // Its probes and metrics, on the worker's address: bound first, as the worker does, so
    // that a port in use fails at once.
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("could not listen on {}", config.metrics_addr))?;
    let status = Arc::new(crate::outbox::RelayStatus::default());
    let server = tokio::spawn(crate::http::serve(
        listener,
        crate::outbox::router(Arc::clone(&status)),
    ));
    let transport: Arc<dyn Transport> = match worker.given_transport() {
        Some(given) => Arc::clone(given),
        None => Arc::new(
            crate::worker::transport_builder(config)?
                .connect()
                .await
                .with_context(|| format!("could not connect to {}", redact_url(&config.url)))?,
        ),
    };
    let producer = jobs_core::Producer::new(transport);
    let stopped = async {
        let name = signals.first().await;
        tracing::info!(signal = name, "outbox relay: stopping");
    };
    crate::outbox::relay(url, config.outbox_prune_after, producer, &status, stopped).await;
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// The configuration: flags and environment over the `--config` file over `base`.
fn configure(cli: Cli, base: &WorkerConfig) -> anyhow::Result<(WorkerConfig, Command)> {
    let command = cli.command.unwrap_or(Command::Run);
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read the config file {}", path.display()))?;
            Settings::from_toml(&text)
                .with_context(|| format!("in the config file {}", path.display()))?
        }
        None => Settings::default(),
    };
    let config = base.clone().apply(file)?.apply(cli.settings)?;
    Ok((config, command))
}

/// Whether `url` carries a password.
fn has_password(url: &str) -> bool {
    redact_url(url) != url
}

/// `text` with every URL's password redacted, and the configured password itself wherever it
/// appears: a library may quote it outside a URL, or cut a URL where it cannot be recognised.
fn scrub(text: &str, url: &str) -> String {
    let mut text = redact_text(text);
    for node in split_urls(url) {
        if let Some(password) = password_of(node)
            // Too short to replace without mangling the rest; such a password is no secret.
            && password.chars().count() >= 4
        {
            text = text.replace(password, "**");
        }
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
    fn a_cluster_is_several_urls_repeated_or_comma_separated_and_each_password_is_hidden() {
        let base = WorkerConfig::default();
        let cli = Cli::try_parse_from([
            "w",
            "--url",
            "amqp://a:first-secret@n1:5672/%2f",
            "--url",
            "amqp://b:second-secret@n2:5672/%2f,amqps://c:third-secret@n3:5671/%2f",
        ])
        .unwrap();
        let (config, _) = configure(cli, &base).unwrap();
        assert_eq!(
            split_urls(&config.url),
            [
                "amqp://a:first-secret@n1:5672/%2f",
                "amqp://b:second-secret@n2:5672/%2f",
                "amqps://c:third-secret@n3:5671/%2f"
            ]
        );
        let shown = format!("{config:?} {}", config.to_toml());
        for secret in ["first-secret", "second-secret", "third-secret"] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!scrub(&format!("failed: {secret}"), &config.url).contains(secret));
        }
        let file = Settings::from_toml("url = [\"amqp://n1/%2f\", \"amqp://n2/%2f\"]").unwrap();
        assert_eq!(
            base.clone().apply(file).unwrap().url,
            "amqp://n1/%2f,amqp://n2/%2f"
        );
        let bad = Cli::try_parse_from(["w", "--url", "amqp://n1/%2f,amqp://n2/%2f", "--url", "n3"])
            .unwrap();
        assert!(configure(bad, &base).is_err(), "every node needs a scheme");
    }

    #[test]
    fn flags_override_the_base_and_run_is_the_default() {
        let base = WorkerConfig::default().with_connection_name("app");
        let cli = Cli::try_parse_from(["w", "--shutdown-timeout", "3s", "--jobs", "a,b"]).unwrap();
        let (config, command) = configure(cli, &base).unwrap();
        assert!(matches!(command, Command::Run));
        assert_eq!(config.shutdown_timeout, std::time::Duration::from_secs(3));
        assert_eq!(config.jobs, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(config.connection_name, "app");
        let cli = Cli::try_parse_from(["w", "run", "--concurrency", "4"]).unwrap();
        let (config, _) = configure(cli, &base).unwrap();
        assert_eq!(config.concurrency, Some(4));
        assert!(Cli::try_parse_from(["w", "--concurrency", "0"]).is_err());
    }
}
