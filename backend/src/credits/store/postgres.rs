//! PostgreSQL's ledger SQL. The wallets' row locks (`FOR UPDATE`, taken in account-id order, so
//! two batches never wait on each other in a cycle) serialise a batch against every other writer
//! of those wallets; the journal is written by one data-modifying statement.
//!
//! Lookups go through `= ANY (ARRAY(...))` or a lateral subquery: an index probe per value,
//! where a join against the JSON rows is planned as a hash join over a scan of the table (the
//! planner guesses a hundred JSON rows).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Statement};

use super::{Needs, PARTS, Rows, assemble, expect_rows, expired_from, id_list, read_params};
use crate::{
    credits::core::Snapshot,
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

/// The live lots and the stored answers of the batch's keys in one round trip (the wallets are
/// locked by then, so both are read as their last writer left them). Two shapes in one result:
/// each row as JSON, tagged. A lateral subquery with a limit is never flattened into a join: one
/// index lookup per (scope, key) pair.
const LOTS_AND_KEYS: &str = "SELECT 'l' AS part, to_jsonb(l.*) AS row FROM lots l \
    WHERE l.account_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::uuid)) AND l.remaining > 0 \
    UNION ALL SELECT 'k', to_jsonb(i.*) FROM jsonb_array_elements($2::jsonb) AS w(pair), \
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
    let all = id_list(accounts.iter().map(|a| a.id));
    let mut snapshot = Snapshot::default();
    let live = if needs.keys.is_empty() {
        lots::Entity::find().from_raw_sql(statement(LIVE_LOTS, vec![all.clone().into()])).all(txn).await?
    } else {
        let mut live = Vec::new();
        for row in txn.query_all_raw(statement(LOTS_AND_KEYS, vec![all.clone().into(), keys.into()])).await? {
            let part: String = row.try_get("", "part")?;
            let json: serde_json::Value = row.try_get("", "row")?;
            let unreadable = |e: serde_json::Error| DbErr::Custom(format!("a ledger row could not be read: {e}"));
            if part == "l" {
                live.push(serde_json::from_value::<lots::Model>(json).map_err(unreadable)?);
            } else {
                let k = serde_json::from_value::<idempotency_keys::Model>(json).map_err(unreadable)?;
                snapshot.keys.insert((k.scope.clone(), k.key.clone()), k);
            }
        }
        live
    };

    let holding: Vec<&accounts::Model> = accounts.iter().filter(|a| a.held > 0).collect();
    let holds = if holding.is_empty() && needs.holds.is_empty() {
        Vec::new()
    } else {
        let values =
            vec![id_list(holding.into_iter().map(|a| a.id)).into(), now_text.into(), named_holds.into(), all.into()];
        holds::Entity::find().from_raw_sql(statement(HOLDS, values)).all(txn).await?
    };

    if !needs.references.is_empty() {
        for row in txn.query_all_raw(statement(REFERENCES, vec![references.into()])).await? {
            snapshot.references.insert(row.try_get("", "reference")?);
        }
    }
    if !needs.expired_lots.is_empty() {
        snapshot.expired_from = expired_from(txn.query_all_raw(statement(EXPIRED, vec![expired_lots.into()])).await?)?;
    }
    snapshot.wallets = assemble(accounts, live, holds);
    Ok(snapshot)
}

