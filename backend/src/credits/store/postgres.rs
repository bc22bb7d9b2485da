//! PostgreSQL's ledger SQL. The wallets' row locks (`FOR UPDATE`, taken in account-id order, so
//! two batches never wait on each other in a cycle) serialise a batch against every other writer
//! of those wallets; the journal is written by one data-modifying statement.
//!
//! Lookups go through `= ANY (ARRAY(...))` or a lateral subquery: an index probe per value,
//! where a join against the JSON rows is planned as a hash join over a scan of the table (the
//! planner guesses a hundred JSON rows).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Statement};
use uuid::Uuid;

use super::{Needs, PARTS, Rows, expect_rows, read_params};
use crate::{
    credits::core::{Snapshot, Wallet},
    entities::{accounts, holds, idempotency_keys, lots},
};

fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

const LOCK_WALLETS: &str = "SELECT a.* FROM accounts a \
    WHERE a.user_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) ORDER BY a.id FOR UPDATE";

const LIVE_LOTS: &str = "SELECT l.* FROM lots l \
    WHERE l.account_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND l.remaining > 0";

/// Open holds past their time in wallets with held credits, and the holds the batch names.
const HOLDS: &str = "SELECT h.* FROM holds h \
    WHERE (h.account_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) \
           AND h.status = 'open' AND h.expires_at <= $2::timestamptz) \
       OR (h.id = ANY (ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::uuid)) \
           AND h.account_id = ANY (ARRAY(SELECT jsonb_array_elements_text($4::jsonb)::uuid)))";

/// A lateral subquery with a limit is never flattened into a join: one index lookup per pair.
const KEYS: &str = "SELECT i.* FROM jsonb_array_elements($1::jsonb) AS w(pair), \
    LATERAL (SELECT * FROM idempotency_keys k WHERE k.scope = w.pair ->> 0 AND k.key = w.pair ->> 1 LIMIT 1) i";

const REFERENCES: &str =
    "SELECT reference FROM lots WHERE reference = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))";

const EXPIRED: &str = "SELECT lot_id, CAST(SUM(amount) AS BIGINT) AS amount FROM transfers \
    WHERE kind = 'expiry' AND lot_id IS NOT NULL \
      AND lot_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) GROUP BY lot_id";

/// Locks the wallets and reads what the batch needs.
pub async fn read(txn: &DatabaseTransaction, needs: &Needs, now: DateTime<Utc>) -> Result<Snapshot, DbErr> {
    let [users, now_text, named_holds, keys, references, expired_lots] = read_params(needs, now, DbBackend::Postgres);
    let accounts = accounts::Entity::find().from_raw_sql(statement(LOCK_WALLETS, vec![users.into()])).all(txn).await?;
    let ids = |accounts: &mut dyn Iterator<Item = &accounts::Model>| {
        serde_json::Value::from(accounts.map(|a| a.id.simple().to_string()).collect::<Vec<_>>()).to_string()
    };
    let all = ids(&mut accounts.iter());
    let live = lots::Entity::find().from_raw_sql(statement(LIVE_LOTS, vec![all.clone().into()])).all(txn).await?;

    let holding: Vec<&accounts::Model> = accounts.iter().filter(|a| a.held > 0).collect();
    let holds = if holding.is_empty() && needs.holds.is_empty() {
        Vec::new()
    } else {
        let values = vec![ids(&mut holding.into_iter()).into(), now_text.into(), named_holds.into(), all.into()];
        holds::Entity::find().from_raw_sql(statement(HOLDS, values)).all(txn).await?
    };

    let mut snapshot = Snapshot::default();
    if !needs.keys.is_empty() {
        let rows = idempotency_keys::Entity::find().from_raw_sql(statement(KEYS, vec![keys.into()])).all(txn).await?;
        snapshot.keys = rows.into_iter().map(|k| ((k.scope.clone(), k.key.clone()), k)).collect();
    }
    if !needs.references.is_empty() {
        for row in txn.query_all_raw(statement(REFERENCES, vec![references.into()])).await? {
            snapshot.references.insert(row.try_get("", "reference")?);
        }
    }
    if !needs.expired_lots.is_empty() {
        for row in txn.query_all_raw(statement(EXPIRED, vec![expired_lots.into()])).await? {
            snapshot.expired_from.insert(row.try_get("", "lot_id")?, row.try_get("", "amount")?);
        }
    }
    snapshot.wallets = assemble(accounts, live, holds);
    Ok(snapshot)
}

/// The wallets by user, each with its lots and holds.
pub fn assemble(
    accounts: Vec<accounts::Model>,
    live: Vec<lots::Model>,
    holds: Vec<holds::Model>,
) -> HashMap<Uuid, Wallet> {
    let mut lots_of: HashMap<Uuid, Vec<lots::Model>> = HashMap::new();
    for lot in live {
        lots_of.entry(lot.account_id).or_default().push(lot);
    }
    let mut holds_of: HashMap<Uuid, Vec<holds::Model>> = HashMap::new();
    for hold in holds {
        holds_of.entry(hold.account_id).or_default().push(hold);
    }
    accounts
        .into_iter()
        .filter_map(|account| {
            let user = account.user_id?;
            let lots = lots_of.remove(&account.id).unwrap_or_default();
            let holds = holds_of.remove(&account.id).unwrap_or_default();
            Some((user, Wallet { account, lots, holds }))
        })
        .collect()
}

