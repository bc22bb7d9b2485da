//! Many spends in one transaction, read in bulk, decided in memory, written in bulk.
//!
//! A batch of spends costs a fixed number of round trips, whatever its size: one statement that
//! locks every wallet the batch names (in account-id order, so two batches never wait on each
//! other in a cycle), one for their lots, one for overdue holds when a wallet has held credits,
//! one for the idempotency records, and one call that writes everything (the lots, the
//! transfers, the lots each transfer took from, the wallets, the idempotency records). Between
//! the reads and the writes the spends are judged one after another, in the order given, against
//! the wallets as the earlier spends of the batch left them: each gets the answer it would have
//! had alone, in that order.
//!
//! The judging is the same code on both databases; the statements differ. On SQLite the
//! transaction holds the database's write lock from its first statement (`BEGIN IMMEDIATE`), and
//! a batch makes three trips to the connection's thread (see `sqlite`): the begin with every
//! read, the writes as one multi-statement call, the commit. On PostgreSQL the wallets' row locks
//! serialise the batch against every other writer of those wallets, and each statement has one fixed text
//! with JSON parameters (prepared and planned once per connection), the writes being one
//! data-modifying statement.
//!
//! A spend whose wallet has something to settle first (a lot past its expiry with credits left,
//! or an open hold past its time) is not judged here: the caller runs it alone, after the batch,
//! through the general path that posts the expiry. So is every other spend of that wallet in the
//! batch, so that they keep their order.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{
    dto::{SpendResponse, TransferView, WalletBalance},
    ledger::{self, LotMovement},
    service::{self, Outcome, PricedSpend, SpendResult},
};
use crate::{
    db,
    entities::{accounts, holds, idempotency_keys, lots, transfers},
    idempotency::{self, IdempotentRequest, Lookup},
};

/// One spend of a batch.
pub struct Spend<'a> {
    pub user_id: Uuid,
    pub request: &'a IdempotentRequest,
    pub spend: &'a PricedSpend,
}

/// A wallet as the batch has left it so far, with its live lots in spend order.
struct Wallet {
    account: accounts::Model,
    lots: Vec<lots::Model>,
    /// Something to settle first: every spend of this wallet runs alone.
    settle: bool,
    changed: bool,
}

/// What the batch writes when it is done judging.
#[derive(Default)]
struct Writes {
    /// What each lot gave, summed over the batch.
    taken: HashMap<Uuid, i64>,
    transfers: Vec<transfers::Model>,
    movements: Vec<(Uuid, LotMovement)>,
    keys: Vec<idempotency_keys::Model>,
}

