//! The ledger's stores: one per database, each holding all of that database's ledger SQL. A store
//! reads what the core needs to judge a batch (locking the batch's wallets) and writes the
//! journal the core returns, in the caller's transaction.
//!
//! Both stores send the same parameters: each read and each write is one statement with a fixed
//! text, whatever the batch's size, its values bound as JSON arrays (PostgreSQL reads them with
//! `jsonb_to_recordset`, SQLite with `json_each`). No SQL is ever built from values, each text is
//! prepared once per connection, and a batch costs the same few statements whether it holds one
//! command or sixty-four.

pub mod postgres;
pub mod sqlite;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::core::{Command, HoldUpdate, Journal, Op, Snapshot, Wallet};
use crate::entities::{accounts, holds, lots};

/// What a batch of commands needs read.
#[derive(Debug, Default)]
pub struct Needs {
    /// The wallets' users, each once.
    pub users: Vec<Uuid>,
    /// Holds the commands name.
    pub holds: Vec<Uuid>,
    /// (scope, key) of the commands' idempotency keys, each once.
    pub keys: Vec<(String, String)>,
    /// References of the lots the commands would create.
    pub references: Vec<String>,
    /// Lots whose past expiry a take-back must know.
    pub expired_lots: Vec<Uuid>,
}

impl Needs {
    pub fn of(commands: &[Command]) -> Self {
        let mut needs = Needs::default();
        let mut users = HashSet::new();
        let mut keys = HashSet::new();
        for command in commands {
            if matches!(command.op, Op::Move { .. }) {
                continue;
            }
            if users.insert(command.user_id) {
                needs.users.push(command.user_id);
            }
            if let Some(request) = &command.key
                && keys.insert((request.scope.as_str(), request.key.as_str()))
            {
                needs.keys.push((request.scope.clone(), request.key.as_str().to_owned()));
            }
            match &command.op {
                Op::Capture { hold_id, .. } | Op::Release { hold_id } | Op::Draw { hold_id, .. } => {
                    needs.holds.push(*hold_id)
                }
                Op::Credit { lot, .. } => needs.references.push(lot.reference.clone()),
                Op::TakeBack(take) => needs.expired_lots.extend(take.payment_lots.iter().copied()),
                _ => {}
            }
        }
        needs
    }
}

/// Reads what `commands` need, locking their wallets, inside `txn` (a writing transaction).
pub async fn read(txn: &DatabaseTransaction, commands: &[Command], now: DateTime<Utc>) -> Result<Snapshot, DbErr> {
    let needs = Needs::of(commands);
    match txn.get_database_backend() {
        DbBackend::Postgres => postgres::read(txn, &needs, now).await,
        _ => sqlite::read(txn, &needs, now).await,
    }
}

/// Writes a journal inside `txn`; every part must touch exactly the rows it names.
pub async fn write(txn: &DatabaseTransaction, journal: &Journal, now: DateTime<Utc>) -> Result<(), DbErr> {
    if journal.is_empty() {
        return Ok(());
    }
    let rows = Rows::of(journal, now, txn.get_database_backend());
    match txn.get_database_backend() {
        DbBackend::Postgres => postgres::write(txn, rows).await,
        _ => sqlite::write(txn, rows).await,
    }
}

