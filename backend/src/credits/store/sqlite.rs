//! SQLite's ledger SQL. The transaction holds the database's write lock from its first statement
//! (`BEGIN IMMEDIATE`), which serialises every writer, so the reads need no row locks.
//!
//! Every statement sent through the pool is a trip to the thread that owns the SQLite connection
//! and back, a wake-up on each side, which on two busy cores costs more than the statement
//! itself. So a batch takes the pool's connection and makes three trips: `BEGIN IMMEDIATE` with
//! every read, as one prepared multi-statement text; every write, likewise; `COMMIT`. Values are
//! bound (sqlx binds `?NNN` parameters across the statements of one text), so the texts are
//! fixed and prepared once per connection. A caller with a transaction of its own (Stripe's
//! webhooks) runs the same texts through it, one statement at a time.
//!
//! sqlx marks `fetch_many` (several statements in one prepared text) deprecated: it means to
//! leave that to `raw_sql`, which binds nothing. Until a release removes it, it is the one way to
//! send bound statements in one trip; without it each statement becomes a trip of its own.

use std::{collections::HashMap, sync::LazyLock};

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, FromQueryResult, QueryResult, RuntimeErr, Statement,
    sqlx::{self, Either, Sqlite, SqlitePool, pool::PoolConnection},
};

use super::{Needs, PARTS, Rows, assemble, expect_rows, expired_from, read_params};
use crate::{
    credits::core::Snapshot,
    entities::{accounts, holds, idempotency_keys, lots},
};

/// The reads, each one statement; parameters: ? the users, ? now, ? the named holds, ? the
/// (scope, key) pairs, ? the references, ? the lots whose expiry a take-back needs.
const ACCOUNTS: &str = "SELECT * FROM accounts WHERE user_id IN (SELECT unhex(value) FROM json_each(?)) ORDER BY id";
const LIVE_LOTS: &str = "SELECT l.* FROM accounts a JOIN lots l ON l.account_id = a.id \
    WHERE a.user_id IN (SELECT unhex(value) FROM json_each(?)) AND l.remaining > 0";
/// Two queries (a hold in both is read twice; `assemble` keeps one), not one with `OR`. The
/// wallets' open holds are read through the (wallet, status) index, named: left to itself SQLite
/// reads every open hold of every wallet through the status index, and with the status term
/// kept off the index (as it was) every hold the wallet ever had, captured ones included, so a
/// gateway wallet's batches slowed with its history. The guard of the holds' update in `WRITES`
/// stays off the status index.
const HOLDS: &str = "SELECT h.* FROM accounts a JOIN holds h INDEXED BY idx_holds_account_status ON h.account_id = a.id \
    WHERE a.user_id IN (SELECT unhex(value) FROM json_each(?)) \
      AND a.held > 0 AND h.status = 'open' AND +h.expires_at <= ? \
    UNION ALL SELECT h.* FROM holds h WHERE h.id IN (SELECT unhex(value) FROM json_each(?))";
const KEYS: &str = "SELECT k.* FROM jsonb_each(?) AS j \
    JOIN idempotency_keys k ON k.scope = j.value ->> 0 AND k.key = j.value ->> 1";
const REFERENCES: &str = "SELECT reference FROM lots WHERE reference IN (SELECT value FROM json_each(?))";
const READ_PARAMS: [&[usize]; 5] = [&[0], &[0], &[0, 1, 2], &[3], &[4]];
const EXPIRED_PARAMS: &[usize] = &[5];
const EXPIRED: &str = "SELECT lot_id, CAST(SUM(amount) AS INTEGER) AS amount FROM transfers \
    WHERE kind = 'expiry' AND lot_id IS NOT NULL AND lot_id IN (SELECT unhex(value) FROM json_each(?)) \
    GROUP BY lot_id";

const READS: [&str; 5] = [ACCOUNTS, LIVE_LOTS, HOLDS, KEYS, REFERENCES];

/// `BEGIN IMMEDIATE` and the reads a batch always makes, as one text.
static BEGIN_AND_READ: LazyLock<String> = LazyLock::new(|| format!("BEGIN IMMEDIATE; {}", READS.join("; ")));

