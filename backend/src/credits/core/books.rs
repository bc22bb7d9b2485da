//! The core's bookkeeping while it judges a batch: each wallet as the commands before left it,
//! the transfers and movements posted so far, and the answers stored for replays. Every
//! operation checks before it changes anything, so a refusal leaves no trace.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::{ContextV7, Timestamp, Uuid};

use super::{
    Answer, Command, HoldUpdate, Journal, LotUpdate, Measured, Movement, NewLot, Op, Snapshot, TakeBack,
    TransferDetails, Verdict, Wallet, WalletUpdate, available, is_due, movement_view, refusal, spend_order, thresholds,
};
use crate::{
    credits::{
        dto::{GrantResponse, HoldResponse, HoldView, SpendResponse, TransferView, WalletBalance},
        error::CreditsError,
    },
    domain::{
        Credits,
        ledger::{HoldStatus, TransferKind, system},
    },
    entities::{holds, idempotency_keys, lots, transfers},
    events::NewEvent,
    idempotency::{self, IdempotentRequest, Lookup},
};

/// A wallet while the batch is judged, and what it was when read.
#[derive(Debug, Clone)]
struct Ledger {
    wallet: Wallet,
    read: (i64, i64, i64),
    /// Lots read, by id: what each held when read.
    lots_read: HashMap<Uuid, i64>,
    /// Holds read, by id: whether each was open, and what it held.
    holds_read: HashMap<Uuid, (bool, i64)>,
}

pub(super) struct Books {
    now: DateTime<Utc>,
    ids: ContextV7,
    wallets: HashMap<Uuid, Ledger>,
    keys: HashMap<(String, String), idempotency_keys::Model>,
    references: HashSet<String>,
    expired_before: HashMap<Uuid, i64>,
    /// What this batch's settling expired, by lot.
    expired_now: Vec<(Uuid, i64)>,
    transfers: Vec<transfers::Model>,
    movements: Vec<Movement>,
    stored: Vec<idempotency_keys::Model>,
    events: Vec<NewEvent>,
}

/// What a ledger event tells, besides the wallet's figures after it.
#[derive(Serialize)]
#[serde(untagged)]
enum EventData<'a> {
    Transfer(TransferData<'a>),
    Hold { hold: HoldView },
    Low { threshold: i64, available: i64 },
}

/// A transfer as its event tells it.
#[derive(Serialize)]
struct TransferData<'a> {
    transfer_id: Uuid,
    kind: &'a str,
    amount: i64,
    feature: Option<&'a str>,
    quantity: Option<i64>,
    description: Option<&'a str>,
    metadata: Option<&'a serde_json::Value>,
    reference: Option<&'a str>,
    lot_id: Option<Uuid>,
    hold_id: Option<Uuid>,
}

impl<'a> TransferData<'a> {
    fn of(t: &'a transfers::Model) -> Self {
        Self {
            transfer_id: t.id,
            kind: &t.kind,
            amount: t.amount,
            feature: t.feature.as_deref(),
            quantity: t.quantity,
            description: t.description.as_deref(),
            metadata: t.metadata.as_ref(),
            reference: t.reference.as_deref(),
            lot_id: t.lot_id,
            hold_id: t.hold_id,
        }
    }
}

/// An event's data: what it tells and `balance`, in one object.
#[derive(Serialize)]
struct WithBalance<'a> {
    #[serde(flatten)]
    data: EventData<'a>,
    balance: &'a WalletBalance,
}

/// A wallet as a command found it: what its events are told against.
struct Before {
    available: i64,
    holds: Vec<(Uuid, String)>,
    transfers: usize,
}

fn invariant(message: String) -> CreditsError {
    CreditsError::invariant(message)
}

fn add(a: i64, b: i64) -> Result<i64, CreditsError> {
    a.checked_add(b).ok_or_else(|| invariant(format!("{a} + {b} overflows")))
}

fn sub(a: i64, b: i64) -> Result<i64, CreditsError> {
    a.checked_sub(b).ok_or_else(|| invariant(format!("{a} - {b} overflows")))
}

