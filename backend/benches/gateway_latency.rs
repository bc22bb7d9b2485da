//! Latency benchmark for the LLM gateway (#16): what `POST /gateway/v1/chat/completions` adds
//! over calling its upstream directly.
//!
//! Starts a fake OpenAI-compatible upstream in this process (its own actix worker thread; it
//! answers at once, or after `--upstream-delay-ms` as a model would: a JSON answer with usage,
//! or an SSE stream of a few chunks with the usage chunk when `stream_options.include_usage`,
//! then `[DONE]`), and the release server as its own
//! process over a fresh SQLite file or PostgreSQL database, pointed at the fake. Creates a priced
//! model, a user with a billion credits and an API key that may spend, then drives calls from
//! 32 workers (one keep-alive connection each) for a fixed time, alternating runs straight to the
//! fake with runs through the gateway:
//!
//! - non-streamed: the time to the whole answer;
//! - streamed: the time to the first `data:` bytes (time to first token).
//!
//! Reports calls/s, p50 and p99 of each, and what the gateway adds at p50 and p99 (gateway minus
//! direct, each over all of its runs), as a markdown table. With `--breakdown`, it also measures,
//! at the same concurrency, the calls that share parts of the gateway's path: a gateway call on
//! a free model (no hold, no capture), `GET /gateway/v1/models` (the API key's lookups and one
//! read of the models), and `GET /healthz` (the HTTP stack alone). Then it checks that every hold
//! was closed and that the ledger reconciles.
//!
//! ```sh
//! cargo build --release -p tollgate
//! cargo bench -p tollgate --bench gateway_latency -- --db sqlite --seconds 10
//! cargo bench -p tollgate --bench gateway_latency -- --db postgres --seconds 10 [--rounds 2] [--concurrency 32] [--breakdown] [--upstream-delay-ms 0] [--upstream-jitter-ms 0]
//! ```

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::{Method, StatusCode};
use sea_orm::Database;
use serde_json::{Value, json};

const SECRET: &str = "benchmark-jwt-secret-0123456789-abcdef";
const ADMIN_KEY: &str = "benchmark-admin-key-0123456789";
const UPSTREAM_KEY: &str = "sk-benchmark-upstream-key";
const PORT: u16 = 18_490;
const PASSWORD: &str = "benchmark-password-0123456789";
/// The model the fake is asked for, directly and by the gateway: an OpenAI name, so the gateway
/// counts the input with its real tokenizer (o200k_base).
const UPSTREAM_MODEL: &str = "gpt-4o-mini";
/// The gateway's model ids: priced (a hold and a capture per call) and free (neither).
const PRICED_MODEL: &str = "bench-model";
const FREE_MODEL: &str = "bench-free";
const PROMPT: &str = "Say hello in one short sentence.";
/// The answer's text, streamed word by word.
const REPLY: &str = "Hello from the fake upstream, one word at a time.";

struct Options {
    db: String,
    seconds: u64,
    binary: String,
    concurrency: usize,
    /// Direct and gateway runs of each kind: direct, gateway, direct, gateway, ...
    rounds: usize,
    breakdown: bool,
    /// How long the fake takes to answer (before a stream's first event), as a model would.
    upstream_delay: Duration,
    /// Each answer's delay is drawn evenly from `upstream_delay` ± this (at most the delay), as a
    /// model's time varies with the answer. With none, 32 workers fall into step: their calls arrive together.
    upstream_jitter: Duration,
}

