//! Connecting to the database, migrating it, and opening transactions that write.
//!
//! SQLite is opened in WAL mode with foreign keys on, a busy timeout and the configured
//! `synchronous` level. A writing transaction on SQLite takes the write lock when it begins
//! (`BEGIN IMMEDIATE`), so two writers never both read and then fail to upgrade; on PostgreSQL the
//! same transaction is a plain `BEGIN`, and the services lock the rows they change.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqlErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tollgate_migrations::{Migrator, MigratorTrait};

use crate::config::Settings;

/// Opens the pool described by the settings, creating the SQLite file if it is missing (what
/// `serve` and `migrate` do).
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    open(settings, true).await
}

/// Opens an existing Tollgate database: a missing SQLite file, or a database no migration has
/// ever run on, is an error naming it, never a new empty database (which would, for example,
/// let `reconcile` report clean books from the wrong folder).
pub async fn connect_existing(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_path(&settings.database_url)
        && !path.exists()
    {
        return Err(DbErr::Custom(format!(
            "no database at {}: run `tollgate migrate` (or `tollgate serve`) to create it, or point DATABASE_URL \
             or TOLLGATE_DATA_DIR at the existing one",
            absolute(&path).display()
        )));
    }
    let db = open(settings, false).await?;
    let initialised = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT 1 FROM seaql_migrations LIMIT 1",
        ))
        .await;
    if initialised.is_err() {
        return Err(DbErr::Custom(format!(
            "{} is not a Tollgate database (no migration was ever applied): run `tollgate migrate` first",
            describe(settings)
        )));
    }
    Ok(db)
}

/// Which database the settings name, for the operator: the SQLite file's absolute path, or the
/// PostgreSQL host and database (never the password).
pub fn describe(settings: &Settings) -> String {
    if let Some(path) = sqlite_path(&settings.database_url) {
        return format!("SQLite database {}", absolute(&path).display());
    }
    let url = &settings.database_url;
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let host_and_db = rest.rsplit_once('@').map(|(_, after)| after).unwrap_or(rest);
    let host_and_db = host_and_db.split('?').next().unwrap_or(host_and_db);
    format!("PostgreSQL database {host_and_db}")
}

/// The file of a SQLite URL; `None` for PostgreSQL or an in-memory database.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

async fn open(settings: &Settings, create: bool) -> Result<DatabaseConnection, DbErr> {
    let url = &settings.database_url;
    if settings.is_sqlite() && create {
        ensure_sqlite_parent_dir(url);
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(settings.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(settings.database_acquire_timeout)
        .sqlx_logging(false);
    if settings.is_sqlite() {
        // SQLite runs in the process: a connection cannot be dropped by a server or a network,
        // and a ping before every use is a trip to the connection's thread for nothing.
        options.test_before_acquire(false);
        let synchronous = settings.sqlite_synchronous.as_str();
        options.map_sqlx_sqlite_opts(move |opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            let sync = match synchronous {
                "OFF" => SqliteSynchronous::Off,
                "NORMAL" => SqliteSynchronous::Normal,
                "EXTRA" => SqliteSynchronous::Extra,
                _ => SqliteSynchronous::Full,
            };
            opts.journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                .synchronous(sync)
                .create_if_missing(create)
                .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT.to_string())
        });
    } else {
        // No statement may hold a wallet's row lock for long.
        options.statement_timeout(Duration::from_secs(30));
        // A connection in steady use is known to be alive; one idle for a while is pinged before
        // use (a restarted server or a proxy may have dropped it), not every connection every time.
        options.test_before_acquire_if_idle_for(Duration::from_secs(1));
    }
    Database::connect(options).await
}

/// SQLite: WAL pages after which the committing writer checkpoints the log itself. The server
/// checkpoints in the background (`checkpoint_sqlite`) long before; this bounds the log (about
/// 40 MB) when nothing else does, as for the command line's one-off commands.
const SQLITE_WAL_AUTOCHECKPOINT: u32 = 10_000;

/// How often the server's background checkpointer runs.
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL pages after which the background checkpointer asks the writer to let the log start over
/// (see `WalRestart`): about 16 MB.
const SQLITE_WAL_RESTART_PAGES: i64 = 4_000;

/// SQLite: the background checkpointer's request that the writer let the WAL start over.
///
/// A log starts over from its first page only when a writer begins while every page of it has
/// been copied into the database file. Under steady load the background checkpointer never sees
/// that moment: by the time it has copied the log, the writer has committed more. The log then
/// grows until a commit crosses `SQLITE_WAL_AUTOCHECKPOINT` and that writer checkpoints it
/// itself, fsyncing 100 ms of the database file's writes while every spend waits (under load it
/// was the spread benchmark's whole p99; see docs/performance.md). So once the log is long, the
/// checkpointer copies it (twice, the second pass catching up with what came meanwhile) and
/// raises this flag; the spend writer, between two batches, checkpoints the few pages left (a
/// short fsync, as the checkpointer has synced the rest), and its next batch starts the log over.
#[derive(Clone, Default)]
pub struct WalRestart(Arc<AtomicBool>);

