//! The schema's history: every migration rolls back to what the one before it left, and the
//! database holds no second copy of the ledger's rules.

use sea_orm::{ConnectionTrait, Statement};
use tollgate_migrations::{Migrator, MigratorTrait};

use crate::{
    both,
    helpers::{Backend, TestApp},
};

both!(rolled_back_to_migration_7_the_schema_is_what_migration_7_left);

/// The columns of an index, in order.
async fn index_columns(app: &TestApp, index: &str) -> Vec<String> {
    let (backend, sql) = match app.backend {
        Backend::Sqlite => {
            (sea_orm::DbBackend::Sqlite, format!("SELECT name AS col FROM pragma_index_info('{index}') ORDER BY seqno"))
        }
        Backend::Postgres => (
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT a.attname AS col FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE c.relname = '{index}' ORDER BY k.n"
            ),
        ),
    };
    let rows = app.db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "col").unwrap()).collect()
}

/// PostgreSQL: whether the PL/pgSQL spend function exists.
async fn spend_function_exists(app: &TestApp) -> bool {
    let sql = "SELECT count(*) AS n FROM pg_proc WHERE proname = 'tollgate_spend'";
    let row = app.db.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap() > 0
}

async fn rolled_back_to_migration_7_the_schema_is_what_migration_7_left(app: TestApp) {
    let postgres = app.backend == Backend::Postgres;
    if postgres {
        assert!(!spend_function_exists(&app).await, "no spend rules in the database");
    }
    let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let position = names.iter().position(|n| n == "m20261125_000008_lean_spend_indexes").unwrap();
    Migrator::down(&app.db, Some((names.len() - position) as u32)).await.unwrap();

    // Migration 5 narrowed the lots index to the account; 8 changed nothing about it.
    assert_eq!(index_columns(&app, "idx_lots_account").await, ["account_id"]);
    assert_eq!(index_columns(&app, "idx_transfer_lots_lot").await, ["lot_id"]);
    if postgres {
        assert!(spend_function_exists(&app).await, "rolled back past its drop, migration 5's function is back");
    }

    Migrator::up(&app.db, None).await.unwrap();
    assert_eq!(index_columns(&app, "idx_lots_account").await, ["account_id"]);
    assert!(index_columns(&app, "idx_transfer_lots_lot").await.is_empty());
    if postgres {
        assert!(!spend_function_exists(&app).await);
    }
    // And the ledger still writes.
    let user = app.user().await;
    app.grant(&user, 5).await;
    app.assert_reconciled().await;
}

/// SQLite keeps a statement's plan whatever values are bound to it (the bundled SQLite is built
/// with `SQLITE_ENABLE_QPSG`, from `.cargo/config.toml`). Without that, every query with a bound
/// `LIMIT`, which is every sea-orm `.one()`, was compiled again each time it ran. PostgreSQL plans
/// its own way, so this is SQLite's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_a_statements_plan_whatever_is_bound_to_it() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("SQLite is always available");
    assert!(
        tollgate::db::sqlite_plans_are_stable(&app.db).await.unwrap(),
        "PRAGMA compile_options lacks ENABLE_QPSG: was LIBSQLITE3_FLAGS (.cargo/config.toml) dropped?"
    );
}
