//! Load benchmark for `POST /api/v1/credits/spend`.
//!
//! Starts the release server as its own process over a fresh SQLite file or PostgreSQL database,
//! seeds 10,000 users with credits through the ledger's own code, then drives spends with 32
//! connections for a fixed time, over wallets spread across all users and over one hot wallet.
//! Reports spends per second, p50 and p99 latency, the mean number of spends per batch (one
//! transaction), the commands run again alone after their batch failed, the server's peak memory, and
//! reconciles. Also the CPU time each spend took, in the server and (PostgreSQL) in every
//! PostgreSQL process: where a change's cost goes, beside what it does to spends per second.
//!
//! With `--route customer`, the same spends go to `POST /customers/{external_id}/spend` with one
//! server key, as a product's backend sends them; by default to `POST /credits/spend` with each
//! user's token.
//!
//! ```sh
//! cargo build --release -p tollgate
//! cargo bench -p tollgate --bench spend_load -- --db sqlite --seconds 20
//! cargo bench -p tollgate --bench spend_load -- --db postgres --seconds 20 [--route customer]
//! ```
//!
//! `BENCH_SQL` (statements separated by `;`) runs after the seeding, before the spends: to see
//! what a piece of the schema costs, e.g. `BENCH_SQL='DROP INDEX idx_transfers_lot'`.

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, Database, EntityTrait};
use tollgate::{
    auth::{Role, jwt::JwtKeys},
    credits::{
        core::{Command as LedgerCommand, NewLot, Op, TransferDetails},
        writer,
    },
    db,
    domain::{
        Credits,
        ledger::{LotSource, TransferKind, system},
    },
    entities::users,
};
use uuid::Uuid;

const USERS: usize = 10_000;
const CONNECTIONS: usize = 32;
const SECRET: &str = "benchmark-jwt-secret-0123456789-abcdef";
const PORT: u16 = 18_480;

struct Options {
    db: String,
    seconds: u64,
    binary: String,
    /// `credits` (each user's token) or `customer` (one server key, customers by external id).
    route: String,
}

/// The server key the customer route's spends carry.
const SERVER_KEY: &str = "tg_sk_benchmark-server-key-0123456789abcdefghijklmnop";