impl Books {
    pub(super) fn new(snapshot: Snapshot, now: DateTime<Utc>) -> Self {
        let wallets = snapshot
            .wallets
            .into_iter()
            .map(|(user, mut wallet)| {
                wallet.lots.retain(|l| l.remaining > 0);
                wallet.lots.sort_by(spend_order);
                let a = &wallet.account;
                let ledger = Ledger {
                    read: (a.balance, a.held, a.debt),
                    lots_read: wallet.lots.iter().map(|l| (l.id, l.remaining)).collect(),
                    holds_read: wallet
                        .holds
                        .iter()
                        .map(|h| (h.id, (h.status == HoldStatus::Open.as_str(), h.amount)))
                        .collect(),
                    wallet,
                };
                (user, ledger)
            })
            .collect();
        Self {
            now,
            ids: ContextV7::new(),
            wallets,
            keys: snapshot.keys,
            references: snapshot.references,
            expired_before: snapshot.expired_from,
            expired_now: Vec::new(),
            transfers: Vec::new(),
            movements: Vec::new(),
            stored: Vec::new(),
            events: Vec::new(),
        }
    }

    fn new_id(&self) -> Uuid {
        let secs = u64::try_from(self.now.timestamp()).unwrap_or_default();
        Uuid::new_v7(Timestamp::from_unix(&self.ids, secs, self.now.timestamp_subsec_nanos()))
    }

    pub(super) fn apply(&mut self, command: &Command) -> Verdict {
        if let Op::Move { from, to, amount, kind, details } = &command.op {
            let transfer = self.transfer(*from, *to, *amount, *kind, details.clone(), None);
            let transfer_id = transfer.id;
            self.transfers.push(transfer);
            return Ok(Answer::Moved { transfer_id });
        }
        let Some(mut ledger) = self.wallets.remove(&command.user_id) else {
            return Err(CreditsError::WalletNotFound);
        };
        let verdict = self.apply_to(&mut ledger, command);
        self.wallets.insert(command.user_id, ledger);
        verdict
    }

    /// One command against its wallet. When time has something to post, the command runs on a
    /// copy that is kept only if it goes through; otherwise every operation checks before it
    /// changes anything.
    fn apply_to(&mut self, ledger: &mut Ledger, command: &Command) -> Verdict {
        if let Some(request) = &command.key {
            let slot = (request.scope.clone(), request.key.as_str().to_owned());
            match idempotency::judge(request, self.keys.get(&slot)) {
                Lookup::New => {}
                Lookup::Replay(answer) => return Ok(Answer::Replayed(answer)),
                Lookup::Mismatch => return Err(CreditsError::IdempotencyKeyReused),
            }
        }
        let marks = (self.transfers.len(), self.movements.len(), self.expired_now.len());
        let before = Before {
            available: available(&ledger.wallet.account),
            holds: ledger.wallet.holds.iter().map(|h| (h.id, h.status.clone())).collect(),
            transfers: marks.0,
        };
        let verdict = if is_due(&ledger.wallet, self.now) {
            let mut copy = ledger.clone();
            let verdict = self.settle(&mut copy).and_then(|()| self.operate(&mut copy, command));
            if verdict.is_ok() {
                *ledger = copy;
            }
            verdict
        } else {
            self.operate(ledger, command)
        };
        if verdict.is_err() {
            self.transfers.truncate(marks.0);
            self.movements.truncate(marks.1);
            self.expired_now.truncate(marks.2);
            return verdict;
        }
        if let (Some(request), Ok(answer)) = (&command.key, &verdict) {
            self.store(request, answer);
        }
        self.record(ledger, command.user_id, &before);
        verdict
    }

