//! The database accepts, in each status, kind and source column, exactly the values of the
//! server's enum for it (migration `m20261203_000301_status_checks`): CHECK constraints on
//! PostgreSQL, triggers on SQLite.

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tollgate::domain::{
    billing::{CheckoutStatus, DisputeStatus, SubscriptionStatus},
    ledger::{HoldStatus, LotSource, TransferKind},
};
use tollgate_migrations::{Migrator, MigratorTrait, STATUS_CHECKS};
use uuid::Uuid;

use crate::{
    both,
    helpers::{Backend, TestApp},
};

/// The values the server's enum for `table.column` has.
fn enum_values(table: &str, column: &str) -> BTreeSet<&'static str> {
    match (table, column) {
        ("holds", "status") => HoldStatus::ALL.map(HoldStatus::as_str).into(),
        ("transfers", "kind") => TransferKind::ALL.map(TransferKind::as_str).into(),
        ("lots", "source") => LotSource::ALL.map(LotSource::as_str).into(),
        ("subscriptions", "status") => SubscriptionStatus::ALL.map(SubscriptionStatus::as_str).into(),
        ("checkout_sessions", "status") => CheckoutStatus::ALL.map(CheckoutStatus::as_str).into(),
        ("disputes", "status") => DisputeStatus::ALL.map(DisputeStatus::as_str).into(),
        other => panic!("no enum for {other:?}"),
    }
}

#[test]
fn status_checks_match_the_enums() {
    let checked: BTreeSet<(&str, &str)> = STATUS_CHECKS.iter().map(|c| (c.table, c.column)).collect();
    assert_eq!(checked.len(), 6, "{checked:?}");
    for check in STATUS_CHECKS {
        let allowed: BTreeSet<&str> = check.values.iter().copied().collect();
        assert_eq!(
            allowed,
            enum_values(check.table, check.column),
            "{}.{}: the database and the server disagree; a new value needs a migration that replaces {}",
            check.table,
            check.column,
            check.name()
        );
    }
}

both!(the_database_refuses_unknown_statuses);

/// A literal the backend reads as this UUID.
fn uuid(backend: DbBackend, id: Uuid) -> String {
    match backend {
        DbBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    }
}

/// An INSERT of one row of `table` with `value` in the checked column.
fn insert(backend: DbBackend, table: &str, value: &str) -> String {
    let raw = Uuid::new_v4();
    let id = uuid(backend, raw);
    let at = "'2026-01-01T00:00:00+00:00'";
    let usage = "(SELECT id FROM accounts WHERE code = 'usage')";
    let user = "(SELECT id FROM users LIMIT 1)";
    match table {
        "holds" => format!(
            "INSERT INTO holds (id, account_id, amount, status, expires_at, created_at) \
             VALUES ({id}, {usage}, 1, '{value}', {at}, {at})"
        ),
        "transfers" => format!(
            "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, created_at) \
             VALUES ({id}, (SELECT id FROM accounts WHERE code = 'grants'), {usage}, 1, '{value}', {at})"
        ),
        "lots" => format!(
            "INSERT INTO lots (id, account_id, source, amount, remaining, priority, reference, transfer_id, created_at) \
             VALUES ({id}, {usage}, '{value}', 1, 1, 0, 'test:{raw}', {id}, {at})"
        ),
        "subscriptions" => format!(
            "INSERT INTO subscriptions (id, user_id, price_id, status, current_period_start, current_period_end, \
             cancel_at_period_end, source_updated_at, created_at, updated_at) \
             VALUES ('sub_{raw}', {user}, 'price', '{value}', {at}, {at}, FALSE, {at}, {at}, {at})"
        ),
        "checkout_sessions" => format!(
            "INSERT INTO checkout_sessions (id, user_id, price_id, mode, status, url, created_at) \
             VALUES ('cs_{raw}', {user}, 'price', 'payment', '{value}', 'https://example.com', {at})"
        ),
        "disputes" => format!(
            "INSERT INTO disputes (id, payment_id, user_id, credits, status, created_at) \
             VALUES ('dp_{raw}', 'pi_{raw}', {user}, 0, '{value}', {at})"
        ),
        other => panic!("no row for {other}"),
    }
}

async fn the_database_refuses_unknown_statuses(app: TestApp) {
    app.user().await;
    let backend = app.db.get_database_backend();
    let run = |sql: String| {
        let db = app.db.clone();
        async move { db.execute_raw(Statement::from_string(backend, sql)).await }
    };
    for check in STATUS_CHECKS {
        let (table, column) = (check.table, check.column);
        // Every value of the enum is written...
        for value in enum_values(table, column) {
            run(insert(backend, table, value)).await.unwrap_or_else(|e| panic!("{table}.{column} = {value}: {e}"));
        }
        // ...and nothing else, neither in a new row nor in an existing one.
        let refused = run(insert(backend, table, "bogus")).await;
        let error = refused.expect_err(&format!("{table}.{column} took `bogus`")).to_string();
        assert!(error.contains(&check.name()), "{table}: {error}");
        let updated = run(format!("UPDATE {table} SET {column} = 'bogus'")).await;
        assert!(updated.is_err(), "{table}.{column} was updated to `bogus`");
        run(format!("UPDATE {table} SET {column} = '{}'", check.values[0])).await.unwrap();
    }
}

crate::both_backends!(the_migration_checks_existing_rows_and_undoes_itself);

async fn the_migration_checks_existing_rows_and_undoes_itself(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.user().await;
    let db_backend = app.db.get_database_backend();
    let run = |sql: String| {
        let db = app.db.clone();
        async move { db.execute_raw(Statement::from_string(db_backend, sql)).await }
    };
    // Back to just before the status checks (and every migration after them).
    let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let position = names.iter().position(|n| n == "m20261203_000301_status_checks").unwrap();
    Migrator::down(&app.db, Some((names.len() - position) as u32)).await.unwrap();
    run(insert(db_backend, "holds", "bogus")).await.expect("without the rule, anything goes");
    // A row that breaks the rule stops the migration, which can run again once it is fixed.
    let error = Migrator::up(&app.db, None).await.expect_err("an existing `bogus` hold").to_string();
    assert!(error.contains("holds_status_check"), "{error}");
    run("DELETE FROM holds WHERE status = 'bogus'".to_owned()).await.unwrap();
    Migrator::up(&app.db, None).await.unwrap();
    assert!(run(insert(db_backend, "holds", "bogus")).await.is_err());
    run(insert(db_backend, "holds", "open")).await.unwrap();
}
