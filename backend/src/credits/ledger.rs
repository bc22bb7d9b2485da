//! Ledger primitives: every function here runs inside the caller's transaction, after the caller
//! has locked the wallet (`lock_wallet`), and writes only immutable transfers, the lots they
//! touch, and the wallet's cached balance. Nothing here writes a row shared by all users: system
//! accounts' balances are derived from their transfers.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    domain::Credits,
    entities::{accounts, holds, lots, transfer_lots, transfers},
    idempotency::IdempotentRequest,
};

/// The system accounts, seeded by the ledger migration with these fixed ids.
pub mod system {
    use uuid::Uuid;

    pub const PURCHASES: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000001);
    pub const SUBSCRIPTIONS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000002);
    pub const GRANTS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000003);
    pub const PROMOTIONS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000004);
    pub const USAGE: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000005);
    pub const EXPIRY: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000006);
    pub const CLAWBACK: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000007);
    pub const DISPUTES: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000008);
    pub const WRITEOFF: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000009);
}

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Purchase,
    Subscription,
    Grant,
    Promotion,
    Spend,
    Expiry,
    Clawback,
    DisputeFreeze,
    DisputeRelease,
    WriteOff,
}

impl TransferKind {
    pub const ALL: [TransferKind; 10] = [
        Self::Purchase,
        Self::Subscription,
        Self::Grant,
        Self::Promotion,
        Self::Spend,
        Self::Expiry,
        Self::Clawback,
        Self::DisputeFreeze,
        Self::DisputeRelease,
        Self::WriteOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Grant => "grant",
            Self::Promotion => "promotion",
            Self::Spend => "spend",
            Self::Expiry => "expiry",
            Self::Clawback => "clawback",
            Self::DisputeFreeze => "dispute_freeze",
            Self::DisputeRelease => "dispute_release",
            Self::WriteOff => "write_off",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// Where a lot's credits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LotSource {
    Purchase,
    Subscription,
    Grant,
    Promotion,
}

impl LotSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Grant => "grant",
            Self::Promotion => "promotion",
        }
    }

    /// Lower is spent first: free credits before those a subscription period brings, before
    /// paid packs, which never expire.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Purchase, Self::Subscription, Self::Grant, Self::Promotion].into_iter().find(|s| s.as_str() == value)
    }

    pub fn default_priority(self) -> i32 {
        match self {
            Self::Promotion => 10,
            Self::Grant => 20,
            Self::Subscription => 50,
            Self::Purchase => 100,
        }
    }
}

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
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Reads a user's wallet and locks it until the transaction ends (`FOR UPDATE` on PostgreSQL;
/// on SQLite the transaction already holds the database's write lock).
pub async fn lock_wallet(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<accounts::Model>, DbErr> {
    accounts::Entity::find().filter(accounts::Column::UserId.eq(user_id)).lock_exclusive().one(db).await
}

/// Locks the wallet and reads the caller's idempotency record in one round trip. On PostgreSQL
/// the joined record may be stale after waiting for the row lock; the record's unique key then
/// refuses the second write and the caller's retry replays the first answer. On SQLite the
/// transaction already holds the write lock, so the read is exact.
pub async fn lock_wallet_with_key(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    idempotency: &IdempotentRequest,
) -> Result<Option<(accounts::Model, Option<crate::entities::idempotency_keys::Model>)>, DbErr> {
    use sea_orm::{FromQueryResult, Statement};
    let backend = db.get_database_backend();
    let (sql, values): (&str, Vec<sea_orm::Value>) = if backend == sea_orm::DbBackend::Postgres {
        (
            "SELECT a.*, i.scope AS i_scope, i.key AS i_key, i.fingerprint AS i_fingerprint, \
             i.status_code AS i_status_code, i.response AS i_response, i.created_at AS i_created_at \
             FROM accounts a LEFT JOIN idempotency_keys i ON i.scope = $2 AND i.key = $3 \
             WHERE a.user_id = $1 FOR UPDATE OF a",
            vec![user_id.into(), idempotency.scope.clone().into(), idempotency.key.as_str().to_owned().into()],
        )
    } else {
        (
            "SELECT a.*, i.scope AS i_scope, i.key AS i_key, i.fingerprint AS i_fingerprint, \
             i.status_code AS i_status_code, i.response AS i_response, i.created_at AS i_created_at \
             FROM accounts a LEFT JOIN idempotency_keys i ON i.scope = ? AND i.key = ? WHERE a.user_id = ?",
            vec![idempotency.scope.clone().into(), idempotency.key.as_str().to_owned().into(), user_id.into()],
        )
    };
    let Some(row) = db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await? else {
        return Ok(None);
    };
    let wallet = accounts::Model::from_query_result(&row, "")?;
    let key = match row.try_get::<Option<String>>("", "i_fingerprint")? {
        None => None,
        Some(fingerprint) => Some(crate::entities::idempotency_keys::Model {
            scope: row.try_get("", "i_scope")?,
            key: row.try_get("", "i_key")?,
            fingerprint,
            status_code: row.try_get("", "i_status_code")?,
            response: row.try_get("", "i_response")?,
            created_at: row.try_get("", "i_created_at")?,
        }),
    };
    Ok(Some((wallet, key)))
}

/// Reads a user's wallet without locking it.
pub async fn find_wallet(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<accounts::Model>, DbErr> {
    accounts::Entity::find().filter(accounts::Column::UserId.eq(user_id)).one(db).await
}

/// Writes the wallet's cached figures back.
pub async fn save_wallet(db: &impl ConnectionTrait, wallet: &accounts::Model, now: DateTime<Utc>) -> Result<(), DbErr> {
    accounts::Entity::update_many()
        .col_expr(accounts::Column::Balance, Expr::value(wallet.balance))
        .col_expr(accounts::Column::Held, Expr::value(wallet.held))
        .col_expr(accounts::Column::Debt, Expr::value(wallet.debt))
        .col_expr(accounts::Column::UpdatedAt, Expr::value(now))
        .filter(accounts::Column::Id.eq(wallet.id))
        .exec(db)
        .await?;
    Ok(())
}

/// The order lots are spent in: priority, then soonest expiry (none last), then oldest.
pub fn spend_order(a: &lots::Model, b: &lots::Model) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| match (a.expires_at, b.expires_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// Details common to every transfer a service posts.
#[derive(Debug, Clone, Default)]
pub struct TransferDetails {
    pub description: Option<String>,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: Option<serde_json::Value>,
    pub hold_id: Option<Uuid>,
    pub reference: Option<String>,
}

/// How much one transfer took from one lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotMovement {
    pub lot_id: Uuid,
    pub amount: i64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn new_transfer(
    debit: Uuid,
    credit: Uuid,
    amount: Credits,
    kind: TransferKind,
    debit_balance_after: Option<i64>,
    credit_balance_after: Option<i64>,
    details: TransferDetails,
    idempotency: Option<&IdempotentRequest>,
    lot_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> transfers::Model {
    transfers::Model {
        seq: 0,
        id: Uuid::now_v7(),
        debit_account_id: debit,
        credit_account_id: credit,
        amount: amount.get(),
        kind: kind.as_str().to_owned(),
        debit_balance_after,
        credit_balance_after,
        description: details.description,
        feature: details.feature,
        quantity: details.quantity,
        metadata: details.metadata,
        idempotency_key: idempotency.map(|i| i.key.as_str().to_owned()),
        request_fingerprint: idempotency.map(|i| i.fingerprint.clone()),
        hold_id: details.hold_id,
        lot_id,
        reference: details.reference,
        created_at: now,
    }
}

async fn insert_transfer(db: &impl ConnectionTrait, transfer: &transfers::Model) -> Result<(), DbErr> {
    let mut active: transfers::ActiveModel = transfer.clone().into();
    active.seq = NotSet;
    transfers::Entity::insert(active).exec_without_returning(db).await?;
    Ok(())
}

async fn insert_movements(
    db: &impl ConnectionTrait,
    transfer_id: Uuid,
    movements: &[LotMovement],
) -> Result<(), DbErr> {
    if movements.is_empty() {
        return Ok(());
    }
    transfer_lots::Entity::insert_many(movements.iter().map(|m| transfer_lots::ActiveModel {
        transfer_id: Set(transfer_id),
        lot_id: Set(m.lot_id),
        amount: Set(m.amount),
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Applies what time has done to a locked wallet: posts the expiry of lots past their expiry
/// and releases holds past their time to live. Returns the wallet's live lots in spend order.
///
/// Whatever it changes it writes back to the wallet row itself, before returning: settled state
/// never lives only in memory, so no caller can commit expiries or expired holds while leaving
/// the wallet's cached figures behind (the audit's drifting wallet), whatever it does next.
pub async fn settle(
    db: &impl ConnectionTrait,
    wallet: &mut accounts::Model,
    now: DateTime<Utc>,
) -> Result<Vec<lots::Model>, DbErr> {
    let all = lots_with_credits(db, wallet.id).await?;
    let (expired, mut live): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|lot| lot.expires_at.is_some_and(|at| at <= now));

    let mut changed = !expired.is_empty();
    for lot in expired {
        wallet.balance -= lot.remaining;
        let transfer = new_transfer(
            wallet.id,
            system::EXPIRY,
            Credits::new(lot.remaining).map_err(|e| DbErr::Custom(e.to_string()))?,
            TransferKind::Expiry,
            Some(wallet.balance),
            None,
            TransferDetails { description: Some(format!("{} credits expired", lot.source)), ..Default::default() },
            None,
            Some(lot.id),
            now,
        );
        insert_transfer(db, &transfer).await?;
        lots::Entity::update_many()
            .col_expr(lots::Column::Remaining, Expr::value(0i64))
            .col_expr(lots::Column::ExpiredAt, Expr::value(now))
            .filter(lots::Column::Id.eq(lot.id))
            .exec(db)
            .await?;
        insert_movements(db, transfer.id, &[LotMovement { lot_id: lot.id, amount: lot.remaining }]).await?;
    }

    if wallet.held > 0 {
        let overdue = overdue_holds(wallet.id, now).all(db).await?;
        for hold in overdue {
            holds::Entity::update_many()
                .col_expr(holds::Column::Status, Expr::value(HoldStatus::Expired.as_str()))
                .col_expr(holds::Column::ClosedAt, Expr::value(now))
                .filter(holds::Column::Id.eq(hold.id))
                .exec(db)
                .await?;
            wallet.held -= hold.amount;
            changed = true;
        }
    }
    if changed {
        save_wallet(db, wallet, now).await?;
    }

    live.sort_by(spend_order);
    Ok(live)
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

/// What a wallet can spend now: its balance less open holds, or nothing while it owes a debt.
pub fn available(wallet: &accounts::Model) -> i64 {
    if wallet.debt > 0 { 0 } else { (wallet.balance - wallet.held).max(0) }
}

/// Takes from the lots what `plan_take` plans, each update guarded so that a lot cannot go
/// below zero; returns what it took from each and what it could not find.
async fn take_from_lots(
    db: &impl ConnectionTrait,
    lots_in_order: &[lots::Model],
    amount: i64,
) -> Result<(Vec<LotMovement>, i64), DbErr> {
    let (movements, left) = plan_take(lots_in_order, amount);
    for movement in &movements {
        let updated = lots::Entity::update_many()
            .col_expr(
                lots::Column::Remaining,
                sea_orm::sea_query::ExprTrait::sub(Expr::col(lots::Column::Remaining), movement.amount),
            )
            .filter(lots::Column::Id.eq(movement.lot_id))
            .filter(lots::Column::Remaining.gte(movement.amount))
            .exec(db)
            .await?;
        if updated.rows_affected != 1 {
            return Err(DbErr::Custom(format!("lot {} changed under a locked wallet", movement.lot_id)));
        }
    }
    Ok((movements, left))
}

/// What a spend of `amount` would take from each lot, in the order given, and what it could not
/// find. Pure: the caller writes it.
pub fn plan_take(lots_in_order: &[lots::Model], amount: i64) -> (Vec<LotMovement>, i64) {
    let mut left = amount;
    let mut movements = Vec::new();
    for lot in lots_in_order {
        if left == 0 {
            break;
        }
        let take = lot.remaining.min(left);
        if take > 0 {
            movements.push(LotMovement { lot_id: lot.id, amount: take });
            left -= take;
        }
    }
    (movements, left)
}

/// What `tollgate_spend` (PostgreSQL's one-round-trip spend, see the migration that creates it)
/// decided.
#[derive(Debug)]
pub enum SpendInDatabase {
    /// Spent and committed; the answer as stored for replays.
    Spent(String),
    /// The key was seen with this request before: its answer.
    Replay {
        status: i16,
        body: String,
    },
    /// The key was seen with another request.
    Mismatch,
    NoWallet,
    /// Refused, with the wallet's figures; nothing was written.
    Refused {
        balance: i64,
        held: i64,
        debt: i64,
    },
    /// A lot has expired or a hold is overdue: nothing was written; run the general path.
    Settle,
}

/// PostgreSQL only: the whole spend in one statement, committed on return (autocommit). The
/// transfer gives the id, details, key and time; `view` is the answer's transfer object without
/// its lots, which the function adds with the wallet's figures before storing the answer.
pub async fn spend_in_database(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    transfer: &transfers::Model,
    idempotency: &IdempotentRequest,
    view: serde_json::Value,
) -> Result<SpendInDatabase, DbErr> {
    use sea_orm::Statement;
    let sql = "SELECT outcome, balance, held, debt, status_code, response FROM tollgate_spend($1::uuid, $2::bigint, \
               $3::uuid, $4::text, $5::text, $6::text, $7::uuid, $8::text, $9::text, $10::bigint, $11::jsonb, \
               $12::timestamptz, $13::jsonb)";
    let values: Vec<sea_orm::Value> = vec![
        user_id.into(),
        transfer.amount.into(),
        transfer.credit_account_id.into(),
        idempotency.scope.clone().into(),
        idempotency.key.as_str().to_owned().into(),
        idempotency.fingerprint.clone().into(),
        transfer.id.into(),
        transfer.description.clone().into(),
        transfer.feature.clone().into(),
        transfer.quantity.into(),
        transfer.metadata.clone().into(),
        transfer.created_at.into(),
        view.into(),
    ];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values))
        .await?
        .ok_or_else(|| DbErr::Custom("tollgate_spend returned no row".to_owned()))?;
    spend_outcome(&row)
}

/// Reads one answer of `tollgate_spend`.
fn spend_outcome(row: &sea_orm::QueryResult) -> Result<SpendInDatabase, DbErr> {
    let outcome: String = row.try_get("", "outcome")?;
    let figures = || -> Result<(i64, i64, i64), DbErr> {
        Ok((row.try_get("", "balance")?, row.try_get("", "held")?, row.try_get("", "debt")?))
    };
    Ok(match outcome.as_str() {
        "spent" => SpendInDatabase::Spent(row.try_get("", "response")?),
        "replay" => {
            SpendInDatabase::Replay { status: row.try_get("", "status_code")?, body: row.try_get("", "response")? }
        }
        "mismatch" => SpendInDatabase::Mismatch,
        "no_wallet" => SpendInDatabase::NoWallet,
        "debt" | "insufficient" => {
            let (balance, held, debt) = figures()?;
            SpendInDatabase::Refused { balance, held, debt }
        }
        "settle" => SpendInDatabase::Settle,
        other => return Err(DbErr::Custom(format!("tollgate_spend answered an unknown outcome `{other}`"))),
    })
}

/// SQLite literals for a spend batch's one-call write (`bulk`). SQLite has no data-modifying CTEs,
/// so the writes go as one multi-statement call; values are quoted exactly as SQLite reads them and as
/// sqlx would have bound them (UUIDs as 16-byte blobs, timestamps as sqlx's RFC 3339 text).
pub(crate) mod sqlite_literal {
    use chrono::{DateTime, SecondsFormat, Utc};
    use sea_orm::DbErr;
    use uuid::Uuid;

    pub fn text(value: &str) -> Result<String, DbErr> {
        if value.contains('\0') {
            return Err(DbErr::Custom("a NUL character cannot be written as an SQLite literal".to_owned()));
        }
        Ok(format!("'{}'", value.replace('\'', "''")))
    }

    pub fn opt_text(value: Option<&str>) -> Result<String, DbErr> {
        value.map_or(Ok("NULL".to_owned()), text)
    }

    pub fn opt_int(value: Option<i64>) -> String {
        value.map_or("NULL".to_owned(), |v| v.to_string())
    }

    pub fn uuid(value: Uuid) -> String {
        format!("X'{}'", value.simple())
    }

    pub fn time(value: DateTime<Utc>) -> Result<String, DbErr> {
        text(&value.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    }
}

/// Credits leaving a wallet.
#[derive(Debug, Clone)]
pub struct Debit {
    /// The system account receiving them.
    pub to: Uuid,
    pub amount: Credits,
    pub kind: TransferKind,
    pub details: TransferDetails,
}

/// Moves credits out of a settled, locked wallet, taking them from its live lots in spend order.
/// The caller has checked that the wallet can afford it.
pub async fn debit_wallet(
    db: &impl ConnectionTrait,
    wallet: &mut accounts::Model,
    live_lots: &[lots::Model],
    debit: Debit,
    idempotency: Option<&IdempotentRequest>,
    now: DateTime<Utc>,
) -> Result<(transfers::Model, Vec<LotMovement>), DbErr> {
    let Debit { to, amount, kind, details } = debit;
    let (movements, left) = take_from_lots(db, live_lots, amount.get()).await?;
    if left != 0 {
        return Err(DbErr::Custom(format!(
            "wallet {} has {} fewer credits in its lots than its balance says",
            wallet.id, left
        )));
    }
    wallet.balance -= amount.get();
    let transfer =
        new_transfer(wallet.id, to, amount, kind, Some(wallet.balance), None, details, idempotency, None, now);
    insert_transfer(db, &transfer).await?;
    insert_movements(db, transfer.id, &movements).await?;
    Ok((transfer, movements))
}

/// Takes credits back from a locked, settled wallet (a refund, a dispute): first what remains
/// of the lot they were bought as, then the wallet's other live lots in spend order; whatever
/// was already spent becomes debt, which blocks spending until new credits cover it.
/// Returns the transfer and the debt it added.
pub async fn claw_back(
    db: &impl ConnectionTrait,
    wallet: &mut accounts::Model,
    live_lots: Vec<lots::Model>,
    lot_id: Uuid,
    debit: Debit,
    now: DateTime<Utc>,
) -> Result<(transfers::Model, i64), DbErr> {
    let Debit { to, amount, kind, details } = debit;
    let (mut ordered, rest): (Vec<_>, Vec<_>) = live_lots.into_iter().partition(|lot| lot.id == lot_id);
    ordered.extend(rest);
    let (movements, left) = take_from_lots(db, &ordered, amount.get()).await?;
    wallet.balance -= amount.get();
    wallet.debt += left;
    let transfer = new_transfer(wallet.id, to, amount, kind, Some(wallet.balance), None, details, None, None, now);
    insert_transfer(db, &transfer).await?;
    insert_movements(db, transfer.id, &movements).await?;
    Ok((transfer, left))
}

/// What left these lots through expiry. A refund or a dispute takes back only what is still in
/// the lots it paid for plus what was spent from them: credits that already expired left the
/// wallet once and are not taken a second time.
pub async fn expired_from_lots(db: &impl ConnectionTrait, lot_ids: &[Uuid]) -> Result<i64, DbErr> {
    if lot_ids.is_empty() {
        return Ok(0);
    }
    let total: Option<Option<i64>> = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "total")
        .filter(transfers::Column::Kind.eq(TransferKind::Expiry.as_str()))
        .filter(transfers::Column::LotId.is_in(lot_ids.iter().copied()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(total.flatten().unwrap_or(0))
}

/// Moves credits between two system accounts (a lost dispute: from `disputes` to `clawback`).
pub async fn transfer_between_system_accounts(
    db: &impl ConnectionTrait,
    from: Uuid,
    debit: Debit,
    now: DateTime<Utc>,
) -> Result<transfers::Model, DbErr> {
    let Debit { to, amount, kind, details } = debit;
    let transfer = new_transfer(from, to, amount, kind, None, None, details, None, None, now);
    insert_transfer(db, &transfer).await?;
    Ok(transfer)
}

/// A lot about to enter a wallet.
#[derive(Debug, Clone)]
pub struct NewLot {
    pub source: LotSource,
    pub kind: TransferKind,
    /// The system account the credits come from.
    pub from: Uuid,
    pub amount: Credits,
    pub priority: i32,
    pub expires_at: Option<DateTime<Utc>>,
    /// What caused it; unique, so one cause can never grant twice.
    pub reference: String,
}

/// Moves credits into a locked wallet as a new lot. An outstanding debt is covered first from
/// the new lot (recorded as a movement of this transfer against the lot).
pub async fn credit_wallet(
    db: &impl ConnectionTrait,
    wallet: &mut accounts::Model,
    lot: NewLot,
    details: TransferDetails,
    idempotency: Option<&IdempotentRequest>,
    now: DateTime<Utc>,
) -> Result<(transfers::Model, lots::Model), DbErr> {
    let amount = lot.amount.get();
    // Every way in (the API, the CLI, Stripe, the sandbox) is bounded here too, so no lot can be
    // large enough for the books' sums to be at risk.
    if amount > Credits::MAX_PER_REQUEST {
        return Err(DbErr::Custom(format!(
            "a lot may hold at most {} credits, not {amount}",
            Credits::MAX_PER_REQUEST
        )));
    }
    wallet.balance =
        wallet.balance.checked_add(amount).ok_or_else(|| DbErr::Custom("wallet balance would overflow".to_owned()))?;
    let cover = wallet.debt.min(amount);
    wallet.debt -= cover;

    let lot_id = Uuid::now_v7();
    let transfer = new_transfer(
        lot.from,
        wallet.id,
        lot.amount,
        lot.kind,
        None,
        Some(wallet.balance),
        details,
        idempotency,
        Some(lot_id),
        now,
    );
    let model = lots::Model {
        id: lot_id,
        account_id: wallet.id,
        source: lot.source.as_str().to_owned(),
        amount,
        remaining: amount - cover,
        priority: lot.priority,
        expires_at: lot.expires_at,
        expired_at: None,
        reference: lot.reference,
        transfer_id: transfer.id,
        created_at: now,
    };
    lots::Entity::insert(lots::ActiveModel::from(model.clone())).exec_without_returning(db).await?;
    insert_transfer(db, &transfer).await?;
    if cover > 0 {
        insert_movements(db, transfer.id, &[LotMovement { lot_id, amount: cover }]).await?;
    }
    Ok((transfer, model))
}

/// A hold's life: open until captured, released, or past its time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Open,
    Captured,
    Released,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "captured" => Self::Captured,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => Self::Open,
        }
    }
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