fn options() -> Options {
    let mut opts = Options {
        db: "sqlite".to_owned(),
        seconds: 20,
        route: "credits".to_owned(),
        binary: format!(
            "{}/release/tollgate",
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/tollgate-target".to_owned())
        ),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--db" => {
                opts.db = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            "--seconds" => {
                opts.seconds = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(20);
                i += 1;
            }
            "--route" => {
                opts.route = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            "--binary" => {
                opts.binary = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    opts
}

fn start_server(opts: &Options, url: &str, dir: &std::path::Path) -> Child {
    let mut command = Command::new(&opts.binary);
    // The server's own pool default unless BENCH_POOL overrides it.
    if let Ok(pool) = std::env::var("BENCH_POOL") {
        command.env("DATABASE_MAX_CONNECTIONS", pool);
    }
    command
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{PORT}"))
        .env("DATABASE_URL", url)
        .env("TOLLGATE_DATA_DIR", dir)
        .env("JWT_SECRET", SECRET)
        .env("SQLITE_SYNCHRONOUS", std::env::var("BENCH_SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "FULL".to_owned()))
        .env("RATE_LIMIT_SPEND_PER_SECOND", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `cargo build --release -p tollgate` first)", opts.binary))
}

/// Seeds users (customers, with external ids) with wallets and one lot each, 1,000 per
/// transaction, through the ledger code; returns what each one's spends are sent to and with.
async fn seed(url: &str, route: &str) -> Vec<(String, String)> {
    let conn = Database::connect(url).await.expect("connect");
    let keys = JwtKeys::new(SECRET, Duration::from_secs(3600), tollgate::clock::Clock::system());
    let mut tokens = Vec::with_capacity(USERS);
    let now = Utc::now();
    for chunk in 0..USERS / 1000 {
        let txn = db::begin_write(&conn).await.expect("begin");
        let mut grants = Vec::with_capacity(1000);
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            let id = Uuid::now_v7();
            users::Entity::insert(users::ActiveModel {
                id: Set(id),
                email: Set(format!("bench-{n}@example.com")),
                name: Set(None),
                password_hash: Set("$argon2id$v=19$m=64,t=1,p=1$none$none".to_owned()),
                role: Set("user".to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await
            .expect("user");
            let mut customer = tollgate::customers::for_user(id, &format!("bench-{n}@example.com"), None, now);
            customer.external_id = Some(format!("bench-{n}"));
            tollgate::customers::insert(&txn, customer, now).await.expect("customer and wallet");
            let lot = NewLot {
                source: LotSource::Grant,
                kind: TransferKind::Grant,
                from: system::GRANTS,
                amount: Credits::new(1_000_000_000).expect("credits"),
                priority: 20,
                expires_at: None,
                reference: format!("bench:{id}"),
            };
            grants.push(LedgerCommand {
                user_id: id,
                key: None,
                op: Op::Credit { lot, details: TransferDetails::default() },
            });
            tokens.push(match route {
                "customer" => (format!("/api/v1/customers/bench-{n}/spend"), SERVER_KEY.to_owned()),
                _ => ("/api/v1/credits/spend".to_owned(), keys.issue(id, Role::User).expect("token")),
            });
        }
        for verdict in writer::apply_in(&txn, &grants, now).await.expect("grants") {
            verdict.expect("grant");
        }
        txn.commit().await.expect("commit");
    }
    if route == "customer" {
        tollgate::entities::server_keys::Entity::insert(tollgate::entities::server_keys::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set("benchmark".to_owned()),
            prefix: Set(SERVER_KEY.chars().take(14).collect()),
            key_hash: Set(tollgate::auth::service::hash_secret(SERVER_KEY)),
            scopes: Set("credits:spend".to_owned()),
            created_at: Set(now),
            last_used_at: Set(None),
            revoked_at: Set(None),
        })
        .exec_without_returning(&conn)
        .await
        .expect("server key");
    }
    conn.close().await.ok();
    tokens
}

/// PostgreSQL's CPU time so far; SQLite's is the server's own.
fn database_cpu_time(db: &str) -> Duration {
    if db == "postgres" { common::postgres_cpu_time() } else { Duration::ZERO }
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Run {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

/// Spends on `targets` (path, bearer), 32 connections at once, for `seconds`.
async fn drive(tokens: Arc<Vec<(String, String)>>, hot: bool, seconds: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let tokens = tokens.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut latencies = Vec::with_capacity(100_000);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = if hot { 0 } else { (worker * 7919 + n as usize * 104_729) % tokens.len() };
                let key = format!("bench-{worker}-{n}-{}", Uuid::new_v4().simple());
                n += 1;
                let t = Instant::now();
                let (path, bearer) = &tokens[user];
                let res = client
                    .post(format!("http://127.0.0.1:{PORT}{path}"))
                    .bearer_auth(bearer)
                    .header("Idempotency-Key", key)
                    .header("content-type", "application/json")
                    .body(r#"{"amount":1}"#)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Run { ok: latencies_us.len() as u64, errors: errors.load(Ordering::Relaxed), latencies_us, elapsed }
}

/// The server's batch counters: (batches, spends in them, spends run alone).
async fn batch_counters(client: &reqwest::Client) -> (f64, f64, f64) {
    let text = match client.get(format!("http://127.0.0.1:{PORT}/metrics")).send().await {
        Ok(res) => res.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(f64::NAN)
    };
    (
        value("tollgate_spend_batch_size_count "),
        value("tollgate_spend_batch_size_sum "),
        value("tollgate_spends_run_alone_total "),
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let opts = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = common::fresh_database(&opts.db, dir.path(), "tollgate_bench").await;
    let mut server = start_server(&opts, &url, dir.path());
    let client = reqwest::Client::new();
    common::wait_ready(&client, PORT).await;

    let seeding = Instant::now();
    let tokens = Arc::new(seed(&url, &opts.route).await);
    eprintln!("seeded {USERS} users in {:.1}s", seeding.elapsed().as_secs_f64());
    if let Ok(sql) = std::env::var("BENCH_SQL") {
        // For attributing costs: e.g. `DROP INDEX idx_transfers_lot` to see what one index costs.
        let db = Database::connect(&url).await.expect("connect for BENCH_SQL");
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            db.execute_unprepared(statement).await.unwrap_or_else(|e| panic!("BENCH_SQL `{statement}`: {e}"));
            eprintln!("ran `{statement}`");
        }
    }

    println!("database: {} | route: {} | {CONNECTIONS} connections | {} s per run", opts.db, opts.route, opts.seconds);
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8} {:>14} {:>14}",
        "wallets", "spends/s", "p50 ms", "p99 ms", "errors", "per batch", "alone", "server µs/sp", "database µs/sp"
    );
    for hot in [false, true] {
        let before = batch_counters(&client).await;
        let cpu_before = (common::cpu_time(server.id()), database_cpu_time(&opts.db));
        let run = drive(tokens.clone(), hot, opts.seconds).await;
        let cpu = (
            common::cpu_time(server.id()).saturating_sub(cpu_before.0),
            database_cpu_time(&opts.db).saturating_sub(cpu_before.1),
        );
        let after = batch_counters(&client).await;
        let per_spend = |d: Duration| d.as_secs_f64() * 1e6 / run.ok.max(1) as f64;
        println!(
            "{:<8} {:>10.0} {:>10.2} {:>10.2} {:>8} {:>10.1} {:>8} {:>14.0} {:>14}",
            if hot { "hot" } else { "spread" },
            run.ok as f64 / run.elapsed.as_secs_f64(),
            percentile(&run.latencies_us, 0.50),
            percentile(&run.latencies_us, 0.99),
            run.errors,
            (after.1 - before.1) / (after.0 - before.0),
            after.2 - before.2,
            per_spend(cpu.0),
            if opts.db == "postgres" { format!("{:.0}", per_spend(cpu.1)) } else { "-".to_owned() },
        );
    }
    println!("server peak memory (VmHWM): {:.1} MiB", peak_rss_mib(server.id()));

    let conn = Database::connect(&url).await.expect("connect");
    let report =
        tollgate::credits::reconcile::reconcile(&conn, &tollgate::clock::Clock::system()).await.expect("reconcile");
    println!("reconcile: {}", if report.ok { "clean" } else { "VIOLATIONS" });
    if !report.ok {
        print!("{}", report.to_text());
    }
    let _ = server.kill();
    let _ = server.wait();
}
