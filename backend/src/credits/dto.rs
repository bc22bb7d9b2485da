//! Wire types of the credits API. Responses that a retry may replay are stored as they are
//! serialised here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::CreditsError;
use crate::{
    domain::ledger::{HoldStatus, LotSource, TransferKind},
    entities::{accounts, features, holds, lots, transfers},
};

/// A stored value outside its enum. The columns are constrained to the enums' values (migration
/// `m20261203_000301_status_checks`), so only a row written by a newer server or by hand has one:
/// it is reported as a server error, never shown under another name.
fn unknown(what: &str, id: Uuid, value: &str) -> CreditsError {
    CreditsError::Database(sea_orm::DbErr::Custom(format!("{what} of {id} is the unknown value {value:?}")))
}

/// A wallet's figures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WalletBalance {
    /// Credits in the wallet (negative only while it owes a debt).
    pub balance: i64,
    /// What can be spent now: balance less open holds; 0 while a debt is owed.
    pub available: i64,
    /// Reserved by open holds.
    pub held: i64,
    /// Credits clawed back after they were spent; must be covered before spending again.
    pub debt: i64,
}

impl WalletBalance {
    pub fn of(wallet: &accounts::Model) -> Self {
        Self {
            balance: wallet.balance,
            available: crate::domain::ledger::available(wallet),
            held: wallet.held,
            debt: wallet.debt,
        }
    }
}

/// A lot with credits left.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LotView {
    pub id: Uuid,
    pub source: LotSource,
    pub amount: i64,
    pub remaining: i64,
    pub priority: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<lots::Model> for LotView {
    type Error = CreditsError;

    fn try_from(lot: lots::Model) -> Result<Self, CreditsError> {
        Ok(Self {
            id: lot.id,
            source: LotSource::parse(&lot.source).ok_or_else(|| unknown("the source", lot.id, &lot.source))?,
            amount: lot.amount,
            remaining: lot.remaining,
            priority: lot.priority,
            expires_at: lot.expires_at,
            created_at: lot.created_at,
        })
    }
}

/// `GET /credits/balance`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceResponse {
    #[serde(flatten)]
    pub wallet: WalletBalance,
    /// Lots that expire, soonest first (at most 5).
    pub expiring_soon: Vec<LotView>,
}

/// How much a transfer took from (or gave to) one lot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LotMovementView {
    pub lot_id: Uuid,
    pub amount: i64,
}

/// A transfer as its wallet sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferView {
    pub id: Uuid,
    pub kind: TransferKind,
    /// Positive: the amount moved.
    pub amount: i64,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub hold_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The lots it took from, in the order it took them.
    pub lots: Vec<LotMovementView>,
}

impl TransferView {
    /// The view of a transfer the ledger has just built (`credits::core`), whose kind it wrote
    /// from a `TransferKind`. For a row read back from the database, use `read`.
    pub fn new(transfer: &transfers::Model, lots: Vec<LotMovementView>) -> Self {
        let kind = TransferKind::parse(&transfer.kind);
        debug_assert!(kind.is_some(), "the ledger built transfer {} of kind {:?}", transfer.id, transfer.kind);
        Self::with_kind(kind.unwrap_or(TransferKind::Spend), transfer, lots)
    }

    /// The view of a stored transfer; a kind outside `TransferKind` is an error.
    pub fn read(transfer: &transfers::Model, lots: Vec<LotMovementView>) -> Result<Self, CreditsError> {
        let kind =
            TransferKind::parse(&transfer.kind).ok_or_else(|| unknown("the kind", transfer.id, &transfer.kind))?;
        Ok(Self::with_kind(kind, transfer, lots))
    }

    fn with_kind(kind: TransferKind, transfer: &transfers::Model, lots: Vec<LotMovementView>) -> Self {
        Self {
            id: transfer.id,
            kind,
            amount: transfer.amount,
            feature: transfer.feature.clone(),
            quantity: transfer.quantity,
            description: transfer.description.clone(),
            metadata: transfer.metadata.clone(),
            hold_id: transfer.hold_id,
            created_at: transfer.created_at,
            lots,
        }
    }
}

/// `POST /credits/spend`: `amount`, or `feature` and `quantity`, or `model` and `usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendRequest {
    /// An explicit amount, for callers that price their own usage.
    #[schema(example = 5)]
    pub amount: Option<i64>,
    /// A feature from the rate card (`GET /features`), priced by the server.
    #[schema(example = "example.summarize")]
    pub feature: Option<String>,
    /// Units of the feature; 1 when omitted.
    pub quantity: Option<i64>,
    /// A model from the gateway's rate card (`GET /models`): the spend is priced by `usage`, as
    /// `ceil((input·input_per_million + cached·cached_input_per_million +
    /// output·output_per_million) / 1,000,000)`, for callers that call the provider themselves.
    #[schema(example = json!(null))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The tokens the call used; goes with `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::gateway::pricing::TokenUsage>,
    /// Up to 500 characters, shown in history.
    pub description: Option<String>,
    /// Any JSON object, up to 4 KiB, kept with the transfer.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub metadata: Option<serde_json::Value>,
}

