//! SQLite's write-ahead log under writes that never pause.
//!
//! A test binary of its own: what it checks depends on the background checkpointer getting the
//! CPU in time, which the API tests running beside it (servers, dispatchers, streams) took away on
//! a 2-core machine. Cargo runs test binaries one after another, so here it runs alone.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, reason = "a test that cannot unwrap should fail loudly")]
#![allow(dead_code, unused_macros, reason = "only test_settings of the shared helpers is used here")]

#[path = "api/helpers.rs"]
mod helpers;

use sea_orm::ConnectionTrait;
use tollgate::db::{self, WalRestart};

use crate::helpers::test_settings;

/// A WAL frame: a page and its 24-byte header.
const FRAME: u64 = 4096 + 24;

/// The log starts over from its first page only when a writer begins while all of it has been
/// copied into the database file, a moment steady writes never leave the background checkpointer.
/// The checkpointer therefore asks the writer to finish the copy between two transactions
/// (`WalRestart`). Without that the log grows to the writer's own checkpoint limit (10,000 pages),
/// where a commit pays for copying and syncing it while every spend waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wal.db").display());
    let settings = test_settings(url, dir.path().to_path_buf());
    let conn = db::connect(&settings).await.unwrap();
    conn.execute_unprepared(
        "CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO filler (id, body) SELECT i, randomblob(3000) FROM n;",
    )
    .await
    .unwrap();
    let restart = WalRestart::default();
    let checkpointer = tokio::spawn(db::checkpoint_sqlite(settings.clone(), restart.clone()));

    // 25,000 pages written, 20 random rows (a page each) per transaction, with no pause between
    // them but the writer's own turn to finish a checkpoint.
    let mut turns = 0;
    for _ in 0..1250 {
        let txn = db::begin_write(&conn).await.unwrap();
        txn.execute_unprepared(
            "UPDATE filler SET body = randomblob(3000) \
             WHERE id IN (SELECT 1 + abs(random()) % 2000 FROM filler LIMIT 20)",
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        if restart.finish_if_asked(&conn).await {
            turns += 1;
        }
    }
    checkpointer.abort();

    let wal = std::fs::metadata(dir.path().join("wal.db-wal")).unwrap().len() / FRAME;
    assert!(turns > 0, "the checkpointer never asked the writer to finish a checkpoint");
    assert!(wal < 8_000, "the WAL grew to {wal} pages: it did not start over before the writer's own limit");
}