impl WalRestart {
    /// The writer, after a commit: checkpoints what is left of a long log when asked to, and says
    /// whether it was. Does nothing otherwise, and nothing on PostgreSQL.
    pub async fn finish_if_asked(&self, db: &DatabaseConnection) -> bool {
        if !self.0.swap(false, Ordering::AcqRel) {
            return false;
        }
        if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
            log::warn!("SQLite checkpoint before restarting the WAL failed: {e}");
        }
        true
    }

    fn ask(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// SQLite: copies committed pages from the WAL into the database file, every
/// `SQLITE_CHECKPOINT_EVERY`, on a connection of its own, so that writers do not. SQLite's default
/// runs the checkpoint inside the commit that crosses 1,000 WAL pages: under load one spend batch
/// in a dozen paid for copying the last dozen batches' pages and an extra fsync, a large share of
/// SQLite's spend throughput (see docs/performance.md). A passive checkpoint waits for no reader or writer.
/// When the log is long, asks the writer to let it start over (`WalRestart`). Runs until
/// dropped; does nothing on PostgreSQL.
pub async fn checkpoint_sqlite(settings: Settings, restart: WalRestart) {
    if !settings.is_sqlite() {
        return;
    }
    let settings = Settings { database_max_connections: 1, ..settings };
    let db = match connect(&settings).await {
        Ok(db) => db,
        Err(e) => {
            log::warn!("SQLite checkpointer: cannot connect ({e}); writers will checkpoint the WAL themselves");
            return;
        }
    };
    let mut ticker = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match checkpoint_passive(&db).await {
            Ok(pages) if pages >= SQLITE_WAL_RESTART_PAGES => {
                if let Err(e) = checkpoint_passive(&db).await {
                    log::warn!("SQLite checkpoint failed: {e}");
                }
                restart.ask();
            }
            Ok(_) => {}
            Err(e) => log::warn!("SQLite checkpoint failed: {e}"),
        }
    }
}

/// SQLite: whether the query planner's stability guarantee is on (the bundled SQLite built with
/// `SQLITE_ENABLE_QPSG`, as `.cargo/config.toml` asks). Without it a statement whose plan may
/// depend on a bound value, such as sea-orm's `LIMIT ?` on every `.one()`, is compiled again each
/// time it runs: 5% of the server's CPU on the gateway benchmark (docs/performance.md, session 14).
pub async fn sqlite_plans_are_stable(db: &DatabaseConnection) -> Result<bool, DbErr> {
    let rows = db.query_all_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "PRAGMA compile_options")).await?;
    Ok(rows.iter().any(|row| row.try_get_by_index::<String>(0).is_ok_and(|option| option == "ENABLE_QPSG")))
}

/// One passive checkpoint; returns the WAL's length in pages.
async fn checkpoint_passive(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row =
        db.query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "PRAGMA wal_checkpoint(PASSIVE)")).await?;
    Ok(match row {
        Some(row) => row.try_get_by_index::<i64>(1)?,
        None => 0,
    })
}

/// `sqlite://./data/x.db?mode=rwc` cannot create `./data` by itself.
fn ensure_sqlite_parent_dir(url: &str) {
    let Some(path) = sqlite_path(url) else { return };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

/// Applies every pending migration. On a SQLite file they run on a connection of their own: with
/// a pool of several, one statement could run on a connection that had not yet seen the schema
/// change of the one before ("index idx_lots_account already exists" on a fresh database).
pub async fn migrate(db: &DatabaseConnection, settings: &Settings) -> Result<(), DbErr> {
    if settings.is_sqlite() && settings.database_max_connections > 1 && sqlite_path(&settings.database_url).is_some() {
        let single = Settings { database_max_connections: 1, ..settings.clone() };
        let own = open(&single, true).await?;
        let applied = Migrator::up(&own, None).await;
        own.close().await?;
        return applied;
    }
    Migrator::up(db, None).await
}

/// Begins a transaction that will write: `BEGIN IMMEDIATE` on SQLite, `BEGIN` on PostgreSQL.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// True when the error is a unique-constraint violation (a racing writer got there first).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Accepts a unique violation as success: for writes where a racing writer (another replica, an
/// idempotent retry) inserting the same row first is the expected outcome.
pub fn tolerate_duplicate<T>(result: Result<T, DbErr>) -> Result<(), DbErr> {
    match result {
        Err(e) if is_unique_violation(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// True when the error says the database could not be reached at all: told by the error's kind
/// and, for errors the server sent, by SQLSTATE (class 08, connection exceptions; 57P01 to 57P03,
/// shutting down or starting up), never by its text.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx::Error};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
            Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")),
            _ => false,
        },
        _ => false,
    }
}

/// Checks the database answers a trivial query.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// The backend in use, for the few queries that differ.
pub fn backend(db: &impl ConnectionTrait) -> DbBackend {
    db.get_database_backend()
}
