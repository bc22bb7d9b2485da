//! Leases: one hold that a wallet's concurrent gateway calls share, so that a call is admitted
//! in memory instead of waiting for a hold of its own to be committed.
//!
//! A call alone on its wallet (in this replica) places its own hold, as the flow reads.
//! When calls overlap, one of them places a lease: a hold of up to `GATEWAY_LEASE_CALLS` worst
//! cases (never more than the wallet has available; fewer when it has less). Each call then
//! takes its worst case out of the lease's room, in memory, and after its answer the ledger
//! spends what it used from the lease ([`Op::Draw`], in the lane nobody waits on) and its room
//! comes back. The lease is a real hold, so nothing can be spent twice: the calls admitted on a
//! lease never reserve more than it holds, a draw never takes more than the hold still holds
//! (the core checks), and what a lease holds is not available to anything else meanwhile. A
//! lease takes new calls for `ADMIT_FOR` after it is placed, and is released once its calls
//! have ended and either its wallet has had no call for `IDLE`, or a newer lease replaced it.
//! Its time to live covers the longest call it can admit, so a server that stops mid-call
//! leaves it to expire, as a per-call hold would.
//!
//! Calls with an `Idempotency-Key` always hold their own (the key's row names its hold).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use crate::{
    credits::{
        CreditsError, Ledger,
        batch::Lane,
        core::{Answer, Command, Op, TransferDetails},
    },
    domain::Credits,
};

/// How long a lease takes new calls after it was placed.
const ADMIT_FOR: Duration = Duration::from_secs(30);
/// How long a lease outlives its wallet's last call (the next burst finds it).
const IDLE: Duration = Duration::from_millis(500);
/// After a lease was refused for want of credits, how long the wallet's calls hold their own.
const REFUSED_FOR: Duration = Duration::from_secs(1);
/// The fewest worst cases a lease is placed for (two calls and room for a third).
const MIN_LEASE_CALLS: i64 = 3;

/// The leases of this replica, by wallet owner.
pub struct Leases {
    /// The most worst cases one lease is placed for; 0: no leases.
    max_calls: i64,
    /// A lease's time to live: `ADMIT_FOR` plus the longest a call may run.
    ttl: chrono::Duration,
    wallets: Mutex<HashMap<Uuid, Wallet>>,
}

#[derive(Default)]
struct Wallet {
    /// The wallet's calls in flight here, on a lease or not.
    calls: u32,
    leases: Vec<Lease>,
    /// A lease being placed: its calls wait for it (the sender drops when it is done).
    placing: Option<watch::Receiver<()>>,
    /// No lease until then: the last one was refused for want of credits.
    refused_until: Option<Instant>,
    /// Bumped whenever the wallet's last call ends, so that a later idle check knows.
    idle_epoch: u64,
}

impl Wallet {
    /// No call, no lease and none being placed: nothing left to keep.
    fn is_idle(&self) -> bool {
        self.calls == 0 && self.leases.is_empty() && self.placing.is_none()
    }
}

struct Lease {
    hold_id: Uuid,
    /// What it was placed for.
    size: i64,
    /// Credits held and not reserved by a call in flight nor yet drawn.
    room: i64,
    calls: u32,
    placed: Instant,
    /// Takes no new calls (too old, or a newer lease replaced it).
    retired: bool,
}

/// Where a call's worst case is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// On a lease: the call draws what it used from this hold.
    Lease { hold_id: Uuid },
    /// Nowhere yet: the call places a hold of its own.
    Own,
}

/// A call's place on its wallet: counts it among the wallet's calls, and on a lease reserves
/// its worst case. Dropping it ends the call: the lease gets back `price` less what was drawn.
pub struct Ticket {
    leases: Arc<Leases>,
    ledger: Ledger,
    owner: Uuid,
    price: i64,
    pub reserved: Reserved,
    /// What the call drew from its lease (committed).
    drawn: AtomicI64,
}

impl Ticket {
    /// Records what was drawn from the lease for this call (committed).
    pub fn drawn(&self, amount: Credits) {
        self.drawn.store(amount.get(), Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let lease = match self.reserved {
            Reserved::Lease { hold_id } => Some((hold_id, self.price - *self.drawn.get_mut())),
            Reserved::Own => None,
        };
        self.leases.end(&self.ledger, self.owner, lease);
    }
}

impl Leases {
    /// `max_calls`: `GATEWAY_LEASE_CALLS`; `call_ttl`: how long a call's own hold lives.
    pub fn new(max_calls: u32, call_ttl: chrono::Duration) -> Self {
        let ttl = call_ttl + chrono::Duration::from_std(ADMIT_FOR).unwrap_or_default();
        Self { max_calls: i64::from(max_calls), ttl, wallets: Mutex::new(HashMap::new()) }
    }