/// A time exactly as sqlx would have bound it, so that a row reads back the same whichever path
/// wrote it: RFC 3339 as sqlx writes it to SQLite (which compares times as text, so every writer
/// must use this one form), truncated to the microsecond as sqlx sends it to PostgreSQL.
pub fn time(at: DateTime<Utc>, backend: DbBackend) -> String {
    let at = if backend == DbBackend::Postgres { at.trunc_subsecs(6) } else { at };
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// Ids as a JSON array of `Hex`.
pub(super) fn id_list(ids: impl Iterator<Item = Uuid>) -> String {
    to_json(ids.map(Hex)).0
}

/// A read's parameters: the users, now, the named holds, the (scope, key) pairs, the
/// references, the lots.
pub fn read_params(needs: &Needs, now: DateTime<Utc>, backend: DbBackend) -> [String; 6] {
    [
        id_list(needs.users.iter().copied()),
        time(now, backend),
        id_list(needs.holds.iter().copied()),
        to_json(needs.keys.iter()).0,
        to_json(needs.references.iter()).0,
        id_list(needs.expired_lots.iter().copied()),
    ]
}

/// What expiry took from each lot, from the rows of a store's `EXPIRED` read (`lot_id`, `amount`).
pub(super) fn expired_from(rows: impl IntoIterator<Item = sea_orm::QueryResult>) -> Result<HashMap<Uuid, i64>, DbErr> {
    rows.into_iter().map(|row| Ok((row.try_get("", "lot_id")?, row.try_get("", "amount")?))).collect()
}

/// The wallets by user, each with its lots and holds, from what a store read.
pub(super) fn assemble(
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
        let of_wallet = holds_of.entry(hold.account_id).or_default();
        // A hold both overdue and named by a command may be read twice.
        if !of_wallet.iter().any(|h| h.id == hold.id) {
            of_wallet.push(hold);
        }
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

/// A journal as the write's parameters, each a JSON array of rows, with the number of rows each
/// part must touch.
pub struct Rows {
    pub params: [String; 10],
    pub expected: [usize; 9],
}

/// The parts of a write, in the order both stores run them (rows before the rows that name
/// them) and their parameters are numbered.
pub const PARTS: [&str; 9] =
    ["new lots", "transfers", "movements", "lot updates", "new holds", "hold updates", "wallets", "keys", "events"];

/// A UUID as both databases read it from JSON: hex digits (SQLite `unhex`es them into the
/// 16-byte blob sqlx stores; PostgreSQL's `uuid` reads them as they are), written without an
/// allocation.
struct Hex(Uuid);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.simple())
    }
}

/// A time as `time` writes it.
struct At(DateTime<Utc>, DbBackend);

impl Serialize for At {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time(self.0, self.1))
    }
}

/// The rows of each part, borrowed from the journal and serialized straight to JSON text. A field
/// left out reads as NULL on both databases, so empty ones are not sent: a spend's transfer is
/// half the text to parse.
#[derive(Serialize)]
struct LotRow<'a> {
    id: Hex,
    account_id: Hex,
    source: &'a str,
    amount: i64,
    remaining: i64,
    priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<At>,
    reference: &'a str,
    transfer_id: Hex,
    created_at: At,
}

#[derive(Serialize)]
struct TransferRow<'a> {
    id: Hex,
    debit_account_id: Hex,
    credit_account_id: Hex,
    amount: i64,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    debit_balance_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credit_balance_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lot_id: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
}

#[derive(Serialize)]
struct MovementRow {
    transfer_id: Hex,
    lot_id: Hex,
    amount: i64,
}

#[derive(Serialize)]
struct LotUpdateRow {
    id: Hex,
    before: i64,
    after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_at: Option<At>,
}

#[derive(Serialize)]
struct HoldRow<'a> {
    id: Hex,
    account_id: Hex,
    amount: i64,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    captured_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_transfer_id: Option<Hex>,
    expires_at: At,
    created_at: At,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_at: Option<At>,
}

#[derive(Serialize)]
struct HoldUpdateRow<'a> {
    id: Hex,
    before: i64,
    amount: i64,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    captured_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_transfer_id: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_at: Option<At>,
}

#[derive(Serialize)]
struct WalletRow {
    id: Hex,
    balance: i64,
    held: i64,
    debt: i64,
}

#[derive(Serialize)]
struct EventRow<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<Hex>,
    data: &'a serde_json::value::RawValue,
}

#[derive(Serialize)]
struct KeyRow<'a> {
    scope: &'a str,
    key: &'a str,
    fingerprint: &'a str,
    status_code: i16,
    response: &'a str,
}

fn to_json<T: Serialize>(rows: impl Iterator<Item = T>) -> (String, usize) {
    let rows: Vec<T> = rows.collect();
    // Serializing plain structs of strings and numbers cannot fail.
    (serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned()), rows.len())
}