    /// The events of a command that went through: one per change it made to the wallet (its
    /// transfers and its holds' changes), and `balance.low` for each alert threshold its
    /// available credits fell to or below (from above it: a crossing, once).
    fn record(&mut self, ledger: &Ledger, customer: Uuid, before: &Before) {
        let wallet = ledger.wallet.account.id;
        let balance = WalletBalance::of(&ledger.wallet.account);
        let mut made: Vec<(&'static str, EventData<'_>)> = Vec::new();
        for t in &self.transfers[before.transfers..] {
            let kind = TransferKind::parse(&t.kind);
            let event = if t.credit_account_id == wallet {
                match kind {
                    Some(TransferKind::DisputeRelease) => "credits.dispute.returned",
                    _ => "credits.granted",
                }
            } else if t.debit_account_id == wallet {
                match kind {
                    // A capture's spend is told by `credits.hold.captured`; a draw's (the hold
                    // stays open) is a spend of its own.
                    Some(TransferKind::Spend)
                        if t.hold_id.is_some_and(|id| {
                            ledger.wallet.holds.iter().any(|h| h.id == id && h.status != HoldStatus::Open.as_str())
                        }) =>
                    {
                        continue;
                    }
                    Some(TransferKind::Spend) => "credits.spent",
                    Some(TransferKind::Expiry) => "credits.expired",
                    Some(TransferKind::Clawback) => "credits.clawed_back",
                    Some(TransferKind::DisputeFreeze) => "credits.dispute.frozen",
                    _ => continue,
                }
            } else {
                continue;
            };
            made.push((event, EventData::Transfer(TransferData::of(t))));
        }
        for hold in &ledger.wallet.holds {
            let was = before.holds.iter().find(|(id, _)| *id == hold.id).map(|(_, s)| s.as_str());
            let event = match (was, HoldStatus::parse(&hold.status)) {
                (None, HoldStatus::Open) => "credits.hold.created",
                (Some("open"), HoldStatus::Captured) => "credits.hold.captured",
                (Some("open"), HoldStatus::Released) => "credits.hold.released",
                (Some("open"), HoldStatus::Expired) => "credits.hold.expired",
                _ => continue,
            };
            made.push((event, EventData::Hold { hold: hold.into() }));
        }
        let after = available(&ledger.wallet.account);
        for threshold in thresholds(&ledger.wallet.account) {
            if before.available > threshold && after <= threshold {
                made.push(("balance.low", EventData::Low { threshold, available: after }));
            }
        }
        for (kind, data) in made {
            let id = crate::events::event_id(self.new_id());
            self.events.push(NewEvent::new(id, kind, Some(customer), &WithBalance { data, balance: &balance }));
        }
    }

    /// Keeps a fresh answer for replays, for this batch and the requests after it.
    fn store(&mut self, request: &IdempotentRequest, answer: &Answer) {
        // An answer is strings, numbers, ids, times and a JSON object with string keys: serde_json
        // cannot fail on it, and the command has changed the batch by now, so there is no
        // refusal left to give.
        let body = match answer {
            Answer::Spent(r) => serde_json::to_string(r),
            Answer::Hold(r) => serde_json::to_string(r),
            Answer::Credited(r) => serde_json::to_string(r),
            _ => return,
        }
        .expect("an answer serializes to JSON");
        let record = idempotency_keys::Model {
            scope: request.scope.clone(),
            key: request.key.as_str().to_owned(),
            fingerprint: request.fingerprint.clone(),
            status_code: 200,
            response: body,
            created_at: self.now,
        };
        self.keys.insert((record.scope.clone(), record.key.clone()), record.clone());
        self.stored.push(record);
    }

    fn operate(&mut self, ledger: &mut Ledger, command: &Command) -> Verdict {
        match &command.op {
            Op::Spend { amount, details } => self.spend(ledger, *amount, details, command.key.as_ref()),
            Op::Hold { amount, details, ttl } => self.hold(ledger, *amount, details, *ttl),
            Op::Capture { hold_id, amount, description, measured } => {
                self.capture(ledger, *hold_id, *amount, description, measured.as_ref(), command.key.as_ref())
            }
            Op::Release { hold_id } => self.release(ledger, *hold_id),
            Op::Draw { hold_id, amount, details } => self.draw(ledger, *hold_id, *amount, details),
            Op::Credit { lot, details } => self.credit(ledger, command.user_id, lot, details, command.key.as_ref()),
            Op::Settle => Ok(Answer::Settled),
            Op::TakeBack(take) => self.take_back(ledger, take),
            Op::Move { .. } => unreachable!("a move names no wallet"),
        }
    }

    fn transfer(
        &self,
        debit: Uuid,
        credit: Uuid,
        amount: Credits,
        kind: TransferKind,
        details: TransferDetails,
        key: Option<&IdempotentRequest>,
    ) -> transfers::Model {
        transfers::Model {
            seq: 0,
            id: self.new_id(),
            debit_account_id: debit,
            credit_account_id: credit,
            amount: amount.get(),
            kind: kind.as_str().to_owned(),
            debit_balance_after: None,
            credit_balance_after: None,
            description: details.description,
            feature: details.feature,
            quantity: details.quantity,
            metadata: details.metadata,
            idempotency_key: key.map(|k| k.key.as_str().to_owned()),
            request_fingerprint: key.map(|k| k.fingerprint.clone()),
            hold_id: details.hold_id,
            lot_id: None,
            reference: details.reference,
            created_at: self.now,
        }
    }

