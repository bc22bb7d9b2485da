//! `tollgate reconcile` and `GET /admin/reconcile`: prove the books balance by checking the
//! ledger's four invariants over the whole database.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Select, Statement,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::ledger::{HoldStatus, TransferKind};
use crate::entities::{accounts, holds, idempotency_keys, lots, transfer_lots, transfers};

/// The most violations listed per check; the count is always complete.
const MAX_LISTED: usize = 100;

/// One invariant and what checking it found.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub description: String,
    /// How many rows (transfers, wallets, lots, keys) were checked.
    pub checked: u64,
    pub violation_count: u64,
    /// The first violations, described.
    pub violations: Vec<String>,
}

/// The whole report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileReport {
    /// True when no check found a violation.
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
    pub checks: Vec<CheckResult>,
}

struct Check {
    result: CheckResult,
}

impl Check {
    fn new(name: &str, description: &str) -> Self {
        Self {
            result: CheckResult {
                name: name.to_owned(),
                description: description.to_owned(),
                checked: 0,
                violation_count: 0,
                violations: Vec::new(),
            },
        }
    }

    fn violation(&mut self, message: String) {
        self.result.violation_count += 1;
        if self.result.violations.len() < MAX_LISTED {
            self.result.violations.push(message);
        }
    }
}

/// Sums of a column grouped by `group`, exact however large: the database adds each amount's
/// billions and its remainder separately (each sum fits in a BIGINT for billions of rows of the
/// largest amounts), and Rust joins them as i128. A plain `SUM` overflowed once two huge grants
/// had been made, and reconcile could then never run again.
/// Every transfer's amount summed exactly, by kind.
pub async fn totals_by_kind(db: &impl ConnectionTrait) -> Result<HashMap<String, i128>, DbErr> {
    sums(db, transfers::Entity::find(), transfers::Column::Kind, "amount").await
}

pub(crate) async fn sums<E: EntityTrait, K: sea_orm::TryGetable + Eq + std::hash::Hash>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    group: impl ColumnTrait,
    column: &str,
) -> Result<HashMap<K, i128>, DbErr> {
    let rows: Vec<(K, i64, i64)> = select
        .select_only()
        .column(group)
        .column_as(Expr::cust(format!("CAST(SUM({column} / 1000000000) AS BIGINT)")), "billions")
        .column_as(Expr::cust(format!("CAST(SUM({column} % 1000000000) AS BIGINT)")), "rest")
        .group_by(group)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, billions, rest)| (id, i128::from(billions) * 1_000_000_000 + i128::from(rest)))
        .collect())
}

async fn sums_by(db: &impl ConnectionTrait, column: transfers::Column) -> Result<HashMap<Uuid, i128>, DbErr> {
    sums(db, transfers::Entity::find(), column, "amount").await
}

/// Runs every check, read-only, on one snapshot of the database: checks read in separate
/// statements would otherwise see a write that commits between two of them by halves (one side
/// of a transfer, "balances sum to -23") and report a violation that is not there. The report
/// is stamped by `clock`.
pub async fn reconcile(db: &sea_orm::DatabaseConnection, clock: &Clock) -> Result<ReconcileReport, DbErr> {
    use sea_orm::{AccessMode, DbBackend, IsolationLevel, TransactionTrait};
    let snapshot = if db.get_database_backend() == DbBackend::Postgres {
        db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
    } else {
        // SQLite (WAL): a transaction reads one snapshot from its first read on.
        db.begin().await?
    };
    let report = checks(&snapshot, clock).await?;
    snapshot.commit().await?;
    Ok(report)
}