impl Rows {
    pub fn of(journal: &Journal, now: DateTime<Utc>, backend: DbBackend) -> Self {
        let at = |t: DateTime<Utc>| At(t, backend);
        let new_lots = to_json(journal.new_lots.iter().map(|l| LotRow {
            id: Hex(l.id),
            account_id: Hex(l.account_id),
            source: &l.source,
            amount: l.amount,
            remaining: l.remaining,
            priority: l.priority,
            expires_at: l.expires_at.map(at),
            reference: &l.reference,
            transfer_id: Hex(l.transfer_id),
            created_at: at(l.created_at),
        }));
        let transfers = to_json(journal.transfers.iter().map(|t| TransferRow {
            id: Hex(t.id),
            debit_account_id: Hex(t.debit_account_id),
            credit_account_id: Hex(t.credit_account_id),
            amount: t.amount,
            kind: &t.kind,
            debit_balance_after: t.debit_balance_after,
            credit_balance_after: t.credit_balance_after,
            description: t.description.as_deref(),
            feature: t.feature.as_deref(),
            quantity: t.quantity,
            metadata: t.metadata.as_ref(),
            idempotency_key: t.idempotency_key.as_deref(),
            request_fingerprint: t.request_fingerprint.as_deref(),
            hold_id: t.hold_id.map(Hex),
            lot_id: t.lot_id.map(Hex),
            reference: t.reference.as_deref(),
        }));
        let movements = to_json(journal.movements.iter().map(|m| MovementRow {
            transfer_id: Hex(m.transfer_id),
            lot_id: Hex(m.lot_id),
            amount: m.amount,
        }));
        let lot_updates = to_json(journal.lot_updates.iter().map(|u| LotUpdateRow {
            id: Hex(u.id),
            before: u.before,
            after: u.after,
            expired_at: u.expired_at.map(at),
        }));
        let new_holds = to_json(journal.new_holds.iter().map(|h| HoldRow {
            id: Hex(h.id),
            account_id: Hex(h.account_id),
            amount: h.amount,
            status: &h.status,
            feature: h.feature.as_deref(),
            quantity: h.quantity,
            description: h.description.as_deref(),
            metadata: h.metadata.as_ref(),
            captured_amount: h.captured_amount,
            capture_transfer_id: h.capture_transfer_id.map(Hex),
            expires_at: at(h.expires_at),
            created_at: at(h.created_at),
            closed_at: h.closed_at.map(at),
        }));
        let hold_updates = to_json(journal.hold_updates.iter().map(|HoldUpdate { before, hold: h }| HoldUpdateRow {
            id: Hex(h.id),
            before: *before,
            amount: h.amount,
            status: &h.status,
            captured_amount: h.captured_amount,
            capture_transfer_id: h.capture_transfer_id.map(Hex),
            closed_at: h.closed_at.map(at),
        }));
        let wallets = to_json(journal.wallets.iter().map(|w| WalletRow {
            id: Hex(w.id),
            balance: w.balance,
            held: w.held,
            debt: w.debt,
        }));
        let keys = to_json(journal.keys.iter().map(|k| KeyRow {
            scope: &k.scope,
            key: &k.key,
            fingerprint: &k.fingerprint,
            status_code: k.status_code,
            response: &k.response,
        }));
        let events = to_json(journal.events.iter().map(|e| EventRow {
            id: &e.id,
            kind: e.kind,
            customer_id: e.customer_id.map(Hex),
            data: &e.data,
        }));
        let parts = [new_lots, transfers, movements, lot_updates, new_holds, hold_updates, wallets, keys, events];
        let expected = parts.each_ref().map(|(_, n)| *n);
        let [a, b, c, d, e, f, g, h, i] = parts.map(|(json, _)| json);
        Self { params: [a, b, c, d, e, f, g, h, i, time(now, backend)], expected }
    }

    /// Whether the journal has only what spends write (transfers, their movements, lots taken
    /// from, wallets, stored answers, events): the stores then run a shorter write.
    pub fn spends_only(&self) -> bool {
        self.expected[0] == 0 && self.expected[4] == 0 && self.expected[5] == 0
    }
}

/// Checks that each part of a write touched exactly the rows it names.
pub fn expect_rows(part: &str, written: u64, expected: usize) -> Result<(), DbErr> {
    if written != expected as u64 {
        return Err(DbErr::Custom(format!("a ledger write changed {written} {part}, expected {expected}")));
    }
    Ok(())
}

