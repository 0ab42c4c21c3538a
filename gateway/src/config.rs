//! Gateway configuration: a TOML file, overridden by `GATEWAY_*` environment variables.
//! Unknown keys and unknown `GATEWAY_*` variables stop start-up, naming the setting,
//! because a mistyped setting silently falling back to a default is worse than no start.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// Directories holding FHIR NPM packages (`.tgz` or unpacked).
    pub packages: Vec<PathBuf>,
    /// Package directories loaded after `packages` for health-checkup reports only: the
    /// eCheckupReport IG redefines canonical URLs of JP-Core / JP-CLINS, so it gets its own set.
    pub checkup_packages: Vec<PathBuf>,
    /// Our own profiles and rules (`fhir-profiles/definitions`).
    pub definitions: PathBuf,
    /// Directory of mapping tables (CSV with a metadata header), activated at start-up.
    pub mapping_tables: PathBuf,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Connections in the database pool (reads; SQLite writes go through one writer). Default:
    /// twice the CPU cores; more only made the connections (SQLite: a thread each; PostgreSQL:
    /// a backend each) compete for the same cores (2 cores: 4 gave 4,850 PostgreSQL creates/s
    /// and a 3.7 ms SQLite read p99, 16 gave 3,260/s and 4.8 ms).
    pub db_pool_size: u32,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Shared secret that verifies HS256-signed bearer tokens (at least 32 bytes). Unset: no
    /// token issuer, and the operations that need a token (terminology maintenance) answer 401.
    pub jwt_hs256_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            database_url: "sqlite://data/gateway.db".into(),
            packages: vec![PathBuf::from("../shared/fhir-packages"), PathBuf::from("../shared/terminology")],
            checkup_packages: vec![PathBuf::from("../shared/fhir-packages-echeckup")],
            definitions: PathBuf::from("fhir-profiles/definitions"),
            mapping_tables: PathBuf::from("mapping-tables"),
            max_body_bytes: 16 * 1024 * 1024,
            db_pool_size: 2 * std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            log_format: LogFormat::Text,
            jwt_hs256_secret: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting {name}: {message}")]
    Invalid { name: String, message: String },
}

/// Environment variables the gateway reads; any other `GATEWAY_*` variable is an error.
const ENV_SETTINGS: &[&str] = &[
    "GATEWAY_CONFIG",
    "GATEWAY_LISTEN",
    "GATEWAY_DATABASE_URL",
    "GATEWAY_PACKAGES",
    "GATEWAY_MAPPING_TABLES",
    "GATEWAY_CHECKUP_PACKAGES",
    "GATEWAY_DEFINITIONS",
    "GATEWAY_MAX_BODY_BYTES",
    "GATEWAY_DB_POOL_SIZE",
    "GATEWAY_LOG_FORMAT",
    "GATEWAY_LOG",
    "GATEWAY_JWT_HS256_SECRET",
];