    fn wallets(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Wallet>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.wallets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a call on `owner`'s wallet and reserves its worst case `price` on a lease when
    /// the wallet has other calls in flight (placing one if need be); otherwise `Reserved::Own`.
    pub async fn reserve(self: &Arc<Self>, ledger: &Ledger, owner: Uuid, price: Credits) -> Ticket {
        let price_n = price.get();
        let mut ticket = Ticket {
            leases: self.clone(),
            ledger: ledger.clone(),
            owner,
            price: price_n,
            reserved: Reserved::Own,
            drawn: AtomicI64::new(0),
        };
        let mut counted = false;
        loop {
            let waiting = {
                let mut wallets = self.wallets();
                let wallet = wallets.entry(owner).or_default();
                if !counted {
                    wallet.calls += 1;
                    counted = true;
                }
                let refused = wallet.refused_until.is_some_and(|until| until > Instant::now());
                if let Some((hold_id, low)) = take_room(wallet, price_n) {
                    ticket.reserved = Reserved::Lease { hold_id };
                    // Running low: the next lease is placed while this one still has room, so
                    // that no call waits for it.
                    if low && !refused && self.placing(wallet).is_none() {
                        self.start_placing(ledger, owner, wallet, price_n);
                    }
                    return ticket;
                }
                let alone = wallet.calls == 1;
                let per_call = self.max_calls.checked_mul(price_n).is_none_or(|_| self.max_calls < MIN_LEASE_CALLS);
                if alone || refused || per_call {
                    return ticket;
                }
                match self.placing(wallet) {
                    Some(rx) => rx,
                    None => self.start_placing(ledger, owner, wallet, price_n),
                }
            };
            let mut waiting = waiting;
            // Err once the placing task is done, whatever it placed.
            let _ = waiting.changed().await;
        }
    }

    /// The lease being placed for the wallet, if one is.
    fn placing(&self, wallet: &Wallet) -> Option<watch::Receiver<()>> {
        wallet.placing.as_ref().filter(|rx| rx.has_changed().is_ok()).cloned()
    }

    /// Starts placing a lease for twice the wallet's calls in flight (within the bounds), by a
    /// task of its own: a caller that goes away mid-way cannot leave a committed lease
    /// unrecorded. The receiver hears when it is done.
    fn start_placing(
        self: &Arc<Self>,
        ledger: &Ledger,
        owner: Uuid,
        wallet: &mut Wallet,
        price: i64,
    ) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        wallet.placing = Some(rx.clone());
        let size = (2 * i64::from(wallet.calls)).clamp(MIN_LEASE_CALLS, self.max_calls) * price;
        let (leases, ledger) = (self.clone(), ledger.clone());
        tokio::spawn(async move {
            leases.place(&ledger, owner, size, price).await;
            drop(tx);
        });
        rx
    }

    /// Places a lease of `size` credits (or as many worst cases as the wallet has, if fewer)
    /// and records it; records a refusal instead when the wallet cannot afford
    /// `MIN_LEASE_CALLS` calls.
    async fn place(self: &Arc<Self>, ledger: &Ledger, owner: Uuid, size: i64, price: i64) {
        let mut size = size;
        let placed = loop {
            let Ok(amount) = Credits::new(size) else { break None };
            let details = TransferDetails {
                description: Some("LLM calls (a gateway lease shared by concurrent calls)".to_owned()),
                feature: Some("llm".to_owned()),
                metadata: Some(json!({ "llm": { "lease": true, "worst_case_calls": size / price } })),
                ..TransferDetails::default()
            };
            let op = Op::Hold { amount, details, ttl: self.ttl };
            match ledger.submit(Command { user_id: owner, key: None, op }).await {
                Ok(Answer::Hold(held)) => break Some((held.hold.id, size)),
                Err(CreditsError::InsufficientCredits { available, .. }) if available / price >= MIN_LEASE_CALLS => {
                    size = available / price * price;
                }
                Ok(_) | Err(_) => break None,
            }
        };
        let mut release = Vec::new();
        {
            let mut wallets = self.wallets();
            let wallet = wallets.entry(owner).or_default();
            wallet.placing = None;
            match placed {
                Some((hold_id, room)) => {
                    // The older leases take no more calls; those with none in flight go now.
                    release.extend(retire_all(wallet));
                    wallet.leases.push(Lease {
                        hold_id,
                        size: room,
                        room,
                        calls: 0,
                        placed: Instant::now(),
                        retired: false,
                    });
                }
                None => wallet.refused_until = Some(Instant::now() + REFUSED_FOR),
            }
            if wallet.calls == 0 {
                // Every call it was placed for has gone already.
                self.idle_later(ledger, owner, wallet);
            }
        }
        release_all(ledger, owner, release);
    }

