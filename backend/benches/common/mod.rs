//! What every benchmark does the same way: a fresh database, and waiting for the server.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};

/// A fresh database: for `postgres`, `name` dropped and created again on 127.0.0.1:5432, for
/// anything else a SQLite file `bench.db` in `dir`. Returns its URL.
///
/// `BENCH_PG_SOCKET=<dir>`: the URL reaches PostgreSQL through that socket directory instead of
/// TCP. `BENCH_PG_SYNCHRONOUS_COMMIT=on|off|local`: the database's commits wait for the WAL to
/// reach the disk or not (to see how much of the time is the disk's).
pub async fn fresh_database(kind: &str, dir: &std::path::Path, name: &str) -> String {
    if kind != "postgres" {
        return format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    }
    let admin = Database::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("postgres");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create");
    if let Ok(value) = std::env::var("BENCH_PG_SYNCHRONOUS_COMMIT") {
        assert!(["on", "off", "local"].contains(&value.as_str()), "BENCH_PG_SYNCHRONOUS_COMMIT: on, off or local");
        admin
            .execute_unprepared(&format!("ALTER DATABASE {name} SET synchronous_commit = {value}"))
            .await
            .expect("synchronous_commit");
    }
    match std::env::var("BENCH_PG_SOCKET") {
        Ok(socket) => format!("postgres://postgres@localhost/{name}?host={socket}"),
        Err(_) => format!("postgres://postgres@127.0.0.1:5432/{name}"),
    }
}

/// Waits (at most 30 s) until the server on `port` answers `GET /readyz` with a success.
pub async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        if let Ok(res) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && res.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// A process's CPU time so far, all threads, user and system (from `/proc`, in clock ticks of
/// 10 ms).
#[allow(dead_code)]
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which is in parentheses: utime and stime are the
    // 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// The CPU time of every PostgreSQL process on this machine so far (its backends, the WAL writer,
/// the checkpointer...). A backend that exits between two readings takes its time with it, so
/// this is for runs over a pool's long-lived connections.
#[allow(dead_code)]
pub fn postgres_cpu_time() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .map(cpu_time)
        .sum()
}
