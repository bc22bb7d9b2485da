//! The rules of spending, granting and holding credits. Each write runs in one transaction that
//! first locks the wallet, then checks the caller's idempotency key, settles expiry, checks the
//! rules, writes, stores the answer for retries, and commits.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    bulk,
    dto::*,
    ledger::{
        self, Debit, HoldStatus, LotMovement, LotSource, NewLot, SpendInDatabase, TransferDetails, TransferKind, system,
    },
};
use crate::{
    db,
    domain::Credits,
    entities::{accounts, features, holds, lots, transfers, users},
    idempotency::{self, IdempotentRequest, Lookup, StoredResponse},
};

/// What went wrong, in the ledger's words.
#[derive(Debug, thiserror::Error)]
pub enum CreditsError {
    #[error("the wallet does not exist")]
    WalletNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error("not enough credits: {available} available, {requested} requested")]
    InsufficientCredits { available: i64, requested: i64 },
    #[error("the wallet owes {debt} credits from a refund or dispute; they must be covered before spending")]
    OutstandingDebt { debt: i64 },
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("no feature `{0}` on the rate card")]
    UnknownFeature(String),
    #[error("feature `{0}` is not available")]
    FeatureInactive(String),
    #[error("a feature with key `{0}` already exists")]
    FeatureExists(String),
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold expired at {expires_at}; its credits were released")]
    HoldExpired { expires_at: DateTime<Utc> },
    #[error("the hold is {status}")]
    HoldNotOpen { status: String },
    #[error("the hold was already captured for {captured}")]
    HoldAlreadyCaptured { captured: i64 },
    #[error("cannot capture {requested}: the hold is for {held}")]
    CaptureExceedsHold { held: i64, requested: i64 },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// A write's answer: done now, or replayed from the first request with the same key.
pub enum Outcome<T> {
    Fresh(T),
    Replayed(StoredResponse),
}

/// What to charge: an explicit amount or a feature priced by the rate card.
#[derive(Debug, Clone)]
pub enum Charge {
    Amount(Credits),
    Feature { key: String, quantity: i64 },
}

/// A priced charge.
#[derive(Debug, Clone)]
pub struct Priced {
    pub amount: Credits,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> CreditsError {
    CreditsError::Invalid { field, message: message.into() }
}

/// Checks an amount a client sent.
pub fn parse_amount(field: &'static str, value: i64, allow_zero: bool) -> Result<Credits, CreditsError> {
    if value < 0 || (value == 0 && !allow_zero) {
        return Err(invalid(
            field,
            if allow_zero { "must not be negative" } else { "must be a positive whole number" },
        ));
    }
    if value > Credits::MAX_PER_REQUEST {
        return Err(invalid(field, format!("must be at most {}", Credits::MAX_PER_REQUEST)));
    }
    Credits::new(value).map_err(|e| invalid(field, e.to_string()))
}

/// Builds a charge from the request's `amount` or `feature` + `quantity`.
pub fn parse_charge(
    amount: Option<i64>,
    feature: Option<String>,
    quantity: Option<i64>,
) -> Result<Charge, CreditsError> {
    match (amount, feature) {
        (Some(_), Some(_)) => Err(invalid("amount", "give either amount or feature, not both")),
        (None, None) => Err(invalid("amount", "give an amount, or a feature and quantity")),
        (Some(amount), None) => {
            if quantity.is_some() {
                return Err(invalid("quantity", "quantity goes with feature, not amount"));
            }
            Ok(Charge::Amount(parse_amount("amount", amount, false)?))
        }
        (None, Some(key)) => {
            let quantity = quantity.unwrap_or(1);
            if !(1..=1_000_000_000).contains(&quantity) {
                return Err(invalid("quantity", "must be between 1 and 1000000000"));
            }
            Ok(Charge::Feature { key, quantity })
        }
    }
}

/// Checks a description and metadata the client sent.
pub fn check_details(description: &Option<String>, metadata: &Option<serde_json::Value>) -> Result<(), CreditsError> {
    if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(invalid("description", "must be at most 500 characters"));
    }
    if description.as_ref().is_some_and(|d| d.contains('\0')) {
        return Err(invalid("description", "must not contain NUL characters"));
    }
    if let Some(metadata) = metadata {
        if !metadata.is_object() {
            return Err(invalid("metadata", "must be a JSON object"));
        }
        if metadata.to_string().len() > 4096 {
            return Err(invalid("metadata", "must be at most 4 KiB"));
        }
    }
    Ok(())
}