    /// Posts the expiry of lots past their expiry and releases holds past their time.
    fn settle(&mut self, ledger: &mut Ledger) -> Result<(), CreditsError> {
        let now = self.now;
        let wallet_id = ledger.wallet.account.id;
        for i in 0..ledger.wallet.lots.len() {
            let lot = &ledger.wallet.lots[i];
            if lot.remaining == 0 || lot.expires_at.is_none_or(|at| at > now) {
                continue;
            }
            let (lot_id, remaining) = (lot.id, lot.remaining);
            let description = format!("{} credits expired", lot.source);
            let balance = sub(ledger.wallet.account.balance, remaining)?;
            let amount = Credits::new(remaining).map_err(|e| invariant(e.to_string()))?;
            let details = TransferDetails { description: Some(description), ..Default::default() };
            let mut transfer = self.transfer(wallet_id, system::EXPIRY, amount, TransferKind::Expiry, details, None);
            transfer.debit_balance_after = Some(balance);
            transfer.lot_id = Some(lot_id);
            self.movements.push(Movement { transfer_id: transfer.id, lot_id, amount: remaining });
            self.transfers.push(transfer);
            self.expired_now.push((lot_id, remaining));
            ledger.wallet.account.balance = balance;
            let lot = &mut ledger.wallet.lots[i];
            lot.remaining = 0;
            lot.expired_at = Some(now);
        }
        for hold in &mut ledger.wallet.holds {
            if hold.status == HoldStatus::Open.as_str() && hold.expires_at <= now {
                hold.status = HoldStatus::Expired.as_str().to_owned();
                hold.closed_at = Some(now);
                ledger.wallet.account.held = sub(ledger.wallet.account.held, hold.amount)?;
            }
        }
        Ok(())
    }

    /// What taking `amount` from the lots in `order` (indexes into the wallet's lots) would take
    /// from each, as far as they go, and what it could not find. Changes nothing.
    fn plan(ledger: &Ledger, order: &[usize], amount: i64, transfer_id: Uuid) -> (Vec<(usize, Movement)>, i64) {
        let mut left = amount;
        let mut moved = Vec::new();
        for &i in order {
            if left == 0 {
                break;
            }
            let lot = &ledger.wallet.lots[i];
            let take = lot.remaining.min(left);
            if take > 0 {
                left -= take;
                moved.push((i, Movement { transfer_id, lot_id: lot.id, amount: take }));
            }
        }
        (moved, left)
    }

    /// Takes what `plan` planned.
    fn take(ledger: &mut Ledger, planned: Vec<(usize, Movement)>) -> Vec<Movement> {
        planned
            .into_iter()
            .map(|(i, movement)| {
                ledger.wallet.lots[i].remaining -= movement.amount;
                movement
            })
            .collect()
    }

    /// Moves credits out of a wallet that can afford them, from its lots in spend order.
    fn debit(
        &mut self,
        ledger: &mut Ledger,
        amount: Credits,
        details: TransferDetails,
        key: Option<&IdempotentRequest>,
    ) -> Result<TransferView, CreditsError> {
        let balance = sub(ledger.wallet.account.balance, amount.get())?;
        let wallet_id = ledger.wallet.account.id;
        let mut transfer = self.transfer(wallet_id, system::USAGE, amount, TransferKind::Spend, details, key);
        transfer.debit_balance_after = Some(balance);
        let order: Vec<usize> = (0..ledger.wallet.lots.len()).collect();
        let (planned, left) = Self::plan(ledger, &order, amount.get(), transfer.id);
        if left != 0 {
            return Err(invariant(format!("wallet {wallet_id} has {left} fewer credits in its lots than its balance")));
        }
        let moved = Self::take(ledger, planned);
        ledger.wallet.account.balance = balance;
        let view = TransferView::new(&transfer, moved.iter().map(movement_view).collect());
        self.movements.extend(moved);
        self.transfers.push(transfer);
        Ok(view)
    }

    fn spend(
        &mut self,
        ledger: &mut Ledger,
        amount: Credits,
        details: &TransferDetails,
        key: Option<&IdempotentRequest>,
    ) -> Verdict {
        if let Some(refused) = refusal(&ledger.wallet.account, amount) {
            return Err(refused);
        }
        let transfer = self.debit(ledger, amount, details.clone(), key)?;
        Ok(Answer::Spent(SpendResponse { transfer, balance: WalletBalance::of(&ledger.wallet.account) }))
    }

