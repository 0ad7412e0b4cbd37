//! One typed config tree: defaults, then a TOML file, then `OPSFLOW_*` environment
//! variables, then flags (applied by the binary). Unknown keys are rejected;
//! everything is validated once, with errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use opsflow_log::Limits;
use serde::{Deserialize, Serialize};

/// Environment variables the client subcommands use; not server config keys.
const CLIENT_ENV: &[&str] = &["OPSFLOW_SERVER", "OPSFLOW_OUTPUT", "OPSFLOW_LOG", "OPSFLOW_BIN"];

/// The server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the sled data lives.
    pub data_dir: PathBuf,
    /// gRPC and HTTP are served on this one address.
    pub listen: SocketAddr,
    pub log: LogConfig,
    pub demo: DemoConfig,
    /// NATS transport; absent means no NATS (the embedded default).
    pub nats: Option<opsflow_nats::NatsConfig>,
    pub definitions: DefinitionsConfig,
    pub views: ViewsConfig,
}

/// Where the KPI and control definitions come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefinitionsConfig {
    /// A directory of YAML definitions, reloaded when it changes; absent means the
    /// built-in default set (a copy of deploy/definitions).
    pub dir: Option<PathBuf>,
    /// How often the directory is checked for changes, in milliseconds.
    pub reload_interval_ms: u64,
}

/// The KPI and compliance views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewsConfig {
    /// A snapshot of every view each time the log reaches a multiple of this many
    /// positions (as-of queries start from the nearest one).
    pub snapshot_every: u64,
    /// How often the live views are saved with their checkpoint, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// How often the `opsflow_kpi` gauges are refreshed, in milliseconds.
    pub gauges_interval_ms: u64,
}

impl Default for DefinitionsConfig {
    fn default() -> Self {
        DefinitionsConfig {
            dir: None,
            reload_interval_ms: 1000,
        }
    }
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            snapshot_every: 25_000,
            checkpoint_interval_ms: 1000,
            gauges_interval_ms: 5000,
        }
    }
}

/// Event log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Largest event (data, metadata and attributes), in bytes.
    pub max_event_bytes: u64,
    /// Most events in one append.
    pub max_append_events: u64,
    /// Largest append, in bytes.
    pub max_append_bytes: u64,
    /// How far an event's time may be ahead of the server's clock, in seconds
    /// (views and timers run on event time; see `Limits::max_time_ahead_secs`).
    pub max_time_ahead_secs: u64,
    /// sled page cache, in MiB.
    pub cache_mib: u64,
    /// Refuse events of catalog types (docs/catalog.md) whose data lacks a
    /// required field or has a field of the wrong type.
    pub validate_catalog: bool,
}

impl LogConfig {
    /// The limits the log enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_event_bytes: self.max_event_bytes,
            max_append_events: self.max_append_events,
            max_append_bytes: self.max_append_bytes,
            max_time_ahead_secs: self.max_time_ahead_secs,
        }
    }
}