/// Prices a charge with the rate card.
pub async fn price(db: &impl ConnectionTrait, charge: &Charge) -> Result<Priced, CreditsError> {
    match charge {
        Charge::Amount(amount) => Ok(Priced { amount: *amount, feature: None, quantity: None }),
        Charge::Feature { key, quantity } => {
            let feature = features::Entity::find_by_id(key.clone())
                .one(db)
                .await?
                .ok_or_else(|| CreditsError::UnknownFeature(key.clone()))?;
            if !feature.active {
                return Err(CreditsError::FeatureInactive(key.clone()));
            }
            let unit = Credits::new(feature.credits_per_unit).map_err(|e| invalid("feature", e.to_string()))?;
            let amount = unit.checked_mul(*quantity).map_err(|e| invalid("quantity", e.to_string()))?;
            if amount.get() > Credits::MAX_PER_REQUEST {
                return Err(invalid("quantity", "the priced amount is too large"));
            }
            Ok(Priced { amount, feature: Some(key.clone()), quantity: Some(*quantity) })
        }
    }
}

/// Locks the caller's wallet and, for a keyed request, reads its idempotency record in the same
/// round trip. Returns the answer to replay when the request was seen before; a key reused with
/// another request is refused.
async fn open_wallet(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    request: Option<&IdempotentRequest>,
) -> Result<(accounts::Model, Option<StoredResponse>), CreditsError> {
    let Some(request) = request else {
        return Ok((ledger::lock_wallet(txn, user_id).await?.ok_or(CreditsError::WalletNotFound)?, None));
    };
    let (wallet, stored) =
        ledger::lock_wallet_with_key(txn, user_id, request).await?.ok_or(CreditsError::WalletNotFound)?;
    match idempotency::judge(request, stored) {
        Lookup::New => Ok((wallet, None)),
        Lookup::Replay(answer) => Ok((wallet, Some(answer))),
        Lookup::Mismatch => Err(CreditsError::IdempotencyKeyReused),
    }
}

/// Stores the answer (when keyed) and commits. `Ok(false)` means a concurrent request with the
/// same key committed first: the caller runs again and replays it.
async fn finish<T: serde::Serialize>(
    txn: DatabaseTransaction,
    request: Option<&IdempotentRequest>,
    response: &T,
) -> Result<bool, CreditsError> {
    if let Some(request) = request {
        match idempotency::store(&txn, request, 200, response).await {
            Err(e) if db::is_unique_violation(&e) => {
                txn.rollback().await?;
                return Ok(false);
            }
            other => other?,
        }
    }
    match txn.commit().await {
        Err(e) if db::is_unique_violation(&e) => Ok(false),
        other => other.map(|_| true).map_err(Into::into),
    }
}

pub(crate) fn ensure_affordable(wallet: &accounts::Model, amount: Credits) -> Result<(), CreditsError> {
    if wallet.debt > 0 || ledger::available(wallet) < amount.get() {
        return Err(refusal(wallet.balance, wallet.held, wallet.debt, amount));
    }
    Ok(())
}

/// The answer to a write, with the wallet's figures after it.
fn movements_view(movements: Vec<LotMovement>) -> Vec<LotMovementView> {
    movements.into_iter().map(Into::into).collect()
}

/// A spend request, parsed.
#[derive(Debug, Clone)]
pub struct SpendCommand {
    pub charge: Charge,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// Spends credits from the user's wallet.
pub async fn spend(
    db: &DatabaseConnection,
    user_id: Uuid,
    request: &IdempotentRequest,
    command: SpendCommand,
) -> Result<Outcome<SpendResponse>, CreditsError> {
    let spend = PricedSpend::of(db, command).await?;
    spend_priced(db, user_id, request, &spend).await
}

/// A spend priced by the rate card, ready to post.
#[derive(Debug, Clone)]
pub struct PricedSpend {
    pub amount: Credits,
    pub details: TransferDetails,
}

impl PricedSpend {
    pub async fn of(db: &impl ConnectionTrait, command: SpendCommand) -> Result<Self, CreditsError> {
        let priced = price(db, &command.charge).await?;
        let details = TransferDetails {
            description: command.description,
            feature: priced.feature,
            quantity: priced.quantity,
            metadata: command.metadata,
            ..Default::default()
        };
        Ok(Self { amount: priced.amount, details })
    }

    /// The spend's transfer before its wallet is locked (the debit account is filled in then).
    pub fn transfer(&self, request: &IdempotentRequest, now: DateTime<Utc>) -> transfers::Model {
        ledger::new_transfer(
            Uuid::nil(),
            system::USAGE,
            self.amount,
            TransferKind::Spend,
            None,
            None,
            self.details.clone(),
            Some(request),
            None,
            now,
        )
    }

