//! The core alone, without a database: the spend order, refusals that leave no trace, replays,
//! and, over random batches, the books' invariants after every journal.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::{
    domain::{
        IdempotencyKey,
        ledger::{HoldStatus, LotSource, TransferKind, system},
    },
    entities::{accounts, holds, lots},
    idempotency::IdempotentRequest,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
}

fn credits(n: i64) -> Credits {
    Credits::new(n).unwrap()
}

/// A lot: `expires` in seconds from now (negative: already past), `age` in seconds before now.
fn lot(account: Uuid, remaining: i64, priority: i32, expires: Option<i64>, age: i64) -> lots::Model {
    let id = Uuid::now_v7();
    lots::Model {
        id,
        account_id: account,
        source: LotSource::Grant.as_str().to_owned(),
        amount: remaining.max(1),
        remaining,
        priority,
        expires_at: expires.map(|s| now() + Duration::seconds(s)),
        expired_at: None,
        reference: format!("test:{id}"),
        transfer_id: Uuid::now_v7(),
        created_at: now() - Duration::seconds(age),
    }
}

fn hold(account: Uuid, amount: i64, expires: i64) -> holds::Model {
    holds::Model {
        id: Uuid::now_v7(),
        account_id: account,
        amount,
        status: HoldStatus::Open.as_str().to_owned(),
        feature: None,
        quantity: None,
        description: None,
        metadata: None,
        captured_amount: None,
        capture_transfer_id: None,
        expires_at: now() + Duration::seconds(expires),
        created_at: now() - Duration::seconds(60),
        closed_at: None,
    }
}

/// A wallet whose cached figures agree with its lots and holds.
fn wallet(user: Uuid, lots: Vec<lots::Model>, holds: Vec<holds::Model>, debt: i64) -> Wallet {
    let account = lots.first().map_or_else(Uuid::now_v7, |l| l.account_id);
    Wallet {
        account: accounts::Model {
            id: account,
            kind: "wallet".to_owned(),
            code: None,
            user_id: Some(user),
            balance: lots.iter().map(|l| l.remaining).sum::<i64>() - debt,
            held: holds.iter().map(|h| h.amount).sum(),
            debt,
            low_balance_thresholds: None,
            created_at: now(),
            updated_at: now(),
        },
        lots,
        holds,
    }
}

fn key(user: Uuid, key: &str, fingerprint: &str) -> IdempotentRequest {
    IdempotentRequest {
        scope: format!("test:{user}"),
        key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: fingerprint.to_owned(),
    }
}

fn spend(user: Uuid, amount: i64, k: Option<&str>) -> Command {
    Command {
        user_id: user,
        key: k.map(|k| key(user, k, &format!("spend {amount}"))),
        op: Op::Spend { amount: credits(amount), details: TransferDetails::default() },
    }
}

fn snapshot(wallets: Vec<Wallet>) -> Snapshot {
    Snapshot { wallets: wallets.into_iter().map(|w| (w.account.user_id.unwrap(), w)).collect(), ..Default::default() }
}

#[test]
fn lots_are_spent_by_priority_then_soonest_expiry_then_age() {
    let user = Uuid::now_v7();
    let account = Uuid::now_v7();
    let paid = lot(account, 10, 100, None, 500);
    let old_promo = lot(account, 10, 10, None, 400);
    let new_promo = lot(account, 10, 10, None, 100);
    let expiring_promo = lot(account, 10, 10, Some(3600), 50);
    let order = [&expiring_promo, &old_promo, &new_promo, &paid].map(|l| l.id);
    let w = wallet(user, vec![paid.clone(), new_promo.clone(), old_promo.clone(), expiring_promo.clone()], vec![], 0);

    let (verdicts, journal) = judge(snapshot(vec![w]), &[spend(user, 35, None)], now());
    let Ok(Answer::Spent(answer)) = &verdicts[0] else { panic!("{verdicts:?}") };
    let taken: Vec<(Uuid, i64)> = answer.transfer.lots.iter().map(|m| (m.lot_id, m.amount)).collect();
    assert_eq!(taken, vec![(order[0], 10), (order[1], 10), (order[2], 10), (order[3], 5)]);
    assert_eq!(answer.balance.balance, 5);
    assert_eq!(journal.lot_updates.len(), 4);
}

