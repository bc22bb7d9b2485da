//! The ledger's pure core: it decides, and writes nothing.
//!
//! Given the wallets a batch of commands names (locked by the store, with their live lots and
//! the holds the commands need), the idempotency records stored for the commands' keys, and
//! `now`, [`judge`] decides each command in arrival order, against the wallets as the commands
//! before it left them, and returns each command's answer with one [`Journal`]: every row the
//! batch must insert or change. The store writes the journal in the same transaction it read in;
//! nothing here does I/O or reads a clock.
//!
//! The rules live here and only here: the spend order (priority, soonest expiry, oldest),
//! settling (a lot past its expiry posts its expiry, a hold past its time is released), the
//! refusals (not enough available, an outstanding debt), debt covered first by new credits,
//! what a refund or a dispute may take back, and the answers stored for replays. A refused
//! command changes nothing, not even what settling it would have posted: each command is judged
//! on a copy of its wallet when settling runs, kept only when the command goes through.

mod books;
#[cfg(test)]
mod tests;

use std::{
    cmp::Ordering,
    collections::{HashMap, HashSet},
};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    dto::{GrantResponse, HoldResponse, LotMovementView, SpendResponse, WalletBalance},
    error::CreditsError,
};
use crate::{
    domain::{
        Credits,
        ledger::{HoldStatus, LotSource, TransferKind},
    },
    entities::{accounts, holds, idempotency_keys, lots, transfers},
    idempotency::{IdempotentRequest, StoredResponse},
};

/// A wallet as the store read it, locked: its live lots (credits left, in any order) and the
/// holds the batch needs (open ones past their time, and those the commands name).
#[derive(Debug, Clone)]
pub struct Wallet {
    pub account: accounts::Model,
    pub lots: Vec<lots::Model>,
    pub holds: Vec<holds::Model>,
}

/// Everything the core needs to judge a batch, as the store read it under the wallets' locks.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By user id.
    pub wallets: HashMap<Uuid, Wallet>,
    /// The stored answers of the batch's keys, by (scope, key).
    pub keys: HashMap<(String, String), idempotency_keys::Model>,
    /// Lot references already taken, among those the batch's credits name.
    pub references: HashSet<String>,
    /// What expiry already took from the lots the batch's take-backs name, by lot.
    pub expired_from: HashMap<Uuid, i64>,
}

/// Details common to every transfer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferDetails {
    pub description: Option<String>,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: Option<serde_json::Value>,
    pub hold_id: Option<Uuid>,
    pub reference: Option<String>,
}

/// A capture's own quantity and metadata, replacing the hold's on the spend it posts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub quantity: Option<i64>,
    pub metadata: Option<serde_json::Value>,
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
    /// What caused it; unique, so one cause can never credit twice.
    pub reference: String,
}

/// Credits a refund or a dispute takes back from the wallet that bought them.
#[derive(Debug, Clone)]
pub struct TakeBack {
    /// The lot the payment bought: taken from first.
    pub paid_lot: Uuid,
    /// The payment's lots: the paid lot and those disputes of it gave back.
    pub payment_lots: Vec<Uuid>,
    /// The credits the payment bought.
    pub paid_credits: i64,
    /// The credits the refund or dispute stands for.
    pub share: i64,
    /// What was taken back from this payment before.
    pub taken_before: i64,
    /// `share` counts what was taken before (a refund's amount is cumulative); otherwise it comes
    /// on top (a dispute).
    pub cumulative: bool,
    pub to: Uuid,
    pub kind: TransferKind,
    pub details: TransferDetails,
}

/// What a command asks.
#[derive(Debug, Clone)]
pub enum Op {
    Spend {
        amount: Credits,
        details: TransferDetails,
    },
    Hold {
        amount: Credits,
        details: TransferDetails,
        ttl: Duration,
    },
    Capture {
        hold_id: Uuid,
        amount: Credits,
        description: Option<String>,
        /// What the capture measured (the gateway's token counts), kept on the spend instead
        /// of the hold's quantity and metadata.
        measured: Option<Measured>,
    },
    Release {
        hold_id: Uuid,
    },
    /// Spends `amount` of an open hold's credits and keeps the rest held: a lease (one hold that
    /// many of the gateway's concurrent calls share) charged for one call. The spend carries
    /// `details` (the call's own feature and token counts) and names the hold.
    Draw {
        hold_id: Uuid,
        amount: Credits,
        details: TransferDetails,
    },
    /// A new lot: a grant, a purchase, a period's credits, frozen credits given back.
    Credit {
        lot: NewLot,
        details: TransferDetails,
    },
    /// Post what time has done (expiry, holds past their time) and nothing else.
    Settle,
    TakeBack(TakeBack),
    /// Between two system accounts (a lost dispute); names no wallet.
    Move {
        from: Uuid,
        to: Uuid,
        amount: Credits,
        kind: TransferKind,
        details: TransferDetails,
    },
}

