//! The worker's configuration: flags, environment, an optional TOML file and defaults, in that
//! order of precedence.
//!
//! Flags and environment variables arrive together from clap (a flag beats its variable); the
//! file fills in what neither set, and the defaults what the file leaves out. Every value is
//! checked here, so a bad one is reported with its key whichever layer it came from:
//! `invalid configuration: shutdown_timeout = "25x": expected a duration like "25s"`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jobs_core::transport::redact_url;

/// The broker URL when none is configured.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The HTTP address for `/healthz`, `/readyz` and `/metrics` when none is configured: every
/// interface, as a Kubernetes probe needs.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";
/// How long in-flight jobs may run on after a shutdown signal, when not configured: under
/// Kubernetes' 30 s grace period.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
/// The connection name the broker shows when none is configured.
pub const DEFAULT_CONNECTION_NAME: &str = "jobs-worker";

/// The keys the TOML file may set.
pub const KEYS: &[&str] = &[
    "url",
    "connection_name",
    "jobs",
    "concurrency",
    "prefetch",
    "shutdown_timeout",
    "metrics_addr",
    "log_format",
    "tls_ca",
];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Everything the worker needs to run, resolved and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The broker URL; printed only through [`redact_url`].
    pub url: String,
    /// The connection name the broker shows (`NAME.publish`, `NAME.consume`).
    pub connection_name: String,
    /// The job names to serve; `None` serves every job linked into the binary.
    pub jobs: Option<Vec<String>>,
    /// Overrides every job's concurrency.
    pub concurrency: Option<u16>,
    /// Deliveries held per job, running or waiting for a handler slot; at least the
    /// concurrency (the default).
    pub prefetch: Option<u16>,
    /// How long in-flight jobs may run on after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_addr: SocketAddr,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// A PEM file of CA certificates to trust for `amqps://`.
    pub tls_ca: Option<PathBuf>,
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("url", &redact_url(&self.url))
            .field("connection_name", &self.connection_name)
            .field("jobs", &self.jobs)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("metrics_addr", &self.metrics_addr)
            .field("log_format", &self.log_format)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self::resolve(&Layer::default(), &Layer::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, as the TOML file spells it.
    pub key: String,
    /// The value as given (a URL with its password redacted).
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {} = {:?}: {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// One source of configuration values, as strings keyed by their TOML name; `jobs` is a
/// comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer(BTreeMap<&'static str, String>);

impl Layer {
    /// Sets `key` (one of [`KEYS`]) when `value` is `Some`.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: Option<String>) -> Self {
        if let Some(value) = value {
            self.0.insert(key, value);
        }
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The values of a TOML document (the `--config` file).
    ///
    /// # Errors
    ///
    /// When it is not TOML, sets a key that is not in [`KEYS`], or gives a value of the wrong
    /// type.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| ConfigError {
            key: "config".to_owned(),
            value: String::new(),
            expected: format!("expected a TOML file ({})", err.message()),
        })?;
        let mut layer = Self::default();
        for (key, value) in table {
            let Some(&known) = KEYS.iter().find(|known| **known == key) else {
                // Not echoed: a misspelt or unknown key may well hold a secret.
                return Err(ConfigError {
                    value: "…".to_owned(),
                    key,
                    expected: format!("expected a known key (one of {})", KEYS.join(", ")),
                });
            };
            let text = match (&value, known) {
                (toml::Value::String(s), _) => s.clone(),
                (toml::Value::Integer(i), "concurrency" | "prefetch") => i.to_string(),
                (toml::Value::Array(items), "jobs") => {
                    let mut names = Vec::with_capacity(items.len());
                    for item in items {
                        match item.as_str() {
                            Some(name) => names.push(name.to_owned()),
                            None => {
                                return Err(bad(
                                    known,
                                    &value.to_string(),
                                    "expected a list of job names",
                                ));
                            }
                        }
                    }
                    names.join(",")
                }
                _ => {
                    let shown = if known == "url" {
                        String::from("…")
                    } else {
                        value.to_string()
                    };
                    return Err(bad(known, &shown, "expected a string"));
                }
            };
            layer.0.insert(known, text);
        }
        Ok(layer)
    }
}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