    /// The transfer as the answer shows it, without its lots (the database adds them).
    pub fn view(transfer: &transfers::Model) -> Result<serde_json::Value, DbErr> {
        serde_json::to_value(TransferView::new(transfer, Vec::new())).map_err(json_error)
    }
}

/// A spend's answer, or why there is none.
pub type SpendResult = Result<Outcome<SpendResponse>, CreditsError>;

/// Spends a priced charge on its own: on PostgreSQL one call to `tollgate_spend` unless the
/// wallet has something to settle; otherwise (and always on SQLite) the general path in one
/// transaction. A request that races another with the same key runs again and replays it.
pub(crate) async fn spend_priced(
    db: &DatabaseConnection,
    user_id: Uuid,
    request: &IdempotentRequest,
    spend: &PricedSpend,
) -> SpendResult {
    let mut settle_first = db::backend(db) != DbBackend::Postgres;
    for _attempt in 0..3 {
        let now = Utc::now();
        if !settle_first {
            let transfer = spend.transfer(request, now);
            let view = PricedSpend::view(&transfer)?;
            match ledger::spend_in_database(db, user_id, &transfer, request, view).await {
                // A concurrent request with the same key committed first: run again to replay it.
                Err(e) if db::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
                Ok(outcome) => match answer_from_database(outcome, spend.amount) {
                    Some(answer) => return answer,
                    None => {
                        settle_first = true;
                        continue;
                    }
                },
            }
        }

        let txn = db::begin_write(db).await?;
        match spend_general(&txn, user_id, request, spend, now).await {
            // A concurrent request with the same key committed first: run again to replay it.
            Err(CreditsError::Database(e)) if db::is_unique_violation(&e) => {
                txn.rollback().await?;
                continue;
            }
            Err(e) => return Err(e),
            Ok(Outcome::Replayed(stored)) => {
                txn.rollback().await?;
                return Ok(Outcome::Replayed(stored));
            }
            Ok(fresh) => match txn.commit().await {
                Err(e) if db::is_unique_violation(&e) => continue,
                other => {
                    other?;
                    return Ok(fresh);
                }
            },
        }
    }
    Err(DbErr::Custom("idempotent spend did not settle after retries".to_owned()).into())
}

/// The answer `tollgate_spend` gave, in the server's words; `None` when the wallet has something
/// to settle first and the general path must run.
pub(crate) fn answer_from_database(outcome: SpendInDatabase, amount: Credits) -> Option<SpendResult> {
    Some(match outcome {
        SpendInDatabase::Spent(body) => {
            serde_json::from_str(&body).map(Outcome::Fresh).map_err(|e| CreditsError::Database(json_error(e)))
        }
        SpendInDatabase::Replay { status, body } => serde_json::from_str(&body)
            .map(|body| Outcome::Replayed(StoredResponse { status: u16::try_from(status).unwrap_or(200), body }))
            .map_err(|e| CreditsError::Database(json_error(e))),
        SpendInDatabase::Mismatch => Err(CreditsError::IdempotencyKeyReused),
        SpendInDatabase::NoWallet => Err(CreditsError::WalletNotFound),
        SpendInDatabase::Refused { balance, held, debt } => Err(refusal(balance, held, debt, amount)),
        SpendInDatabase::Settle => return None,
    })
}

/// The general spend inside `txn`, a writing transaction: lock the wallet, judge the key, settle,
/// check, then take and write as a batch of one (`bulk::take_and_write`). Not committed.
pub(crate) async fn spend_general(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    request: &IdempotentRequest,
    spend: &PricedSpend,
    now: DateTime<Utc>,
) -> SpendResult {
    let (mut wallet, replay) = open_wallet(txn, user_id, Some(request)).await?;
    if let Some(stored) = replay {
        return Ok(Outcome::Replayed(stored));
    }
    let lots = ledger::settle(txn, &mut wallet, now).await?;
    ensure_affordable(&wallet, spend.amount)?;
    Ok(Outcome::Fresh(bulk::take_and_write(txn, wallet, lots, request, spend, now).await?))
}

fn json_error(e: serde_json::Error) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// Why a wallet with these figures cannot spend `amount`.
fn refusal(balance: i64, held: i64, debt: i64, amount: Credits) -> CreditsError {
    if debt > 0 {
        return CreditsError::OutstandingDebt { debt };
    }
    CreditsError::InsufficientCredits { available: (balance - held).max(0), requested: amount.get() }
}

/// Who receives a grant.
#[derive(Debug, Clone)]
pub enum Recipient {
    Id(Uuid),
    Email(String),
}

/// A grant, parsed.
#[derive(Debug, Clone)]
pub struct GrantCommand {
    pub recipient: Recipient,
    pub amount: Credits,
    pub reason: String,
    pub source: LotSource,
    pub priority: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Grants credits to a user as a new lot (admin). The lot's reference is the admin's
/// idempotency key, so one key can never grant twice.
pub async fn grant(
    db: &DatabaseConnection,
    request: &IdempotentRequest,
    command: GrantCommand,
) -> Result<Outcome<GrantResponse>, CreditsError> {
    let user = match &command.recipient {
        Recipient::Id(id) => users::Entity::find_by_id(*id).one(db).await?,
        Recipient::Email(email) => {
            users::Entity::find().filter(users::Column::Email.eq(email.trim().to_lowercase())).one(db).await?
        }
    }
    .ok_or(CreditsError::UserNotFound)?;

    for _attempt in 0..3 {
        let now = Utc::now();
        let txn = db::begin_write(db).await?;
        let (mut wallet, replay) = open_wallet(&txn, user.id, Some(request)).await?;
        if let Some(stored) = replay {
            txn.rollback().await?;
            return Ok(Outcome::Replayed(stored));
        }
        ledger::settle(&txn, &mut wallet, now).await?;
        let (kind, from) = match command.source {
            LotSource::Promotion => (TransferKind::Promotion, system::PROMOTIONS),
            _ => (TransferKind::Grant, system::GRANTS),
        };
        let lot = NewLot {
            source: command.source,
            kind,
            from,
            amount: command.amount,
            priority: command.priority.unwrap_or_else(|| command.source.default_priority()),
            expires_at: command.expires_at,
            reference: format!("grant:{}:{}", request.scope, request.key),
        };
        let details = TransferDetails { description: Some(command.reason.clone()), ..Default::default() };
        let credited = ledger::credit_wallet(&txn, &mut wallet, lot, details, Some(request), now).await;
        let (transfer, lot) = match credited {
            Err(e) if db::is_unique_violation(&e) => {
                txn.rollback().await?;
                continue;
            }
            other => other?,
        };
        ledger::save_wallet(&txn, &wallet, now).await?;
        let movements = if lot.remaining < lot.amount {
            vec![LotMovementView { lot_id: lot.id, amount: lot.amount - lot.remaining }]
        } else {
            Vec::new()
        };
        let response = GrantResponse {
            user_id: user.id,
            transfer: TransferView::new(&transfer, movements),
            lot_id: lot.id,
            balance: WalletBalance::of(&wallet),
        };
        if finish(txn, Some(request), &response).await? {
            return Ok(Outcome::Fresh(response));
        }
    }
    Err(DbErr::Custom("idempotent grant did not settle after retries".to_owned()).into())
}

/// The wallet's figures as of now, counting expired lots and holds as gone even before the
/// expiry job has posted them. Writes nothing.
pub async fn balance(db: &DatabaseConnection, user_id: Uuid) -> Result<BalanceResponse, CreditsError> {
    let now = Utc::now();
    let mut wallet = ledger::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let live = ledger::lots_with_credits(db, wallet.id).await?;
    let mut expiring = Vec::new();
    for lot in live {
        match lot.expires_at {
            Some(at) if at <= now => wallet.balance -= lot.remaining,
            Some(_) => expiring.push(lot),
            None => {}
        }
    }
    if wallet.held > 0 {
        let overdue = ledger::overdue_holds(wallet.id, now).all(db).await?;
        wallet.held -= overdue.iter().map(|h| h.amount).sum::<i64>();
    }
    expiring.sort_by_key(|lot| lot.expires_at);
    expiring.truncate(5);
    Ok(BalanceResponse {
        wallet: WalletBalance::of(&wallet),
        expiring_soon: expiring.into_iter().map(Into::into).collect(),
    })
}

/// A hold request, parsed.
#[derive(Debug, Clone)]
pub struct HoldCommand {
    pub charge: Charge,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub ttl: Duration,
}

/// The default and the longest time a hold lives.
pub const DEFAULT_HOLD_TTL_SECONDS: i64 = 300;
pub const MAX_HOLD_TTL_SECONDS: i64 = 3600;

/// Reserves credits for an operation whose cost is known only afterwards.
pub async fn create_hold(
    db: &DatabaseConnection,
    user_id: Uuid,
    request: &IdempotentRequest,
    command: HoldCommand,
) -> Result<Outcome<HoldResponse>, CreditsError> {
    let priced = price(db, &command.charge).await?;
    for _attempt in 0..3 {
        let now = Utc::now();
        let txn = db::begin_write(db).await?;
        let (mut wallet, replay) = open_wallet(&txn, user_id, Some(request)).await?;
        if let Some(stored) = replay {
            txn.rollback().await?;
            return Ok(Outcome::Replayed(stored));
        }
        ledger::settle(&txn, &mut wallet, now).await?;
        ensure_affordable(&wallet, priced.amount)?;
        let hold = holds::Model {
            id: Uuid::now_v7(),
            account_id: wallet.id,
            amount: priced.amount.get(),
            status: HoldStatus::Open.as_str().to_owned(),
            feature: priced.feature.clone(),
            quantity: priced.quantity,
            description: command.description.clone(),
            metadata: command.metadata.clone(),
            captured_amount: None,
            capture_transfer_id: None,
            expires_at: now + command.ttl,
            created_at: now,
            closed_at: None,
        };
        holds::Entity::insert(holds::ActiveModel::from(hold.clone())).exec_without_returning(&txn).await?;
        wallet.held += hold.amount;
        ledger::save_wallet(&txn, &wallet, now).await?;
        let response = HoldResponse { hold: (&hold).into(), transfer: None, balance: WalletBalance::of(&wallet) };
        if finish(txn, Some(request), &response).await? {
            return Ok(Outcome::Fresh(response));
        }
    }
    Err(DbErr::Custom("idempotent hold did not settle after retries".to_owned()).into())
}

async fn find_hold(db: &impl ConnectionTrait, wallet_id: Uuid, hold_id: Uuid) -> Result<holds::Model, CreditsError> {
    holds::Entity::find_by_id(hold_id)
        .filter(holds::Column::AccountId.eq(wallet_id))
        .one(db)
        .await?
        .ok_or(CreditsError::HoldNotFound)
}

async fn transfer_view(
    db: &impl ConnectionTrait,
    transfer_id: Option<Uuid>,
) -> Result<Option<TransferView>, CreditsError> {
    let Some(id) = transfer_id else {
        return Ok(None);
    };
    let Some(transfer) = transfers::Entity::find().filter(transfers::Column::Id.eq(id)).one(db).await? else {
        return Ok(None);
    };
    let movements = ledger::movements_of(db, &[id])
        .await?
        .into_iter()
        .map(|m| LotMovementView { lot_id: m.lot_id, amount: m.amount })
        .collect();
    Ok(Some(TransferView::new(&transfer, movements)))
}

/// A capture, parsed.
#[derive(Debug, Clone)]
pub struct CaptureCommand {
    pub amount: Credits,
    pub description: Option<String>,
}

/// Spends the actual cost (at most the hold) and releases the rest. Capturing again with the
/// same amount answers as the first capture did.
pub async fn capture_hold(
    db: &DatabaseConnection,
    user_id: Uuid,
    hold_id: Uuid,
    request: Option<&IdempotentRequest>,
    command: CaptureCommand,
) -> Result<Outcome<HoldResponse>, CreditsError> {
    for _attempt in 0..3 {
        let now = Utc::now();
        let txn = db::begin_write(db).await?;
        let (mut wallet, replay) = open_wallet(&txn, user_id, request).await?;
        if let Some(stored) = replay {
            txn.rollback().await?;
            return Ok(Outcome::Replayed(stored));
        }
        let mut hold = find_hold(&txn, wallet.id, hold_id).await?;
        match HoldStatus::parse(&hold.status) {
            HoldStatus::Captured => {
                let captured = hold.captured_amount.unwrap_or_default();
                if captured != command.amount.get() {
                    return Err(CreditsError::HoldAlreadyCaptured { captured });
                }
                let transfer = transfer_view(&txn, hold.capture_transfer_id).await?;
                let response = HoldResponse { hold: (&hold).into(), transfer, balance: WalletBalance::of(&wallet) };
                txn.rollback().await?;
                return Ok(Outcome::Fresh(response));
            }
            HoldStatus::Expired => {
                return Err(CreditsError::HoldExpired { expires_at: hold.expires_at });
            }
            HoldStatus::Released => {
                return Err(CreditsError::HoldNotOpen { status: hold.status });
            }
            HoldStatus::Open if hold.expires_at <= now => {
                return Err(CreditsError::HoldExpired { expires_at: hold.expires_at });
            }
            HoldStatus::Open => {}
        }
        if command.amount.get() > hold.amount {
            return Err(CreditsError::CaptureExceedsHold { held: hold.amount, requested: command.amount.get() });
        }
        let lots = ledger::settle(&txn, &mut wallet, now).await?;
        wallet.held -= hold.amount;
        let mut transfer = None;
        if !command.amount.is_zero() {
            if wallet.debt > 0 {
                return Err(CreditsError::OutstandingDebt { debt: wallet.debt });
            }
            let spendable = wallet.balance - wallet.held;
            if spendable < command.amount.get() {
                return Err(CreditsError::InsufficientCredits {
                    available: spendable.max(0),
                    requested: command.amount.get(),
                });
            }
            let details = TransferDetails {
                description: command.description.clone().or_else(|| hold.description.clone()),
                feature: hold.feature.clone(),
                quantity: hold.quantity,
                metadata: hold.metadata.clone(),
                hold_id: Some(hold.id),
                ..Default::default()
            };
            let (posted, movements) = ledger::debit_wallet(
                &txn,
                &mut wallet,
                &lots,
                Debit { to: system::USAGE, amount: command.amount, kind: TransferKind::Spend, details },
                request,
                now,
            )
            .await?;
            transfer = Some(TransferView::new(&posted, movements_view(movements)));
        }
        hold.status = HoldStatus::Captured.as_str().to_owned();
        hold.captured_amount = Some(command.amount.get());
        hold.capture_transfer_id = transfer.as_ref().map(|t| t.id);
        hold.closed_at = Some(now);
        let closed = holds::Entity::update_many()
            .col_expr(holds::Column::Status, Expr::value(hold.status.clone()))
            .col_expr(holds::Column::CapturedAmount, Expr::value(hold.captured_amount))
            .col_expr(holds::Column::CaptureTransferId, Expr::value(hold.capture_transfer_id))
            .col_expr(holds::Column::ClosedAt, Expr::value(now))
            .filter(holds::Column::Id.eq(hold.id))
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
            .exec(&txn)
            .await?;
        if closed.rows_affected != 1 {
            return Err(DbErr::Custom(format!("hold {} changed under a locked wallet", hold.id)).into());
        }
        ledger::save_wallet(&txn, &wallet, now).await?;
        let response = HoldResponse { hold: (&hold).into(), transfer, balance: WalletBalance::of(&wallet) };
        if finish(txn, request, &response).await? {
            return Ok(Outcome::Fresh(response));
        }
    }
    Err(DbErr::Custom("idempotent capture did not settle after retries".to_owned()).into())
}

/// Releases a hold without spending. Releasing a released or expired hold is a no-op.
pub async fn release_hold(
    db: &DatabaseConnection,
    user_id: Uuid,
    hold_id: Uuid,
    request: Option<&IdempotentRequest>,
) -> Result<Outcome<HoldResponse>, CreditsError> {
    for _attempt in 0..3 {
        let now = Utc::now();
        let txn = db::begin_write(db).await?;
        let (mut wallet, replay) = open_wallet(&txn, user_id, request).await?;
        if let Some(stored) = replay {
            txn.rollback().await?;
            return Ok(Outcome::Replayed(stored));
        }
        let hold = find_hold(&txn, wallet.id, hold_id).await?;
        ledger::settle(&txn, &mut wallet, now).await?;
        // Settling may just have expired this very hold.
        let mut hold = find_hold(&txn, wallet.id, hold.id).await?;
        match HoldStatus::parse(&hold.status) {
            HoldStatus::Captured => {
                return Err(CreditsError::HoldAlreadyCaptured { captured: hold.captured_amount.unwrap_or_default() });
            }
            HoldStatus::Released | HoldStatus::Expired => {
                let response =
                    HoldResponse { hold: (&hold).into(), transfer: None, balance: WalletBalance::of(&wallet) };
                if finish(txn, request, &response).await? {
                    return Ok(Outcome::Fresh(response));
                }
                continue;
            }
            HoldStatus::Open => {}
        }
        holds::Entity::update_many()
            .col_expr(holds::Column::Status, Expr::value(HoldStatus::Released.as_str()))
            .col_expr(holds::Column::ClosedAt, Expr::value(now))
            .filter(holds::Column::Id.eq(hold.id))
            .exec(&txn)
            .await?;
        wallet.held -= hold.amount;
        hold.status = HoldStatus::Released.as_str().to_owned();
        hold.closed_at = Some(now);
        ledger::save_wallet(&txn, &wallet, now).await?;
        let response = HoldResponse { hold: (&hold).into(), transfer: None, balance: WalletBalance::of(&wallet) };
        if finish(txn, request, &response).await? {
            return Ok(Outcome::Fresh(response));
        }
    }
    Err(DbErr::Custom("idempotent release did not settle after retries".to_owned()).into())
}

/// One hold of the caller's, with its status as of now.
pub async fn get_hold(db: &DatabaseConnection, user_id: Uuid, hold_id: Uuid) -> Result<HoldView, CreditsError> {
    let wallet = ledger::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let mut hold = find_hold(db, wallet.id, hold_id).await?;
    if hold.status == HoldStatus::Open.as_str() && hold.expires_at <= Utc::now() {
        hold.status = HoldStatus::Expired.as_str().to_owned();
    }
    Ok((&hold).into())
}

/// Encodes a ledger position as an opaque cursor.
fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("s:{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, CreditsError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid("cursor", "is not a cursor this server issued"))?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix("s:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| invalid("cursor", "is not a cursor this server issued"))
}

/// The caller's history, newest first.
pub async fn list_ledger(
    db: &DatabaseConnection,
    user_id: Uuid,
    query: LedgerQuery,
) -> Result<LedgerPage, CreditsError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 200"));
    }
    let wallet = ledger::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let mut select = transfers::Entity::find().filter(
        Condition::any()
            .add(transfers::Column::DebitAccountId.eq(wallet.id))
            .add(transfers::Column::CreditAccountId.eq(wallet.id)),
    );
    if let Some(kind) = &query.kind {
        if TransferKind::parse(kind).is_none() {
            return Err(invalid("kind", format!("`{kind}` is not a transfer kind")));
        }
        select = select.filter(transfers::Column::Kind.eq(kind.clone()));
    }
    if let Some(from) = query.from {
        select = select.filter(transfers::Column::CreatedAt.gte(from));
    }
    if let Some(to) = query.to {
        select = select.filter(transfers::Column::CreatedAt.lt(to));
    }
    if let Some(cursor) = &query.cursor {
        select = select.filter(transfers::Column::Seq.lt(decode_cursor(cursor)?));
    }
    let mut rows = select.order_by_desc(transfers::Column::Seq).limit(limit + 1).all(db).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|t| encode_cursor(t.seq))
    } else {
        None
    };
    let ids: Vec<Uuid> = rows.iter().map(|t| t.id).collect();
    let mut movements: HashMap<Uuid, Vec<LotMovementView>> = HashMap::new();
    for m in ledger::movements_of(db, &ids).await? {
        movements.entry(m.transfer_id).or_default().push(LotMovementView { lot_id: m.lot_id, amount: m.amount });
    }
    let entries = rows
        .into_iter()
        .map(|t| {
            let incoming = t.credit_account_id == wallet.id;
            LedgerEntry {
                id: t.id,
                kind: t.kind,
                amount: if incoming { t.amount } else { -t.amount },
                balance_after: if incoming { t.credit_balance_after } else { t.debit_balance_after },
                description: t.description,
                feature: t.feature,
                quantity: t.quantity,
                metadata: t.metadata,
                hold_id: t.hold_id,
                lot_id: t.lot_id,
                created_at: t.created_at,
                lots: movements.remove(&t.id).unwrap_or_default(),
            }
        })
        .collect();
    Ok(LedgerPage { entries, next_cursor })
}

