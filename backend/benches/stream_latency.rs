//! Commit-to-stream latency of the live event streams (#18), with many streams open.
//!
//! Starts the release server as its own process over a fresh SQLite file or PostgreSQL database,
//! seeds users with credits through the ledger's own code, opens one `GET /credits/stream` per
//! user (1,000 by default), then spends at a steady rate, round robin over the users, and times
//! each spend's `credits.spent` event on its user's stream: from the spend's HTTP 200 to the
//! event's arrival (0 when the event came first), and from sending the spend to the event's
//! arrival. Reports p50/p99/max of both, events missing, and the server's memory with every
//! stream open (VmRSS, and VmHWM, the peak over the run).
//!
//! ```sh
//! cargo build --release -p tollgate
//! cargo bench -p tollgate --bench stream_latency -- --db sqlite --streams 1000 --rate 200 --seconds 20
//! cargo bench -p tollgate --bench stream_latency -- --db postgres --streams 1000 --rate 200 --seconds 20
//! ```

mod common;

use std::{
    collections::VecDeque,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::{ActiveValue::Set, Database, EntityTrait};
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
/// Not `spend_load`'s (18480) nor the gateway benchmark's, so they can run side by side.
const PORT: u16 = 18_530;

struct Options {
    db: String,
    streams: usize,
    rate: u64,
    seconds: u64,
    binary: String,
}

fn options() -> Options {
    let mut opts = Options {
        db: "sqlite".to_owned(),
        streams: 1000,
        rate: 200,
        seconds: 20,
        binary: format!(
            "{}/release/tollgate",
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/tollgate-target".to_owned())
        ),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--db" => opts.db = value,
            "--streams" => opts.streams = value.parse().unwrap_or(opts.streams),
            "--rate" => opts.rate = value.parse().unwrap_or(opts.rate),
            "--seconds" => opts.seconds = value.parse().unwrap_or(opts.seconds),
            "--binary" => opts.binary = value,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    opts
}

fn start_server(opts: &Options, url: &str, dir: &std::path::Path) -> Child {
    Command::new(&opts.binary)
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{PORT}"))
        .env("DATABASE_URL", url)
        .env("TOLLGATE_DATA_DIR", dir)
        .env("JWT_SECRET", SECRET)
        .env("RATE_LIMIT_SPEND_PER_SECOND", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `cargo build --release -p tollgate` first)", opts.binary))
}

/// Seeds `n` users with a wallet and credits, 500 per transaction; returns their access tokens.
async fn seed(url: &str, n: usize) -> Vec<String> {
    let conn = Database::connect(url).await.expect("connect");
    let keys = JwtKeys::new(SECRET, Duration::from_secs(3600), tollgate::clock::Clock::system());
    let now = Utc::now();
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let txn = db::begin_write(&conn).await.expect("begin");
        let mut grants = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let id = Uuid::now_v7();
            let email = format!("stream-{i}@example.com");
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
            tokens.push(keys.issue(id, Role::User).expect("token"));
        }
        for verdict in writer::apply_in(&txn, &grants, now).await.expect("grants") {
            verdict.expect("grant");
        }
        txn.commit().await.expect("commit");
    }
    conn.close().await.ok();
    tokens
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

/// One spend's moments: sent, answered 200, its event seen on the stream.
#[derive(Default)]
struct Timing {
    sent: OnceLock<Instant>,
    answered: OnceLock<Instant>,
    arrived: OnceLock<Instant>,
}

/// Per user: the spends whose events have not arrived yet, oldest first.
type Pending = Arc<Vec<Mutex<VecDeque<Arc<Timing>>>>>;

/// Reads one user's stream until it ends; each `credits.spent` event completes the oldest
/// pending spend of that user.
async fn read_stream(mut res: reqwest::Response, user: usize, pending: Pending, opened: Arc<tokio::sync::Barrier>) {
    let mut buf = String::new();
    let mut first = true;
    while let Ok(Some(bytes)) = res.chunk().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if first {
                first = false;
                opened.wait().await;
            }
            if block.contains("\nevent: credits.spent\n") {
                let timing = pending[user].lock().expect("lock").pop_front();
                match timing {
                    Some(t) => {
                        let _ = t.arrived.set(now);
                    }
                    None => eprintln!("user {user}: an event with no spend waiting for it"),
                }
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let opts = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = common::fresh_database(&opts.db, dir.path(), "tollgate_bench_streams").await;
    let mut server = start_server(&opts, &url, dir.path());
    let client = reqwest::Client::new();
    common::wait_ready(&client, PORT).await;
    let tokens = Arc::new(seed(&url, opts.streams).await);
    let idle_rss = proc_status_mib(server.id(), "VmRSS:");

    // Open every stream, each on its own connection.
    let pending: Pending = Arc::new((0..opts.streams).map(|_| Mutex::new(VecDeque::new())).collect());
    let opened = Arc::new(tokio::sync::Barrier::new(opts.streams + 1));
    let stream_client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let opening = Instant::now();
    let mut readers = Vec::with_capacity(opts.streams);
    for (user, token) in tokens.iter().enumerate() {
        let res = stream_client
            .get(format!("http://127.0.0.1:{PORT}/api/v1/credits/stream"))
            .bearer_auth(token)
            .send()
            .await
            .expect("open stream");
        assert_eq!(res.status(), 200, "stream {user}");
        readers.push(tokio::spawn(read_stream(res, user, pending.clone(), opened.clone())));
    }
    opened.wait().await;
    let open_took = opening.elapsed();
    let open_rss = proc_status_mib(server.id(), "VmRSS:");

    // Spend at a steady rate, round robin over the users.
    let spender = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate as f64));
    let total = opts.rate * opts.seconds;
    let mut all = Vec::with_capacity(total as usize);
    let mut spends = Vec::with_capacity(total as usize);
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for n in 0..total as usize {
        ticker.tick().await;
        let user = n % opts.streams;
        let timing = Arc::new(Timing::default());
        all.push(timing.clone());
        let (client, tokens, pending, errors) = (spender.clone(), tokens.clone(), pending.clone(), errors.clone());
        spends.push(tokio::spawn(async move {
            // Queued before sending: the event may arrive before the answer.
            pending[user].lock().expect("lock").push_back(timing.clone());
            let _ = timing.sent.set(Instant::now());
            let res = client
                .post(format!("http://127.0.0.1:{PORT}/api/v1/credits/spend"))
                .bearer_auth(&tokens[user])
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .header("content-type", "application/json")
                .body(r#"{"amount":1}"#)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    let _ = timing.answered.set(Instant::now());
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for spend in spends {
        spend.await.expect("spend");
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = proc_status_mib(server.id(), "VmHWM:");
    let end_rss = proc_status_mib(server.id(), "VmRSS:");

    let mut from_answer = Vec::new();
    let mut from_send = Vec::new();
    let mut early = 0;
    let mut missing = 0;
    for t in &all {
        match (t.sent.get(), t.answered.get(), t.arrived.get()) {
            (Some(sent), Some(answered), Some(arrived)) => {
                if arrived < answered {
                    early += 1;
                }
                from_answer.push(arrived.saturating_duration_since(*answered).as_secs_f64() * 1000.0);
                from_send.push(arrived.duration_since(*sent).as_secs_f64() * 1000.0);
            }
            (_, Some(_), None) => missing += 1,
            _ => {}
        }
    }
    from_answer.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    println!(
        "database: {} | {} streams opened in {:.1} s | {} spends/s for {} s | spend errors: {}",
        opts.db,
        opts.streams,
        open_took.as_secs_f64(),
        opts.rate,
        opts.seconds,
        errors.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("{:<22} {:>8} {:>8} {:>8} {:>8}", "latency (ms)", "events", "p50", "p99", "max");
    for (name, values) in [("spend 200 -> event", &from_answer), ("spend sent -> event", &from_send)] {
        println!(
            "{:<22} {:>8} {:>8.2} {:>8.2} {:>8.2}",
            name,
            values.len(),
            percentile(values, 0.50),
            percentile(values, 0.99),
            values.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!("events before their spend's 200: {early}; events missing: {missing}");
    println!(
        "server memory: {idle_rss:.1} MiB before the streams, {open_rss:.1} MiB with them open, {end_rss:.1} MiB \
         after the spends; peak (VmHWM) {peak:.1} MiB"
    );
    let _ = server.kill();
    let _ = server.wait();
    for reader in readers {
        reader.abort();
    }
}
