//! Proofs with the real binary as separate processes: replicas sharing one PostgreSQL, and a
//! server killed with SIGKILL in the middle of a spend load.

use std::{
    collections::HashSet,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ADMIN_KEY, Backend, PASSWORD, pg_database};

const JWT_SECRET: &str = "resilience-jwt-secret-0123456789-abcdef";

/// A `tollgate serve` process.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(database_url: &str, data_dir: &std::path::Path) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database_url)
        .env("TOLLGATE_DATA_DIR", data_dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("SQLITE_SYNCHRONOUS", "FULL")
        .env("WORKERS", "2")
        .env("RATE_LIMIT_SPEND_PER_SECOND", "1000000")
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "1000000")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tollgate");
    // Owned at once, so the process is killed and reaped whatever happens next.
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = Client::new();
    for _ in 0..200 {
        if client.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tollgate did not become ready");
}

async fn database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}?mode=rwc", dir.join("proof.db").display())),
        Backend::Postgres => pg_database().await,
    }
}

/// Registers a user with `credits` and returns their access token.
async fn funded_user(client: &Client, base: &str, credits: i64) -> String {
    let email = format!("proof-{}@example.com", Uuid::new_v4().simple());
    let body = json!({ "email": email, "password": PASSWORD });
    let user: Value =
        client.post(format!("{base}/api/v1/auth/register")).json(&body).send().await.unwrap().json().await.unwrap();
    let grant = json!({ "user_id": user["id"], "amount": credits, "reason": "proof" });
    let res = client
        .post(format!("{base}/api/v1/credits/grant"))
        .header("x-admin-key", ADMIN_KEY)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let session: Value =
        client.post(format!("{base}/api/v1/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
    session["access_token"].as_str().unwrap().to_owned()
}

async fn spend_once(
    client: &Client,
    base: &str,
    token: &str,
    key: &str,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let res = client
        .post(format!("{base}/api/v1/credits/spend"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "amount": 1 }))
        .send()
        .await?;
    let status = res.status();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn spend_ids(db: &DatabaseConnection) -> HashSet<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM transfers WHERE kind = 'spend'",
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get::<Uuid>("", "id").unwrap().to_string()).collect()
}

async fn assert_reconciled(database_url: &str) {
    let db = Database::connect(database_url).await.unwrap();
    let report = tollgate::credits::reconcile::reconcile(&db, &tollgate::clock::Clock::system()).await.unwrap();
    assert!(report.ok, "{}", report.to_text());
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_postgres_share_wallets_safely() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(Backend::Postgres, dir.path()).await else { return };
    let a = start(&url, dir.path()).await;
    let b = start(&url, dir.path()).await;
    let client = Client::new();
    // Five wallets of 40 credits; 300 spends of 1, split across both replicas.
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(funded_user(&client, &a.base, 40).await);
    }
    let tokens = Arc::new(tokens);
    let bases = Arc::new([a.base.clone(), b.base.clone()]);
    let results = join_all((0..300).map(|i| {
        let client = client.clone();
        let tokens = tokens.clone();
        let bases = bases.clone();
        async move {
            let token = &tokens[i % 5];
            let (status, body) = spend_once(&client, &bases[i % 2], token, &format!("replica-{i}")).await.unwrap();
            (i % 5, status, body)
        }
    }))
    .await;
    let db = Database::connect(&url).await.unwrap();
    let stored = spend_ids(&db).await;
    for wallet in 0..5 {
        let accepted: Vec<_> = results.iter().filter(|(w, s, _)| *w == wallet && *s == StatusCode::OK).collect();
        let refused = results.iter().filter(|(w, s, _)| *w == wallet && *s == StatusCode::PAYMENT_REQUIRED).count();
        assert_eq!((accepted.len(), refused), (40, 20), "wallet {wallet}: every credit spent once, the rest refused");
        for (_, _, body) in accepted {
            assert!(stored.contains(body["transfer"]["id"].as_str().unwrap()), "an accepted spend is in the ledger");
        }
    }
    assert_eq!(stored.len(), 200, "each accepted spend is in the ledger once");
    let negative = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM accounts WHERE kind = 'wallet' AND balance < 0",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(negative.try_get::<i64>("", "n").unwrap(), 0);
    assert_reconciled(&url).await;
}