#[derive(Debug, FromQueryResult)]
struct UsageRow {
    key: Option<String>,
    credits: Option<i64>,
    spends: i64,
}

/// Spending aggregated by day (UTC) or by feature over a range.
pub async fn usage(db: &DatabaseConnection, user_id: Uuid, query: UsageQuery) -> Result<UsageResponse, CreditsError> {
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(invalid("from", "must be before `to`"));
    }
    if to - from > Duration::days(400) {
        return Err(invalid("from", "the range may span at most 400 days"));
    }
    let group_by = query.group_by.unwrap_or_else(|| "day".to_owned());
    let key_expr = match (group_by.as_str(), db::backend(db)) {
        ("feature", _) => "COALESCE(feature, 'unpriced')",
        ("day", DbBackend::Postgres) => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ("day", _) => "substr(created_at, 1, 10)",
        _ => return Err(invalid("group_by", "must be `day` or `feature`")),
    };
    let wallet = ledger::find_wallet(db, user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    // A capture posts a spend too; both are usage.
    let rows = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust(key_expr), "key")
        .column_as(Expr::cust("CAST(SUM(amount) AS BIGINT)"), "credits")
        .column_as(Expr::cust("COUNT(*)"), "spends")
        .filter(transfers::Column::DebitAccountId.eq(wallet.id))
        .filter(transfers::Column::Kind.eq(TransferKind::Spend.as_str()))
        .filter(transfers::Column::CreatedAt.gte(from))
        .filter(transfers::Column::CreatedAt.lt(to))
        .group_by(Expr::cust(key_expr))
        .order_by_asc(Expr::cust(key_expr))
        .into_model::<UsageRow>()
        .all(db)
        .await?;
    let buckets: Vec<UsageBucket> = rows
        .into_iter()
        .map(|r| UsageBucket {
            key: r.key.unwrap_or_default(),
            credits: r.credits.unwrap_or_default(),
            spends: r.spends,
        })
        .collect();
    Ok(UsageResponse { group_by, from, to, total_credits: buckets.iter().map(|b| b.credits).sum(), buckets })
}