fn options() -> Options {
    let mut opts = Options {
        db: "sqlite".to_owned(),
        seconds: 10,
        concurrency: 32,
        rounds: 2,
        breakdown: false,
        upstream_delay: Duration::ZERO,
        upstream_jitter: Duration::ZERO,
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
                opts.seconds = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(10);
                i += 1;
            }
            "--concurrency" => {
                opts.concurrency = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(32);
                i += 1;
            }
            "--rounds" => {
                opts.rounds = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(2);
                i += 1;
            }
            "--binary" => {
                opts.binary = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            "--breakdown" => opts.breakdown = true,
            "--upstream-delay-ms" => {
                opts.upstream_delay = Duration::from_millis(args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(0));
                i += 1;
            }
            "--upstream-jitter-ms" => {
                opts.upstream_jitter = Duration::from_millis(args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(0));
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    opts.upstream_jitter = opts.upstream_jitter.min(opts.upstream_delay);
    opts
}

// The fake upstream.

fn usage() -> Value {
    json!({
        "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 200},
    })
}

fn event(value: &Value) -> web::Bytes {
    web::Bytes::from(format!("data: {value}\n\n"))
}

fn chunk(delta: Value, finish: Option<&str>) -> web::Bytes {
    event(&json!({
        "id": "chatcmpl-bench-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": UPSTREAM_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }))
}

/// The fake's answers, made once: the whole one, and a stream's events without and with usage.
struct Answers {
    delay: Duration,
    jitter: Duration,
    whole: web::Bytes,
    events: Vec<web::Bytes>,
    usage: web::Bytes,
}

impl Answers {
    fn new(delay: Duration, jitter: Duration) -> Self {
        let whole = json!({
            "id": "chatcmpl-bench-1", "object": "chat.completion", "created": 1_700_000_000, "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": usage(),
        });
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        for word in REPLY.split_inclusive(' ') {
            events.push(chunk(json!({ "content": word }), None));
        }
        events.push(chunk(json!({}), Some("stop")));
        let usage = event(&json!({
            "id": "chatcmpl-bench-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": UPSTREAM_MODEL, "choices": [], "usage": usage(),
        }));
        Self { delay, jitter, whole: web::Bytes::from(serde_json::to_vec(&whole).expect("json")), events, usage }
    }
}

async fn fake_completions(body: web::Bytes, answers: web::Data<Answers>) -> HttpResponse {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if !answers.delay.is_zero() {
        let jitter = answers.jitter.as_micros() as u64;
        let delay = answers.delay - answers.jitter + Duration::from_micros(rand::random_range(0..=2 * jitter));
        tokio::time::sleep(delay).await;
    }
    if request["stream"].as_bool() != Some(true) {
        return HttpResponse::Ok().content_type("application/json").body(answers.whole.clone());
    }
    let mut events = answers.events.clone();
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(answers.usage.clone());
    }
    events.push(web::Bytes::from_static(b"data: [DONE]\n\n"));
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>));
    HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
}

/// Starts the fake on its own worker thread; returns its API base, `http://127.0.0.1:<port>/v1`.
fn start_fake(delay: Duration, jitter: Duration) -> String {
    let answers = web::Data::new(Answers::new(delay, jitter));
    let server = HttpServer::new(move || {
        App::new().app_data(answers.clone()).route("/v1/chat/completions", web::post().to(fake_completions))
    })
    .workers(1)
    .backlog(1024)
    // As providers' servers do (nginx's default): without it the fake's writes wait on the
    // gateway's delayed ACKs (up to 40 ms per answer), which the direct calls, whose timing
    // differs, mostly escape.
    .tcp_nodelay(true)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the fake upstream");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}/v1")
}

// The server.