/// Every part of a journal, in `PARTS` order, each one statement with the indexes into
/// `Rows::params` (the nine parts' rows, then now) that its `?`s take, in order.
///
/// Rows are read with `jsonb_each`, not `json_each`: `json_each` hands each row (an object) on
/// as JSON text, which every `->>` then parses again (about a tenth of the SQLite thread's time
/// on the spend benchmark went to that); `jsonb_each` parses the array once and hands each row
/// on in SQLite's binary JSON, which `->>` reads as it is. What `->>` returns is the same.
const WRITES: [(&str, &[usize]); 9] = [
    (
        "INSERT INTO lots (id, account_id, source, amount, remaining, priority, expires_at, reference, transfer_id, \
                created_at) \
              SELECT unhex(value ->> 'id'), unhex(value ->> 'account_id'), value ->> 'source', value ->> 'amount', \
                value ->> 'remaining', value ->> 'priority', value ->> 'expires_at', value ->> 'reference', \
                unhex(value ->> 'transfer_id'), value ->> 'created_at' \
              FROM jsonb_each(?)",
        &[0],
    ),
    (
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after, \
                credit_balance_after, description, feature, quantity, metadata, idempotency_key, request_fingerprint, \
                hold_id, lot_id, reference, created_at) \
              SELECT unhex(value ->> 'id'), unhex(value ->> 'debit_account_id'), unhex(value ->> 'credit_account_id'), \
                value ->> 'amount', value ->> 'kind', value ->> 'debit_balance_after', value ->> 'credit_balance_after', \
                value ->> 'description', value ->> 'feature', value ->> 'quantity', value ->> 'metadata', \
                value ->> 'idempotency_key', value ->> 'request_fingerprint', unhex(value ->> 'hold_id'), \
                unhex(value ->> 'lot_id'), value ->> 'reference', ? \
              FROM jsonb_each(?)",
        &[9, 1],
    ),
    (
        "INSERT INTO transfer_lots (transfer_id, lot_id, amount) \
              SELECT unhex(value ->> 'transfer_id'), unhex(value ->> 'lot_id'), value ->> 'amount' FROM jsonb_each(?)",
        &[2],
    ),
    (
        "UPDATE lots SET remaining = x.after, expired_at = COALESCE(x.expired_at, lots.expired_at) \
              FROM (SELECT unhex(value ->> 'id') AS id, value ->> 'before' AS before, value ->> 'after' AS after, \
                      value ->> 'expired_at' AS expired_at FROM jsonb_each(?)) AS x \
              WHERE lots.id = x.id AND lots.remaining = x.before",
        &[3],
    ),
    (
        "INSERT INTO holds (id, account_id, amount, status, feature, quantity, description, metadata, captured_amount, \
                capture_transfer_id, expires_at, created_at, closed_at) \
              SELECT unhex(value ->> 'id'), unhex(value ->> 'account_id'), value ->> 'amount', value ->> 'status', \
                value ->> 'feature', value ->> 'quantity', value ->> 'description', value ->> 'metadata', \
                value ->> 'captured_amount', unhex(value ->> 'capture_transfer_id'), value ->> 'expires_at', \
                value ->> 'created_at', value ->> 'closed_at' \
              FROM jsonb_each(?)",
        &[4],
    ),
    (
        "UPDATE holds SET status = x.status, amount = x.amount, captured_amount = x.captured_amount, \
                capture_transfer_id = x.capture_transfer_id, closed_at = x.closed_at \
              FROM (SELECT unhex(value ->> 'id') AS id, value ->> 'before' AS before, value ->> 'amount' AS amount, \
                      value ->> 'status' AS status, value ->> 'captured_amount' AS captured_amount, \
                      unhex(value ->> 'capture_transfer_id') AS capture_transfer_id, value ->> 'closed_at' AS closed_at \
                    FROM jsonb_each(?)) AS x \
              WHERE holds.id = x.id AND +holds.status = 'open' AND holds.amount = x.before",
        &[5],
    ),
    (
        "UPDATE accounts SET balance = x.balance, held = x.held, debt = x.debt, updated_at = ? \
              FROM (SELECT unhex(value ->> 'id') AS id, value ->> 'balance' AS balance, value ->> 'held' AS held, \
                      value ->> 'debt' AS debt FROM jsonb_each(?)) AS x \
              WHERE accounts.id = x.id",
        &[9, 6],
    ),
    (
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at) \
              SELECT value ->> 'scope', value ->> 'key', value ->> 'fingerprint', value ->> 'status_code', \
                value ->> 'response', ? \
              FROM jsonb_each(?)",
        &[9, 7],
    ),
    (
        "INSERT INTO events (id, type, customer_id, data, created_at) \
              SELECT value ->> 'id', value ->> 'type', unhex(value ->> 'customer_id'), value ->> 'data', ? \
              FROM jsonb_each(?)",
        &[9, 8],
    ),
];

/// The parts a batch of spends writes: transfers, movements, lot updates, wallets, stored
/// answers, events.
const SPEND_PARTS: [usize; 6] = [1, 2, 3, 6, 7, 8];

/// A write's text and the order of its parameters: every part, or only a batch of spends' parts.
struct Write {
    text: String,
    params: Vec<usize>,
    parts: Vec<usize>,
}