/// Posts expiry for every wallet with lots past their expiry or holds past their TTL.
/// Returns how many wallets it settled. Run by the background task and `tollgate expire`.
pub async fn expire_due(db: &DatabaseConnection) -> Result<usize, CreditsError> {
    let now = Utc::now();
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
    for account_id in &accounts {
        let txn = db::begin_write(db).await?;
        let wallet = accounts::Entity::find_by_id(*account_id).lock_exclusive().one(&txn).await?;
        let Some(mut wallet) = wallet else {
            txn.rollback().await?;
            continue;
        };
        ledger::settle(&txn, &mut wallet, Utc::now()).await?;
        ledger::save_wallet(&txn, &wallet, Utc::now()).await?;
        txn.commit().await?;
    }
    Ok(accounts.len())
}

/// The public rate card: active features.
pub async fn list_features(db: &DatabaseConnection, include_inactive: bool) -> Result<Vec<FeatureView>, CreditsError> {
    let mut select = features::Entity::find();
    if !include_inactive {
        select = select.filter(features::Column::Active.eq(true));
    }
    Ok(select.order_by_asc(features::Column::Key).all(db).await?.into_iter().map(Into::into).collect())
}

fn check_feature_text(name: &str, unit: &str, description: &Option<String>) -> Result<(), CreditsError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "must be 1 to 100 characters"));
    }
    if unit.trim().is_empty() || unit.chars().count() > 64 {
        return Err(invalid("unit", "must be 1 to 64 characters"));
    }
    if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(invalid("description", "must be at most 500 characters"));
    }
    Ok(())
}