fn start_server(opts: &Options, url: &str, dir: &std::path::Path, upstream: &str) -> Child {
    let mut command = Command::new(&opts.binary);
    if let Ok(pool) = std::env::var("BENCH_POOL") {
        command.env("DATABASE_MAX_CONNECTIONS", pool);
    }
    command
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{PORT}"))
        .env("DATABASE_URL", url)
        .env("TOLLGATE_DATA_DIR", dir)
        .env("JWT_SECRET", SECRET)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("GATEWAY_UPSTREAM_URL", upstream)
        .env("GATEWAY_UPSTREAM_KEY", UPSTREAM_KEY)
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

async fn expect(res: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates the two models, a user with a billion credits, and an API key that may spend;
/// returns the user's access token and the key.
async fn seed(client: &reqwest::Client) -> (String, String) {
    for (id, input, cached, output) in [(PRICED_MODEL, 1000, 500, 4000), (FREE_MODEL, 0, 0, 0)] {
        let res = client
            .post(url("/api/v1/models"))
            .header("x-admin-key", ADMIN_KEY)
            .json(&json!({
                "id": id, "upstream_model": UPSTREAM_MODEL,
                "input_per_million": input, "cached_input_per_million": cached, "output_per_million": output,
                "max_output_tokens": 1000,
            }))
            .send()
            .await
            .expect("create model");
        expect(res, StatusCode::CREATED, "create model").await;
    }
    let email = "gateway-bench@example.com";
    let res = client
        .post(url("/api/v1/auth/register"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    expect(res, StatusCode::CREATED, "register").await;
    let res = client
        .post(url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    let session = expect(res, StatusCode::OK, "login").await;
    let token = session["access_token"].as_str().expect("access token").to_owned();
    let user_id = session["user"]["id"].as_str().expect("user id").to_owned();
    let res = client
        .post(url("/api/v1/credits/grant"))
        .header("x-admin-key", ADMIN_KEY)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "user_id": user_id, "amount": 1_000_000_000i64, "reason": "gateway benchmark" }))
        .send()
        .await
        .expect("grant");
    expect(res, StatusCode::OK, "grant").await;
    let res = client
        .post(url("/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({ "name": "gateway-bench", "scopes": ["credits:spend"] }))
        .send()
        .await
        .expect("api key");
    let key = expect(res, StatusCode::CREATED, "api key").await;
    (token, key["secret"].as_str().expect("secret").to_owned())
}

// The load.

/// One kind of call, sent again and again.
struct Load {
    method: Method,
    url: String,
    bearer: Option<String>,
    body: Option<String>,
    /// Streamed: the latency is to the first `data:` bytes, and the stream must end in `[DONE]`.
    stream: bool,
}

fn chat(url: String, bearer: Option<String>, model: &str, stream: bool) -> Load {
    let mut body = json!({ "model": model, "messages": [{ "role": "user", "content": PROMPT }] });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    Load { method: Method::POST, url, bearer, body: Some(body.to_string()), stream }
}

struct Run {
    errors: u64,
    /// To the whole answer, or a stream's first `data:` bytes.
    latencies_us: Vec<u64>,
    /// To a stream's `[DONE]` (the whole answer for a non-streamed call).
    totals_us: Vec<u64>,
    elapsed: Duration,
    /// CPU time the server used in the run (user and system, all threads).
    server_cpu: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// One call: microseconds to its answer (a stream's first `data:` bytes) and to its end, or
/// `None` if it failed.
async fn call(client: &reqwest::Client, load: &Load) -> Option<(u64, u64)> {
    let mut request = client.request(load.method.clone(), &load.url);
    if let Some(bearer) = &load.bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = &load.body {
        request = request.header("content-type", "application/json").body(body.clone());
    }
    let started = Instant::now();
    let mut response = request.send().await.ok()?;
    if response.status() != StatusCode::OK {
        let _ = response.bytes().await;
        return None;
    }
    if !load.stream {
        response.bytes().await.ok()?;
        let us = started.elapsed().as_micros() as u64;
        return Some((us, us));
    }
    let mut first = None;
    let mut tail = Vec::new();
    while let Some(bytes) = response.chunk().await.ok()? {
        if first.is_none() && bytes.windows(5).any(|w| w == b"data:") {
            first = Some(started.elapsed().as_micros() as u64);
        }
        tail.extend_from_slice(&bytes);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    let done = tail.windows(12).any(|w| w == b"data: [DONE]");
    if done { first.map(|first| (first, started.elapsed().as_micros() as u64)) } else { None }
}

/// Sends `load` from `concurrency` workers, each with its own keep-alive connection, for `seconds`;
/// `server` is the server's process id, whose CPU time is read before and after.
async fn drive(load: Arc<Load>, concurrency: usize, seconds: u64, server: u32) -> Run {
    let cpu_before = common::cpu_time(server);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let load = load.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            // No cap on idle connections: a call made as soon as a stream ended can find its
            // connection not yet back in the pool and open another; capped at one, the spare
            // would be closed again each time, and every such call would pay a connect.
            let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
            let mut latencies = Vec::with_capacity(100_000);
            let mut totals = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                match call(&client, &load).await {
                    Some((first, total)) => {
                        latencies.push(first);
                        totals.push(total);
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (latencies, totals)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies_us, mut totals_us) = (Vec::new(), Vec::new());
    for task in tasks {
        let (latencies, totals) = task.await.expect("task");
        latencies_us.extend(latencies);
        totals_us.extend(totals);
    }
    let elapsed = started.elapsed();
    let server_cpu = common::cpu_time(server).saturating_sub(cpu_before);
    latencies_us.sort_unstable();
    totals_us.sort_unstable();
    Run { errors: errors.load(Ordering::Relaxed), latencies_us, totals_us, elapsed, server_cpu }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Several runs of one kind of call, taken together.
#[derive(Default)]
struct Pooled {
    latencies_us: Vec<u64>,
    totals_us: Vec<u64>,
    seconds: f64,
    errors: u64,
    runs: Vec<f64>,
    server_cpu: Duration,
}

impl Pooled {
    fn add(&mut self, run: Run) {
        self.runs.push(percentile(&run.latencies_us, 0.50));
        self.seconds += run.elapsed.as_secs_f64();
        self.errors += run.errors;
        self.server_cpu += run.server_cpu;
        self.latencies_us.extend(run.latencies_us);
        self.latencies_us.sort_unstable();
        self.totals_us.extend(run.totals_us);
        self.totals_us.sort_unstable();
    }

    /// The server's CPU time per call, in microseconds.
    fn server_cpu_per_call(&self) -> f64 {
        self.server_cpu.as_micros() as f64 / self.latencies_us.len().max(1) as f64
    }

    fn p50(&self) -> f64 {
        percentile(&self.latencies_us, 0.50)
    }

    fn p99(&self) -> f64 {
        percentile(&self.latencies_us, 0.99)
    }

    fn per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds
    }

    fn run_p50s(&self) -> String {
        self.runs.iter().map(|p| format!("{p:.2}")).collect::<Vec<_>>().join(", ")
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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

/// Waits (at most 30 s) until the wallet holds nothing: every call's hold was captured or released.
async fn settled(client: &reqwest::Client, token: &str) -> Value {
    let mut balance = Value::Null;
    for _ in 0..300 {
        balance = client
            .get(url("/api/v1/credits/balance"))
            .bearer_auth(token)
            .send()
            .await
            .expect("balance")
            .json()
            .await
            .expect("balance json");
        if balance["held"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    balance
}

#[tokio::main]
async fn main() {
    let opts = options();
    let upstream = start_fake(opts.upstream_delay, opts.upstream_jitter);
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = common::fresh_database(&opts.db, dir.path(), "tollgate_gateway_bench").await;
    let mut server = start_server(&opts, &db_url, dir.path(), &upstream);
    let client = reqwest::Client::new();
    common::wait_ready(&client, PORT).await;
    let (token, key) = seed(&client).await;

    let direct = |stream| Arc::new(chat(format!("{upstream}/chat/completions"), None, UPSTREAM_MODEL, stream));
    let gateway =
        |model: &str, stream| Arc::new(chat(url("/gateway/v1/chat/completions"), Some(key.clone()), model, stream));
    let kinds = [
        ("non-streamed", direct(false), gateway(PRICED_MODEL, false)),
        ("streamed, first token", direct(true), gateway(PRICED_MODEL, true)),
    ];

    // Warm up: connections, the tokenizer's vocabulary, the database's caches.
    for (_, direct, gateway) in &kinds {
        for load in [direct, gateway] {
            let run = drive(load.clone(), opts.concurrency, 1, server.id()).await;
            assert!(!run.latencies_us.is_empty(), "no call succeeded while warming up ({} errors)", run.errors);
        }
    }

    let mut loads = Vec::new();
    eprintln!("load average before the runs: {}", load_average());
    for (name, direct, gateway) in &kinds {
        let (mut d, mut g) = (Pooled::default(), Pooled::default());
        for round in 0..opts.rounds {
            for (target, load, pooled) in [("direct", direct, &mut d), ("gateway", gateway, &mut g)] {
                let run = drive(load.clone(), opts.concurrency, opts.seconds, server.id()).await;
                eprintln!(
                    "{name}, {target}, round {}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, {} errors (load {})",
                    round + 1,
                    run.per_second(),
                    percentile(&run.latencies_us, 0.50),
                    percentile(&run.latencies_us, 0.99),
                    run.errors,
                    load_average(),
                );
                pooled.add(run);
            }
        }
        loads.push((*name, d, g));
    }

    let mut breakdown = Vec::new();
    if opts.breakdown {
        let parts = [
            ("gateway, free model (no hold, no capture)", gateway(FREE_MODEL, false)),
            (
                "GET /gateway/v1/models (API key, models read)",
                Arc::new(Load {
                    method: Method::GET,
                    url: url("/gateway/v1/models"),
                    bearer: Some(key.clone()),
                    body: None,
                    stream: false,
                }),
            ),
            (
                "GET /healthz (HTTP stack only)",
                Arc::new(Load { method: Method::GET, url: url("/healthz"), bearer: None, body: None, stream: false }),
            ),
        ];
        for (name, load) in parts {
            let mut pooled = Pooled::default();
            for _ in 0..opts.rounds {
                pooled.add(drive(load.clone(), opts.concurrency, opts.seconds, server.id()).await);
            }
            eprintln!("{name}: p50 {:.2} ms (load {})", pooled.p50(), load_average());
            breakdown.push((name, pooled));
        }
    }

    println!(
        "database: {} | {} concurrent calls | upstream answers after {} ± {} ms | {} rounds of {} s per target, alternating | load average after: {}",
        opts.db,
        opts.concurrency,
        opts.upstream_delay.as_millis(),
        opts.upstream_jitter.as_millis(),
        opts.rounds,
        opts.seconds,
        load_average()
    );
    println!();
    println!(
        "| call | direct calls/s | gateway calls/s | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | gateway p99 ms | added p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, d, g) in &loads {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            d.per_second(),
            g.per_second(),
            d.p50(),
            g.p50(),
            g.p50() - d.p50(),
            d.p99(),
            g.p99(),
            g.p99() - d.p99(),
            d.errors + g.errors,
        );
    }
    println!();
    for (name, d, g) in &loads {
        println!("p50 per run, {name}: direct {} | gateway {}", d.run_p50s(), g.run_p50s());
    }
    if let Some((_, d, g)) = loads.iter().find(|(name, ..)| name.starts_with("streamed")) {
        println!(
            "streamed, to [DONE]: direct p50 {:.2} ms, p99 {:.2} ms | gateway p50 {:.2} ms, p99 {:.2} ms",
            percentile(&d.totals_us, 0.50),
            percentile(&d.totals_us, 0.99),
            percentile(&g.totals_us, 0.50),
            percentile(&g.totals_us, 0.99),
        );
    }
    for (name, _, g) in &loads {
        println!("server CPU per gateway call, {name}: {:.0} µs", g.server_cpu_per_call());
    }
    if !breakdown.is_empty() {
        println!();
        println!("| same concurrency | calls/s | p50 ms | p99 ms | server CPU µs/call | errors |");
        println!("|---|---|---|---|---|---|");
        for (name, pooled) in &breakdown {
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.0} | {} |",
                pooled.per_second(),
                pooled.p50(),
                pooled.p99(),
                pooled.server_cpu_per_call(),
                pooled.errors
            );
        }
    }
    println!();
    println!("server peak memory (VmHWM): {:.1} MiB", peak_rss_mib(server.id()));

    let balance = settled(&client, &token).await;
    println!(
        "after the runs: balance {}, held {}",
        balance["balance"].as_i64().unwrap_or(-1),
        balance["held"].as_i64().unwrap_or(-1)
    );
    let conn = Database::connect(&db_url).await.expect("connect");
    let report =
        tollgate::credits::reconcile::reconcile(&conn, &tollgate::clock::Clock::system()).await.expect("reconcile");
    println!("reconcile: {}", if report.ok { "clean" } else { "VIOLATIONS" });
    if !report.ok {
        print!("{}", report.to_text());
    }
    let _ = server.kill();
    let _ = server.wait();
}