/// Every part of a journal in one statement; each part counts the rows it touched.
const WRITE: &str = "WITH \
    nl AS (INSERT INTO lots (id, account_id, source, amount, remaining, priority, expires_at, reference, \
             transfer_id, created_at) \
           SELECT x.id, x.account_id, x.source, x.amount, x.remaining, x.priority, x.expires_at, x.reference, \
             x.transfer_id, x.created_at \
           FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, account_id uuid, source text, amount bigint, \
             remaining bigint, priority int, expires_at timestamptz, reference text, transfer_id uuid, \
             created_at timestamptz) \
           RETURNING 1), \
    t AS (INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after, \
             credit_balance_after, description, feature, quantity, metadata, idempotency_key, request_fingerprint, \
             hold_id, lot_id, reference, created_at) \
          SELECT x.id, x.debit_account_id, x.credit_account_id, x.amount, x.kind, x.debit_balance_after, \
             x.credit_balance_after, x.description, x.feature, x.quantity, x.metadata, x.idempotency_key, \
             x.request_fingerprint, x.hold_id, x.lot_id, x.reference, $9::timestamptz \
          FROM jsonb_to_recordset($2::jsonb) AS x(id uuid, debit_account_id uuid, credit_account_id uuid, \
             amount bigint, kind text, debit_balance_after bigint, credit_balance_after bigint, description text, \
             feature text, quantity bigint, metadata json, idempotency_key text, request_fingerprint text, \
             hold_id uuid, lot_id uuid, reference text) \
          RETURNING 1), \
    m AS (INSERT INTO transfer_lots (transfer_id, lot_id, amount) \
          SELECT x.transfer_id, x.lot_id, x.amount \
          FROM jsonb_to_recordset($3::jsonb) AS x(transfer_id uuid, lot_id uuid, amount bigint) \
          RETURNING 1), \
    l AS (UPDATE lots SET remaining = x.after, expired_at = COALESCE(x.expired_at, lots.expired_at) \
          FROM jsonb_to_recordset($4::jsonb) AS x(id uuid, before bigint, after bigint, expired_at timestamptz) \
          WHERE lots.id = x.id AND lots.remaining = x.before \
            AND lots.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($4::jsonb) e)) \
          RETURNING 1), \
    nh AS (INSERT INTO holds (id, account_id, amount, status, feature, quantity, description, metadata, \
             captured_amount, capture_transfer_id, expires_at, created_at, closed_at) \
           SELECT x.id, x.account_id, x.amount, x.status, x.feature, x.quantity, x.description, x.metadata, \
             x.captured_amount, x.capture_transfer_id, x.expires_at, x.created_at, x.closed_at \
           FROM jsonb_to_recordset($5::jsonb) AS x(id uuid, account_id uuid, amount bigint, status text, \
             feature text, quantity bigint, description text, metadata json, captured_amount bigint, \
             capture_transfer_id uuid, expires_at timestamptz, created_at timestamptz, closed_at timestamptz) \
           RETURNING 1), \
    ch AS (UPDATE holds SET status = x.status, captured_amount = x.captured_amount, \
             capture_transfer_id = x.capture_transfer_id, closed_at = x.closed_at \
           FROM jsonb_to_recordset($6::jsonb) AS x(id uuid, status text, captured_amount bigint, \
             capture_transfer_id uuid, closed_at timestamptz) \
           WHERE holds.id = x.id AND holds.status = 'open' \
             AND holds.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($6::jsonb) e)) \
           RETURNING 1), \
    w AS (UPDATE accounts SET balance = x.balance, held = x.held, debt = x.debt, updated_at = $9::timestamptz \
          FROM jsonb_to_recordset($7::jsonb) AS x(id uuid, balance bigint, held bigint, debt bigint) \
          WHERE accounts.id = x.id \
            AND accounts.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements($7::jsonb) e)) \
          RETURNING 1), \
    k AS (INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at) \
          SELECT x.scope, x.key, x.fingerprint, x.status_code, x.response, $9::timestamptz \
          FROM jsonb_to_recordset($8::jsonb) AS x(scope text, key text, fingerprint text, status_code smallint, \
             response text) \
          RETURNING 1) \
    SELECT (SELECT count(*) FROM nl), (SELECT count(*) FROM t), (SELECT count(*) FROM m), \
           (SELECT count(*) FROM l), (SELECT count(*) FROM nh), (SELECT count(*) FROM ch), \
           (SELECT count(*) FROM w), (SELECT count(*) FROM k)";

/// Writes a journal in one statement.
pub async fn write(txn: &DatabaseTransaction, rows: Rows) -> Result<(), DbErr> {
    let [p1, p2, p3, p4, p5, p6, p7, p8, now] = rows.params;
    let values = vec![
        p1.into(),
        p2.into(),
        p3.into(),
        p4.into(),
        p5.into(),
        p6.into(),
        p7.into(),
        p8.into(),
        sea_orm::Value::from(now),
    ];
    let row = txn
        .query_one_raw(statement(WRITE, values))
        .await?
        .ok_or_else(|| DbErr::Custom("the ledger's write returned no row".to_owned()))?;
    for (i, (part, expected)) in PARTS.into_iter().zip(rows.expected).enumerate() {
        let written: i64 = row.try_get_by_index(i)?;
        expect_rows(part, u64::try_from(written).unwrap_or_default(), expected)?;
    }
    Ok(())
}