impl Write {
    fn of(parts: &[usize]) -> Self {
        let text = parts.iter().map(|&p| WRITES[p].0).collect::<Vec<_>>().join("; ");
        let params = parts.iter().flat_map(|&p| WRITES[p].1.iter().copied()).collect();
        Self { text, params, parts: parts.to_vec() }
    }
}

static WRITE_ALL: LazyLock<Write> = LazyLock::new(|| Write::of(&[0, 1, 2, 3, 4, 5, 6, 7, 8]));
static WRITE_SPENDS: LazyLock<Write> = LazyLock::new(|| Write::of(&SPEND_PARTS));

fn write_for(rows: &Rows) -> &'static Write {
    if rows.spends_only() { &WRITE_SPENDS } else { &WRITE_ALL }
}

fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// The values a text binds, in the order of its `?`s.
fn in_order<'a>(params: &'a [String], order: &[usize]) -> Vec<&'a str> {
    order.iter().map(|&i| params[i].as_str()).collect()
}

fn values(params: &[String], order: &[usize]) -> Vec<sea_orm::Value> {
    in_order(params, order).into_iter().map(|v| sea_orm::Value::from(v.to_owned())).collect()
}

/// Reads what the batch needs inside the caller's transaction, one statement at a time.
pub async fn read(txn: &DatabaseTransaction, needs: &Needs, now: DateTime<Utc>) -> Result<Snapshot, DbErr> {
    let params = read_params(needs, now, DbBackend::Sqlite);
    let mut sets = Vec::with_capacity(READS.len());
    for (sql, order) in READS.into_iter().zip(READ_PARAMS) {
        sets.push(txn.query_all_raw(statement(sql, values(&params, order))).await?);
    }
    let mut snapshot = snapshot(&sets)?;
    if !needs.expired_lots.is_empty() {
        let rows = txn.query_all_raw(statement(EXPIRED, values(&params, EXPIRED_PARAMS))).await?;
        snapshot.expired_from = expired_from(rows)?;
    }
    Ok(snapshot)
}

/// The snapshot from the five reads' rows.
fn snapshot(sets: &[Vec<QueryResult>]) -> Result<Snapshot, DbErr> {
    fn models<M: FromQueryResult>(rows: &[QueryResult]) -> Result<Vec<M>, DbErr> {
        rows.iter().map(|r| M::from_query_result(r, "")).collect()
    }
    let [accounts, lots, holds, keys, references] = sets else {
        return Err(DbErr::Custom(format!("the ledger's reads returned {} result sets, not 5", sets.len())));
    };
    let keys: Vec<idempotency_keys::Model> = models(keys)?;
    Ok(Snapshot {
        wallets: assemble(
            models::<accounts::Model>(accounts)?,
            models::<lots::Model>(lots)?,
            models::<holds::Model>(holds)?,
        ),
        keys: keys.into_iter().map(|k| ((k.scope.clone(), k.key.clone()), k)).collect(),
        references: references.iter().map(|r| r.try_get_by_index::<String>(0)).collect::<Result<_, _>>()?,
        expired_from: HashMap::new(),
    })
}