/// The answer to a spend (and its replays).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendResponse {
    pub transfer: TransferView,
    pub balance: WalletBalance,
}

/// `POST /credits/grant` (admin). Accepts the seed's camelCase names too.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantRequest {
    /// The user's Tollgate id (`id` of `GET /me`); or give `email`. Anything but a UUID (the
    /// seed's clients send their own user ids here) is refused naming the field.
    #[serde(default, alias = "userId", deserialize_with = "tollgate_user_id")]
    pub user_id: Option<Uuid>,
    pub email: Option<String>,
    #[schema(example = 100)]
    pub amount: i64,
    /// Why: shown in the user's history.
    #[schema(example = "Welcome bonus")]
    pub reason: String,
    /// `grant` (default) or `promotion`.
    #[schema(value_type = Option<GrantSource>)]
    pub source: Option<String>,
    /// Lower is spent first. Defaults: promotion 10, grant 20.
    pub priority: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The seed's clients send the key in the body; the `Idempotency-Key` header wins.
    #[serde(alias = "idempotencyKey")]
    pub idempotency_key: Option<String>,
}

/// Reads a grant's `user_id`: a UUID, or an error that says what is expected instead of what
/// the UUID parser found wrong (`error::json_error` names the field as the client wrote it).
fn tollgate_user_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Uuid>, D::Error> {
    struct UserId;

    impl<'de> serde::de::Visitor<'de> for UserId {
        type Value = Option<Uuid>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(
                "a Tollgate user id (a UUID, the `id` of `GET /api/v1/me`), or leave it out and name the user by `email`",
            )
        }

        fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<Self::Value, E> {
            Uuid::parse_str(raw.trim()).map(Some).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(raw), &self))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    // `deserialize_any`, so that serde_json places an error on the value itself.
    deserializer.deserialize_any(UserId)
}

/// `POST /customers/{external_id}/grant`: a grant to the customer the path names.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerGrantRequest {
    #[schema(example = 100)]
    pub amount: i64,
    /// Why: shown in the customer's history.
    #[schema(example = "Welcome bonus")]
    pub reason: String,
    /// `grant` (default) or `promotion`.
    #[schema(value_type = Option<GrantSource>)]
    pub source: Option<String>,
    /// Lower is spent first. Defaults: promotion 10, grant 20.
    pub priority: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The sources a grant can give its lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    Grant,
    Promotion,
}

impl GrantSource {
    /// The lot source it stands for, if `value` is one a grant may name.
    pub fn parse(value: &str) -> Option<LotSource> {
        match LotSource::parse(value)? {
            source @ (LotSource::Grant | LotSource::Promotion) => Some(source),
            LotSource::Purchase | LotSource::Subscription => None,
        }
    }
}

/// The answer to a grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantResponse {
    pub user_id: Uuid,
    pub transfer: TransferView,
    pub lot_id: Uuid,
    pub balance: WalletBalance,
}

/// `POST /credits/holds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateHoldRequest {
    pub amount: Option<i64>,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub description: Option<String>,
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub metadata: Option<serde_json::Value>,
    /// Seconds until the hold releases itself: 1 to 3600, default 300.
    pub ttl_seconds: Option<i64>,
}

/// `POST /credits/holds/{id}/capture`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaptureHoldRequest {
    /// The actual cost, at most the held amount; the rest is released.
    pub amount: i64,
    pub description: Option<String>,
}

/// A hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    pub id: Uuid,
    pub status: HoldStatus,
    pub amount: i64,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub description: Option<String>,
    pub captured_amount: Option<i64>,
    pub capture_transfer_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<&holds::Model> for HoldView {
    fn from(hold: &holds::Model) -> Self {
        Self {
            id: hold.id,
            status: HoldStatus::parse(&hold.status),
            amount: hold.amount,
            feature: hold.feature.clone(),
            quantity: hold.quantity,
            description: hold.description.clone(),
            captured_amount: hold.captured_amount,
            capture_transfer_id: hold.capture_transfer_id,
            expires_at: hold.expires_at,
            created_at: hold.created_at,
            closed_at: hold.closed_at,
        }
    }
}

