//! The one way credits are written: read (locking the wallets), judge in the core, write the
//! journal, commit. [`apply`] owns the transaction: it begins, commits, and runs the batch again
//! when a racing writer committed one of its keys or references first (the second run replays
//! that answer). [`apply_in`] runs inside a caller's transaction (Stripe's webhooks, which record
//! the event in the same one).

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

use super::{
    core::{self, Command, Verdict},
    store::{self, Needs, Rows, sqlite::Session},
};
use crate::{clock::Clock, db};

/// How often a batch runs again after losing a race for a key or a reference.
const ATTEMPTS: usize = 3;

/// Judges and writes `commands` in one transaction of their own and commits it. Returns one
/// verdict per command, in order; an error means nothing was committed.
pub async fn apply(db: &DatabaseConnection, clock: &Clock, commands: &[Command]) -> Result<Vec<Verdict>, DbErr> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let now = clock.now();
        let result = match db::backend(db) {
            DbBackend::Sqlite => apply_sqlite(db, commands, now).await,
            _ => apply_postgres(db, commands, now).await,
        };
        match result {
            // A racing writer committed one of the batch's keys or references first.
            Err(e) if db::is_unique_violation(&e) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| DbErr::Custom("the ledger write did not settle".to_owned())))
}

/// Judges and writes `commands` inside `txn`, a writing transaction (`db::begin_write`); nothing
/// is committed, and on an error the caller must roll back.
pub async fn apply_in(
    txn: &DatabaseTransaction,
    commands: &[Command],
    now: DateTime<Utc>,
) -> Result<Vec<Verdict>, DbErr> {
    let snapshot = store::read(txn, commands, now).await?;
    let (verdicts, journal) = core::judge(snapshot, commands, now);
    store::write(txn, &journal, now).await?;
    Ok(verdicts)
}

async fn apply_postgres(
    db: &DatabaseConnection,
    commands: &[Command],
    now: DateTime<Utc>,
) -> Result<Vec<Verdict>, DbErr> {
    let txn = db::begin_write(db).await?;
    let verdicts = apply_in(&txn, commands, now).await?;
    txn.commit().await?;
    Ok(verdicts)
}

/// SQLite: the batch in three trips to the connection's thread (see `store::sqlite`).
async fn apply_sqlite(
    db: &DatabaseConnection,
    commands: &[Command],
    now: DateTime<Utc>,
) -> Result<Vec<Verdict>, DbErr> {
    let (mut session, snapshot) =
        Session::begin_and_read(db.get_sqlite_connection_pool(), &Needs::of(commands), now).await?;
    let (verdicts, journal) = core::judge(snapshot, commands, now);
    if !journal.is_empty()
        && let Err(e) = session.write(Rows::of(&journal, now, DbBackend::Sqlite)).await
    {
        session.rollback().await;
        return Err(e);
    }
    session.commit().await?;
    Ok(verdicts)
}
