//! `TestApp`: the real server on port 0 over a fresh database, SQLite or PostgreSQL.

use std::{sync::OnceLock, time::Duration};

use reqwest::{Client, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tollgate::{
    config::{Environment, PasswordHashing, Payments, Secret, Settings, SqliteSynchronous},
    startup::Application,
};
use tollgate_migrations::{Migrator, MigratorTrait};
use uuid::Uuid;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const PASSWORD: &str = "correct horse battery";
pub const WEBHOOK_SECRET: &str = "whsec_test_secret_for_tollgate_tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `async fn name(backend: Backend)` once per backend, for tests that configure their own
/// server.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// Runs a test body once per backend: `both!(name, ...)` makes `name::sqlite` and
/// `name::postgres` from `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await;
                    super::$name(app.expect("SQLite is always available")).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )*
    };
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub db: DatabaseConnection,
    /// The server's clock: tests move it forward instead of sleeping.
    pub clock: tollgate::clock::Clock,
    /// The server's ledger writer, for tests that write below the API.
    pub ledger: tollgate::credits::Ledger,
    pub backend: Backend,
    /// The server's database, for a connection of the test's own.
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A server started by `TestApp::replica`, which the test can stop.
pub struct Replica {
    pub address: String,
    /// Starts its graceful shutdown, as SIGTERM would.
    pub shutdown: tollgate::startup::Shutdown,
    /// Resolves when the server has stopped.
    pub stopped: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Test databases are named `<prefix>_<uuid>`; `TOLLGATE_TEST_DB_PREFIX` keeps two checkouts
/// testing at once on one PostgreSQL from dropping each other's databases.
fn pg_prefix() -> String {
    std::env::var("TOLLGATE_TEST_DB_PREFIX").unwrap_or_else(|_| "tollgate_test".to_owned())
}

fn pg_template_name() -> String {
    format!("{}_template", pg_prefix())
}

fn pg_url(database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{database}")
}

/// Builds the migrated template once per test process; `None` when PostgreSQL is down.
async fn pg_template() -> Option<String> {
    static READY: OnceLock<Mutex<Option<bool>>> = OnceLock::new();
    let lock = READY.get_or_init(|| Mutex::new(None));
    let mut ready = lock.lock().await;
    if let Some(ok) = *ready {
        return ok.then(pg_template_name);
    }
    let admin = match Database::connect(PG_ADMIN_URL).await {
        Ok(admin) => admin,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL at 127.0.0.1:5432 is required in CI: {e}");
            }
            eprintln!("PostgreSQL is not reachable ({e}); skipping PostgreSQL tests");
            *ready = Some(false);
            return None;
        }
    };
    // Leftovers of earlier runs, then a fresh template with every migration.
    let old = admin
        .query_all_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            [format!("{}\\_%", pg_prefix()).into()],
        ))
        .await
        .expect("list test databases");
    for row in old {
        let name: String = row.try_get("", "datname").expect("datname");
        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
    }
    let template_name = pg_template_name();
    admin.execute_unprepared(&format!("CREATE DATABASE \"{template_name}\"")).await.expect("create template");
    let template = Database::connect(pg_url(&template_name)).await.expect("connect template");
    Migrator::up(&template, None).await.expect("migrate template");
    template.close().await.expect("close template");
    *ready = Some(true);
    Some(template_name)
}

pub async fn pg_database() -> Option<String> {
    let template = pg_template().await?;
    let name = format!("{}_{}", pg_prefix(), Uuid::new_v4().simple());
    let admin = Database::connect(PG_ADMIN_URL).await.expect("connect admin");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
        .await
        .expect("copy template");
    admin.close().await.ok();
    Some(pg_url(&name))
}

pub fn test_settings(database_url: String, data_dir: std::path::PathBuf) -> Settings {
    // As in production: SQLite through one connection, PostgreSQL through a pool.
    let database_max_connections = if database_url.starts_with("sqlite:") { 1 } else { 10 };
    Settings {
        environment: Environment::Development,
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url,
        database_max_connections,
        database_acquire_timeout: Duration::from_secs(3),
        sqlite_synchronous: SqliteSynchronous::Normal,
        data_dir,
        jwt_secret: Secret::new("test-jwt-secret-that-is-long-enough-0123456789"),
        admin_api_key: Some(Secret::new(ADMIN_KEY)),
        site_url: "http://127.0.0.1:8080".to_owned(),
        access_token_ttl: Duration::from_secs(900),
        refresh_token_ttl: Duration::from_secs(30 * 86_400),
        // Cheap hashing keeps tests fast; production uses OWASP's parameters.
        password_hashing: PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 },
        password_hash_concurrency: 2,
        password_hash_queue_timeout: Duration::from_secs(10),
        refresh_token_reuse_grace: Duration::from_secs(10),
        login_max_failures: 5,
        login_lockout: Duration::from_secs(900),
        workers: 2,
        request_body_timeout: Duration::from_secs(15),
        spend_batch_runners: 2,
        expiry_interval: Duration::from_secs(3600),
        frontend_dir: "/nonexistent".into(),
        migrate_on_start: true,
        billing_portal_return_url: "http://127.0.0.1:8080/credits".to_owned(),
        payments: Payments::Sandbox,
        stripe_secret_key: None,
        stripe_webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        stripe_publishable_key: None,
        stripe_api_base: None,
        // The concurrency tests fire hundreds of requests at once; one test checks the limits.
        rate_limit_spend_per_second: 100_000,
        rate_limit_auth_per_minute: 100_000,
        cors_origins: Vec::new(),
        allowed_return_origins: Vec::new(),
        gateway_upstream_url: None,
        gateway_upstream_key: None,
        gateway_timeout: std::time::Duration::from_secs(30),
        gateway_drain_timeout: std::time::Duration::from_secs(10),
        gateway_lease_calls: 64,
        webhook_timeout: Duration::from_secs(5),
        webhook_retry_schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
        webhook_disable_after: Duration::from_secs(5 * 86_400),
        webhook_allow_private_urls: false,
        event_retention: chrono::Duration::days(30),
        stream_heartbeat: Duration::from_secs(15),
        stream_buffer: 256,
    }
}