/// Judges and writes `spends` inside `txn`, which must be a writing transaction (see
/// `db::begin_write`); nothing is committed. Returns one entry per spend, in order: its answer, or
/// `None` when it must run alone. An error means the transaction must be rolled back: some writes
/// may have happened.
pub async fn spend_all(
    txn: &DatabaseTransaction,
    spends: &[Spend<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Option<SpendResult>>, DbErr> {
    if spends.is_empty() {
        return Ok(Vec::new());
    }
    let mut wallets = read_wallets(txn, spends, now).await?;
    let mut stored = read_keys(txn, spends).await?;
    let (answers, writes) = judge_all(spends, &mut wallets, &mut stored, now)?;
    write(txn, &wallets, writes, now).await?;
    Ok(answers)
}

/// Judges the spends one after another, in order, against the wallets and records as the earlier
/// ones left them: their answers, and what the batch must write.
fn judge_all(
    spends: &[Spend<'_>],
    wallets: &mut HashMap<Uuid, Wallet>,
    stored: &mut HashMap<(String, String), idempotency_keys::Model>,
    now: DateTime<Utc>,
) -> Result<(Vec<Option<SpendResult>>, Writes), DbErr> {
    let mut writes = Writes::default();
    let mut answers = Vec::with_capacity(spends.len());
    for spend in spends {
        answers.push(judge(spend, wallets, stored, &mut writes, now)?);
    }
    Ok((answers, writes))
}

/// Judges and writes `spends` in one writing transaction of its own and commits it. Returns
/// what `spend_all` returns; on an error nothing was committed.
pub async fn spend_and_commit(
    db: &DatabaseConnection,
    spends: &[Spend<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Option<SpendResult>>, DbErr> {
    if spends.is_empty() {
        return Ok(Vec::new());
    }
    if db.get_database_backend() == DbBackend::Sqlite {
        return sqlite::spend_and_commit(db.get_sqlite_connection_pool(), spends, now).await;
    }
    let txn = db::begin_write(db).await?;
    let answers = spend_all(&txn, spends, now).await?;
    txn.commit().await?;
    Ok(answers)
}

/// Locks the batch's wallets in account-id order and reads their live lots; marks the wallets
/// with something to settle.
async fn read_wallets(
    txn: &DatabaseTransaction,
    spends: &[Spend<'_>],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Wallet>, DbErr> {
    let users: HashSet<Uuid> = spends.iter().map(|s| s.user_id).collect();
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let accounts = if postgres {
        pg::lock_wallets(txn, users).await?
    } else {
        accounts::Entity::find()
            .filter(accounts::Column::UserId.is_in(users))
            .order_by_asc(accounts::Column::Id)
            .all(txn)
            .await?
    };
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.id).collect();

    let live = if postgres {
        pg::live_lots(txn, &ids).await?
    } else {
        lots::Entity::find()
            .filter(lots::Column::AccountId.is_in(ids.iter().copied()))
            .filter(lots::Column::Remaining.gt(0))
            .all(txn)
            .await?
    };

    let holding: Vec<Uuid> = accounts.iter().filter(|a| a.held > 0).map(|a| a.id).collect();
    let overdue: HashSet<Uuid> = if holding.is_empty() {
        HashSet::new()
    } else {
        holds::Entity::find()
            .select_only()
            .column(holds::Column::AccountId)
            .filter(holds::Column::AccountId.is_in(holding))
            .filter(holds::Column::Status.eq(ledger::HoldStatus::Open.as_str()))
            .filter(holds::Column::ExpiresAt.lte(now))
            .into_tuple::<Uuid>()
            .all(txn)
            .await?
            .into_iter()
            .collect()
    };
    Ok(assemble_wallets(accounts, live, &overdue, now))
}

/// The batch's wallets by user, each with its live lots in spend order, from what was read.
fn assemble_wallets(
    accounts: Vec<accounts::Model>,
    live: Vec<lots::Model>,
    overdue: &HashSet<Uuid>,
    now: DateTime<Utc>,
) -> HashMap<Uuid, Wallet> {
    let mut lots_of: HashMap<Uuid, Vec<lots::Model>> = HashMap::new();
    for lot in live {
        lots_of.entry(lot.account_id).or_default().push(lot);
    }
    let mut wallets = HashMap::with_capacity(accounts.len());
    for account in accounts {
        let Some(user_id) = account.user_id else { continue };
        let mut lots = lots_of.remove(&account.id).unwrap_or_default();
        let expired = lots.iter().any(|lot| lot.expires_at.is_some_and(|at| at <= now));
        lots.sort_by(ledger::spend_order);
        let settle = expired || overdue.contains(&account.id);
        wallets.insert(user_id, Wallet { account, lots, settle, changed: false });
    }
    wallets
}

/// The stored idempotency records for the batch's keys, by scope and key. Read after the wallets
/// are locked: a spend's key is written only under its wallet's lock.
async fn read_keys(
    txn: &DatabaseTransaction,
    spends: &[Spend<'_>],
) -> Result<HashMap<(String, String), idempotency_keys::Model>, DbErr> {
    let wanted = wanted_keys(spends);
    let rows = if txn.get_database_backend() == DbBackend::Postgres {
        pg::stored_keys(txn, &wanted).await?
    } else {
        // Scope in the batch's scopes and key in its keys: one index scan, then only exact pairs.
        let scopes: HashSet<&str> = wanted.iter().map(|(scope, _)| *scope).collect();
        let keys: HashSet<&str> = wanted.iter().map(|(_, key)| *key).collect();
        idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::Scope.is_in(scopes))
            .filter(idempotency_keys::Column::Key.is_in(keys))
            .all(txn)
            .await?
    };
    Ok(index_keys(rows, &wanted))
}

/// The (scope, key) pairs the batch names.
fn wanted_keys<'a>(spends: &'a [Spend<'_>]) -> HashSet<(&'a str, &'a str)> {
    spends.iter().map(|s| (s.request.scope.as_str(), s.request.key.as_str())).collect()
}

/// The records read, by scope and key, keeping only the pairs the batch names.
fn index_keys(
    rows: Vec<idempotency_keys::Model>,
    wanted: &HashSet<(&str, &str)>,
) -> HashMap<(String, String), idempotency_keys::Model> {
    rows.into_iter()
        .filter(|row| wanted.contains(&(row.scope.as_str(), row.key.as_str())))
        .map(|row| ((row.scope.clone(), row.key.clone()), row))
        .collect()
}

/// One spend, against the wallets and records as the batch has left them. Records the writes of
/// a spend that goes through, and its answer as a record that later spends of the batch see.
fn judge(
    spend: &Spend<'_>,
    wallets: &mut HashMap<Uuid, Wallet>,
    stored: &mut HashMap<(String, String), idempotency_keys::Model>,
    writes: &mut Writes,
    now: DateTime<Utc>,
) -> Result<Option<SpendResult>, DbErr> {
    let Some(wallet) = wallets.get_mut(&spend.user_id) else {
        return Ok(Some(Err(service::CreditsError::WalletNotFound)));
    };
    let request = spend.request;
    let slot = (request.scope.clone(), request.key.as_str().to_owned());
    match idempotency::judge(request, stored.get(&slot).cloned()) {
        Lookup::New => {}
        Lookup::Replay(answer) => return Ok(Some(Ok(Outcome::Replayed(answer)))),
        Lookup::Mismatch => return Ok(Some(Err(service::CreditsError::IdempotencyKeyReused))),
    }
    if wallet.settle {
        return Ok(None);
    }
    if let Err(refused) = service::ensure_affordable(&wallet.account, spend.spend.amount) {
        return Ok(Some(Err(refused)));
    }
    let response = take(wallet, request, spend.spend, writes, now)?;
    if let Some(record) = writes.keys.last() {
        stored.insert(slot, record.clone());
    }
    Ok(Some(Ok(Outcome::Fresh(response))))
}

/// Takes an affordable spend from the wallet's live lots in spend order, in memory, and records
/// its writes (the lots, the wallet, the transfer, its movements, the stored answer).
fn take(
    wallet: &mut Wallet,
    request: &IdempotentRequest,
    spend: &PricedSpend,
    writes: &mut Writes,
    now: DateTime<Utc>,
) -> Result<SpendResponse, DbErr> {
    let amount = spend.amount.get();
    let (movements, left) = ledger::plan_take(&wallet.lots, amount);
    if left != 0 {
        return Err(DbErr::Custom(format!("wallet {} has fewer credits in lots than its balance", wallet.account.id)));
    }
    for movement in &movements {
        if let Some(lot) = wallet.lots.iter_mut().find(|lot| lot.id == movement.lot_id) {
            lot.remaining -= movement.amount;
        }
        *writes.taken.entry(movement.lot_id).or_default() += movement.amount;
    }
    wallet.account.balance -= amount;
    wallet.changed = true;

    let transfer = transfers::Model {
        debit_account_id: wallet.account.id,
        debit_balance_after: Some(wallet.account.balance),
        ..spend.transfer(request, now)
    };
    let response = SpendResponse {
        transfer: TransferView::new(&transfer, movements.iter().copied().map(Into::into).collect()),
        balance: WalletBalance::of(&wallet.account),
    };
    let body = serde_json::to_string(&response).map_err(|e| DbErr::Custom(e.to_string()))?;
    writes.keys.push(idempotency_keys::Model {
        scope: request.scope.clone(),
        key: request.key.as_str().to_owned(),
        fingerprint: request.fingerprint.clone(),
        status_code: 200,
        response: body,
        created_at: now,
    });
    writes.movements.extend(movements.into_iter().map(|m| (transfer.id, m)));
    writes.transfers.push(transfer);
    Ok(response)
}

/// One affordable spend from a wallet the caller has locked and settled (`live_lots` in spend
/// order, the wallet's figures as settling left them), taken and written as a batch of one: the
/// general path's last step. Not committed; on an error the caller rolls back.
pub(crate) async fn take_and_write(
    txn: &DatabaseTransaction,
    account: accounts::Model,
    live_lots: Vec<lots::Model>,
    request: &IdempotentRequest,
    spend: &PricedSpend,
    now: DateTime<Utc>,
) -> Result<SpendResponse, DbErr> {
    let mut wallet = Wallet { account, lots: live_lots, settle: false, changed: false };
    let mut writes = Writes::default();
    let response = take(&mut wallet, request, spend, &mut writes, now)?;
    write(txn, &HashMap::from([(wallet.account.id, wallet)]), writes, now).await?;
    Ok(response)
}

/// Writes what the batch decided, in one call. The writes must touch exactly the rows they name
/// (checked), and a lot can never go below zero (a check constraint).
async fn write(
    txn: &DatabaseTransaction,
    wallets: &HashMap<Uuid, Wallet>,
    writes: Writes,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if writes.transfers.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        return pg::write(txn, wallets, writes, now).await;
    }

    let sql = sqlite_write(wallets, &writes)?;
    expect_rows("rows", txn.execute_unprepared(&sql).await?.rows_affected(), sqlite_rows_written(wallets, &writes))
}

/// The rows `sqlite_write` must touch: one per lot taken from, wallet changed, transfer, movement
/// and stored answer.
fn sqlite_rows_written(wallets: &HashMap<Uuid, Wallet>, writes: &Writes) -> usize {
    writes.taken.len()
        + wallets.values().filter(|w| w.changed).count()
        + writes.transfers.len()
        + writes.movements.len()
        + writes.keys.len()
}

/// SQLite: every write of the batch as one multi-statement call (one trip to the connection's
/// thread instead of five), with values as literals quoted exactly as sqlx would bind them.
fn sqlite_write(wallets: &HashMap<Uuid, Wallet>, writes: &Writes) -> Result<String, DbErr> {
    use ledger::sqlite_literal as lit;
    let list = |items: Vec<String>| items.join(", ");

    let taken: Vec<_> = writes.taken.iter().map(|(id, take)| format!("WHEN {} THEN {take}", lit::uuid(*id))).collect();
    let lot_ids: Vec<_> = writes.taken.keys().map(|id| lit::uuid(*id)).collect();
    let mut sql = format!(
        "UPDATE lots SET remaining = remaining - CASE id {} END WHERE id IN ({});\n",
        taken.join(" "),
        list(lot_ids)
    );

    let changed: Vec<&accounts::Model> = wallets.values().filter(|w| w.changed).map(|w| &w.account).collect();
    let figure = |value: fn(&accounts::Model) -> i64| -> String {
        let arms: Vec<_> = changed.iter().map(|a| format!("WHEN {} THEN {}", lit::uuid(a.id), value(a))).collect();
        format!("CASE id {} END", arms.join(" "))
    };
    let wallet_ids: Vec<_> = changed.iter().map(|a| lit::uuid(a.id)).collect();
    let stamp = match writes.transfers.first() {
        Some(transfer) => lit::time(transfer.created_at)?,
        None => return Ok(String::new()),
    };
    sql.push_str(&format!(
        "UPDATE accounts SET balance = {}, held = {}, debt = {}, updated_at = {stamp} WHERE id IN ({});\n",
        figure(|a| a.balance),
        figure(|a| a.held),
        figure(|a| a.debt),
        list(wallet_ids)
    ));

    let mut rows = Vec::with_capacity(writes.transfers.len());
    for t in &writes.transfers {
        let metadata = t.metadata.as_ref().map(|m| m.to_string());
        rows.push(format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            lit::uuid(t.id),
            lit::uuid(t.debit_account_id),
            lit::uuid(t.credit_account_id),
            t.amount,
            lit::text(&t.kind)?,
            lit::opt_int(t.debit_balance_after),
            lit::opt_text(t.description.as_deref())?,
            lit::opt_text(t.feature.as_deref())?,
            lit::opt_int(t.quantity),
            lit::opt_text(metadata.as_deref())?,
            lit::opt_text(t.idempotency_key.as_deref())?,
            lit::opt_text(t.request_fingerprint.as_deref())?,
            lit::time(t.created_at)?,
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after, \
         description, feature, quantity, metadata, idempotency_key, request_fingerprint, created_at) VALUES {};\n",
        list(rows)
    ));

    let moved: Vec<_> = writes
        .movements
        .iter()
        .map(|(transfer_id, m)| format!("({}, {}, {})", lit::uuid(*transfer_id), lit::uuid(m.lot_id), m.amount))
        .collect();
    sql.push_str(&format!("INSERT INTO transfer_lots (transfer_id, lot_id, amount) VALUES {};\n", list(moved)));

    let mut keys = Vec::with_capacity(writes.keys.len());
    for k in &writes.keys {
        keys.push(format!(
            "({}, {}, {}, {}, {}, {})",
            lit::text(&k.scope)?,
            lit::text(&k.key)?,
            lit::text(&k.fingerprint)?,
            k.status_code,
            lit::text(&k.response)?,
            lit::time(k.created_at)?,
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at) VALUES {};",
        list(keys)
    ));
    Ok(sql)
}

/// SQLite: a whole batch in three trips to the connection's thread, committed here.
///
/// Every statement sent through sea-orm is its own trip to the thread that owns the SQLite
/// connection and back, a wake-up on each side; on two busy cores each costs more than the
/// statement. So the batch takes the pool's connection itself and sends, as one call each:
/// `BEGIN IMMEDIATE` with all four reads (the wallets in id order, their live lots, their overdue
/// holds, the stored answers), then every write (checked by rows written, as the general path
/// checks them), then `COMMIT`. The values go as literals quoted exactly as sqlx binds them
/// (`ledger::sqlite_literal`), so a row reads back the same whichever path wrote it.
mod sqlite {
    use std::collections::HashSet;

    use chrono::{DateTime, Utc};
    use futures_util::TryStreamExt;
    use sea_orm::{
        DbErr, FromQueryResult, QueryResult, RuntimeErr,
        sqlx::{self, AssertSqlSafe, Either, Sqlite, SqlitePool, pool::PoolConnection},
    };
    use uuid::Uuid;

    use super::{
        Spend, assemble_wallets, expect_rows, index_keys, judge_all, sqlite_rows_written, sqlite_write, wanted_keys,
    };
    use crate::{
        credits::{ledger, ledger::sqlite_literal as lit, service::SpendResult},
        entities::{accounts, idempotency_keys, lots},
    };

    /// The pool's connection while a transaction is open on it: if the batch is dropped before it
    /// commits or rolls back, the connection is closed (which rolls back) rather than returned to
    /// the pool inside a transaction.
    struct Open {
        conn: PoolConnection<Sqlite>,
        open: bool,
    }

    impl Drop for Open {
        fn drop(&mut self) {
            if self.open {
                self.conn.close_on_drop();
            }
        }
    }

    fn exec_err(err: sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(err.into()))
    }

    pub async fn spend_and_commit(
        pool: &SqlitePool,
        spends: &[Spend<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<SpendResult>>, DbErr> {
        let conn = pool.acquire().await.map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
        let mut txn = Open { conn, open: false };
        let reads = reads(spends, now)?;
        let result = judge_and_write(&mut txn, reads, spends, now).await;
        if txn.open {
            // Not committed: undo whatever was written. A connection that cannot even roll back
            // is closed when dropped.
            if sqlx::raw_sql("ROLLBACK").execute(&mut *txn.conn).await.is_ok() {
                txn.open = false;
            }
        }
        result
    }

    async fn judge_and_write(
        txn: &mut Open,
        reads: String,
        spends: &[Spend<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<SpendResult>>, DbErr> {
        // One result set per statement, in order: BEGIN's (empty), then the four reads'.
        let mut sets: Vec<Vec<QueryResult>> = vec![Vec::new()];
        {
            let mut stream = sqlx::raw_sql(AssertSqlSafe(reads)).fetch_many(&mut *txn.conn);
            while let Some(item) = stream.try_next().await.map_err(exec_err)? {
                match item {
                    Either::Left(_) => {
                        txn.open = true;
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
        if sets.len() != 6 {
            return Err(DbErr::Custom(format!("a spend batch's reads returned {} result sets, not 5", sets.len() - 1)));
        }
        let accounts =
            sets[1].iter().map(|r| accounts::Model::from_query_result(r, "")).collect::<Result<Vec<_>, _>>()?;
        let live = sets[2].iter().map(|r| lots::Model::from_query_result(r, "")).collect::<Result<Vec<_>, _>>()?;
        let overdue = sets[3].iter().map(|r| r.try_get_by_index::<Uuid>(0)).collect::<Result<HashSet<_>, _>>()?;
        let rows =
            sets[4].iter().map(|r| idempotency_keys::Model::from_query_result(r, "")).collect::<Result<Vec<_>, _>>()?;

        let mut wallets = assemble_wallets(accounts, live, &overdue, now);
        let mut stored = index_keys(rows, &wanted_keys(spends));
        let (answers, writes) = judge_all(spends, &mut wallets, &mut stored, now)?;

        if !writes.transfers.is_empty() {
            let sql = sqlite_write(&wallets, &writes)?;
            let written =
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *txn.conn).await.map_err(exec_err)?.rows_affected();
            expect_rows("rows", written, sqlite_rows_written(&wallets, &writes))?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut *txn.conn).await.map_err(exec_err)?;
        txn.open = false;
        Ok(answers)
    }

    /// `BEGIN IMMEDIATE` and the batch's four reads, as one text. Every value in it is a literal
    /// from `ledger::sqlite_literal`, which quotes text and refuses what it cannot quote.
    fn reads(spends: &[Spend<'_>], now: DateTime<Utc>) -> Result<String, DbErr> {
        let users: HashSet<Uuid> = spends.iter().map(|s| s.user_id).collect();
        let users = users.into_iter().map(lit::uuid).collect::<Vec<_>>().join(", ");
        let mut scopes = HashSet::new();
        let mut keys = HashSet::new();
        for spend in spends {
            scopes.insert(lit::text(&spend.request.scope)?);
            keys.insert(lit::text(spend.request.key.as_str())?);
        }
        let scopes = scopes.into_iter().collect::<Vec<_>>().join(", ");
        let keys = keys.into_iter().collect::<Vec<_>>().join(", ");
        let open = lit::text(ledger::HoldStatus::Open.as_str())?;
        let now = lit::time(now)?;
        Ok(format!(
            "BEGIN IMMEDIATE;\n\
             SELECT * FROM accounts WHERE user_id IN ({users}) ORDER BY id;\n\
             SELECT l.* FROM accounts a JOIN lots l ON l.account_id = a.id \
               WHERE a.user_id IN ({users}) AND l.remaining > 0;\n\
             SELECT h.account_id FROM accounts a JOIN holds h ON h.account_id = a.id \
               WHERE a.user_id IN ({users}) AND a.held > 0 AND h.status = {open} AND h.expires_at <= {now};\n\
             SELECT * FROM idempotency_keys WHERE scope IN ({scopes}) AND key IN ({keys});"
        ))
    }
}

fn expect_rows(table: &str, written: u64, expected: usize) -> Result<(), DbErr> {
    if written != expected as u64 {
        return Err(DbErr::Custom(format!("a spend batch updated {written} {table}, expected {expected}")));
    }
    Ok(())
}

/// PostgreSQL: the same reads and writes with one fixed statement text each, whatever the
/// batch's size, so each is prepared once per connection and planned once; the batch's values go
/// as one JSON parameter. The writes go as one statement.
mod pg {
    use std::collections::{HashMap, HashSet};

    use chrono::{DateTime, Utc};
    use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Statement};
    use serde_json::json;
    use uuid::Uuid;

    use super::{Wallet, Writes, expect_rows};
    use crate::entities::{accounts, idempotency_keys, lots};

    fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    }

    /// Locks the users' wallets in account-id order (the rows are read after each lock is taken).
    pub async fn lock_wallets(txn: &DatabaseTransaction, users: HashSet<Uuid>) -> Result<Vec<accounts::Model>, DbErr> {
        // `= ANY (ARRAY(...))`: an index lookup per user; `IN (SELECT ...)` is planned as a join
        // against a scan of every account.
        const SQL: &str = "SELECT a.* FROM accounts a \
            WHERE a.user_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) \
            ORDER BY a.id FOR UPDATE";
        accounts::Entity::find().from_raw_sql(statement(SQL, vec![json!(users).into()])).all(txn).await
    }

    /// The live lots of the wallets, in no particular order.
    pub async fn live_lots(txn: &DatabaseTransaction, wallets: &[Uuid]) -> Result<Vec<lots::Model>, DbErr> {
        const SQL: &str = "SELECT l.* FROM lots l \
            WHERE l.account_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND l.remaining > 0";
        lots::Entity::find().from_raw_sql(statement(SQL, vec![json!(wallets).into()])).all(txn).await
    }

    /// The stored records of these (scope, key) pairs.
    pub async fn stored_keys(
        txn: &DatabaseTransaction,
        wanted: &HashSet<(&str, &str)>,
    ) -> Result<Vec<idempotency_keys::Model>, DbErr> {
        // A lateral subquery with a limit is never flattened into a join: one index lookup per
        // pair, where a join is planned as a hash join against a scan of every record.
        const SQL: &str = "SELECT i.* FROM jsonb_to_recordset($1::jsonb) AS w(scope text, key text), \
            LATERAL (SELECT * FROM idempotency_keys k WHERE k.scope = w.scope AND k.key = w.key LIMIT 1) i";
        let pairs: Vec<_> = wanted.iter().map(|(scope, key)| json!({ "scope": scope, "key": key })).collect();
        idempotency_keys::Entity::find().from_raw_sql(statement(SQL, vec![json!(pairs).into()])).all(txn).await
    }

    /// Every write of the batch in one statement; each part must touch exactly the rows it names.
    /// The updates also look their rows up by `= ANY (ARRAY(...))`: joined only to the JSON rows,
    /// the planner (which guesses a hundred of them) hash-joins against a scan of the table.
    pub async fn write(
        txn: &DatabaseTransaction,
        wallets: &HashMap<Uuid, Wallet>,
        writes: Writes,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        const SQL: &str = "WITH \
            t AS (INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after, \
                    description, feature, quantity, metadata, idempotency_key, request_fingerprint, created_at) \
                  SELECT x.id, x.debit_account_id, x.credit_account_id, x.amount, x.kind, x.debit_balance_after, \
                    x.description, x.feature, x.quantity, x.metadata, x.idempotency_key, x.request_fingerprint, $6 \
                  FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, debit_account_id uuid, credit_account_id uuid, \
                    amount bigint, kind text, debit_balance_after bigint, description text, feature text, \
                    quantity bigint, metadata json, idempotency_key text, request_fingerprint text) \
                  RETURNING 1), \
            m AS (INSERT INTO transfer_lots (transfer_id, lot_id, amount) \
                  SELECT x.transfer_id, x.lot_id, x.amount \
                  FROM jsonb_to_recordset($2::jsonb) AS x(transfer_id uuid, lot_id uuid, amount bigint) \
                  RETURNING 1), \
            l AS (UPDATE lots SET remaining = lots.remaining - x.take \
                  FROM jsonb_to_recordset($3::jsonb) AS x(id uuid, take bigint) \
                  WHERE lots.id = x.id \
                    AND lots.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($3) e)) \
                  RETURNING 1), \
            w AS (UPDATE accounts SET balance = x.balance, held = x.held, debt = x.debt, updated_at = $6 \
                  FROM jsonb_to_recordset($4::jsonb) AS x(id uuid, balance bigint, held bigint, debt bigint) \
                  WHERE accounts.id = x.id \
                    AND accounts.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($4) e)) \
                  RETURNING 1), \
            k AS (INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at) \
                  SELECT x.scope, x.key, x.fingerprint, 200, x.response, $6 \
                  FROM jsonb_to_recordset($5::jsonb) AS x(scope text, key text, fingerprint text, response text) \
                  RETURNING 1) \
            SELECT (SELECT count(*) FROM t) AS transfers, (SELECT count(*) FROM m) AS movements, \
                   (SELECT count(*) FROM l) AS lots, (SELECT count(*) FROM w) AS wallets, \
                   (SELECT count(*) FROM k) AS keys";

        let transfers: Vec<_> = writes
            .transfers
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "debit_account_id": t.debit_account_id, "credit_account_id": t.credit_account_id,
                    "amount": t.amount, "kind": t.kind, "debit_balance_after": t.debit_balance_after,
                    "description": t.description, "feature": t.feature, "quantity": t.quantity,
                    "metadata": t.metadata, "idempotency_key": t.idempotency_key,
                    "request_fingerprint": t.request_fingerprint,
                })
            })
            .collect();
        let movements: Vec<_> = writes
            .movements
            .iter()
            .map(|(transfer_id, m)| json!({ "transfer_id": transfer_id, "lot_id": m.lot_id, "amount": m.amount }))
            .collect();
        let taken: Vec<_> = writes.taken.iter().map(|(id, take)| json!({ "id": id, "take": take })).collect();
        let balances: Vec<_> = wallets
            .values()
            .filter(|w| w.changed)
            .map(|w| json!({ "id": w.account.id, "balance": w.account.balance, "held": w.account.held, "debt": w.account.debt }))
            .collect();
        let keys: Vec<_> = writes
            .keys
            .iter()
            .map(|k| json!({ "scope": k.scope, "key": k.key, "fingerprint": k.fingerprint, "response": k.response }))
            .collect();
        let expected = [transfers.len(), movements.len(), taken.len(), balances.len(), keys.len()];
        let values = vec![
            json!(transfers).into(),
            json!(movements).into(),
            json!(taken).into(),
            json!(balances).into(),
            json!(keys).into(),
            now.into(),
        ];
        let row = txn
            .query_one_raw(statement(SQL, values))
            .await?
            .ok_or_else(|| DbErr::Custom("the spend batch's write returned no row".to_owned()))?;
        for (column, expected) in ["transfers", "movements", "lots", "wallets", "keys"].into_iter().zip(expected) {
            let written: i64 = row.try_get("", column)?;
            expect_rows(column, u64::try_from(written).unwrap_or_default(), expected)?;
        }
        Ok(())
    }
}