/// Ledger reads that lock nothing and judge nothing: a wallet, its lots, what moved.
mod reads {
    use chrono::{DateTime, Utc};
    use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
    use uuid::Uuid;

    use crate::{
        domain::ledger::HoldStatus,
        entities::{accounts, holds, lots, transfer_lots},
    };

    /// Opens a user's wallet; called in the transaction that creates the user.
    pub async fn create_wallet(db: &impl ConnectionTrait, user_id: Uuid, now: DateTime<Utc>) -> Result<Uuid, DbErr> {
        let id = Uuid::now_v7();
        accounts::Entity::insert(accounts::ActiveModel {
            id: Set(id),
            kind: Set("wallet".to_owned()),
            code: Set(None),
            user_id: Set(Some(user_id)),
            balance: Set(0),
            held: Set(0),
            debt: Set(0),
            low_balance_thresholds: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(db)
        .await?;
        Ok(id)
    }

    /// Reads a user's wallet without locking it.
    pub async fn find_wallet(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<accounts::Model>, DbErr> {
        accounts::Entity::find().filter(accounts::Column::UserId.eq(user_id)).one(db).await
    }

    /// A wallet's lots with credits left, expired or not, in no particular order.
    pub async fn lots_with_credits(db: &impl ConnectionTrait, account_id: Uuid) -> Result<Vec<lots::Model>, DbErr> {
        lots::Entity::find()
            .filter(lots::Column::AccountId.eq(account_id))
            .filter(lots::Column::Remaining.gt(0))
            .all(db)
            .await
    }

    /// A wallet's open holds whose time ran out by `now`.
    pub fn overdue_holds(account_id: Uuid, now: DateTime<Utc>) -> sea_orm::Select<holds::Entity> {
        holds::Entity::find()
            .filter(holds::Column::AccountId.eq(account_id))
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
            .filter(holds::Column::ExpiresAt.lte(now))
    }

    /// The lots each of the given transfers touched.
    pub async fn movements_of(
        db: &impl ConnectionTrait,
        transfer_ids: &[Uuid],
    ) -> Result<Vec<transfer_lots::Model>, DbErr> {
        if transfer_ids.is_empty() {
            return Ok(Vec::new());
        }
        transfer_lots::Entity::find()
            .filter(transfer_lots::Column::TransferId.is_in(transfer_ids.iter().copied()))
            .all(db)
            .await
    }

    pub async fn lot(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<lots::Model>, DbErr> {
        lots::Entity::find_by_id(id).one(db).await
    }

    /// The ids of the lots with these references.
    pub async fn lots_by_reference(db: &impl ConnectionTrait, references: Vec<String>) -> Result<Vec<Uuid>, DbErr> {
        if references.is_empty() {
            return Ok(Vec::new());
        }
        lots::Entity::find()
            .select_only()
            .column(lots::Column::Id)
            .filter(lots::Column::Reference.is_in(references))
            .into_tuple()
            .all(db)
            .await
    }

    /// The users whose wallets have a lot past its expiry with credits left, or an open hold
    /// past its time.
    pub async fn users_with_something_due(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<Uuid>, DbErr> {
        let mut accounts: Vec<Uuid> = lots::Entity::find()
            .select_only()
            .column(lots::Column::AccountId)
            .filter(lots::Column::Remaining.gt(0))
            .filter(lots::Column::ExpiresAt.lte(now))
            .distinct()
            .into_tuple()
            .all(db)
            .await?;
        let with_holds: Vec<Uuid> = holds::Entity::find()
            .select_only()
            .column(holds::Column::AccountId)
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
            .filter(holds::Column::ExpiresAt.lte(now))
            .distinct()
            .into_tuple()
            .all(db)
            .await?;
        accounts.extend(with_holds);
        accounts.sort();
        accounts.dedup();
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<Option<Uuid>> = accounts::Entity::find()
            .select_only()
            .column(accounts::Column::UserId)
            .filter(accounts::Column::Id.is_in(accounts))
            .into_tuple()
            .all(db)
            .await?;
        Ok(users.into_iter().flatten().collect())
    }
}

pub use reads::*;
