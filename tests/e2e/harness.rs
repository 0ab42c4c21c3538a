//! Starts the real `gateway` binary against a fresh SQLite file or PostgreSQL database and
//! talks to it over HTTP.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database the test owns: a SQLite file in a temporary directory, or a fresh PostgreSQL
/// database created for the test and dropped afterwards.
pub struct Database {
    pub url: String,
    pg_name: Option<String>,
    dir: PathBuf,
}

impl Database {
    /// `None` when PostgreSQL is not reachable outside CI (the test then reports a skip).
    pub async fn create(engine: Engine) -> Option<Database> {
        let dir = std::env::temp_dir().join(format!("gateway-e2e-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match engine {
            Engine::Sqlite => Some(Database { url: format!("sqlite://{}/gateway.db", dir.display()), pg_name: None, dir }),
            Engine::Postgres => {
                let admin = std::env::var("GATEWAY_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_string());
                use sqlx::Connection;
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => {
                        if std::env::var("CI").as_deref() == Ok("true") {
                            panic!("CI=true but PostgreSQL is not reachable at {admin}: {e}");
                        }
                        eprintln!("SKIPPED (PostgreSQL): not reachable at {admin}: {e}");
                        return None;
                    }
                };
                let name = format!("gw_e2e_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(Database { url: format!("{base}/{name}"), pg_name: Some(name), dir })
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            let admin = std::env::var("GATEWAY_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_string());
            // Drop on a separate thread with its own runtime: Drop may run inside a runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn shared() -> PathBuf {
    repo_root().join("../shared")
}

/// A running gateway process.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    pub async fn start(db: &Database) -> Server {
        Server::start_with(db, &[]).await
    }

    pub async fn start_with(db: &Database, extra_env: &[(&str, &str)]) -> Server {
        let port = free_port();
        Server::start_on(&db.url, port, extra_env).await
    }

    pub async fn start_on(database_url: &str, port: u16, extra_env: &[(&str, &str)]) -> Server {
        let log = std::env::temp_dir().join(format!("gateway-e2e-{port}-{}.log", uuid::Uuid::new_v4()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command
            .arg("serve")
            .current_dir(repo_root())
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEWAY_DATABASE_URL", database_url)
            .env("GATEWAY_PACKAGES", packages())
            .env("GATEWAY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start gateway");
        let server = Server {
            base: format!("http://127.0.0.1:{port}/fhir"),
            client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client"),
            child,
            port,
            log,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// SIGKILL: no shutdown handler, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        if path.is_empty() {
            return self.base.clone();
        }
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        response(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        response(self.post_text(path, body.to_string()).await).await
    }

    /// POST FHIR JSON text exactly as given; the whole response (headers too).
    pub async fn post_text(&self, path: &str, body: String) -> reqwest::Response {
        self.client.post(self.url(path)).header("content-type", "application/fhir+json").body(body).send().await.expect("POST")
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        response(
            self.client
                .put(self.url(path))
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .expect("PUT"),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub async fn response(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Runs an async test body against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, |$db:ident| async move $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::harness::Database::create($crate::harness::Engine::Sqlite).await.expect("sqlite");
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some($db) = $crate::harness::Database::create($crate::harness::Engine::Postgres).await {
                    $body
                }
            }
        }
    };
}

/// Asserts the body is an OperationOutcome with at least one error issue.
pub fn assert_outcome(body: &Value, context: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: expected an OperationOutcome, got {body}");
    let issues = body["issue"].as_array().unwrap_or_else(|| panic!("{context}: no issues in {body}"));
    assert!(
        issues.iter().any(|i| i["severity"] == "error" || i["severity"] == "fatal"),
        "{context}: no error issue in {body}"
    );
    assert!(issues.iter().all(|i| i["diagnostics"].as_str().is_some_and(|d| !d.is_empty())), "{context}: {body}");
}

/// The package directories the gateway is started with: the official packages and the code
/// system content of ../shared/terminology.
pub fn packages() -> String {
    format!("{}:{}", shared().join("fhir-packages").display(), shared().join("terminology").display())
}
