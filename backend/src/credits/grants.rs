//! Credits coming in: an admin's grant, and what billing credits or takes back (a paid pack, a
//! period's credits, a refund, a dispute). Billing calls these with its own transaction, in which
//! it records the Stripe event; everything else about the ledger stays inside `credits`.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{
    Outcome,
    batch::Ledger,
    core::{Answer, Command, NewLot, Op, TakeBack, TransferDetails},
    dto::GrantResponse,
    error::CreditsError,
    writer,
};
use crate::{
    domain::{
        Credits, Email,
        ledger::{LotSource, TransferKind, system},
    },
    entities::{customers, users},
    idempotency::IdempotentRequest,
};

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
    ledger: &Ledger,
    request: &IdempotentRequest,
    command: GrantCommand,
) -> Result<Outcome<GrantResponse>, CreditsError> {
    let owner = find_recipient(ledger.db(), &command.recipient).await?.ok_or(CreditsError::UserNotFound)?;
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
    let details = TransferDetails { description: Some(command.reason), ..Default::default() };
    let op = Op::Credit { lot, details };
    match ledger.submit(Command { user_id: owner, key: Some(request.clone()), op }).await? {
        Answer::Credited(response) => Ok(Outcome::Fresh(response)),
        Answer::Replayed(stored) => Ok(Outcome::Replayed(stored)),
        other => Err(CreditsError::invariant(format!("a grant was answered {other:?}"))),
    }
}

/// The wallet owner a grant names: a customer by id (every signed-up user is one, with the same
/// id), or a signed-up user by email, looked up as sign-in does.
async fn find_recipient(db: &DatabaseConnection, recipient: &Recipient) -> Result<Option<Uuid>, DbErr> {
    match recipient {
        Recipient::Id(id) => Ok(customers::Entity::find_by_id(*id).one(db).await?.map(|c| c.id)),
        Recipient::Email(email) => Ok(users::Entity::find()
            .filter(users::Column::Email.eq(Email::lookup_key(email)))
            .one(db)
            .await?
            .map(|u| u.id)),
    }
}

/// Runs one command inside the caller's transaction (billing's), mapping a refusal to an error.
async fn apply_one(txn: &DatabaseTransaction, command: Command, now: DateTime<Utc>) -> Result<Answer, CreditsError> {
    let mut verdicts = writer::apply_in(txn, std::slice::from_ref(&command), now).await?;
    verdicts.pop().unwrap_or_else(|| Err(CreditsError::invariant("a command returned no verdict".to_owned())))
}

/// A paid lot: credited once per reference, inside the caller's transaction. `None` when a lot
/// with this reference exists (the payment was credited before).
pub async fn credit_lot(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    lot: NewLot,
    details: TransferDetails,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, CreditsError> {
    let mut credited = credit_lots(txn, user_id, vec![(lot, details)], now).await?;
    Ok(credited.pop().flatten())
}

/// Several lots for one wallet, as one batch inside the caller's transaction (a dispute's frozen
/// credits given back, each to the kind of lot it came from). Each: the new lot's id, or `None`
/// when its reference was credited before.
pub async fn credit_lots(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    lots: Vec<(NewLot, TransferDetails)>,
    now: DateTime<Utc>,
) -> Result<Vec<Option<Uuid>>, CreditsError> {
    let commands: Vec<Command> = lots
        .into_iter()
        .map(|(lot, details)| Command { user_id, key: None, op: Op::Credit { lot, details } })
        .collect();
    let mut credited = Vec::with_capacity(commands.len());
    for verdict in writer::apply_in(txn, &commands, now).await? {
        credited.push(match verdict? {
            Answer::Credited(response) => Some(response.lot_id),
            Answer::AlreadyApplied => None,
            other => return Err(CreditsError::invariant(format!("a credit was answered {other:?}"))),
        });
    }
    Ok(credited)
}

/// Takes credits back from the wallet that bought them (a refund, a dispute's freeze), inside
/// the caller's transaction. Returns what was taken and the transfer that took it.
pub async fn take_back(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    take: TakeBack,
    now: DateTime<Utc>,
) -> Result<(i64, Option<Uuid>), CreditsError> {
    match apply_one(txn, Command { user_id, key: None, op: Op::TakeBack(take) }, now).await? {
        Answer::TakenBack { credits, transfer_id } => Ok((credits, transfer_id)),
        other => Err(CreditsError::invariant(format!("a take-back was answered {other:?}"))),
    }
}

/// Moves credits between two system accounts (a lost dispute: from `disputes` to `clawback`).
pub async fn move_between_system_accounts(
    txn: &DatabaseTransaction,
    from: Uuid,
    to: Uuid,
    amount: Credits,
    kind: TransferKind,
    details: TransferDetails,
    now: DateTime<Utc>,
) -> Result<Uuid, CreditsError> {
    let op = Op::Move { from, to, amount, kind, details };
    match apply_one(txn, Command { user_id: Uuid::nil(), key: None, op }, now).await? {
        Answer::Moved { transfer_id } => Ok(transfer_id),
        other => Err(CreditsError::invariant(format!("a move was answered {other:?}"))),
    }
}