#[test]
fn a_refused_spend_leaves_no_trace_not_even_the_expiry_it_would_post() {
    let user = Uuid::now_v7();
    let account = Uuid::now_v7();
    let w = wallet(user, vec![lot(account, 30, 1, Some(-1), 100), lot(account, 5, 20, None, 50)], vec![], 0);
    let (verdicts, journal) = judge(snapshot(vec![w]), &[spend(user, 6, Some("k"))], now());
    assert!(matches!(verdicts[0], Err(CreditsError::InsufficientCredits { available: 5, requested: 6 })));
    assert!(journal.is_empty(), "{journal:?}");
}

#[test]
fn a_spend_that_goes_through_posts_the_expiry_first() {
    let user = Uuid::now_v7();
    let account = Uuid::now_v7();
    let w = wallet(user, vec![lot(account, 30, 1, Some(-1), 100), lot(account, 5, 20, None, 50)], vec![], 0);
    let (verdicts, journal) = judge(snapshot(vec![w]), &[spend(user, 4, None)], now());
    let Ok(Answer::Spent(answer)) = &verdicts[0] else { panic!("{verdicts:?}") };
    assert_eq!(answer.balance.balance, 1);
    let kinds: Vec<&str> = journal.transfers.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["expiry", "spend"]);
    assert_eq!(journal.transfers[0].debit_balance_after, Some(5));
}

#[test]
fn a_replay_answers_exactly_what_the_first_request_did() {
    let user = Uuid::now_v7();
    let account = Uuid::now_v7();
    let w = wallet(user, vec![lot(account, 10, 20, None, 10)], vec![], 0);
    let commands = [spend(user, 3, Some("a")), spend(user, 3, Some("a")), spend(user, 4, Some("a"))];
    let (verdicts, journal) = judge(snapshot(vec![w]), &commands, now());
    let Ok(Answer::Spent(first)) = &verdicts[0] else { panic!("{verdicts:?}") };
    let Ok(Answer::Replayed(replay)) = &verdicts[1] else { panic!("{verdicts:?}") };
    assert_eq!(replay.body, serde_json::to_value(first).unwrap());
    assert!(matches!(verdicts[2], Err(CreditsError::IdempotencyKeyReused)));
    assert_eq!(journal.transfers.len(), 1);
    assert_eq!(journal.keys.len(), 1);

    // The next batch reads the stored answer and replays it.
    let w = wallet(user, vec![lot(account, 7, 20, None, 10)], vec![], 0);
    let mut again = snapshot(vec![w]);
    let record = journal.keys[0].clone();
    again.keys.insert((record.scope.clone(), record.key.clone()), record);
    let (verdicts, journal) = judge(again, &[spend(user, 3, Some("a"))], now());
    let Ok(Answer::Replayed(replay)) = &verdicts[0] else { panic!("{verdicts:?}") };
    assert_eq!(replay.body, serde_json::to_value(first).unwrap());
    assert!(journal.is_empty());
}

#[test]
fn a_wallet_short_of_its_balance_is_refused_and_nothing_is_taken() {
    let user = Uuid::now_v7();
    let account = Uuid::now_v7();
    let mut w = wallet(user, vec![lot(account, 5, 20, None, 10)], vec![], 0);
    w.account.balance = 10;
    let (verdicts, journal) = judge(snapshot(vec![w]), &[spend(user, 8, None)], now());
    assert!(matches!(verdicts[0], Err(CreditsError::Database(_))), "{verdicts:?}");
    assert!(journal.is_empty(), "{journal:?}");
}

