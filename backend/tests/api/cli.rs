//! The operator's command line, run as the real binary: payment mode in production (audit #2),
//! bounded grants and a reconcile that cannot overflow (#8), and commands that never create a
//! database they were meant to read (#15).

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::{
    both, both_backends,
    helpers::{Backend, TestApp},
};

both_backends!(production_never_runs_the_sandbox_by_accident);
both!(grants_are_bounded_and_reconcile_sums_cannot_overflow);
both_backends!(commands_refuse_a_missing_database_and_name_the_one_they_use);
both_backends!(migrate_creates_a_fresh_database_with_a_pool_of_several_connections);

const JWT: &str = "cli-test-jwt-secret-0123456789-abcdefgh";

/// `tollgate ARGS` with only these variables, in `dir` (so no stray `.env` is read).
fn tollgate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .args(args)
        .env_clear()
        .current_dir(dir)
        .env("TOLLGATE_DATA_DIR", dir)
        .env("JWT_SECRET", JWT)
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs a command that should end by itself; one still running after 30 s (a server that
/// started when it should have refused to) is killed and reported as such.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = tollgate(dir, args, env).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let Output { stderr, .. } = child.wait_with_output().unwrap();
            panic!("`tollgate {}` kept running: {}", args.join(" "), String::from_utf8_lossy(&stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn database(backend: Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}?mode=rwc", dir.join("cli.db").display())),
        Backend::Postgres => crate::helpers::pg_database().await,
    }
}

/// Audit #2: with `TOLLGATE_ENV=production` and no Stripe key the server refuses to start unless
/// `PAYMENTS=sandbox` asks for the sandbox; contradictory settings are refused too.
async fn production_never_runs_the_sandbox_by_accident(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else { return };
    let bind = format!("127.0.0.1:{}", free_port());
    let base = [("TOLLGATE_ENV", "production"), ("DATABASE_URL", url.as_str()), ("BIND", bind.as_str())];

    let (code, _, stderr) = run(dir.path(), &["serve"], &base);
    assert_ne!(code, 0, "production without Stripe keys must not start: {stderr}");
    assert!(stderr.contains("PAYMENTS") && stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");

    let with = |extra: &[(&'static str, &'static str)]| [base.as_slice(), extra].concat();
    let (code, _, stderr) =
        run(dir.path(), &["serve"], &with(&[("PAYMENTS", "sandbox"), ("STRIPE_SECRET_KEY", "sk_test_x")]));
    assert_ne!(code, 0);
    assert!(stderr.contains("PAYMENTS"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["serve"], &with(&[("PAYMENTS", "stripe")]));
    assert_ne!(code, 0);
    assert!(stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");

    // Asked for explicitly, the sandbox runs, and says so.
    let mut child = tollgate(dir.path(), &["serve"], &with(&[("PAYMENTS", "sandbox")])).spawn().unwrap();
    let client = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..200 {
        if let Ok(res) = client.get(format!("http://{bind}/readyz")).send().await
            && res.status() == StatusCode::OK
        {
            ready = Some(res.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("PAYMENTS=sandbox starts in production");
    assert_eq!(ready["stripe_mode"], "sandbox", "{ready}");
}

/// Audit #8: `tollgate grant` has the API's bound, and reconcile still runs (and is clean) when
/// the books hold sums beyond a BIGINT, as rows written before the bound could make them.
async fn grants_are_bounded_and_reconcile_sums_cannot_overflow(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let a = app.user().await;
    let b = app.user().await;
    let env = [("DATABASE_URL", app.database_url.as_str())];
    let (code, _, stderr) =
        run(dir.path(), &["grant", "--email", &a.email, "--amount", "9000000000000000000", "--reason", "oops"], &env);
    assert_ne!(code, 0);
    assert!(stderr.contains("at most 1000000000000"), "{stderr}");
    assert_eq!(app.count("lots").await, 0);
    let (code, stdout, stderr) =
        run(dir.path(), &["grant", "--email", &a.email, "--amount", "1000000000000", "--reason", "max"], &env);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Two wallets of 6·10^18 each, as huge legacy grants would have left them: the grants
    // account's total (-1.2·10^19) is beyond any BIGINT.
    app.grant(&b, 5).await;
    let huge = 6_000_000_000_000_000_000_i64;
    for sql in [
        format!("UPDATE transfers SET amount = {huge} WHERE kind = 'grant'"),
        format!("UPDATE lots SET amount = {huge}, remaining = {huge}"),
        format!("UPDATE accounts SET balance = {huge} WHERE kind = 'wallet' AND balance > 0"),
    ] {
        app.db.execute_unprepared(&sql).await.unwrap();
    }
    app.assert_reconciled().await;
    let (code, stdout, stderr) = run(dir.path(), &["reconcile"], &env);
    assert_eq!(code, 0, "reconcile must run and be clean:\n{stdout}{stderr}");
}

/// Audit #15: run from the wrong folder, a command other than `serve` and `migrate` refuses the
/// missing database instead of creating an empty one (where reconcile would find nothing wrong),
/// and every command says which database it used.
async fn commands_refuse_a_missing_database_and_name_the_one_they_use(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("elsewhere").join("tollgate.db");
    let missing_url = format!("sqlite://{}?mode=rwc", missing.display());
    for args in [
        vec!["reconcile"],
        vec!["expire"],
        vec!["grant", "--email", "ada@example.com", "--amount", "5", "--reason", "r"],
        vec!["users", "promote", "ada@example.com"],
        vec!["sandbox", "renew"],
    ] {
        let (code, _, stderr) = run(dir.path(), &args, &[("DATABASE_URL", &missing_url)]);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(stderr.contains(&missing.display().to_string()), "{args:?} names the path: {stderr}");
        assert!(!missing.exists(), "{args:?} created the database");
        assert!(!missing.parent().unwrap().exists(), "{args:?} created the folder");
    }
    // The default database, from a folder that has none.
    let (code, _, stderr) = run(dir.path(), &["reconcile"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("tollgate.db"), "{stderr}");
    assert!(!dir.path().join("tollgate.db").exists());

    let Some(url) = database(backend, dir.path()).await else { return };
    if backend == Backend::Postgres {
        // An empty PostgreSQL database is not a Tollgate database either.
        let empty = format!("{}_empty", url.rsplit('/').next().unwrap());
        let admin = Database::connect("postgres://postgres@127.0.0.1:5432/postgres").await.unwrap();
        admin.execute_unprepared(&format!("CREATE DATABASE \"{empty}\"")).await.unwrap();
        let empty_url = format!("postgres://postgres@127.0.0.1:5432/{empty}");
        let (code, _, stderr) = run(dir.path(), &["reconcile"], &[("DATABASE_URL", &empty_url)]);
        assert_ne!(code, 0);
        assert!(stderr.contains("not a Tollgate database") && stderr.contains(&empty), "{stderr}");
        admin.execute_unprepared(&format!("DROP DATABASE \"{empty}\" WITH (FORCE)")).await.unwrap();
    }
    // `migrate` creates it, and then every command works on it and names it.
    let (code, stdout, stderr) = run(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let named = if backend == Backend::Sqlite {
        dir.path().join("cli.db").display().to_string()
    } else {
        url.rsplit('/').next().unwrap().to_owned()
    };
    assert!(stdout.contains(&named), "{stdout}");
    let (code, stdout, stderr) = run(dir.path(), &["reconcile", "--json"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains(&named), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout stays the JSON report");
    assert_eq!(report["ok"], json!(true));
}

/// `tollgate migrate` on a fresh database with `DATABASE_MAX_CONNECTIONS` above 1: on SQLite the
/// migrations' statements went to different connections of the pool, and one saw the schema
/// before another's change ("index idx_lots_account already exists").
async fn migrate_creates_a_fresh_database_with_a_pool_of_several_connections(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else { return };
    let (code, stdout, stderr) =
        run(dir.path(), &["migrate"], &[("DATABASE_URL", &url), ("DATABASE_MAX_CONNECTIONS", "4")]);
    assert_eq!(code, 0, "migrate failed: {stderr}");
    assert!(stdout.contains("migrations applied"), "{stdout}");
    // And it is a working database: a command that reads it runs.
    let (code, _, stderr) =
        run(dir.path(), &["reconcile"], &[("DATABASE_URL", &url), ("DATABASE_MAX_CONNECTIONS", "4")]);
    assert_eq!(code, 0, "reconcile on the migrated database: {stderr}");
}