/// The answer to placing, capturing or releasing a hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldResponse {
    pub hold: HoldView,
    /// The spend a capture posted (absent otherwise, and for a capture of 0).
    pub transfer: Option<TransferView>,
    pub balance: WalletBalance,
}

/// `GET /credits/ledger` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Only entries of this kind (read as text, so that an unknown kind answers 422 naming the field).
    #[param(value_type = Option<TransferKind>)]
    pub kind: Option<String>,
    /// Only entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub to: Option<DateTime<Utc>>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// `GET /credits/ledger.csv` filters: those of `GET /credits/ledger`, without the paging (the
/// export is the whole filtered history; `cursor` and `limit`, if sent, are ignored).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerExportQuery {
    /// Only entries of this kind.
    #[param(value_type = Option<TransferKind>)]
    pub kind: Option<String>,
    /// Only entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub to: Option<DateTime<Utc>>,
}

/// `GET /credits/balance-history` parameters. Read as text, so that a bad value answers 422
/// naming its field.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceHistoryQuery {
    /// Start of the range, rounded down to the start of its day or hour (UTC). A date
    /// (`2026-01-31`) means its midnight. Default: 30 days (`day`) or 24 hours (`hour`) ending
    /// with the one that holds `to`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// End of the range, exclusive; at most now, the default.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// `day` (default; ranges of up to 400 days) or `hour` (ranges of up to 7 days).
    #[param(value_type = Option<BalanceInterval>)]
    pub interval: Option<String>,
}

/// The width of a balance history's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BalanceInterval {
    Day,
    Hour,
}

/// A wallet's balance over time, one point per day or hour, with no gaps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BalanceHistory {
    pub interval: BalanceInterval,
    /// The start of the first point (UTC).
    pub from: DateTime<Utc>,
    /// The end of the last point, exclusive.
    pub to: DateTime<Utc>,
    /// The balance at `from`: after the last ledger entry before the range (0 if none).
    pub opening_balance: i64,
    /// Oldest first, one per day or hour from `from` to `to`.
    pub points: Vec<BalancePoint>,
}

/// The balance at the end of one day or hour.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BalancePoint {
    /// The start of the day or hour (UTC).
    pub start: DateTime<Utc>,
    /// The balance when it ended (at `to`, for the last point): after its last ledger entry, or
    /// carried over from the point before when it has none.
    pub balance: i64,
    /// Ledger entries in it.
    pub entries: i64,
}

/// One line of a wallet's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub kind: TransferKind,
    /// Signed from the wallet's view: positive in, negative out.
    pub amount: i64,
    /// The wallet's balance right after this entry.
    pub balance_after: Option<i64>,
    pub description: Option<String>,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: Option<serde_json::Value>,
    pub hold_id: Option<Uuid>,
    /// The lot this entry created (grants, purchases).
    pub lot_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The lots it touched.
    pub lots: Vec<LotMovementView>,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /usage` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `day` (default), `feature`, or `model` (LLM spends only, with their tokens).
    pub group_by: Option<String>,
    /// Start of the range (default: 30 days ago).
    pub from: Option<DateTime<Utc>>,
    /// End of the range, exclusive (default: now).
    pub to: Option<DateTime<Utc>>,
}

/// One bucket of usage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageBucket {
    /// The day (`YYYY-MM-DD`, UTC), the feature (`unpriced` for explicit amounts) or the model.
    pub key: String,
    pub credits: i64,
    pub spends: i64,
    /// `group_by=model`: uncached input tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    /// `group_by=model`: input tokens served from the provider's cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<i64>,
    /// `group_by=model`: output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
}

/// Usage over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    pub group_by: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub total_credits: i64,
    pub buckets: Vec<UsageBucket>,
}

/// A feature on the rate card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeatureView {
    #[schema(example = "example.summarize")]
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    /// What one unit is, e.g. `call` or `1,000 characters`.
    pub unit: String,
    pub credits_per_unit: i64,
    pub active: bool,
}

impl From<features::Model> for FeatureView {
    fn from(f: features::Model) -> Self {
        Self {
            key: f.key,
            name: f.name,
            description: f.description,
            unit: f.unit,
            credits_per_unit: f.credits_per_unit,
            active: f.active,
        }
    }
}

/// `POST /features` (admin).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateFeatureRequest {
    /// Lower-case letters, digits, `.`, `_` and `-`; 1 to 64 characters.
    #[schema(example = "chat.completion")]
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(example = "call")]
    pub unit: String,
    pub credits_per_unit: i64,
}

/// `PATCH /features/{key}` (admin): only the fields given change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct UpdateFeatureRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub credits_per_unit: Option<i64>,
    pub active: Option<bool>,
}