/// One command: whose wallet, the caller's idempotency key, what to do.
#[derive(Debug, Clone)]
pub struct Command {
    pub user_id: Uuid,
    pub key: Option<IdempotentRequest>,
    pub op: Op,
}

/// A command's answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Spent(SpendResponse),
    Hold(HoldResponse),
    /// The hold was captured before with this amount: the caller shows that capture.
    AlreadyCaptured {
        hold: holds::Model,
        balance: WalletBalance,
    },
    Credited(GrantResponse),
    /// A lot with this reference exists: nothing changed.
    AlreadyApplied,
    Settled,
    TakenBack {
        credits: i64,
        transfer_id: Option<Uuid>,
    },
    Moved {
        transfer_id: Uuid,
    },
    /// The key was seen with this request: its first answer.
    Replayed(StoredResponse),
}

pub type Verdict = Result<Answer, CreditsError>;

/// A lot's change: what it held when read, what it holds now, when it expired.
#[derive(Debug, Clone, PartialEq)]
pub struct LotUpdate {
    pub id: Uuid,
    pub before: i64,
    pub after: i64,
    pub expired_at: Option<DateTime<Utc>>,
}

/// A wallet's cached figures, as the batch leaves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalletUpdate {
    pub id: Uuid,
    pub balance: i64,
    pub held: i64,
    pub debt: i64,
}

/// A hold read open and changed by the batch (closed, or drawn from), guarded by the amount it
/// held when read.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldUpdate {
    pub before: i64,
    pub hold: holds::Model,
}

/// How much one transfer took from one lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement {
    pub transfer_id: Uuid,
    pub lot_id: Uuid,
    pub amount: i64,
}

/// Every row a batch inserts or changes. Lots and holds created in the batch are inserted as the
/// batch leaves them; those read are updated, each guarded by what it held when read.
#[derive(Debug, Default)]
pub struct Journal {
    pub transfers: Vec<transfers::Model>,
    pub movements: Vec<Movement>,
    pub new_lots: Vec<lots::Model>,
    pub lot_updates: Vec<LotUpdate>,
    pub wallets: Vec<WalletUpdate>,
    pub new_holds: Vec<holds::Model>,
    /// Holds read open and closed or drawn from by the batch.
    pub hold_updates: Vec<HoldUpdate>,
    pub keys: Vec<idempotency_keys::Model>,
    /// The outbox's rows: what each command changed, for webhooks and streams.
    pub events: Vec<crate::events::NewEvent>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
            && self.new_lots.is_empty()
            && self.lot_updates.is_empty()
            && self.wallets.is_empty()
            && self.new_holds.is_empty()
            && self.hold_updates.is_empty()
            && self.keys.is_empty()
            && self.events.is_empty()
    }
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

pub use crate::domain::ledger::available;

/// A wallet's low-balance alert thresholds (a JSON array in `accounts.low_balance_thresholds`).
pub fn thresholds(wallet: &accounts::Model) -> Vec<i64> {
    wallet.low_balance_thresholds.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

/// Why a wallet with these figures cannot spend `amount`, if it cannot.
pub fn refusal(wallet: &accounts::Model, amount: Credits) -> Option<CreditsError> {
    if wallet.debt > 0 {
        return Some(CreditsError::OutstandingDebt { debt: wallet.debt });
    }
    let available = available(wallet);
    (available < amount.get()).then_some(CreditsError::InsufficientCredits { available, requested: amount.get() })
}

/// Whether time has something to post on this wallet: a lot past its expiry with credits left,
/// or an open hold past its time.
pub fn is_due(wallet: &Wallet, now: DateTime<Utc>) -> bool {
    wallet.lots.iter().any(|l| l.remaining > 0 && l.expires_at.is_some_and(|at| at <= now))
        || wallet.holds.iter().any(|h| h.status == HoldStatus::Open.as_str() && h.expires_at <= now)
}

/// Judges `commands` in order against `snapshot`; returns one verdict per command and the rows
/// to write.
pub fn judge(snapshot: Snapshot, commands: &[Command], now: DateTime<Utc>) -> (Vec<Verdict>, Journal) {
    let mut books = books::Books::new(snapshot, now);
    let verdicts = commands.iter().map(|command| books.apply(command)).collect();
    (verdicts, books.finish())
}

pub(super) fn movement_view(m: &Movement) -> LotMovementView {
    LotMovementView { lot_id: m.lot_id, amount: m.amount }
}
