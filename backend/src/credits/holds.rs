//! Holds: credits reserved for work whose cost is known only afterwards, then captured (the
//! actual cost, at most the hold) or released. Written through the ledger's one writer.

use chrono::Duration;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{
    Outcome,
    batch::Ledger,
    core::{Answer, Command, Op, Verdict},
    dto::{HoldResponse, HoldView, LotMovementView, TransferView},
    error::CreditsError,
    spend::{Charge, price},
    store,
};
use crate::{
    domain::{Credits, ledger::HoldStatus},
    entities::{holds, transfers},
    idempotency::IdempotentRequest,
};

/// The default and the longest time a hold lives.
pub const DEFAULT_HOLD_TTL_SECONDS: i64 = 300;
pub const MAX_HOLD_TTL_SECONDS: i64 = 3600;

/// A hold request, parsed.
#[derive(Debug, Clone)]
pub struct HoldCommand {
    pub charge: Charge,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub ttl: Duration,
}

/// A capture, parsed.
#[derive(Debug, Clone)]
pub struct CaptureCommand {
    pub amount: Credits,
    pub description: Option<String>,
}

pub type HoldResult = Result<Outcome<HoldResponse>, CreditsError>;

/// Reserves credits for an operation whose cost is known only afterwards.
pub async fn create_hold(
    ledger: &Ledger,
    user_id: Uuid,
    request: &IdempotentRequest,
    command: HoldCommand,
) -> HoldResult {
    let priced = price(ledger.db(), &command.charge).await?;
    let amount = priced.amount;
    let op = Op::Hold { amount, details: priced.details(command.description, command.metadata), ttl: command.ttl };
    answer(ledger, ledger.submit(Command { user_id, key: Some(request.clone()), op }).await).await
}

/// Refuses a caller's capture or release of a hold the LLM gateway placed (its metadata holds
/// `llm`, which callers cannot set on a hold): a call's, or a lease its calls share. Closing one
/// under a call in flight would leave the call uncharged. A hold's metadata never changes, so
/// reading it before the command is safe.
pub async fn ensure_not_gateways(ledger: &Ledger, user_id: Uuid, hold_id: Uuid) -> Result<(), CreditsError> {
    let Some(wallet) = store::find_wallet(ledger.db(), user_id).await? else { return Ok(()) };
    let hold =
        holds::Entity::find_by_id(hold_id).filter(holds::Column::AccountId.eq(wallet.id)).one(ledger.db()).await?;
    match hold {
        Some(hold) if carries_llm(hold.metadata.as_ref()) => Err(CreditsError::HoldOwnedByGateway),
        _ => Ok(()),
    }
}

/// Whether metadata holds `llm`: where Tollgate records an LLM call's model and tokens, and so
/// the mark of the gateway's holds; callers may not set it on a hold, nor beside a spend priced
/// by tokens.
pub fn carries_llm(metadata: Option<&serde_json::Value>) -> bool {
    metadata.is_some_and(|m| m.get("llm").is_some())
}

/// Spends the actual cost (at most the hold) and releases the rest. Capturing again with the
/// same amount answers as the first capture did.
pub async fn capture_hold(
    ledger: &Ledger,
    user_id: Uuid,
    hold_id: Uuid,
    request: Option<&IdempotentRequest>,
    command: CaptureCommand,
) -> HoldResult {
    let op = Op::Capture { hold_id, amount: command.amount, description: command.description, measured: None };
    answer(ledger, ledger.submit(Command { user_id, key: request.cloned(), op }).await).await
}

/// Releases a hold without spending. Releasing a released or expired hold is a no-op.
pub async fn release_hold(
    ledger: &Ledger,
    user_id: Uuid,
    hold_id: Uuid,
    request: Option<&IdempotentRequest>,
) -> HoldResult {
    let op = Op::Release { hold_id };
    answer(ledger, ledger.submit(Command { user_id, key: request.cloned(), op }).await).await
}

async fn answer(ledger: &Ledger, verdict: Verdict) -> HoldResult {
    match verdict? {
        Answer::Hold(response) => Ok(Outcome::Fresh(response)),
        Answer::Replayed(stored) => Ok(Outcome::Replayed(stored)),
        // Captured before with this amount: the answer shows that capture.
        Answer::AlreadyCaptured { hold, balance } => {
            let transfer = transfer_view(ledger, hold.capture_transfer_id).await?;
            Ok(Outcome::Fresh(HoldResponse { hold: (&hold).into(), transfer, balance }))
        }
        other => Err(CreditsError::invariant(format!("a hold was answered {other:?}"))),
    }
}

async fn transfer_view(ledger: &Ledger, transfer_id: Option<Uuid>) -> Result<Option<TransferView>, CreditsError> {
    let Some(id) = transfer_id else {
        return Ok(None);
    };
    let Some(transfer) = transfers::Entity::find().filter(transfers::Column::Id.eq(id)).one(ledger.db()).await? else {
        return Ok(None);
    };
    let movements = store::movements_of(ledger.db(), &[id])
        .await?
        .into_iter()
        .map(|m| LotMovementView { lot_id: m.lot_id, amount: m.amount })
        .collect();
    Ok(Some(TransferView::read(&transfer, movements)?))
}

/// One hold of the caller's, with its status as of now.
pub async fn get_hold(ledger: &Ledger, user_id: Uuid, hold_id: Uuid) -> Result<HoldView, CreditsError> {
    let wallet = store::find_wallet(ledger.db(), user_id).await?.ok_or(CreditsError::WalletNotFound)?;
    let mut hold = holds::Entity::find_by_id(hold_id)
        .filter(holds::Column::AccountId.eq(wallet.id))
        .one(ledger.db())
        .await?
        .ok_or(CreditsError::HoldNotFound)?;
    if hold.status == HoldStatus::Open.as_str() && hold.expires_at <= ledger.clock().now() {
        hold.status = HoldStatus::Expired.as_str().to_owned();
    }
    Ok((&hold).into())
}
