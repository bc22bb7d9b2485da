//! Throughput of the webhook dispatcher (#18): events per second delivered to a local receiver.
//!
//! Starts a receiver in this process (actix-web on 127.0.0.1, its own worker thread) that answers
//! 200, verifies every delivery's Standard Webhooks signature itself (HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}` under the key after `whsec_`, the timestamp within
//! five minutes, the body's `id` equal to `webhook-id`) and counts distinct webhook ids per
//! endpoint, a repeat as a duplicate. Starts the release server as its own process over a fresh
//! SQLite file or PostgreSQL database, seeds users with credits through the ledger's own code,
//! and registers one endpoint (`--endpoints K`: K, each on its own path) for every event type as
//! an administrator. Then:
//!
//! - drain (`--backlog N`): stops the server, writes N spends (N `credits.spent` events) through
//!   the ledger's code while it is down, starts it again and times how fast the dispatcher hands
//!   the backlog to the receiver: from the server's start, from its readiness, and from the first
//!   delivery to the last;
//! - steady (`--seconds S`): spends through `POST /credits/spend` from `--clients C` concurrent
//!   clients (as fast as they are answered, or `--rate R` spends/s in all), round robin over
//!   the users, then waits for the receiver to have every event written meanwhile. Reports
//!   events delivered per second while the spends ran, how far delivery was behind when they
//!   stopped, and each delivery's latency from its event's `created_at` and from its spend's 200.
//!
//! Every phase compares what the receiver got with the events table (missing events), and
//! reports duplicates, signature failures (must be 0) and the server's peak memory (VmHWM).
//!
//! ```sh
//! cargo build --release -p tollgate
//! cargo bench -p tollgate --bench webhook_delivery -- --db sqlite --seconds 10
//! cargo bench -p tollgate --bench webhook_delivery -- --db postgres --seconds 0 --backlog 10000
//! ```
//! Other options: `--users 100`, `--clients 16`, `--rate 0` (0: unpaced), `--endpoints 1`,
//! `--timeout 300` (seconds to wait for every delivery), `--binary PATH`. Environment:
//! `BENCH_SQLITE_SYNCHRONOUS` (the server's `SQLITE_SYNCHRONOUS`, FULL by default),
//! `BENCH_PG_SYNCHRONOUS_COMMIT` (`off`: PostgreSQL commits do not wait for the disk),
//! `BENCH_RUST_LOG` (the server's `RUST_LOG`, `warn` by default).

mod common;

use std::{
    collections::{HashMap, HashSet},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement};
use serde_json::{Value, json};
use sha2::Sha256;
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

const SECRET: &str = "benchmark-jwt-secret-0123456789-abcdef";
const ADMIN_KEY: &str = "benchmark-admin-key-0123456789";
/// Not spend_load's (18480), the gateway's (18490) nor the streams' (18530).
const PORT: u16 = 18_550;
/// How far a delivery's `webhook-timestamp` may be from the receiver's clock.
const TOLERANCE_SECS: i64 = 300;

struct Options {
    db: String,
    seconds: u64,
    backlog: usize,
    users: usize,
    clients: usize,
    /// Spends per second from all clients together; 0: each client sends its next spend as soon
    /// as the last is answered.
    rate: u64,
    endpoints: usize,
    timeout: u64,
    binary: String,
}