/// Every part of a journal, in `PARTS` order: a CTE name and its statement, `{rows}` standing for
/// the part's rows and `{now}` for the time, numbered when a write is composed.
const PARTS_SQL: [(&str, &str); 9] = [
    (
        "nl",
        "INSERT INTO lots (id, account_id, source, amount, remaining, priority, expires_at, reference, \
                     transfer_id, created_at) \
                   SELECT x.id, x.account_id, x.source, x.amount, x.remaining, x.priority, x.expires_at, x.reference, \
                     x.transfer_id, x.created_at \
                   FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, account_id uuid, source text, amount bigint, \
                     remaining bigint, priority int, expires_at timestamptz, reference text, transfer_id uuid, \
                     created_at timestamptz) RETURNING 1",
    ),
    (
        "t",
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after, \
                     credit_balance_after, description, feature, quantity, metadata, idempotency_key, request_fingerprint, \
                     hold_id, lot_id, reference, created_at) \
                  SELECT x.id, x.debit_account_id, x.credit_account_id, x.amount, x.kind, x.debit_balance_after, \
                     x.credit_balance_after, x.description, x.feature, x.quantity, x.metadata, x.idempotency_key, \
                     x.request_fingerprint, x.hold_id, x.lot_id, x.reference, {now}::timestamptz \
                  FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, debit_account_id uuid, credit_account_id uuid, \
                     amount bigint, kind text, debit_balance_after bigint, credit_balance_after bigint, description text, \
                     feature text, quantity bigint, metadata json, idempotency_key text, request_fingerprint text, \
                     hold_id uuid, lot_id uuid, reference text) RETURNING 1",
    ),
    (
        "m",
        "INSERT INTO transfer_lots (transfer_id, lot_id, amount) \
                  SELECT x.transfer_id, x.lot_id, x.amount \
                  FROM jsonb_to_recordset({rows}::jsonb) AS x(transfer_id uuid, lot_id uuid, amount bigint) RETURNING 1",
    ),
    (
        "l",
        "UPDATE lots SET remaining = x.after, expired_at = COALESCE(x.expired_at, lots.expired_at) \
                  FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, before bigint, after bigint, expired_at timestamptz) \
                  WHERE lots.id = x.id AND lots.remaining = x.before \
                    AND lots.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements({rows}::jsonb) e)) RETURNING 1",
    ),
    (
        "nh",
        "INSERT INTO holds (id, account_id, amount, status, feature, quantity, description, metadata, \
                     captured_amount, capture_transfer_id, expires_at, created_at, closed_at) \
                   SELECT x.id, x.account_id, x.amount, x.status, x.feature, x.quantity, x.description, x.metadata, \
                     x.captured_amount, x.capture_transfer_id, x.expires_at, x.created_at, x.closed_at \
                   FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, account_id uuid, amount bigint, status text, \
                     feature text, quantity bigint, description text, metadata json, captured_amount bigint, \
                     capture_transfer_id uuid, expires_at timestamptz, created_at timestamptz, closed_at timestamptz) RETURNING 1",
    ),
    (
        "ch",
        "UPDATE holds SET status = x.status, amount = x.amount, captured_amount = x.captured_amount, \
                     capture_transfer_id = x.capture_transfer_id, closed_at = x.closed_at \
                   FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, before bigint, amount bigint, status text, \
                     captured_amount bigint, capture_transfer_id uuid, closed_at timestamptz) \
                   WHERE holds.id = x.id AND holds.status = 'open' AND holds.amount = x.before \
                     AND holds.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements({rows}::jsonb) e)) RETURNING 1",
    ),
    (
        "w",
        "UPDATE accounts SET balance = x.balance, held = x.held, debt = x.debt, updated_at = {now}::timestamptz \
                  FROM jsonb_to_recordset({rows}::jsonb) AS x(id uuid, balance bigint, held bigint, debt bigint) \
                  WHERE accounts.id = x.id \
                    AND accounts.id = ANY (ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements({rows}::jsonb) e)) RETURNING 1",
    ),
    (
        "k",
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at) \
                  SELECT x.scope, x.key, x.fingerprint, x.status_code, x.response, {now}::timestamptz \
                  FROM jsonb_to_recordset({rows}::jsonb) AS x(scope text, key text, fingerprint text, status_code smallint, \
                     response text) RETURNING 1",
    ),
    (
        "ev",
        "INSERT INTO events (id, type, customer_id, data, created_at) \
                  SELECT x.id, x.type, x.customer_id, x.data, {now}::timestamptz \
                  FROM json_to_recordset({rows}::json) AS x(id text, type text, customer_id uuid, data json) RETURNING 1",
    ),
];

/// The parts a batch of spends writes: transfers, movements, lot updates, wallets, stored
/// answers, events.
const SPEND_PARTS: [usize; 6] = [1, 2, 3, 6, 7, 8];

/// A write of some parts as one data-modifying statement, each part counting the rows it
/// touched; parameters are the parts' rows in order, then now.
struct Write {
    text: String,
    parts: Vec<usize>,
}

impl Write {
    fn of(parts: &[usize]) -> Self {
        let now = format!("${}", parts.len() + 1);
        let ctes: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(n, &p)| {
                let (name, sql) = PARTS_SQL[p];
                format!("{name} AS ({})", sql.replace("{rows}", &format!("${}", n + 1)).replace("{now}", &now))
            })
            .collect();
        let counts: Vec<String> = parts.iter().map(|&p| format!("(SELECT count(*) FROM {})", PARTS_SQL[p].0)).collect();
        Self { text: format!("WITH {} SELECT {}", ctes.join(", "), counts.join(", ")), parts: parts.to_vec() }
    }
}

static WRITE_ALL: LazyLock<Write> = LazyLock::new(|| Write::of(&[0, 1, 2, 3, 4, 5, 6, 7, 8]));
static WRITE_SPENDS: LazyLock<Write> = LazyLock::new(|| Write::of(&SPEND_PARTS));

/// Writes a journal in one statement.
pub async fn write(txn: &DatabaseTransaction, mut rows: Rows) -> Result<(), DbErr> {
    let write = if rows.spends_only() { &*WRITE_SPENDS } else { &*WRITE_ALL };
    let mut values: Vec<sea_orm::Value> =
        write.parts.iter().map(|&p| std::mem::take(&mut rows.params[p]).into()).collect();
    values.push(std::mem::take(&mut rows.params[9]).into());
    let row = txn
        .query_one_raw(statement(&write.text, values))
        .await?
        .ok_or_else(|| DbErr::Custom("the ledger's write returned no row".to_owned()))?;
    for (i, &part) in write.parts.iter().enumerate() {
        let written: i64 = row.try_get_by_index(i)?;
        expect_rows(PARTS[part], u64::try_from(written).unwrap_or_default(), rows.expected[part])?;
    }
    Ok(())
}