async fn checks(db: &impl ConnectionTrait, clock: &Clock) -> Result<ReconcileReport, DbErr> {
    let mut checks = Vec::new();

    // 1. Every transfer balances; all balances sum to zero.
    let mut balanced = Check::new(
        "transfers_balance",
        "Every transfer moves a positive amount between two different existing accounts, and all account balances sum to zero.",
    );
    let transfer_count: i64 = transfers::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "n")
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    balanced.result.checked = transfer_count as u64;
    let malformed: Vec<(Uuid, i64)> = transfers::Entity::find()
        .select_only()
        .column(transfers::Column::Id)
        .column(transfers::Column::Amount)
        .filter(
            Expr::col(transfers::Column::Amount)
                .lte(0)
                .or(Expr::col(transfers::Column::DebitAccountId).eq(Expr::col(transfers::Column::CreditAccountId))),
        )
        .into_tuple()
        .all(db)
        .await?;
    for (id, amount) in malformed {
        balanced.violation(format!("transfer {id} moves {amount} or debits and credits one account"));
    }
    let credits_in = sums_by(db, transfers::Column::CreditAccountId).await?;
    let debits_out = sums_by(db, transfers::Column::DebitAccountId).await?;
    let total: i128 = credits_in.values().sum::<i128>() - debits_out.values().sum::<i128>();
    if total != 0 {
        balanced.violation(format!("account balances sum to {total}, not 0"));
    }
    // PostgreSQL has no foreign keys from transfers to accounts (see the spend migration).
    let accounts = accounts::Entity::find().all(db).await?;
    let known: HashSet<Uuid> = accounts.iter().map(|a| a.id).collect();
    let mut unknown: Vec<&Uuid> = credits_in.keys().chain(debits_out.keys()).filter(|id| !known.contains(id)).collect();
    unknown.sort();
    unknown.dedup();
    for id in unknown {
        balanced.violation(format!("transfers name account {id}, which does not exist"));
    }
    checks.push(balanced);

    // 2. Cached wallet figures match the transfers, the lots and the holds.
    let mut cached = Check::new(
        "wallet_balances",
        "Each wallet's cached balance equals the sum of its transfers and the sum of its lots' remainders minus its debt; its held amount equals its open holds.",
    );
    let wallets: Vec<accounts::Model> = accounts.into_iter().filter(|a| a.kind == "wallet").collect();
    cached.result.checked = wallets.len() as u64;
    let remaining: HashMap<Uuid, i128> = sums(db, lots::Entity::find(), lots::Column::AccountId, "remaining").await?;
    let open_holds: HashMap<Uuid, i128> = sums(
        db,
        holds::Entity::find().filter(holds::Column::Status.eq(HoldStatus::Open.as_str())),
        holds::Column::AccountId,
        "amount",
    )
    .await?;
    for wallet in &wallets {
        let derived =
            credits_in.get(&wallet.id).copied().unwrap_or(0) - debits_out.get(&wallet.id).copied().unwrap_or(0);
        if derived != i128::from(wallet.balance) {
            cached.violation(format!(
                "wallet {}: cached balance {} but transfers sum to {derived}",
                wallet.id, wallet.balance
            ));
        }
        let in_lots = remaining.get(&wallet.id).copied().unwrap_or(0);
        if in_lots - i128::from(wallet.debt) != i128::from(wallet.balance) {
            cached.violation(format!(
                "wallet {}: balance {} but lots hold {in_lots} and debt is {}",
                wallet.id, wallet.balance, wallet.debt
            ));
        }
        let held = open_holds.get(&wallet.id).copied().unwrap_or(0);
        if held != i128::from(wallet.held) {
            cached.violation(format!("wallet {}: held {} but open holds total {held}", wallet.id, wallet.held));
        }
    }
    checks.push(cached);

    // 3. No overdraft through a spend or hold; lots account for what was taken from them.
    let mut overdraft = Check::new(
        "no_overdraft",
        "No spend left its wallet below zero, no wallet is negative beyond its recorded debt, and every lot's consumption equals what transfers took from it.",
    );
    let overdrawn: Vec<(Uuid, Option<i64>)> = transfers::Entity::find()
        .select_only()
        .column(transfers::Column::Id)
        .column(transfers::Column::DebitBalanceAfter)
        .filter(transfers::Column::Kind.eq(TransferKind::Spend.as_str()))
        .filter(transfers::Column::DebitBalanceAfter.lt(0))
        .into_tuple()
        .all(db)
        .await?;
    for (id, after) in overdrawn {
        overdraft.violation(format!("spend {id} left its wallet at {}", after.unwrap_or_default()));
    }
    for wallet in &wallets {
        if wallet.balance < -wallet.debt || wallet.held < 0 {
            overdraft.violation(format!(
                "wallet {}: balance {}, held {}, debt {}",
                wallet.id, wallet.balance, wallet.held, wallet.debt
            ));
        }
    }
    let taken: HashMap<Uuid, i128> =
        sums(db, transfer_lots::Entity::find(), transfer_lots::Column::LotId, "amount").await?;
    let all_lots: Vec<(Uuid, i64, i64)> = lots::Entity::find()
        .select_only()
        .column(lots::Column::Id)
        .column(lots::Column::Amount)
        .column(lots::Column::Remaining)
        .into_tuple()
        .all(db)
        .await?;
    overdraft.result.checked = all_lots.len() as u64 + wallets.len() as u64;
    for (id, amount, left) in all_lots {
        if left < 0 || left > amount {
            overdraft.violation(format!("lot {id}: {left} remaining of {amount}"));
        }
        let consumed = taken.get(&id).copied().unwrap_or(0);
        if i128::from(amount) - i128::from(left) != consumed {
            overdraft.violation(format!("lot {id}: {} consumed but transfers took {consumed}", amount - left));
        }
    }
    checks.push(overdraft);

    // 4. Each key, invoice, session or charge applied at most once.
    let mut once = Check::new(
        "applied_once",
        "Each idempotency key (in its caller's scope), lot reference (grant key, Stripe invoice, session or charge) and hold is applied at most once.",
    );
    let duplicate_refs: Vec<(String, i64)> = lots::Entity::find()
        .select_only()
        .column(lots::Column::Reference)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .group_by(lots::Column::Reference)
        .having(Expr::cust("COUNT(*) > 1"))
        .into_tuple()
        .all(db)
        .await?;
    for (reference, n) in duplicate_refs {
        once.violation(format!("lot reference {reference} granted {n} times"));
    }
    // Spends are keyed per wallet; grants are covered by their lot reference above.
    let duplicate_keys: Vec<(Uuid, Option<String>, i64)> = transfers::Entity::find()
        .select_only()
        .column(transfers::Column::DebitAccountId)
        .column(transfers::Column::IdempotencyKey)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .filter(transfers::Column::IdempotencyKey.is_not_null())
        .filter(transfers::Column::HoldId.is_null())
        .filter(transfers::Column::Kind.eq(TransferKind::Spend.as_str()))
        .group_by(transfers::Column::DebitAccountId)
        .group_by(transfers::Column::IdempotencyKey)
        .having(Expr::cust("COUNT(*) > 1"))
        .into_tuple()
        .all(db)
        .await?;
    // A wallet can see one key from several callers (its owner, each server key, an admin):
    // keys are scoped to the caller. Each keyed spend stores one idempotency record in its scope
    // in the same transaction, so more spends with a key than records of it means one scope
    // applied it twice.
    for (account, key, n) in duplicate_keys {
        let key = key.unwrap_or_default();
        let records =
            idempotency_keys::Entity::find().filter(idempotency_keys::Column::Key.eq(key.as_str())).count(db).await?;
        if n as u64 > records {
            once.violation(format!("account {account}: key {key} applied {n} times, recorded {records} times"));
        }
    }
    // What the spends naming a hold took is what the hold records as captured: one capture, or
    // a lease's draws adding up to it.
    let spent_from_holds = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT h.id, h.status, h.captured_amount, t.total, t.n FROM holds h \
             JOIN (SELECT hold_id, CAST(SUM(amount) AS BIGINT) AS total, COUNT(*) AS n FROM transfers \
                   WHERE hold_id IS NOT NULL GROUP BY hold_id) t ON t.hold_id = h.id \
             WHERE COALESCE(h.captured_amount, 0) <> t.total OR (h.status = 'captured' AND t.n > 1)",
        ))
        .await?;
    for row in spent_from_holds {
        let id: Uuid = row.try_get("", "id")?;
        let status: String = row.try_get("", "status")?;
        let captured: Option<i64> = row.try_get("", "captured_amount")?;
        let (total, n): (i64, i64) = (row.try_get("", "total")?, row.try_get("", "n")?);
        once.violation(format!(
            "hold {id} ({status}): the spends naming it took {total} credits in {n}, but it records {} captured",
            captured.unwrap_or(0)
        ));
    }
    let keys: i64 = idempotency_keys::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "n")
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    once.result.checked = keys as u64 + transfer_count as u64;
    checks.push(once);

    let checks: Vec<CheckResult> = checks.into_iter().map(|c| c.result).collect();
    Ok(ReconcileReport { ok: checks.iter().all(|c| c.violation_count == 0), checked_at: clock.now(), checks })
}

impl ReconcileReport {
    /// The report as an operator reads it in a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = if check.violation_count == 0 { "ok  " } else { "FAIL" };
            out.push_str(&format!(
                "{mark} {:<18} {} checked, {} violations\n     {}\n",
                check.name, check.checked, check.violation_count, check.description
            ));
            for v in &check.violations {
                out.push_str(&format!("     - {v}\n"));
            }
        }
        out.push_str(if self.ok { "reconcile: the books balance\n" } else { "reconcile: VIOLATIONS FOUND\n" });
        out
    }
}