fn options() -> Options {
    let mut opts = Options {
        db: "sqlite".to_owned(),
        seconds: 10,
        backlog: 0,
        users: 100,
        clients: 16,
        rate: 0,
        endpoints: 1,
        timeout: 300,
        binary: format!(
            "{}/release/tollgate",
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/tollgate-target".to_owned())
        ),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = |default: u64| value.replace('_', "").parse().unwrap_or(default);
        match args[i].as_str() {
            "--db" => opts.db = value.clone(),
            "--seconds" => opts.seconds = number(opts.seconds),
            "--backlog" => opts.backlog = number(opts.backlog as u64) as usize,
            "--users" => opts.users = number(opts.users as u64).max(1) as usize,
            "--clients" => opts.clients = number(opts.clients as u64).max(1) as usize,
            "--rate" => opts.rate = number(opts.rate),
            "--endpoints" => opts.endpoints = number(opts.endpoints as u64).max(1) as usize,
            "--timeout" => opts.timeout = number(opts.timeout),
            "--binary" => opts.binary = value.clone(),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    opts
}

// The receiver.

/// One verified delivery.
struct Receipt {
    endpoint: usize,
    /// The spend's transfer, for a `credits.spent` event.
    transfer_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
    at: Instant,
    at_utc: DateTime<Utc>,
}

#[derive(Default)]
struct ReceiverState {
    /// Per endpoint, the key bytes of its secret (set once the endpoint is registered).
    keys: RwLock<Vec<Vec<u8>>>,
    /// Per endpoint, the webhook ids received.
    seen: Mutex<Vec<HashSet<String>>>,
    /// First receipts only.
    receipts: Mutex<Vec<Receipt>>,
    requests: AtomicU64,
    distinct: AtomicU64,
    duplicates: AtomicU64,
    bad_signatures: AtomicU64,
}

impl ReceiverState {
    fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.distinct.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.bad_signatures.load(Ordering::Relaxed),
        )
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether one of the `v1,` signatures in `signatures` is the HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under `key`.
fn verifies(key: &[u8], id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return false };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|s| {
        // Byte-for-byte; a benchmark has no timing side channel to close.
        STANDARD.decode(s).is_ok_and(|bytes| bytes[..] == expected[..])
    })
}

async fn receive(
    req: HttpRequest,
    path: web::Path<usize>,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let at = Instant::now();
    let at_utc = Utc::now();
    state.requests.fetch_add(1, Ordering::Relaxed);
    let endpoint = path.into_inner();
    let key = state.keys.read().expect("keys").get(endpoint).cloned();
    let id = header(&req, "webhook-id").unwrap_or_default();
    let timestamp = header(&req, "webhook-timestamp").unwrap_or_default();
    let signatures = header(&req, "webhook-signature").unwrap_or_default();
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (at_utc.timestamp() - t).abs() <= TOLERANCE_SECS);
    let valid = key.is_some_and(|key| verifies(&key, id, timestamp, &body, signatures))
        && fresh
        && !id.is_empty()
        && event["id"].as_str() == Some(id);
    if !valid {
        // Counted, and answered 200 all the same: a 4xx would only bring retries, which would
        // then be counted as duplicates too.
        state.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Ok().finish();
    }
    let first = state.seen.lock().expect("seen").get_mut(endpoint).is_some_and(|seen| seen.insert(id.to_owned()));
    if !first {
        state.duplicates.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Ok().finish();
    }
    let receipt = Receipt {
        endpoint,
        transfer_id: event["data"]["transfer_id"].as_str().map(str::to_owned),
        created_at: event["created_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc()),
        at,
        at_utc,
    };
    state.receipts.lock().expect("receipts").push(receipt);
    state.distinct.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

/// Starts the receiver on its own worker thread; returns its port.
fn start_receiver(state: Arc<ReceiverState>) -> u16 {
    let data = web::Data::from(state);
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).route("/hooks/{n}", web::post().to(receive)))
            .workers(1)
            .backlog(1024)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind the receiver");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    port
}

// The server.

fn start_server(opts: &Options, url: &str, dir: &std::path::Path) -> Child {
    Command::new(&opts.binary)
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{PORT}"))
        .env("DATABASE_URL", url)
        .env("TOLLGATE_DATA_DIR", dir)
        .env("JWT_SECRET", SECRET)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("WEBHOOK_ALLOW_PRIVATE_URLS", "true")
        .env("SQLITE_SYNCHRONOUS", std::env::var("BENCH_SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "FULL".to_owned()))
        .env("RATE_LIMIT_SPEND_PER_SECOND", "1000000")
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `cargo build --release -p tollgate` first)", opts.binary))
}

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{PORT}{path}")
}

