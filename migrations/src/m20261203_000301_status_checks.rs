//! The status, kind and source columns accept only the values the server knows: `holds.status`,
//! `transfers.kind`, `lots.source`, `subscriptions.status`, `checkout_sessions.status` and
//! `disputes.status`. The server writes these columns only from its enums (`HoldStatus`,
//! `TransferKind`, `LotSource`, `SubscriptionStatus`, `CheckoutStatus`, `DisputeStatus`); the
//! database now refuses anything else, whoever writes it.
//!
//! The values are this migration's own copy, in `CHECKS`: a migration is the schema at one point
//! in time and is never edited once landed, so it must not follow the enums as they change. A
//! value added to an enum later comes with a migration that replaces the constraint; until then
//! the server's test `status_checks_match_the_enums` fails, and so does writing the new value.
//!
//! PostgreSQL: `ALTER TABLE … ADD CONSTRAINT … CHECK (col IN (…)) NOT VALID`, then
//! `VALIDATE CONSTRAINT` in a transaction of its own. Adding takes the table's exclusive lock
//! only for a moment; validating reads every row under a lock that lets writes go on (this
//! migration therefore runs outside the single transaction sea-orm would wrap it in). Existing
//! rows that break a rule make the migration fail at that step, naming the constraint.
//!
//! SQLite cannot add a CHECK to an existing table: the table would have to be rebuilt (create a
//! copy with the constraint, copy every row, drop, rename, recreate its indexes), with foreign
//! keys switched off, which is a per-connection pragma that cannot change inside a transaction
//! and is not reliably on the same pooled connection as the statements that follow. For
//! `transfers`, the largest table, that is a copy of the whole ledger. Triggers enforce the same
//! rule at no cost to existing data: `BEFORE INSERT` and `BEFORE UPDATE OF <col>` each abort with
//! `CHECK constraint failed: <name>` (SQLite's own wording) when the new value is not in the
//! list. They are created, after the same check of existing rows, in one transaction; `down`
//! drops them.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One column and the values it may hold.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub table: &'static str,
    pub column: &'static str,
    pub values: &'static [&'static str],
}

impl Check {
    /// The constraint's name (and the SQLite triggers' stem): `holds_status_check`.
    pub fn name(&self) -> String {
        format!("{}_{}_check", self.table, self.column)
    }

    /// `status IN ('open', 'captured')`, for the constraint, the triggers and the check of existing rows.
    fn condition(&self, column: &str) -> String {
        let values: Vec<String> = self.values.iter().map(|v| format!("'{v}'")).collect();
        format!("{column} IN ({})", values.join(", "))
    }
}

/// Every rule this migration adds.
pub const CHECKS: [Check; 6] = [
    Check { table: "holds", column: "status", values: &["open", "captured", "released", "expired"] },
    Check {
        table: "transfers",
        column: "kind",
        values: &[
            "purchase",
            "subscription",
            "grant",
            "promotion",
            "spend",
            "expiry",
            "clawback",
            "dispute_freeze",
            "dispute_release",
            "write_off",
        ],
    },
    Check { table: "lots", column: "source", values: &["purchase", "subscription", "grant", "promotion"] },
    Check {
        table: "subscriptions",
        column: "status",
        values: &["active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing", "unpaid"],
    },
    Check { table: "checkout_sessions", column: "status", values: &["open", "complete", "expired"] },
    Check { table: "disputes", column: "status", values: &["open", "lost", "won", "warning_closed", "prevented"] },
];

/// Fails, naming the rule, when existing rows break it.
async fn check_existing_rows(db: &impl ConnectionTrait, check: &Check) -> Result<(), DbErr> {
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {} WHERE NOT ({})",
        check.table,
        check.condition(check.column)
    );
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    let broken: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or_default();
    if broken > 0 {
        return Err(DbErr::Migration(format!(
            "{broken} rows of {} hold a {} outside {:?}: fix them, then migrate again ({})",
            check.table,
            check.column,
            check.values,
            check.name()
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                let db = manager.get_connection();
                for check in &CHECKS {
                    let (table, name) = (check.table, check.name());
                    // Again after a run that stopped at a validation: the constraint is replaced.
                    db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")).await?;
                    db.execute_unprepared(&format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({}) NOT VALID",
                        check.condition(check.column)
                    ))
                    .await?;
                    let txn = manager.begin().await?;
                    let validate = txn.get_connection();
                    // The pool's 30-second statement timeout is for requests, not for a scan of the ledger.
                    validate.execute_unprepared("SET LOCAL statement_timeout = 0").await?;
                    validate.execute_unprepared(&format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")).await?;
                    txn.commit().await?;
                }
            }
            _ => {
                let txn = manager.begin().await?;
                let db = txn.get_connection();
                for check in &CHECKS {
                    check_existing_rows(db, check).await?;
                    let (table, column, name) = (check.table, check.column, check.name());
                    let condition = check.condition(&format!("NEW.{column}"));
                    for (suffix, event) in [("insert", "INSERT".to_owned()), ("update", format!("UPDATE OF {column}"))]
                    {
                        db.execute_unprepared(&format!(
                            "CREATE TRIGGER IF NOT EXISTS {name}_{suffix} BEFORE {event} ON {table} \
                             WHEN NOT ({condition}) \
                             BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END"
                        ))
                        .await?;
                    }
                }
                txn.commit().await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for check in &CHECKS {
            let (table, name) = (check.table, check.name());
            match manager.get_database_backend() {
                DbBackend::Postgres => {
                    db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")).await?
                }
                _ => {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}_insert")).await?;
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}_update")).await?
                }
            };
        }
        Ok(())
    }

    /// PostgreSQL validates each constraint in a transaction of its own (see the module's
    /// documentation); SQLite's triggers are made in one.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