async fn killed_mid_load_loses_no_answered_spend(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else { return };
    let mut server = start(&url, dir.path()).await;
    let client = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let token = Arc::new(funded_user(&client, &server.base, 1_000_000).await);
    let base = Arc::new(server.base.clone());

    // 16 clients spend in a loop; the server is killed with SIGKILL while they do.
    let load = (0..16).map(|worker| {
        let client = client.clone();
        let token = token.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let mut answered = Vec::new();
            for n in 0..10_000 {
                match spend_once(&client, &base, &token, &format!("crash-{worker}-{n}")).await {
                    Ok((StatusCode::OK, body)) => answered.push(body["transfer"]["id"].as_str().unwrap().to_owned()),
                    Ok((status, body)) => panic!("unexpected {status}: {body}"),
                    Err(_) => break,
                }
            }
            answered
        })
    });
    let load: Vec<_> = load.collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    let mut answered = Vec::new();
    for worker in load {
        answered.extend(worker.await.unwrap());
    }
    assert!(answered.len() > 50, "the load ran before the kill ({} answered)", answered.len());

    // Restarted on the same database: every answered spend is there, nothing is half-written.
    let restarted = start(&url, dir.path()).await;
    let db = Database::connect(&url).await.unwrap();
    let stored = spend_ids(&db).await;
    for id in &answered {
        assert!(stored.contains(id), "spend {id} was answered 200 but is not in the ledger");
    }
    assert!(stored.len() >= answered.len());
    assert_reconciled(&url).await;
    // And the restarted server serves the same wallet.
    let (status, _) = spend_once(&client, &restarted.base, &token, "after-restart").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

crate::both_backends!(killed_mid_load_loses_no_answered_spend);

/// A database outage answers 503 `database_unavailable` (never a bare 500 or a crash), and the
/// server recovers by itself when the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_recovers() {
    let Some(app) = crate::helpers::TestApp::spawn(Backend::Postgres).await else { return };
    let user = app.user().await;
    app.grant(&user, 10).await;
    let name = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), "SELECT current_database() AS name"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "name")
        .unwrap();
    let admin = Database::connect("postgres://postgres@127.0.0.1:5432/postgres").await.unwrap();
    let backend = admin.get_database_backend();
    admin.execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await.unwrap();
    admin
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            [name.clone().into()],
        ))
        .await
        .unwrap();

    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = app.get("/api/v1/credits/balance", Some(&user.token)).await;
    assert!(res.headers().get("retry-after").is_some());
    crate::helpers::problem(res, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
    let res = app.spend(&user, "during-outage", json!({ "amount": 1 })).await;
    crate::helpers::problem(res, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;

    admin.execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await.unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/readyz", None).await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "readiness comes back without a restart");
    assert_eq!(app.spend(&user, "after-outage", json!({ "amount": 1 })).await.status(), StatusCode::OK);
    assert_eq!(app.balance(&user).await["balance"], 9, "the refused spend wrote nothing");
    app.assert_reconciled().await;
}

/// SIGTERM lets in-flight requests finish: every spend answered 200 is in the ledger, and the
/// process exits cleanly.
async fn sigterm_finishes_in_flight_requests(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else { return };
    let mut server = start(&url, dir.path()).await;
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let token = Arc::new(funded_user(&client, &server.base, 1_000_000).await);
    let base = Arc::new(server.base.clone());
    let load: Vec<_> = (0..8)
        .map(|worker| {
            let (client, token, base) = (client.clone(), token.clone(), base.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for n in 0..10_000 {
                    match spend_once(&client, &base, &token, &format!("term-{worker}-{n}")).await {
                        Ok((StatusCode::OK, body)) => {
                            answered.push(body["transfer"]["id"].as_str().unwrap().to_owned())
                        }
                        Ok((status, body)) => panic!("during shutdown a request got {status}: {body}"),
                        Err(_) => break,
                    }
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut answered = Vec::new();
    for worker in load {
        answered.extend(worker.await.unwrap());
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
    assert!(answered.len() > 20);
    let db = Database::connect(&url).await.unwrap();
    let stored = spend_ids(&db).await;
    assert!(answered.iter().all(|id| stored.contains(id)), "every answered spend is in the ledger");
    // A request can be applied while its answer is lost to a closing connection; reconcile
    // proves nothing is half-written.
    assert!(stored.len() >= answered.len());
    assert_reconciled(&url).await;
}

crate::both_backends!(sigterm_finishes_in_flight_requests);