fn stop_server(server: &mut Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// CPU time a process has used (user and system, all threads).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which is in parentheses: utime and stime are the
    // 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time used so far by each PostgreSQL backend connected to the benchmark's database (its
/// process title names the database), by process id; empty on SQLite.
fn pg_backends_cpu() -> HashMap<u32, Duration> {
    let mut found = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        if title.starts_with("postgres: ") && title.contains(" tollgate_bench_webhooks ") {
            found.insert(pid, cpu_time(pid));
        }
    }
    found
}

/// The CPU the backends used between two `pg_backends_cpu` readings (a backend that ended in
/// between is not counted).
fn pg_cpu_since(before: &HashMap<u32, Duration>) -> Duration {
    pg_backends_cpu().iter().map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or_default())).sum()
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Seeds `n` users with a wallet and a billion credits, 500 per transaction; returns their ids
/// and access tokens.
async fn seed_users(conn: &DatabaseConnection, n: usize) -> Vec<(Uuid, String)> {
    let keys = JwtKeys::new(SECRET, Duration::from_secs(3600), tollgate::clock::Clock::system());
    let now = Utc::now();
    let mut users = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let txn = db::begin_write(conn).await.expect("begin");
        let mut grants = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let id = Uuid::now_v7();
            let email = format!("webhook-{i}@example.com");
            users::Entity::insert(users::ActiveModel {
                id: Set(id),
                email: Set(email.clone()),
                name: Set(None),
                password_hash: Set("$argon2id$v=19$m=64,t=1,p=1$none$none".to_owned()),
                role: Set("user".to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await
            .expect("user");
            let customer = tollgate::customers::for_user(id, &email, None, now);
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
            users.push((id, keys.issue(id, Role::User).expect("token")));
        }
        for verdict in writer::apply_in(&txn, &grants, now).await.expect("grants") {
            verdict.expect("grant");
        }
        txn.commit().await.expect("commit");
    }
    users
}

/// Writes `n` spends of 1 credit, round robin over `users`, 500 per transaction, through the
/// ledger's code (one `credits.spent` event each).
async fn seed_spends(conn: &DatabaseConnection, users: &[(Uuid, String)], n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let now = Utc::now();
        let spends: Vec<LedgerCommand> = chunk
            .iter()
            .map(|&i| LedgerCommand {
                user_id: users[i % users.len()].0,
                key: None,
                op: Op::Spend { amount: Credits::new(1).expect("credits"), details: TransferDetails::default() },
            })
            .collect();
        let txn = db::begin_write(conn).await.expect("begin");
        for verdict in writer::apply_in(&txn, &spends, now).await.expect("spends") {
            verdict.expect("spend");
        }
        txn.commit().await.expect("commit");
    }
}

/// Registers `n` endpoints for every event type, the k-th at `/hooks/k` on the receiver, and
/// gives the receiver their keys.
async fn register_endpoints(client: &reqwest::Client, receiver: &ReceiverState, port: u16, n: usize) {
    let mut keys = Vec::with_capacity(n);
    for k in 0..n {
        let res = client
            .post(url("/api/v1/webhook-endpoints"))
            .header("x-admin-key", ADMIN_KEY)
            .json(&json!({
                "url": format!("http://127.0.0.1:{port}/hooks/{k}"),
                "events": ["*"],
                "description": format!("webhook_delivery benchmark {k}"),
            }))
            .send()
            .await
            .expect("create endpoint");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::CREATED, "create endpoint: {body}");
        let secret = body["secret"].as_str().expect("secret");
        keys.push(STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).expect("a base64 secret"));
    }
    *receiver.keys.write().expect("keys") = keys;
    *receiver.seen.lock().expect("seen") = vec![HashSet::new(); n];
}

/// The newest event's `seq` (0 with none).
async fn last_seq(conn: &DatabaseConnection) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS n FROM events",
        ))
        .await
        .expect("max seq")
        .expect("a row");
    row.try_get("", "n").expect("n")
}

/// The ids of the events after `seq`.
async fn event_ids_after(conn: &DatabaseConnection, seq: i64) -> Vec<String> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT id FROM events WHERE seq > $1 ORDER BY seq",
        _ => "SELECT id FROM events WHERE seq > ? ORDER BY seq",
    };
    let rows = conn.query_all_raw(Statement::from_sql_and_values(backend, sql, [seq.into()])).await.expect("events");
    rows.iter().map(|r| r.try_get::<String>("", "id").expect("id")).collect()
}