    /// A call has ended: gives its lease back `unused`, releases leases nobody will use, and
    /// when it was the wallet's last call, checks again after `IDLE`.
    fn end(self: &Arc<Self>, ledger: &Ledger, owner: Uuid, lease: Option<(Uuid, i64)>) {
        let mut release = Vec::new();
        {
            let mut wallets = self.wallets();
            let Some(wallet) = wallets.get_mut(&owner) else { return };
            wallet.calls = wallet.calls.saturating_sub(1);
            if let Some((hold_id, unused)) = lease
                && let Some(l) = wallet.leases.iter_mut().find(|l| l.hold_id == hold_id)
            {
                l.room += unused;
                l.calls -= 1;
            }
            release.extend(drain_unused(wallet));
            if wallet.calls == 0 {
                self.idle_later(ledger, owner, wallet);
            }
            if wallet.is_idle() {
                wallets.remove(&owner);
            }
        }
        release_all(ledger, owner, release);
    }

    /// After `IDLE`, releases the wallet's leases if it has had no call since.
    fn idle_later(self: &Arc<Self>, ledger: &Ledger, owner: Uuid, wallet: &mut Wallet) {
        if wallet.leases.is_empty() {
            return;
        }
        wallet.idle_epoch += 1;
        let epoch = wallet.idle_epoch;
        let (leases, ledger) = (self.clone(), ledger.clone());
        tokio::spawn(async move {
            tokio::time::sleep(IDLE).await;
            let release = {
                let mut wallets = leases.wallets();
                let Some(wallet) = wallets.get_mut(&owner) else { return };
                if wallet.calls > 0 || wallet.idle_epoch != epoch {
                    return;
                }
                let release = retire_all(wallet);
                if wallet.is_idle() {
                    wallets.remove(&owner);
                }
                release
            };
            release_all(&ledger, owner, release);
        });
    }

    /// Releases the leases no call is using (the server is stopping); those still in use are
    /// released by their last call, or expire.
    pub async fn release_unused(&self, ledger: &Ledger) {
        let unused: Vec<(Uuid, Vec<Uuid>)> = {
            let mut wallets = self.wallets();
            wallets.iter_mut().map(|(owner, wallet)| (*owner, retire_all(wallet))).collect()
        };
        for (owner, holds) in unused {
            for hold_id in holds {
                release(ledger, Lane::Now, owner, hold_id).await;
            }
        }
    }
}

/// Reserves `price` on the wallet's lease with room for it, retiring leases too old to admit;
/// says too whether that lease is running low (under a quarter of its size left, or too old
/// to admit much longer).
fn take_room(wallet: &mut Wallet, price: i64) -> Option<(Uuid, bool)> {
    for lease in &mut wallet.leases {
        if lease.placed.elapsed() >= ADMIT_FOR {
            lease.retired = true;
        }
    }
    let lease = wallet.leases.iter_mut().find(|l| !l.retired && l.room >= price)?;
    lease.room -= price;
    lease.calls += 1;
    let low = lease.room < lease.size / 4 || lease.placed.elapsed() >= ADMIT_FOR - ADMIT_FOR / 8;
    Some((lease.hold_id, low))
}

/// Retires every lease of the wallet and takes those with no call in flight off it.
fn retire_all(wallet: &mut Wallet) -> Vec<Uuid> {
    for lease in &mut wallet.leases {
        lease.retired = true;
    }
    drain_unused(wallet)
}

/// Takes the retired leases with no call in flight off the wallet.
fn drain_unused(wallet: &mut Wallet) -> Vec<Uuid> {
    let mut gone = Vec::new();
    wallet.leases.retain(|l| {
        let unused = l.retired && l.calls == 0;
        if unused {
            gone.push(l.hold_id);
        }
        !unused
    });
    gone
}

/// Releases leases, in the lane nobody waits on (after the draws queued before them).
fn release_all(ledger: &Ledger, owner: Uuid, holds: Vec<Uuid>) {
    for hold_id in holds {
        let ledger = ledger.clone();
        tokio::spawn(async move { release(&ledger, Lane::Later, owner, hold_id).await });
    }
}

/// Releases one lease; one that cannot be released expires at its time instead.
async fn release(ledger: &Ledger, lane: Lane, owner: Uuid, hold_id: Uuid) {
    let command = Command { user_id: owner, key: None, op: Op::Release { hold_id } };
    if let Err(e) = ledger.submit_in(lane, command).await {
        log::warn!("releasing gateway lease {hold_id}: {e} (it expires at its time instead)");
    }
}