impl Config {
    /// Load from `file` (if given, or `gateway.toml` in the working directory if present),
    /// then apply the environment.
    pub fn load(file: Option<PathBuf>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let env_get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let file = file
            .or_else(|| env_get("GATEWAY_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("gateway.toml")).filter(|p| p.exists()));
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.message().to_string(),
                })?;
                // Relative package directories are relative to the config file.
                let base = path.parent().map(PathBuf::from).unwrap_or_default();
                let dirs = config.packages.iter_mut().chain(config.checkup_packages.iter_mut());
                for dir in dirs.chain([&mut config.mapping_tables, &mut config.definitions]) {
                    if dir.is_relative() {
                        *dir = base.join(&*dir);
                    }
                }
                config
            }
            None => Config::default(),
        };
        for (name, value) in env {
            if !name.starts_with("GATEWAY_") {
                continue;
            }
            if !ENV_SETTINGS.contains(&name.as_str()) {
                return Err(invalid(name, "unknown setting"));
            }
            match name.as_str() {
                "GATEWAY_LISTEN" => {
                    config.listen = value
                        .parse()
                        .map_err(|_| invalid(name, "expected host:port, e.g. 127.0.0.1:8080"))?
                }
                "GATEWAY_DATABASE_URL" => config.database_url = value.clone(),
                "GATEWAY_PACKAGES" => {
                    config.packages =
                        value.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
                }
                "GATEWAY_MAPPING_TABLES" => config.mapping_tables = PathBuf::from(value),
                "GATEWAY_DEFINITIONS" => config.definitions = PathBuf::from(value),
                "GATEWAY_CHECKUP_PACKAGES" => {
                    config.checkup_packages = value.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
                }
                "GATEWAY_MAX_BODY_BYTES" => {
                    config.max_body_bytes =
                        value.parse().map_err(|_| invalid(name, "expected a byte count"))?
                }
                "GATEWAY_DB_POOL_SIZE" => {
                    config.db_pool_size =
                        value.parse().map_err(|_| invalid(name, "expected a number"))?
                }
                "GATEWAY_JWT_HS256_SECRET" => config.jwt_hs256_secret = Some(value.clone()),
                "GATEWAY_LOG_FORMAT" => {
                    config.log_format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => return Err(invalid(name, "expected `text` or `json`")),
                    }
                }
                _ => {}
            }
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(invalid("database_url", "must start with sqlite: or postgres://"));
        }
        if self.packages.is_empty() {
            return Err(invalid("packages", "at least one package directory is required"));
        }
        let dirs = self.packages.iter().map(|d| ("packages", d));
        let dirs = dirs.chain(self.checkup_packages.iter().map(|d| ("checkup_packages", d)));
        let dirs = dirs.chain([("mapping_tables", &self.mapping_tables), ("definitions", &self.definitions)]);
        for (name, dir) in dirs {
            if !dir.is_dir() {
                return Err(invalid(name, &format!("{} is not a directory", dir.display())));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        if self.db_pool_size == 0 {
            return Err(invalid("db_pool_size", "must be at least 1"));
        }
        if let Some(secret) = &self.jwt_hs256_secret
            && secret.len() < crate::auth::MIN_SECRET_BYTES
        {
            return Err(invalid(
                "jwt_hs256_secret",
                &format!("must be at least {} bytes long (HS256 keys shorter than the hash are weak)", crate::auth::MIN_SECRET_BYTES),
            ));
        }
        Ok(())
    }
}

fn invalid(name: &str, message: &str) -> ConfigError {
    ConfigError::Invalid { name: name.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn unknown_environment_setting_is_named() {
        let err = Config::load(None, &env(&[("GATEWAY_LISTNE", "x")])).unwrap_err();
        assert!(err.to_string().contains("GATEWAY_LISTNE"), "{err}");
    }

    #[test]
    fn invalid_listen_is_named() {
        let err = Config::load(None, &env(&[("GATEWAY_LISTEN", "nope"), ("GATEWAY_PACKAGES", "/")]))
            .unwrap_err();
        assert!(err.to_string().contains("GATEWAY_LISTEN"), "{err}");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = std::env::temp_dir().join(format!("gwcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\ndatabse_url = \"x\"\n").unwrap();
        let err = Config::load(Some(path), &[]).unwrap_err();
        assert!(err.to_string().contains("databse_url"), "{err}");
    }

    #[test]
    fn short_jwt_secret_is_named() {
        let err = Config::load(
            None,
            &env(&[
                ("GATEWAY_PACKAGES", "/tmp"),
                ("GATEWAY_MAPPING_TABLES", "/tmp"),
                ("GATEWAY_DEFINITIONS", "/tmp"),
                ("GATEWAY_CHECKUP_PACKAGES", ""),
                ("GATEWAY_JWT_HS256_SECRET", "too-short"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("jwt_hs256_secret"), "{err}");
        // the secret itself is never echoed
        assert!(!err.to_string().contains("too-short"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let c = Config::load(
            None,
            &env(&[
                ("GATEWAY_DATABASE_URL", "postgres://x/y"),
                ("GATEWAY_PACKAGES", "/:/tmp"),
                ("GATEWAY_MAPPING_TABLES", "/tmp"),
                ("GATEWAY_DEFINITIONS", "/tmp"),
                ("GATEWAY_CHECKUP_PACKAGES", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url, "postgres://x/y");
        assert_eq!(c.packages, vec![PathBuf::from("/"), PathBuf::from("/tmp")]);
    }
}