    fn hold(&mut self, ledger: &mut Ledger, amount: Credits, details: &TransferDetails, ttl: Duration) -> Verdict {
        if let Some(refused) = refusal(&ledger.wallet.account, amount) {
            return Err(refused);
        }
        let held = add(ledger.wallet.account.held, amount.get())?;
        let hold = holds::Model {
            id: self.new_id(),
            account_id: ledger.wallet.account.id,
            amount: amount.get(),
            status: HoldStatus::Open.as_str().to_owned(),
            feature: details.feature.clone(),
            quantity: details.quantity,
            description: details.description.clone(),
            metadata: details.metadata.clone(),
            captured_amount: None,
            capture_transfer_id: None,
            expires_at: self.now + ttl,
            created_at: self.now,
            closed_at: None,
        };
        ledger.wallet.account.held = held;
        let answer =
            HoldResponse { hold: (&hold).into(), transfer: None, balance: WalletBalance::of(&ledger.wallet.account) };
        ledger.wallet.holds.push(hold);
        Ok(Answer::Hold(answer))
    }

    fn hold_index(ledger: &Ledger, hold_id: Uuid) -> Result<usize, CreditsError> {
        ledger.wallet.holds.iter().position(|h| h.id == hold_id).ok_or(CreditsError::HoldNotFound)
    }

    fn capture(
        &mut self,
        ledger: &mut Ledger,
        hold_id: Uuid,
        amount: Credits,
        description: &Option<String>,
        measured: Option<&Measured>,
        key: Option<&IdempotentRequest>,
    ) -> Verdict {
        let i = Self::hold_index(ledger, hold_id)?;
        let hold = &ledger.wallet.holds[i];
        match HoldStatus::parse(&hold.status) {
            HoldStatus::Captured => {
                let captured = hold.captured_amount.unwrap_or_default();
                if captured != amount.get() {
                    return Err(CreditsError::HoldAlreadyCaptured { captured });
                }
                let balance = WalletBalance::of(&ledger.wallet.account);
                return Ok(Answer::AlreadyCaptured { hold: hold.clone(), balance });
            }
            HoldStatus::Expired => return Err(CreditsError::HoldExpired { expires_at: hold.expires_at }),
            HoldStatus::Released => return Err(CreditsError::HoldNotOpen { status: hold.status.clone() }),
            HoldStatus::Open if hold.expires_at <= self.now => {
                return Err(CreditsError::HoldExpired { expires_at: hold.expires_at });
            }
            HoldStatus::Open => {}
        }
        if amount.get() > hold.amount {
            return Err(CreditsError::CaptureExceedsHold { held: hold.amount, requested: amount.get() });
        }
        let account = &ledger.wallet.account;
        let held = sub(account.held, hold.amount)?;
        if !amount.is_zero() {
            if account.debt > 0 {
                return Err(CreditsError::OutstandingDebt { debt: account.debt });
            }
            let spendable = sub(account.balance, held)?;
            if spendable < amount.get() {
                return Err(CreditsError::InsufficientCredits { available: spendable.max(0), requested: amount.get() });
            }
        }
        let details = TransferDetails {
            description: description.clone().or_else(|| hold.description.clone()),
            feature: hold.feature.clone(),
            quantity: measured.map_or(hold.quantity, |m| m.quantity),
            metadata: measured.map_or_else(|| hold.metadata.clone(), |m| m.metadata.clone()),
            hold_id: Some(hold.id),
            reference: None,
        };
        let transfer = if amount.is_zero() { None } else { Some(self.debit(ledger, amount, details, key)?) };
        ledger.wallet.account.held = held;
        let hold = &mut ledger.wallet.holds[i];
        hold.status = HoldStatus::Captured.as_str().to_owned();
        hold.captured_amount = Some(amount.get());
        hold.capture_transfer_id = transfer.as_ref().map(|t| t.id);
        hold.closed_at = Some(self.now);
        let hold = (&*hold).into();
        Ok(Answer::Hold(HoldResponse { hold, transfer, balance: WalletBalance::of(&ledger.wallet.account) }))
    }