impl WorkerConfig {
    /// Resolves the configuration from flags-and-environment over the file over the defaults.
    ///
    /// # Errors
    ///
    /// The first value that cannot be used, named by its key.
    pub fn resolve(args: &Layer, file: &Layer) -> Result<Self, ConfigError> {
        let get = |key: &str| args.get(key).or_else(|| file.get(key));

        let url = get("url").unwrap_or(DEFAULT_URL).to_owned();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            // Not echoed: without a scheme, nothing says where a password would be.
            return Err(bad("url", "…", "expected an amqp:// or amqps:// URL"));
        }
        let connection_name = get("connection_name")
            .unwrap_or(DEFAULT_CONNECTION_NAME)
            .to_owned();
        let jobs = match get("jobs") {
            None => None,
            Some(list) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    return Err(bad(
                        "jobs",
                        list,
                        "expected a comma-separated list of job names",
                    ));
                }
                Some(names)
            }
        };
        let count = |key: &str| -> Result<Option<u16>, ConfigError> {
            get(key)
                .map(|value| match value.trim().parse::<u16>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(bad(key, value, "expected a whole number from 1 to 65535")),
                })
                .transpose()
        };
        let concurrency = count("concurrency")?;
        let prefetch = count("prefetch")?;
        let shutdown_timeout = match get("shutdown_timeout") {
            None => DEFAULT_SHUTDOWN_TIMEOUT,
            Some(value) => humantime::parse_duration(value.trim()).map_err(|_| {
                bad(
                    "shutdown_timeout",
                    value,
                    "expected a duration like \"25s\"",
                )
            })?,
        };
        let metrics_addr = get("metrics_addr").unwrap_or(DEFAULT_METRICS_ADDR);
        let metrics_addr = metrics_addr.trim().parse().map_err(|_| {
            bad(
                "metrics_addr",
                metrics_addr,
                "expected an address like \"0.0.0.0:9090\"",
            )
        })?;
        let log_format = match get("log_format") {
            None | Some("plain") => LogFormat::Plain,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("log_format", other, "expected \"plain\" or \"json\"")),
        };
        let tls_ca = get("tls_ca").map(PathBuf::from);
        Ok(Self {
            url,
            connection_name,
            jobs,
            concurrency,
            prefetch,
            shutdown_timeout,
            metrics_addr,
            log_format,
            tls_ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&'static str, &str)]) -> Layer {
        pairs.iter().fold(Layer::default(), |l, (k, v)| {
            l.with(k, Some((*v).to_owned()))
        })
    }

    #[test]
    fn defaults() {
        let config = WorkerConfig::default();
        assert_eq!(config.url, DEFAULT_URL);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(config.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(config.jobs, None);
        assert_eq!(config.log_format, LogFormat::Plain);
    }

    #[test]
    fn args_beat_the_file_and_the_file_beats_the_defaults() {
        let file = Layer::from_toml(
            "shutdown_timeout = \"40s\"\nconcurrency = 3\njobs = [\"a\", \"b\"]\nmetrics_addr = \"127.0.0.1:9999\"",
        )
        .unwrap();
        let args = layer(&[("shutdown_timeout", "5s"), ("log_format", "json")]);
        let config = WorkerConfig::resolve(&args, &file).unwrap();
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(config.concurrency, Some(3));
        assert_eq!(config.jobs, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9999");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.url, DEFAULT_URL);
    }

    #[test]
    fn a_bad_value_is_named_with_its_key() {
        let err = WorkerConfig::resolve(&layer(&[("shutdown_timeout", "25x")]), &Layer::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: shutdown_timeout = \"25x\": expected a duration like \"25s\""
        );
        let err =
            WorkerConfig::resolve(&Layer::default(), &layer(&[("concurrency", "0")])).unwrap_err();
        assert_eq!(err.key, "concurrency");
    }

    #[test]
    fn an_unknown_file_key_is_named_and_its_value_never_shown() {
        let err = Layer::from_toml("shutdown_timout = \"5s\"").unwrap_err();
        assert_eq!(err.key, "shutdown_timout");
        assert!(err.to_string().contains("expected a known key"), "{err}");
        let err = Layer::from_toml("password = \"hunter2\"").unwrap_err();
        assert_eq!(err.key, "password");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_bad_url_is_redacted() {
        let err = WorkerConfig::resolve(
            &layer(&[("url", "http://guest:hunter2@host/")]),
            &Layer::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let config = WorkerConfig {
            url: "amqp://guest:hunter2@host/".to_owned(),
            ..WorkerConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