impl TestApp {
    /// Starts the server over a fresh database; `None` when PostgreSQL is down outside CI.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like `spawn`, with settings changed first (e.g. Stripe keys and a fake Stripe).
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            Backend::Sqlite => {
                format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display())
            }
            Backend::Postgres => pg_database().await?,
        };
        let mut settings = test_settings(url.clone(), dir.path().to_path_buf());
        configure(&mut settings);
        let app =
            Application::build_with_clock(settings, tollgate::clock::Clock::adjustable()).await.expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let db = app.state().db.clone();
        let clock = app.state().clock.clone();
        let ledger = app.state().ledger.clone();
        tokio::spawn(app.run_until_stopped());
        let client = Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Some(TestApp { address, client, db, clock, ledger, backend, database_url: url, _dir: Some(dir) })
    }

    /// Another replica on this test's database, as a second server process would run: its own
    /// pool, hub and port, the same JWT secret. Migrations are the first replica's.
    pub async fn replica(&self, configure: impl FnOnce(&mut Settings)) -> Replica {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(self.database_url.clone(), dir.path().to_path_buf());
        settings.migrate_on_start = false;
        configure(&mut settings);
        let app =
            Application::build_with_clock(settings, tollgate::clock::Clock::adjustable()).await.expect("build replica");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown();
        let stopped = tokio::spawn(app.run_until_stopped());
        Replica { address, shutdown, stopped, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, key: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("request")
    }

    pub async fn get_admin(&self, path: &str) -> Response {
        self.client.get(self.url(path)).header("x-admin-key", ADMIN_KEY).send().await.expect("request")
    }

    pub async fn patch_admin(&self, path: &str, body: &Value) -> Response {
        self.client.patch(self.url(path)).header("x-admin-key", ADMIN_KEY).json(body).send().await.expect("request")
    }

    pub async fn post_admin(&self, path: &str, key: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).header("x-admin-key", ADMIN_KEY).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("request")
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/register", None, None, &json!({ "email": email, "password": password })).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login", None, None, &json!({ "email": email, "password": password })).await
    }

    /// Registers and signs in a new user.
    pub async fn user(&self) -> TestUser {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let registered = self.register(&email, PASSWORD).await;
        assert_eq!(registered.status(), StatusCode::CREATED);
        let body: Value = self.login(&email, PASSWORD).await.json().await.expect("json");
        TestUser {
            id: body["user"]["id"].as_str().expect("id").parse().expect("uuid"),
            email,
            token: body["access_token"].as_str().expect("token").to_owned(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// A new session for the user, as after the clock moved past the old one's life.
    pub async fn sign_in_again(&self, user: &TestUser) -> TestUser {
        let res = self.login(&user.email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        TestUser {
            token: body["access_token"].as_str().expect("token").to_owned(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_owned(),
            ..user.clone()
        }
    }

    /// Grants credits with the operator key and checks it worked.
    pub async fn grant(&self, user: &TestUser, amount: i64) -> Value {
        let key = Uuid::new_v4().to_string();
        let res = self
            .post_admin(
                "/api/v1/credits/grant",
                Some(&key),
                &json!({ "user_id": user.id, "amount": amount, "reason": "test" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    pub async fn spend(&self, user: &TestUser, key: &str, body: Value) -> Response {
        self.post("/api/v1/credits/spend", Some(&user.token), Some(key), &body).await
    }

    pub async fn balance(&self, user: &TestUser) -> Value {
        let res = self.get("/api/v1/credits/balance", Some(&user.token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    /// Rows in a table: to show a refused request wrote nothing.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"),
            ))
            .await
            .expect("count")
            .expect("row");
        row.try_get("", "n").expect("n")
    }

    /// Counts of every table a credit write touches.
    pub async fn ledger_counts(&self) -> [i64; 5] {
        [
            self.count("transfers").await,
            self.count("lots").await,
            self.count("transfer_lots").await,
            self.count("holds").await,
            self.count("idempotency_keys").await,
        ]
    }

    /// Asserts the four ledger invariants hold over the whole database.
    pub async fn assert_reconciled(&self) {
        let report = tollgate::credits::reconcile::reconcile(&self.db, &self.clock).await.expect("reconcile");
        assert!(report.ok, "reconcile found violations:\n{}", report.to_text());
    }
}

/// Reads a problem+json body and checks its envelope.
pub async fn problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "unexpected status");
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let request_id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap_or_default().to_owned());
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    assert_eq!(body["request_id"].as_str(), request_id.as_deref(), "request id in body and header");
    body
}

/// A value of a metric without labels, as `/metrics` shows it.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}