    /// Spends part of an open hold and keeps the rest held: what it holds shrinks by `amount`,
    /// which `captured_amount` adds up.
    fn draw(&mut self, ledger: &mut Ledger, hold_id: Uuid, amount: Credits, details: &TransferDetails) -> Verdict {
        let i = Self::hold_index(ledger, hold_id)?;
        let hold = &ledger.wallet.holds[i];
        match HoldStatus::parse(&hold.status) {
            HoldStatus::Open if hold.expires_at > self.now => {}
            HoldStatus::Open | HoldStatus::Expired => {
                return Err(CreditsError::HoldExpired { expires_at: hold.expires_at });
            }
            HoldStatus::Captured => {
                return Err(CreditsError::HoldAlreadyCaptured { captured: hold.captured_amount.unwrap_or_default() });
            }
            HoldStatus::Released => return Err(CreditsError::HoldNotOpen { status: hold.status.clone() }),
        }
        if amount.get() > hold.amount {
            return Err(CreditsError::CaptureExceedsHold { held: hold.amount, requested: amount.get() });
        }
        let hold_id = hold.id;
        let account = &ledger.wallet.account;
        let held = sub(account.held, amount.get())?;
        if account.debt > 0 && !amount.is_zero() {
            return Err(CreditsError::OutstandingDebt { debt: account.debt });
        }
        // The drawn credits leave what is held: what is left must still cover what stays held.
        let spendable = sub(account.balance, held)?;
        if spendable < amount.get() {
            return Err(CreditsError::InsufficientCredits { available: spendable.max(0), requested: amount.get() });
        }
        let transfer = if amount.is_zero() {
            None
        } else {
            let details = TransferDetails { hold_id: Some(hold_id), ..details.clone() };
            Some(self.debit(ledger, amount, details, None)?)
        };
        ledger.wallet.account.held = held;
        let hold = &mut ledger.wallet.holds[i];
        hold.amount -= amount.get();
        hold.captured_amount = Some(add(hold.captured_amount.unwrap_or(0), amount.get())?);
        let hold = (&*hold).into();
        Ok(Answer::Hold(HoldResponse { hold, transfer, balance: WalletBalance::of(&ledger.wallet.account) }))
    }

    fn release(&mut self, ledger: &mut Ledger, hold_id: Uuid) -> Verdict {
        let i = Self::hold_index(ledger, hold_id)?;
        let hold = &ledger.wallet.holds[i];
        match HoldStatus::parse(&hold.status) {
            HoldStatus::Captured => {
                return Err(CreditsError::HoldAlreadyCaptured { captured: hold.captured_amount.unwrap_or_default() });
            }
            HoldStatus::Released | HoldStatus::Expired => {}
            HoldStatus::Open => {
                ledger.wallet.account.held = sub(ledger.wallet.account.held, hold.amount)?;
                let hold = &mut ledger.wallet.holds[i];
                hold.status = HoldStatus::Released.as_str().to_owned();
                hold.closed_at = Some(self.now);
            }
        }
        let hold = (&ledger.wallet.holds[i]).into();
        Ok(Answer::Hold(HoldResponse { hold, transfer: None, balance: WalletBalance::of(&ledger.wallet.account) }))
    }

    /// A new lot; an outstanding debt is covered from it first.
    fn credit(
        &mut self,
        ledger: &mut Ledger,
        user_id: Uuid,
        lot: &NewLot,
        details: &TransferDetails,
        key: Option<&IdempotentRequest>,
    ) -> Verdict {
        if self.references.contains(&lot.reference) {
            return Ok(Answer::AlreadyApplied);
        }
        let amount = lot.amount.get();
        // Every way in is bounded here too, so no lot is large enough to put the books' sums at risk.
        if amount > Credits::MAX_PER_REQUEST {
            return Err(invariant(format!(
                "a lot may hold at most {} credits, not {amount}",
                Credits::MAX_PER_REQUEST
            )));
        }
        let account = &ledger.wallet.account;
        let balance = add(account.balance, amount)?;
        let cover = account.debt.min(amount);
        let wallet_id = account.id;
        let lot_id = self.new_id();
        let mut transfer = self.transfer(lot.from, wallet_id, lot.amount, lot.kind, details.clone(), key);
        transfer.credit_balance_after = Some(balance);
        transfer.lot_id = Some(lot_id);
        let moved: Vec<Movement> =
            (cover > 0).then_some(Movement { transfer_id: transfer.id, lot_id, amount: cover }).into_iter().collect();
        ledger.wallet.account.balance = balance;
        ledger.wallet.account.debt -= cover;
        ledger.wallet.lots.push(lots::Model {
            id: lot_id,
            account_id: wallet_id,
            source: lot.source.as_str().to_owned(),
            amount,
            remaining: amount - cover,
            priority: lot.priority,
            expires_at: lot.expires_at,
            expired_at: None,
            reference: lot.reference.clone(),
            transfer_id: transfer.id,
            created_at: self.now,
        });
        ledger.wallet.lots.sort_by(spend_order);
        self.references.insert(lot.reference.clone());
        let answer = GrantResponse {
            user_id,
            transfer: TransferView::new(&transfer, moved.iter().map(movement_view).collect()),
            lot_id,
            balance: WalletBalance::of(&ledger.wallet.account),
        };
        self.movements.extend(moved);
        self.transfers.push(transfer);
        Ok(Answer::Credited(answer))
    }