/// Adds a feature to the rate card (admin).
pub async fn create_feature(
    db: &DatabaseConnection,
    request: CreateFeatureRequest,
) -> Result<FeatureView, CreditsError> {
    let key_ok = (1..=64).contains(&request.key.len())
        && request.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !key_ok {
        return Err(invalid("key", "must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`"));
    }
    check_feature_text(&request.name, &request.unit, &request.description)?;
    let price = parse_amount("credits_per_unit", request.credits_per_unit, false)?;
    let now = Utc::now();
    let model = features::Model {
        key: request.key.clone(),
        name: request.name.trim().to_owned(),
        description: request.description,
        unit: request.unit.trim().to_owned(),
        credits_per_unit: price.get(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    match features::Entity::insert(features::ActiveModel::from(model.clone())).exec_without_returning(db).await {
        Err(e) if db::is_unique_violation(&e) => Err(CreditsError::FeatureExists(request.key)),
        other => other.map(|_| model.into()).map_err(Into::into),
    }
}

/// Changes a feature's price, text or availability (admin).
pub async fn update_feature(
    db: &DatabaseConnection,
    key: &str,
    request: UpdateFeatureRequest,
) -> Result<FeatureView, CreditsError> {
    let txn = db.begin().await?;
    let mut feature = features::Entity::find_by_id(key.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| CreditsError::UnknownFeature(key.to_owned()))?;
    if let Some(name) = request.name {
        feature.name = name.trim().to_owned();
    }
    if let Some(unit) = request.unit {
        feature.unit = unit.trim().to_owned();
    }
    if request.description.is_some() {
        feature.description = request.description;
    }
    check_feature_text(&feature.name, &feature.unit, &feature.description)?;
    if let Some(price) = request.credits_per_unit {
        feature.credits_per_unit = parse_amount("credits_per_unit", price, false)?.get();
    }
    if let Some(active) = request.active {
        feature.active = active;
    }
    feature.updated_at = Utc::now();
    features::Entity::update(features::ActiveModel::from(feature.clone()).reset_all()).exec(&txn).await?;
    txn.commit().await?;
    Ok(feature.into())
}