/// Waits until the receiver has `expected` distinct deliveries, or `timeout`; returns whether it
/// has.
async fn wait_for(receiver: &ReceiverState, expected: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last = (0, Instant::now());
    loop {
        let (_, distinct, _, _) = receiver.counts();
        if distinct >= expected {
            return true;
        }
        if distinct != last.0 {
            last = (distinct, Instant::now());
        }
        if Instant::now() > deadline {
            eprintln!("timed out: {distinct} of {expected} deliveries after {} s", timeout.as_secs());
            return false;
        }
        if last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("no new delivery for 30 s: {distinct} of {expected}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many of `ids` some endpoint did not receive.
fn missing(receiver: &ReceiverState, ids: &[String]) -> usize {
    let seen = receiver.seen.lock().expect("seen");
    seen.iter().map(|s| ids.iter().filter(|id| !s.contains(*id)).count()).sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "n {} p50 {:.1} p99 {:.1} max {:.1} ms",
        values.len(),
        percentile(values, 0.50),
        percentile(values, 0.99),
        values.last().copied().unwrap_or(f64::NAN)
    )
}

/// Takes the receipts so far, leaving the receiver's counts as they are.
fn take_receipts(receiver: &ReceiverState) -> Vec<Receipt> {
    std::mem::take(&mut *receiver.receipts.lock().expect("receipts"))
}

/// A phase's tally of the receiver, since `before`.
fn tally(receiver: &ReceiverState, before: (u64, u64, u64, u64)) -> String {
    let (requests, distinct, duplicates, bad) = receiver.counts();
    format!(
        "requests {} | distinct deliveries {} | duplicates {} | signature failures {}",
        requests - before.0,
        distinct - before.1,
        duplicates - before.2,
        bad - before.3
    )
}

// The phases.

/// Stops the server, writes `opts.backlog` spends while it is down, starts it again and times
/// the drain. Returns the new server.
async fn drain(
    opts: &Options,
    mut server: Child,
    conn: &DatabaseConnection,
    database: &str,
    dir: &std::path::Path,
    users: &[(Uuid, String)],
    receiver: &ReceiverState,
) -> Child {
    let client = reqwest::Client::new();
    // Settle: nothing of what came before may be pending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_server(&mut server);
    let before = receiver.counts();
    take_receipts(receiver);
    let seq = last_seq(conn).await;
    let writing = Instant::now();
    seed_spends(conn, users, opts.backlog).await;
    let wrote = writing.elapsed();
    let ids = event_ids_after(conn, seq).await;
    let expected = (ids.len() * opts.endpoints) as u64;

    let pg_before = pg_backends_cpu();
    let own_before = cpu_time(std::process::id());
    let started = Instant::now();
    let server = start_server(opts, database, dir);
    common::wait_ready(&client, PORT).await;
    let ready = started.elapsed();
    let complete = wait_for(receiver, before.1 + expected, Duration::from_secs(opts.timeout)).await;
    let ended = started.elapsed();
    let cpu = cpu_time(server.id());
    let pg_cpu = pg_cpu_since(&pg_before);
    let own_cpu = cpu_time(std::process::id()).saturating_sub(own_before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = proc_status_mib(server.id(), "VmHWM:");
    let receipts = take_receipts(receiver);
    let first = receipts.iter().map(|r| r.at).min();
    let last = receipts.iter().map(|r| r.at).max();
    let first_s = first.map(|f| f.duration_since(started).as_secs_f64()).unwrap_or(f64::NAN);
    let last_s = last.map(|l| l.duration_since(started).as_secs_f64()).unwrap_or(f64::NAN);
    let delivered = receipts.len() as f64;
    let events = ids.len();

    println!(
        "drain | {} | backlog {events} events written in {:.1} s with the server down, {} endpoint(s): {expected} \
         deliveries due",
        opts.db,
        wrote.as_secs_f64(),
        opts.endpoints
    );
    println!(
        "  server ready {:.2} s after its start; first delivery at {first_s:.2} s, last at {last_s:.2} s{}",
        ready.as_secs_f64(),
        if complete { String::new() } else { format!(" (gave up at {:.1} s)", ended.as_secs_f64()) }
    );
    println!(
        "  deliveries/s: {:.0} from the server's start, {:.0} from its readiness, {:.0} first to last delivery",
        delivered / last_s,
        delivered / (last_s - ready.as_secs_f64()),
        delivered / (last_s - first_s)
    );
    println!("  {} | missing {}", tally(receiver, before), missing(receiver, &ids));
    println!(
        "  server CPU from its start to the last delivery: {:.2} s ({:.0}% of one core, {:.0} us per delivery)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / ended.as_secs_f64(),
        1e6 * cpu.as_secs_f64() / delivered
    );
    if opts.db == "postgres" {
        println!(
            "  PostgreSQL backends' CPU meanwhile: {:.2} s ({:.0}% of one core, {:.0} us per delivery)",
            pg_cpu.as_secs_f64(),
            100.0 * pg_cpu.as_secs_f64() / ended.as_secs_f64(),
            1e6 * pg_cpu.as_secs_f64() / delivered
        );
    }
    println!(
        "  this process's CPU (the receiver) meanwhile: {:.2} s ({:.0}% of one core)",
        own_cpu.as_secs_f64(),
        100.0 * own_cpu.as_secs_f64() / ended.as_secs_f64()
    );
    println!("  server peak memory (VmHWM, this process since its start): {peak:.1} MiB");
    server
}

/// Spends over HTTP for `opts.seconds` and follows their events to the receiver.
async fn steady(
    opts: &Options,
    server: &Child,
    conn: &DatabaseConnection,
    users: Arc<Vec<(Uuid, String)>>,
    receiver: &ReceiverState,
) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = receiver.counts();
    take_receipts(receiver);
    let seq = last_seq(conn).await;
    let cpu_before = cpu_time(server.id());
    let pg_before = pg_backends_cpu();
    let own_before = cpu_time(std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(opts.clients);
    for w in 0..opts.clients {
        let (users, stop, errors) = (users.clone(), stop.clone(), errors.clone());
        let clients = opts.clients;
        let pace = (opts.rate > 0).then(|| Duration::from_secs_f64(opts.clients as f64 / opts.rate as f64));
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
            let mut answered: HashMap<String, Instant> = HashMap::new();
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let (_, token) = &users[n % users.len()];
                n += clients;
                let res = client
                    .post(url("/api/v1/credits/spend"))
                    .bearer_auth(token)
                    .header("Idempotency-Key", Uuid::new_v4().to_string())
                    .header("content-type", "application/json")
                    .body(r#"{"amount":1}"#)
                    .send()
                    .await;
                let Ok(res) = res else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if res.status() != StatusCode::OK {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let _ = res.bytes().await;
                    continue;
                }
                let body: Value = res.json().await.unwrap_or_default();
                let at = Instant::now();
                match body["transfer"]["id"].as_str() {
                    Some(id) => {
                        answered.insert(id.to_owned(), at);
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered: HashMap<String, Instant> = HashMap::new();
    for w in workers {
        answered.extend(w.await.expect("worker"));
    }
    let window = started.elapsed();
    let at_stop = receiver.counts().1 - before.1;
    let ids = event_ids_after(conn, seq).await;
    let expected = (ids.len() * opts.endpoints) as u64;
    let complete = wait_for(receiver, before.1 + expected, Duration::from_secs(opts.timeout)).await;
    let cpu = cpu_time(server.id()).saturating_sub(cpu_before);
    let pg_cpu = pg_cpu_since(&pg_before);
    let own_cpu = cpu_time(std::process::id()).saturating_sub(own_before);
    let ended = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = proc_status_mib(server.id(), "VmHWM:");
    let receipts = take_receipts(receiver);

    let in_window = receipts.iter().filter(|r| r.at.duration_since(started) <= window).count();
    let last = receipts.iter().map(|r| r.at).max().map(|l| l.duration_since(started).as_secs_f64()).unwrap_or(f64::NAN);
    let mut from_created: Vec<f64> = receipts
        .iter()
        .filter_map(|r| r.created_at.map(|c| (r.at_utc - c).num_microseconds().unwrap_or(0) as f64 / 1000.0))
        .collect();
    let mut early = 0;
    let mut from_answer: Vec<f64> = receipts
        .iter()
        .filter_map(|r| {
            let answered = answered.get(r.transfer_id.as_deref()?)?;
            if r.at < *answered {
                early += 1;
            }
            Some(r.at.saturating_duration_since(*answered).as_secs_f64() * 1000.0)
        })
        .collect();
    let spends = answered.len();
    let spend_events = receipts.iter().filter(|r| r.endpoint == 0 && r.transfer_id.is_some()).count();
    let w = window.as_secs_f64();

    println!(
        "steady | {} | {} clients{} over {} users for {w:.1} s, {} endpoint(s)",
        opts.db,
        opts.clients,
        if opts.rate > 0 { format!(" at {} spends/s in all", opts.rate) } else { " unpaced".to_owned() },
        opts.users,
        opts.endpoints
    );
    println!(
        "  spends answered 200: {spends} ({:.0}/s), errors {}; events written: {} ({:.0}/s)",
        spends as f64 / w,
        errors.load(Ordering::Relaxed),
        ids.len(),
        ids.len() as f64 / w
    );
    println!(
        "  deliveries while spending: {in_window} ({:.0}/s); {} behind when the spends stopped; all {} by {last:.2} s \
         ({:.2} s after){}",
        in_window as f64 / w,
        expected.saturating_sub(at_stop),
        receipts.len(),
        last - w,
        if complete { "" } else { " (incomplete: gave up)" }
    );
    println!("  latency event created_at -> receipt: {}", summary(&mut from_created));
    println!(
        "  latency spend 200 -> receipt:       {} ({early} arrived before their 200; {spend_events} spend events on endpoint 0)",
        summary(&mut from_answer)
    );
    println!("  {} | missing {}", tally(receiver, before), missing(receiver, &ids));
    println!(
        "  server CPU, spends and deliveries: {:.2} s ({:.0}% of one core)",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / ended.as_secs_f64()
    );
    if opts.db == "postgres" {
        println!(
            "  PostgreSQL backends' CPU meanwhile: {:.2} s ({:.0}% of one core)",
            pg_cpu.as_secs_f64(),
            100.0 * pg_cpu.as_secs_f64() / ended.as_secs_f64()
        );
    }
    println!(
        "  this process's CPU (the clients and the receiver) meanwhile: {:.2} s ({:.0}% of one core)",
        own_cpu.as_secs_f64(),
        100.0 * own_cpu.as_secs_f64() / ended.as_secs_f64()
    );
    println!("  server peak memory (VmHWM): {peak:.1} MiB");
}

#[tokio::main]
async fn main() {
    // The receiver's check against the example in the Standard Webhooks specification.
    let example = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("base64");
    let (id, timestamp, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", br#"{"test": 2432232314}"#);
    assert!(verifies(&example, id, timestamp, body, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    assert!(!verifies(&example, id, timestamp, b"{}", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    let opts = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let database = common::fresh_database(&opts.db, dir.path(), "tollgate_bench_webhooks").await;
    let receiver = Arc::new(ReceiverState::default());
    let receiver_port = start_receiver(receiver.clone());
    let mut server = start_server(&opts, &database, dir.path());
    let client = reqwest::Client::new();
    common::wait_ready(&client, PORT).await;
    let conn = Database::connect(&database).await.expect("connect");
    let users = Arc::new(seed_users(&conn, opts.users).await);
    register_endpoints(&client, &receiver, receiver_port, opts.endpoints).await;
    println!("load average before: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    if opts.backlog > 0 {
        server = drain(&opts, server, &conn, &database, dir.path(), &users, &receiver).await;
    }
    if opts.seconds > 0 {
        steady(&opts, &server, &conn, users.clone(), &receiver).await;
    }
    println!("load average after: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    stop_server(&mut server);
    conn.close().await.ok();
}