#[test]
fn debt_is_covered_first_by_new_credits() {
    let user = Uuid::now_v7();
    let w = wallet(user, vec![], vec![], 30);
    let credit = Command {
        user_id: user,
        key: None,
        op: Op::Credit {
            lot: NewLot {
                source: LotSource::Purchase,
                kind: TransferKind::Purchase,
                from: system::PURCHASES,
                amount: credits(100),
                priority: 100,
                expires_at: None,
                reference: "pay:1".to_owned(),
            },
            details: TransferDetails::default(),
        },
    };
    let (verdicts, journal) = judge(snapshot(vec![w]), &[credit.clone(), credit], now());
    let Ok(Answer::Credited(answer)) = &verdicts[0] else { panic!("{verdicts:?}") };
    assert_eq!((answer.balance.balance, answer.balance.debt), (70, 0));
    assert!(matches!(verdicts[1], Ok(Answer::AlreadyApplied)), "one reference credits once");
    assert_eq!(journal.new_lots[0].remaining, 70);
    assert_eq!(journal.movements.len(), 1, "the debt's cover is a movement against the new lot");
}

#[test]
fn draws_spend_from_a_hold_that_stays_open_until_released() {
    let user = Uuid::now_v7();
    let l = lot(Uuid::now_v7(), 100, 0, None, 10);
    let lease = hold(l.account_id, 50, 600);
    let lease_id = lease.id;
    let w = wallet(user, vec![l], vec![lease], 0);
    let draw = |amount: i64| Command {
        user_id: user,
        key: None,
        op: Op::Draw {
            hold_id: lease_id,
            amount: credits(amount),
            details: TransferDetails { feature: Some("llm.m".to_owned()), ..TransferDetails::default() },
        },
    };
    let commands = [
        draw(10),
        draw(15),
        draw(26),
        draw(25),
        Command { user_id: user, key: None, op: Op::Release { hold_id: lease_id } },
    ];
    let (verdicts, journal) = judge(snapshot(vec![w]), &commands, now());
    let Ok(Answer::Hold(second)) = &verdicts[1] else { panic!("{verdicts:?}") };
    assert_eq!((second.balance.balance, second.balance.held, second.balance.available), (75, 25, 50));
    assert_eq!((second.hold.amount, second.hold.captured_amount, second.hold.status.as_str()), (25, Some(25), "open"));
    assert!(
        matches!(verdicts[2], Err(CreditsError::CaptureExceedsHold { held: 25, requested: 26 })),
        "a draw takes no more than the hold still holds: {:?}",
        verdicts[2]
    );
    let Ok(Answer::Hold(released)) = &verdicts[4] else { panic!("{verdicts:?}") };
    assert_eq!((released.balance.balance, released.balance.held), (50, 0));
    assert_eq!((released.hold.amount, released.hold.captured_amount), (0, Some(50)));
    let spends: Vec<_> = journal.transfers.iter().filter(|t| t.hold_id == Some(lease_id)).map(|t| t.amount).collect();
    assert_eq!(spends, vec![10, 15, 25]);
    // Each draw is told as a spend of its own, naming the hold; the hold's release once.
    let kinds: Vec<&str> = journal.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec!["credits.spent", "credits.spent", "credits.spent", "credits.hold.released"]);
    assert_eq!(journal.events[0].data()["hold_id"], serde_json::json!(lease_id));
    assert_eq!(journal.hold_updates.len(), 1);
    assert_eq!(journal.hold_updates[0].before, 50, "guarded by what the hold held when read");
}

// ---- Random batches: the books' invariants hold after every journal. ----