    /// Takes back what a refund or dispute may still take: never credits that already expired
    /// (they left the wallet once); the paid lot's unspent credits first, then the wallet's
    /// other lots; what cannot be found becomes debt, which blocks spending until covered.
    fn take_back(&mut self, ledger: &mut Ledger, take: &TakeBack) -> Verdict {
        let in_payment = |lot: &Uuid| take.payment_lots.contains(lot);
        let expired_before: i64 = take.payment_lots.iter().filter_map(|l| self.expired_before.get(l)).sum();
        let expired_now: i64 = self.expired_now.iter().filter(|(l, _)| in_payment(l)).map(|(_, a)| a).sum();
        let takeable = take.paid_credits.saturating_sub(add(expired_before, expired_now)?).max(0);
        let credits = if take.cumulative {
            take.share.min(takeable).saturating_sub(take.taken_before)
        } else {
            take.share.min(takeable.saturating_sub(take.taken_before))
        };
        if credits <= 0 {
            return Ok(Answer::TakenBack { credits: 0, transfer_id: None });
        }
        let amount = Credits::new(credits).map_err(|e| invariant(e.to_string()))?;
        let balance = sub(ledger.wallet.account.balance, credits)?;
        let wallet_id = ledger.wallet.account.id;
        let mut transfer = self.transfer(wallet_id, take.to, amount, take.kind, take.details.clone(), None);
        transfer.debit_balance_after = Some(balance);
        let lots = &ledger.wallet.lots;
        let mut order: Vec<usize> = (0..lots.len()).filter(|&i| lots[i].id == take.paid_lot).collect();
        order.extend((0..lots.len()).filter(|&i| lots[i].id != take.paid_lot));
        let (planned, left) = Self::plan(ledger, &order, credits, transfer.id);
        let debt = add(ledger.wallet.account.debt, left)?;
        let moved = Self::take(ledger, planned);
        ledger.wallet.account.balance = balance;
        ledger.wallet.account.debt = debt;
        let transfer_id = transfer.id;
        self.movements.extend(moved);
        self.transfers.push(transfer);
        Ok(Answer::TakenBack { credits, transfer_id: Some(transfer_id) })
    }

    /// The rows the batch leaves changed.
    pub(super) fn finish(self) -> Journal {
        let mut journal = Journal {
            transfers: self.transfers,
            movements: self.movements,
            keys: self.stored,
            events: self.events,
            ..Default::default()
        };
        let mut ledgers: Vec<Ledger> = self.wallets.into_values().collect();
        ledgers.sort_by_key(|l| l.wallet.account.id);
        for ledger in ledgers {
            let a = &ledger.wallet.account;
            if (a.balance, a.held, a.debt) != ledger.read {
                journal.wallets.push(WalletUpdate { id: a.id, balance: a.balance, held: a.held, debt: a.debt });
            }
            for lot in ledger.wallet.lots {
                match ledger.lots_read.get(&lot.id) {
                    None => journal.new_lots.push(lot),
                    Some(&before) if before != lot.remaining => journal.lot_updates.push(LotUpdate {
                        id: lot.id,
                        before,
                        after: lot.remaining,
                        expired_at: lot.expired_at,
                    }),
                    Some(_) => {}
                }
            }
            for hold in ledger.wallet.holds {
                match ledger.holds_read.get(&hold.id) {
                    None => journal.new_holds.push(hold),
                    Some(&(true, before)) if hold.status != HoldStatus::Open.as_str() || hold.amount != before => {
                        journal.hold_updates.push(HoldUpdate { before, hold });
                    }
                    Some(_) => {}
                }
            }
        }
        journal
    }
}