/// Writes a journal inside the caller's transaction, as one call.
pub async fn write(txn: &DatabaseTransaction, rows: Rows) -> Result<(), DbErr> {
    let write = write_for(&rows);
    let written = txn.execute_raw(statement(&write.text, values(&rows.params, &write.params))).await?.rows_affected();
    expect_rows("rows", written, write.parts.iter().map(|&p| rows.expected[p]).sum())
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

/// A batch's transaction on the pool's connection. If it is dropped before it commits or rolls
/// back, the connection is closed (which rolls back) rather than returned to the pool inside a
/// transaction.
pub struct Session {
    conn: PoolConnection<Sqlite>,
    open: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl Session {
    /// Takes the pool's connection, begins, and reads what the batch needs: one trip. A batch
    /// with take-backs reads their lots' expiry in a second.
    pub async fn begin_and_read(
        pool: &SqlitePool,
        needs: &Needs,
        now: DateTime<Utc>,
    ) -> Result<(Self, Snapshot), DbErr> {
        let conn = pool.acquire().await.map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
        let mut session = Session { conn, open: false };
        let params = read_params(needs, now, DbBackend::Sqlite);
        // One result set per statement, in order: BEGIN's (empty), then the reads'.
        let mut sets: Vec<Vec<QueryResult>> = vec![Vec::new()];
        {
            let mut query = sqlx::query(BEGIN_AND_READ.as_str());
            for param in in_order(&params, &READ_PARAMS.concat()) {
                query = query.bind(param);
            }
            #[expect(deprecated, reason = "bound statements in one trip; see the module's note")]
            let mut stream = query.fetch_many(&mut *session.conn);
            while let Some(item) = stream.try_next().await.map_err(exec_err)? {
                match item {
                    Either::Left(_) => {
                        session.open = true;
                        sets.push(Vec::new());
                    }
                    Either::Right(row) => {
                        if let Some(set) = sets.last_mut() {
                            set.push(QueryResult::from(row));
                        }
                    }
                }
            }
        }
        // The last entry is the empty set opened after the last statement finished.
        sets.pop();
        let mut snapshot = snapshot(sets.get(1..).unwrap_or_default())?;
        if !needs.expired_lots.is_empty() {
            let mut query = sqlx::query(EXPIRED);
            for param in in_order(&params, EXPIRED_PARAMS) {
                query = query.bind(param);
            }
            let rows = query.fetch_all(&mut *session.conn).await.map_err(exec_err)?;
            snapshot.expired_from = expired_from(rows.into_iter().map(QueryResult::from))?;
        }
        Ok((session, snapshot))
    }

    /// Writes the journal (one trip), checking each part's rows.
    pub async fn write(&mut self, rows: Rows) -> Result<(), DbErr> {
        let write = write_for(&rows);
        let mut query = sqlx::query(write.text.as_str());
        for param in in_order(&rows.params, &write.params) {
            query = query.bind(param);
        }
        let mut parts = Vec::with_capacity(write.parts.len());
        {
            #[expect(deprecated, reason = "bound statements in one trip; see the module's note")]
            let mut stream = query.fetch_many(&mut *self.conn);
            while let Some(item) = stream.try_next().await.map_err(exec_err)? {
                if let Either::Left(done) = item {
                    parts.push(done.rows_affected());
                }
            }
        }
        if parts.len() != write.parts.len() {
            return Err(DbErr::Custom(format!(
                "the ledger's write ran {} statements, not {}",
                parts.len(),
                write.parts.len()
            )));
        }
        for (&part, written) in write.parts.iter().zip(parts) {
            expect_rows(PARTS[part], written, rows.expected[part])?;
        }
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), DbErr> {
        sqlx::query("COMMIT").execute(&mut *self.conn).await.map_err(exec_err)?;
        self.open = false;
        Ok(())
    }

    /// Undoes whatever was written. A connection that cannot even roll back is closed when dropped.
    pub async fn rollback(mut self) {
        if self.open && sqlx::query("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
            self.open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
    use tollgate_migrations::{Migrator, MigratorTrait};

    /// How SQLite runs a statement, one line per step.
    async fn plan(sql: &str, values: Vec<sea_orm::Value>) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("plan.db").display());
        let db = Database::connect(&url).await.expect("connect");
        Migrator::up(&db, None).await.expect("migrate");
        let explain = Statement::from_sql_and_values(DbBackend::Sqlite, format!("EXPLAIN QUERY PLAN {sql}"), values);
        let rows = db.query_all_raw(explain).await.expect("explain");
        rows.iter().map(|r| r.try_get::<String>("", "detail").expect("detail")).collect()
    }

    /// A customer's events are read, and purged, by key: through `customer_events`' key and the
    /// log's seq, never by a scan of either.
    #[tokio::test]
    async fn a_customers_events_are_read_and_purged_by_key() {
        let id: sea_orm::Value = uuid::Uuid::nil().into();
        let read = plan(crate::events::SQLITE_CUSTOMER_SEQS, vec![id, 0i64.into(), 10i64.into()]).await;
        assert!(
            read.iter().any(|s| s.contains("customer_events USING PRIMARY KEY (customer_id=? AND seq>?)")),
            "{read:#?}"
        );
        assert!(read.iter().any(|s| s.contains("events USING INTEGER PRIMARY KEY (rowid>?)")), "{read:#?}");
        let purge = plan(crate::events::SQLITE_PURGE_CUSTOMER_EVENTS, vec!["evt_".into()]).await;
        assert!(
            purge.iter().any(|s| s.contains("customer_events USING PRIMARY KEY (customer_id=? AND seq=?)")),
            "{purge:#?}"
        );
        for plan in [read, purge] {
            assert!(
                !plan.iter().any(|s| s.starts_with("SCAN customer_events") || s.starts_with("SCAN events")),
                "{plan:#?}"
            );
        }
    }

    #[tokio::test]
    async fn a_batch_reads_only_its_wallets_open_holds() {
        let plan = plan(super::HOLDS, vec!["[]".into(), "2026-01-01".into(), "[]".into()]).await;
        assert!(
            plan.iter().any(|step| step.contains("idx_holds_account_status (account_id=? AND status=?)")),
            "the wallets' open holds are not read by wallet and status: {plan:#?}"
        );
        assert!(!plan.iter().any(|step| step.contains("idx_holds_status_expires")), "{plan:#?}");
    }
}