/// What a random command does; indexes pick a wallet and a hold.
#[derive(Debug, Clone)]
enum Step {
    Spend { wallet: usize, amount: i64, key: Option<u8> },
    Hold { wallet: usize, amount: i64, ttl: i64, key: Option<u8> },
    Capture { wallet: usize, hold: usize, amount: i64 },
    Release { wallet: usize, hold: usize },
    Draw { wallet: usize, hold: usize, amount: i64 },
    Credit { wallet: usize, amount: i64, expires: Option<i64>, reference: u8 },
    Settle { wallet: usize },
    TakeBack { wallet: usize, share: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    let w = 0usize..3;
    let key = proptest::option::of(0u8..4);
    prop_oneof![
        (w.clone(), 1i64..60, key.clone()).prop_map(|(wallet, amount, key)| Step::Spend { wallet, amount, key }),
        (w.clone(), 1i64..60, -5i64..600, key).prop_map(|(wallet, amount, ttl, key)| Step::Hold {
            wallet,
            amount,
            ttl: ttl.max(1),
            key
        }),
        (w.clone(), 0usize..4, 0i64..40).prop_map(|(wallet, hold, amount)| Step::Capture { wallet, hold, amount }),
        (w.clone(), 0usize..4).prop_map(|(wallet, hold)| Step::Release { wallet, hold }),
        (w.clone(), 0usize..4, 0i64..15).prop_map(|(wallet, hold, amount)| Step::Draw { wallet, hold, amount }),
        (w.clone(), 1i64..80, proptest::option::of(-10i64..10), 0u8..3)
            .prop_map(|(wallet, amount, expires, reference)| Step::Credit { wallet, amount, expires, reference }),
        w.clone().prop_map(|wallet| Step::Settle { wallet }),
        (w, 1i64..80).prop_map(|(wallet, share)| Step::TakeBack { wallet, share }),
    ]
}

/// A wallet's starting lots: (remaining, priority, expires in s, age in s), open holds
/// (amount, expires in s), and debt.
type Start = (Vec<(i64, i32, Option<i64>, i64)>, Vec<(i64, i64)>, i64);

fn start() -> impl Strategy<Value = Start> {
    (
        proptest::collection::vec((1i64..50, 0i32..3, proptest::option::of(-5i64..5), 0i64..100), 0..4),
        proptest::collection::vec((1i64..20, -5i64..5), 0..3),
        prop_oneof![3 => Just(0i64), 1 => 1i64..30],
    )
}

fn build(starts: &[Start]) -> (Vec<Wallet>, Vec<Uuid>) {
    let mut wallets = Vec::new();
    let mut users = Vec::new();
    for (lots, holds, debt) in starts {
        let (user, account) = (Uuid::now_v7(), Uuid::now_v7());
        let lots: Vec<_> = lots.iter().map(|&(r, p, e, a)| lot(account, r, p, e, a)).collect();
        let total: i64 = lots.iter().map(|l| l.remaining).sum();
        // Holds never exceed what the wallet had available when they were placed.
        let mut room = total - debt;
        let mut placed = Vec::new();
        for &(amount, expires) in holds {
            if amount <= room {
                room -= amount;
                placed.push(hold(account, amount, expires));
            }
        }
        let holds = placed;
        let mut w = wallet(user, lots, holds, *debt);
        w.account.id = account;
        wallets.push(w);
        users.push(user);
    }
    (wallets, users)
}

fn command(step: &Step, users: &[Uuid], holds: &[Vec<Uuid>]) -> Command {
    let user = |w: usize| users[w % users.len()];
    let hold_of = |w: usize, h: usize| holds[w % users.len()].get(h).copied().unwrap_or_else(Uuid::now_v7);
    let keyed = |w: usize, k: Option<u8>, what: String| k.map(|k| key(user(w), &format!("k{k}"), &what));
    match *step {
        Step::Spend { wallet, amount, key } => Command {
            user_id: user(wallet),
            key: keyed(wallet, key, format!("spend {amount}")),
            op: Op::Spend { amount: credits(amount), details: TransferDetails::default() },
        },
        Step::Hold { wallet, amount, ttl, key } => Command {
            user_id: user(wallet),
            key: keyed(wallet, key, format!("hold {amount} {ttl}")),
            op: Op::Hold { amount: credits(amount), details: TransferDetails::default(), ttl: Duration::seconds(ttl) },
        },
        Step::Capture { wallet, hold, amount } => Command {
            user_id: user(wallet),
            key: None,
            op: Op::Capture {
                hold_id: hold_of(wallet, hold),
                amount: Credits::new(amount).unwrap(),
                description: None,
                measured: None,
            },
        },
        Step::Draw { wallet, hold, amount } => Command {
            user_id: user(wallet),
            key: None,
            op: Op::Draw {
                hold_id: hold_of(wallet, hold),
                amount: Credits::new(amount).unwrap(),
                details: TransferDetails { feature: Some("llm.m".to_owned()), ..TransferDetails::default() },
            },
        },
        Step::Release { wallet, hold } => {
            Command { user_id: user(wallet), key: None, op: Op::Release { hold_id: hold_of(wallet, hold) } }
        }
        Step::Credit { wallet, amount, expires, reference } => Command {
            user_id: user(wallet),
            key: None,
            op: Op::Credit {
                lot: NewLot {
                    source: LotSource::Grant,
                    kind: TransferKind::Grant,
                    from: system::GRANTS,
                    amount: credits(amount),
                    priority: 20,
                    expires_at: expires.map(|s| now() + Duration::seconds(s)),
                    reference: format!("ref:{}:{reference}", user(wallet)),
                },
                details: TransferDetails::default(),
            },
        },
        Step::Settle { wallet } => Command { user_id: user(wallet), key: None, op: Op::Settle },
        Step::TakeBack { wallet, share } => Command {
            user_id: user(wallet),
            key: None,
            op: Op::TakeBack(TakeBack {
                paid_lot: Uuid::now_v7(),
                payment_lots: Vec::new(),
                paid_credits: 100,
                share,
                taken_before: 0,
                cumulative: false,
                to: system::CLAWBACK,
                kind: TransferKind::Clawback,
                details: TransferDetails::default(),
            }),
        },
    }
}

/// Applies a journal to the wallets as read, checking each guarded update against what was read.
fn apply(
    wallets: &[Wallet],
    journal: &Journal,
) -> HashMap<Uuid, (accounts::Model, Vec<lots::Model>, Vec<holds::Model>)> {
    let mut books: HashMap<Uuid, _> =
        wallets.iter().map(|w| (w.account.id, (w.account.clone(), w.lots.clone(), w.holds.clone()))).collect();
    for update in &journal.lot_updates {
        let lot = books.values_mut().flat_map(|b| b.1.iter_mut()).find(|l| l.id == update.id).expect("a lot read");
        assert_eq!(lot.remaining, update.before, "a lot update is guarded by what was read");
        lot.remaining = update.after;
    }
    for lot in &journal.new_lots {
        books.get_mut(&lot.account_id).expect("a wallet read").1.push(lot.clone());
    }
    for hold in &journal.new_holds {
        books.get_mut(&hold.account_id).expect("a wallet read").2.push(hold.clone());
    }
    for update in &journal.hold_updates {
        let hold =
            books.values_mut().flat_map(|b| b.2.iter_mut()).find(|h| h.id == update.hold.id).expect("a hold read");
        assert_eq!(hold.status, HoldStatus::Open.as_str(), "only open holds are changed");
        assert_eq!(hold.amount, update.before, "a hold update is guarded by what it held when read");
        assert!(update.hold.amount <= hold.amount, "a hold never grows");
        *hold = update.hold.clone();
    }
    for update in &journal.wallets {
        let account = &mut books.get_mut(&update.id).expect("a wallet read").0;
        (account.balance, account.held, account.debt) = (update.balance, update.held, update.debt);
    }
    books
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_journal_keeps_the_books(starts in proptest::collection::vec(start(), 1..4), steps in proptest::collection::vec(step(), 1..30)) {
        let (wallets, users) = build(&starts);
        let holds: Vec<Vec<Uuid>> = wallets.iter().map(|w| w.holds.iter().map(|h| h.id).collect()).collect();
        let commands: Vec<Command> = steps.iter().map(|s| command(s, &users, &holds)).collect();
        let (verdicts, journal) = judge(snapshot(wallets.clone()), &commands, now());
        prop_assert_eq!(verdicts.len(), commands.len());
        let books = apply(&wallets, &journal);

        // Every transfer moves a positive amount between two different accounts; what each
        // wallet's balance changed by is exactly what its transfers moved.
        let mut moved: HashMap<Uuid, i64> = HashMap::new();
        for t in &journal.transfers {
            prop_assert!(t.amount > 0);
            prop_assert_ne!(t.debit_account_id, t.credit_account_id);
            *moved.entry(t.credit_account_id).or_default() += t.amount;
            *moved.entry(t.debit_account_id).or_default() -= t.amount;
        }
        prop_assert_eq!(moved.values().sum::<i64>(), 0, "the journal sums to zero");
        for before in &wallets {
            let (after, lots, holds) = &books[&before.account.id];
            prop_assert_eq!(after.balance - before.account.balance, moved.get(&after.id).copied().unwrap_or(0));
            // No lot below zero or above its amount; the balance is the lots less the debt.
            for lot in lots {
                prop_assert!(lot.remaining >= 0 && lot.remaining <= lot.amount, "{:?}", lot);
            }
            prop_assert_eq!(after.balance, lots.iter().map(|l| l.remaining).sum::<i64>() - after.debt);
            prop_assert!(after.debt >= 0);
            // Held is exactly the open holds, and never more than the balance of a wallet
            // without debt: no spend or hold took credits that were held.
            let open: i64 = holds.iter().filter(|h| h.status == HoldStatus::Open.as_str()).map(|h| h.amount).sum();
            prop_assert_eq!(after.held, open);
            // Expiry and take-backs may leave held credits uncovered (the hold's capture is then
            // refused); nothing else may.
            let uncovered = journal.transfers.iter().any(|t| {
                t.debit_account_id == after.id && (t.kind == TransferKind::Expiry.as_str() || t.kind == TransferKind::Clawback.as_str())
            });
            if after.debt == 0 && !uncovered && before.account.balance >= before.account.held {
                prop_assert!(after.balance >= after.held, "{:?}", after);
            }
        }
        // Every movement belongs to a transfer, and a spend took exactly its amount from lots.
        for t in journal.transfers.iter().filter(|t| t.kind == TransferKind::Spend.as_str()) {
            let taken: i64 = journal.movements.iter().filter(|m| m.transfer_id == t.id).map(|m| m.amount).sum();
            prop_assert_eq!(taken, t.amount);
        }
        // A refusal wrote nothing of its own: as many spend transfers as fresh spends and captures.
        let spent = verdicts.iter().filter(|v| match v {
            Ok(Answer::Spent(_)) => true,
            Ok(Answer::Hold(h)) => h.transfer.is_some(),
            _ => false,
        }).count();
        prop_assert_eq!(spent, journal.transfers.iter().filter(|t| t.kind == TransferKind::Spend.as_str()).count());
        // No spend or hold leaves its wallet below what it holds.
        for (command, verdict) in commands.iter().zip(&verdicts) {
            if !matches!(command.op, Op::Spend { .. } | Op::Hold { .. }) {
                continue;
            }
            if let Ok(Answer::Spent(SpendResponse { balance, .. }) | Answer::Hold(HoldResponse { balance, .. })) = verdict {
                prop_assert!(balance.balance >= balance.held || balance.debt > 0, "{:?}", balance);
            }
        }
        // A replay is the first answer, byte for byte.
        let mut first: HashMap<String, serde_json::Value> = HashMap::new();
        for (command, verdict) in commands.iter().zip(&verdicts) {
            let Some(k) = &command.key else { continue };
            let slot = format!("{}/{}", k.scope, k.key.as_str());
            match verdict {
                Ok(Answer::Spent(r)) => { first.insert(slot, serde_json::to_value(r).unwrap()); }
                Ok(Answer::Hold(r)) => { first.insert(slot, serde_json::to_value(r).unwrap()); }
                Ok(Answer::Replayed(stored)) => prop_assert_eq!(Some(&stored.body), first.get(&slot)),
                _ => {}
            }
        }
    }
}