/// The built-in demo event generator (`opsflow dev --demo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub enabled: bool,
    /// Events per second.
    pub rate: u32,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".opsflow"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            log: LogConfig::default(),
            demo: DemoConfig::default(),
            nats: None,
            definitions: DefinitionsConfig::default(),
            views: ViewsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        let limits = Limits::default();
        LogConfig {
            max_event_bytes: limits.max_event_bytes,
            max_append_events: limits.max_append_events,
            max_append_bytes: limits.max_append_bytes,
            max_time_ahead_secs: limits.max_time_ahead_secs,
            cache_mib: 256,
            validate_catalog: true,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: false,
            rate: 20,
            seed: 42,
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `error` is in the message, so it is not also given as the source.
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Loads defaults, then `file` (if any), then the `OPSFLOW_*` variables of `env`
    /// (`OPSFLOW_LOG__MAX_EVENT_BYTES=2048` sets `log.max_event_bytes`).
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let config = Config::load_unvalidated(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] without [`Config::validate`], for a caller that applies
    /// command-line flags on top and then validates once (a flag replacing a value
    /// must not fail on the value it replaces).
    pub fn load_unvalidated(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.into(),
                error,
            })?;
            tree = text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                path: path.into(),
                message: e.to_string(),
            })?;
            Config::from_table(tree.clone()).map_err(|e| ConfigError::File {
                path: path.into(),
                message: e,
            })?;
        }
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("OPSFLOW_") else {
                continue;
            };
            if CLIENT_ENV.contains(&var.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            // The value as the key's type wants it: as written (a number, a boolean,
            // a TOML array), else as text (a numeric token), else as a comma-separated
            // list of strings (`OPSFLOW_NATS__URLS=nats://a:4222,nats://b:4222`).
            let mut first_error = None;
            let accepted = env_candidates(&value).into_iter().find_map(|candidate| {
                let mut next = tree.clone();
                insert(&mut next, &path, candidate);
                match Config::from_table(next.clone()) {
                    Ok(_) => Some(next),
                    Err(message) => {
                        first_error.get_or_insert(message);
                        None
                    }
                }
            });
            match accepted {
                Some(next) => tree = next,
                None => {
                    let message = first_error.unwrap_or_default();
                    return Err(ConfigError::Env { var, message });
                }
            }
        }
        Config::from_table(tree).map_err(|message| ConfigError::Invalid {
            key: "(root)".into(),
            message,
        })
    }

    fn from_table(table: toml::Table) -> Result<Config, String> {
        Config::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string().trim().to_owned())
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message,
            })
        };
        let limits = self.log.limits();
        if limits.max_event_bytes == 0 {
            return invalid("log.max_event_bytes", "must be at least 1".into());
        }
        if limits.max_append_events == 0 {
            return invalid("log.max_append_events", "must be at least 1".into());
        }
        if limits.max_append_bytes < limits.max_event_bytes {
            return invalid(
                "log.max_append_bytes",
                format!(
                    "is {}, smaller than log.max_event_bytes ({})",
                    limits.max_append_bytes, limits.max_event_bytes
                ),
            );
        }
        if self.demo.rate == 0 {
            return invalid("demo.rate", "must be at least 1 event per second".into());
        }
        if let Some(nats) = &self.nats {
            nats.validate()
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        if self.views.snapshot_every == 0 {
            return invalid("views.snapshot_every", "must be at least 1".into());
        }
        if self.views.checkpoint_interval_ms == 0 {
            return invalid("views.checkpoint_interval_ms", "must be at least 1".into());
        }
        if self.views.gauges_interval_ms == 0 {
            return invalid("views.gauges_interval_ms", "must be at least 1".into());
        }
        if self.definitions.reload_interval_ms == 0 {
            return invalid("definitions.reload_interval_ms", "must be at least 1".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        Ok(())
    }
}

/// The readings of an environment value to try, most specific first.
fn env_candidates(value: &str) -> Vec<toml::Value> {
    let parsed = parse_env_value(value);
    let mut candidates = vec![parsed.clone()];
    if !parsed.is_str() {
        candidates.push(toml::Value::String(value.to_owned()));
    }
    if !value.trim_start().starts_with('[') {
        let items = value.split(',').map(|item| toml::Value::String(item.trim().to_owned()));
        candidates.push(toml::Value::Array(items.collect()));
    }
    candidates
}

fn parse_env_value(value: &str) -> toml::Value {
    // TOML arrays (`["nats://a:4222","nats://b:4222"]`) as such.
    if value.trim_start().starts_with('[')
        && let Ok(t) = format!("v = {value}").parse::<toml::Table>()
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    // Numbers and booleans as such; everything else (paths, addresses) as a string.
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_values_take_the_type_of_their_key() {
        let config = Config::load(
            None,
            env(&[
                ("OPSFLOW_NATS__URLS", "nats://a:4222, nats://b:4222"),
                ("OPSFLOW_NATS__TOKEN", "123456"),
                ("OPSFLOW_NATS__NAME", "true"),
                ("OPSFLOW_DATA_DIR", "2024"),
                ("OPSFLOW_LOG__MAX_EVENT_BYTES", "4096"),
            ]),
        )
        .unwrap();
        let nats = config.nats.unwrap();
        assert_eq!(nats.urls, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(nats.token.as_deref(), Some("123456"));
        assert_eq!(nats.name, "true");
        assert_eq!(config.data_dir, std::path::PathBuf::from("2024"));
        assert_eq!(config.log.limits().max_event_bytes, 4096);
        // A number where one is wanted must still be a number.
        let err = Config::load(None, env(&[("OPSFLOW_LOG__MAX_EVENT_BYTES", "lots")])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("OPSFLOW_LOG__MAX_EVENT_BYTES") && message.contains("max_event_bytes"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_config_file_is_named_once() {
        let err = Config::load(Some(Path::new("/nonexistent/opsflow.toml")), env(&[])).unwrap_err();
        let message = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(message.matches("No such file").count(), 1, "{message}");
        assert!(message.contains("/nonexistent/opsflow.toml"), "{message}");
    }

    #[test]
    fn defaults_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsflow.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n[log]\nmax_event_bytes = 4096\n").unwrap();
        let config = Config::load(
            Some(&path),
            env(&[("OPSFLOW_LOG__MAX_EVENT_BYTES", "2048"), ("OPSFLOW_SERVER", "x")]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log.max_event_bytes, 2048);
        assert_eq!(config.data_dir, PathBuf::from(".opsflow"));
        assert!(config.log.validate_catalog, "on by default");
        let config = Config::load(Some(&path), env(&[("OPSFLOW_LOG__VALIDATE_CATALOG", "false")])).unwrap();
        assert!(!config.log.validate_catalog);
    }

    /// The shipped sample loads as it is, and with its commented NATS section
    /// turned on: the settings it shows are settings opsflow reads, with the
    /// defaults it says.
    #[test]
    fn the_shipped_config_loads_with_its_nats_section_on() {
        let shipped = include_str!("../../../deploy/opsflow.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsflow.toml");
        std::fs::write(&path, shipped).unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert!(config.nats.is_none(), "NATS stays off until asked for");

        let mut in_nats = false;
        let on: Vec<&str> = shipped
            .lines()
            .map(|line| {
                in_nats |= line.starts_with("# [nats]");
                let setting = line.strip_prefix("# ").filter(|rest| {
                    rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(key, _)| !key.contains(' '))
                });
                match setting {
                    Some(setting) if in_nats => setting,
                    _ => line,
                }
            })
            .collect();
        std::fs::write(&path, on.join("\n")).unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        let nats = config.nats.expect("the [nats] section is on");
        let defaults = opsflow_nats::NatsConfig::default();
        assert!(nats.ingest.enabled && nats.request_reply.enabled && nats.outbound.enabled);
        assert_eq!(nats.ingest.stream, defaults.ingest.stream);
        assert_eq!(nats.ingest.batch, defaults.ingest.batch);
        assert_eq!(nats.ping_interval_secs, defaults.ping_interval_secs);
        assert_eq!(nats.outbound.subject_prefix, defaults.outbound.subject_prefix);
        assert_eq!(nats.request_reply.subject, defaults.request_reply.subject);
        assert!(nats.credentials_file.is_some());
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsflow.toml");
        std::fs::write(&path, "[log]\nmax_evnt_bytes = 1\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("max_evnt_bytes"), "{err}");
        let err = Config::load(None, env(&[("OPSFLOW_LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OPSFLOW_LISTN") && err.contains("listn"), "{err}");
    }

    #[test]
    fn the_shipped_example_config_loads_with_and_without_nats() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/opsflow.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert!(config.nats.is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                if l.starts_with("# [nats") || l.starts_with("# ") && l.contains(" = ") {
                    &l[2..]
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let with_nats = dir.path().join("opsflow.toml");
        std::fs::write(&with_nats, uncommented).unwrap();
        let config = Config::load(Some(&with_nats), env(&[])).unwrap();
        let nats = config.nats.unwrap();
        assert_eq!(nats.ingest.stream, "OPS_EVENTS");
        assert_eq!(
            nats.credentials_file.as_deref(),
            Some(std::path::Path::new("/etc/opsflow/opsflow.creds"))
        );
    }

    #[test]
    fn nats_section_and_array_env() {
        let config = Config::load(None, env(&[("OPSFLOW_NATS__URLS", r#"["nats://127.0.0.1:4333"]"#)])).unwrap();
        let nats = config.nats.unwrap();
        assert_eq!(nats.urls, ["nats://127.0.0.1:4333"]);
        assert_eq!(nats.ingest.stream, "OPS_EVENTS");
        let err = Config::load(None, env(&[("OPSFLOW_NATS__INGEST__RETENTION", "forever")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nats.ingest.retention"), "{err}");
        assert!(Config::load(None, env(&[])).unwrap().nats.is_none());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Config::load(None, env(&[("OPSFLOW_LOG__MAX_EVENT_BYTES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.max_event_bytes"), "{err}");
        let err = Config::load(None, env(&[("OPSFLOW_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OPSFLOW_LISTEN"), "{err}");
    }
}
