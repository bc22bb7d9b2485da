//! Customers and server keys.
//!
//! Every wallet belongs to a **customer**: a person who signed up in the SPA (the customer's id is
//! their user id) or a product's own user, named by the product's `external_id` and created by its
//! backend with a server key. The ledger's `user_id` columns (`accounts`, `checkout_sessions`,
//! `subscriptions`, `portal_tokens`, and Stripe's customer map) hold a customer id from here on,
//! and their foreign keys point at `customers` instead of `users`.
//!
//! Steps, in one migration so that no state between them is ever visible:
//! 1. Stripe's customer map, `customers` until now, becomes `stripe_customers`.
//! 2. `customers` is created, with one row per existing user (same id, email and name), so every
//!    wallet, balance and ledger entry is kept as it was.
//! 3. The foreign keys from the wallet-owning tables are repointed from `users` to `customers`:
//!    on PostgreSQL by dropping and adding constraints; on SQLite, which cannot alter a
//!    constraint, by rewriting the tables' schema text, the procedure SQLite documents for
//!    changes that leave the stored rows untouched (lang_altertable.html, section 7). The
//!    migration checks that no reference to `users` is left on those tables.
//! 4. `server_keys`; checkout sessions get their return URLs; portal tokens their return URL and
//!    the hosted pages' kinds; idempotency scopes room for a server key's and a customer's ids.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables whose `user_id` names the wallet's owner.
const OWNED: [&str; 5] = ["accounts", "checkout_sessions", "subscriptions", "stripe_customers", "portal_tokens"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();

        manager.rename_table(Table::rename().table("customers", "stripe_customers").to_owned()).await?;
        if backend == DbBackend::Postgres {
            // PostgreSQL keeps the old names of the renamed table's indexes; the new table's
            // primary key needs `customers_pkey`.
            db.execute_unprepared("ALTER INDEX IF EXISTS customers_pkey RENAME TO stripe_customers_pkey").await?;
            db.execute_unprepared(
                "ALTER INDEX IF EXISTS customers_stripe_customer_id_key RENAME TO stripe_customers_stripe_customer_id_key",
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table("customers")
                    .col(pk_uuid("id"))
                    .col(string_len_null("external_id", 255).unique_key())
                    .col(string_len_null("email", 254))
                    .col(string_len_null("name", 200))
                    .col(json_null("metadata"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_customers_email").table("customers").col("email").to_owned())
            .await?;
        db.execute_unprepared(
            "INSERT INTO customers (id, external_id, email, name, metadata, created_at, updated_at) \
             SELECT id, NULL, email, name, NULL, created_at, updated_at FROM users",
        )
        .await?;

        repoint(manager, "users", "customers").await?;

        manager
            .create_table(
                Table::create()
                    .table("server_keys")
                    .col(pk_uuid("id"))
                    .col(string_len("name", 100))
                    .col(string_len("prefix", 16))
                    .col(string_len_uniq("key_hash", 64))
                    .col(string_len("scopes", 255))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("last_used_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table("checkout_sessions").add_column(text_null("success_url")).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table("checkout_sessions").add_column(text_null("cancel_url")).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table("portal_tokens").add_column(text_null("return_url")).to_owned())
            .await?;
        portal_token_kinds(manager, KINDS_BEFORE, KINDS_AFTER).await?;
        // Idempotency keys sent for a customer live in the scope (server key, customer): two ids.
        if backend == DbBackend::Postgres {
            db.execute_unprepared("ALTER TABLE idempotency_keys ALTER COLUMN scope TYPE varchar(255)").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        // Customers a product created have no user to go back to: refuse rather than lose them.
        let orphans = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT count(*) FROM customers WHERE id NOT IN (SELECT id FROM users)",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("counting customers answered nothing".into()))?
            .try_get_by_index::<i64>(0)?;
        if orphans != 0 {
            return Err(DbErr::Migration(format!(
                "{orphans} customers have no user account; undoing m20261204_000401_customers would lose them"
            )));
        }
        db.execute_unprepared("DELETE FROM portal_tokens WHERE kind IN ('hosted_link', 'hosted_session')").await?;
        portal_token_kinds(manager, KINDS_AFTER, KINDS_BEFORE).await?;
        manager.alter_table(Table::alter().table("portal_tokens").drop_column("return_url").to_owned()).await?;
        manager.alter_table(Table::alter().table("checkout_sessions").drop_column("cancel_url").to_owned()).await?;
        manager.alter_table(Table::alter().table("checkout_sessions").drop_column("success_url").to_owned()).await?;
        manager.drop_table(Table::drop().table("server_keys").to_owned()).await?;
        repoint(manager, "customers", "users").await?;
        manager.drop_table(Table::drop().table("customers").to_owned()).await?;
        manager.rename_table(Table::rename().table("stripe_customers", "customers").to_owned()).await?;
        if backend == DbBackend::Postgres {
            db.execute_unprepared("ALTER INDEX IF EXISTS stripe_customers_pkey RENAME TO customers_pkey").await?;
            db.execute_unprepared(
                "ALTER INDEX IF EXISTS stripe_customers_stripe_customer_id_key RENAME TO customers_stripe_customer_id_key",
            )
            .await?;
        }
        Ok(())
    }
}

/// Points the wallet-owning tables' `user_id` foreign keys from table `from` to table `to`.
async fn repoint(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let owned = OWNED.map(|t| format!("'{t}'")).join(", ");
    match backend {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!(
                "DO $$ DECLARE r record; BEGIN \
                   FOR r IN SELECT conrelid::regclass::text AS tbl, conname FROM pg_constraint \
                            WHERE contype = 'f' AND confrelid = '{from}'::regclass \
                              AND conrelid::regclass::text IN ({owned}) LOOP \
                     EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', r.tbl, r.conname); \
                   END LOOP; END $$"
            ))
            .await?;
            for table in OWNED {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {table}_{to}_fkey FOREIGN KEY (user_id) REFERENCES {to} (id)"
                ))
                .await?;
            }
        }
        _ => {
            let from = format!("REFERENCES \"{from}\" (\"id\")");
            let to = format!("REFERENCES \"{to}\" (\"id\")");
            sqlite_rewrite(manager, &OWNED, &from, &to).await?;
        }
    }
    Ok(())
}

/// Replaces `from` by `to` in the stored definitions of SQLite `tables`: SQLite's documented way
/// to change a constraint that leaves every stored row valid (lang_altertable.html, section 7).
/// Checks that no definition still holds `from` and that every row keeps its foreign keys.
async fn sqlite_rewrite(manager: &SchemaManager<'_>, tables: &[&str], from: &str, to: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let names = tables.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let quote = |text: &str| text.replace('\'', "''");
    let count = |sql: String| async move {
        db.query_one_raw(Statement::from_string(backend, sql))
            .await?
            .ok_or_else(|| DbErr::Custom("a count answered nothing".into()))?
            .try_get_by_index::<i64>(0)
    };
    if count(format!(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names}) AND instr(sql, '{}') > 0",
        quote(from)
    ))
    .await?
        == 0
    {
        return Err(DbErr::Migration(format!("none of {names} holds {from:?} to rewrite")));
    }
    let version = count("PRAGMA schema_version".to_owned()).await?;
    db.execute_unprepared("PRAGMA writable_schema = ON").await?;
    let rewritten = db
        .execute_unprepared(&format!(
            "UPDATE sqlite_master SET sql = replace(sql, '{}', '{}') WHERE type = 'table' AND name IN ({names})",
            quote(from),
            quote(to)
        ))
        .await;
    db.execute_unprepared(&format!("PRAGMA schema_version = {}", version + 1)).await?;
    db.execute_unprepared("PRAGMA writable_schema = OFF").await?;
    rewritten?;
    let left = count(format!(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names}) AND instr(sql, '{}') > 0",
        quote(from)
    ))
    .await?;
    if left != 0 {
        return Err(DbErr::Migration(format!("{left} tables still hold {from:?} after the rewrite")));
    }
    let problems = db.query_all_raw(Statement::from_string(backend, "PRAGMA foreign_key_check")).await?;
    if !problems.is_empty() {
        return Err(DbErr::Migration(format!("{} rows break a foreign key", problems.len())));
    }
    Ok(())
}

/// The kinds of portal token: before this migration (the sandbox portal's), and after it (the
/// hosted pages' too).
const KINDS_BEFORE: &str = "'link', 'session'";
const KINDS_AFTER: &str = "'link', 'session', 'hosted_link', 'hosted_session'";

/// Sets the kinds `portal_tokens.kind` accepts.
async fn portal_token_kinds(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        DbBackend::Postgres => {
            let db = manager.get_connection();
            db.execute_unprepared("ALTER TABLE portal_tokens DROP CONSTRAINT IF EXISTS portal_tokens_kind_check")
                .await?;
            db.execute_unprepared(&format!(
                "ALTER TABLE portal_tokens ADD CONSTRAINT portal_tokens_kind_check CHECK (kind IN ({to}))"
            ))
            .await?;
            Ok(())
        }
        _ => {
            let check = |kinds: &str| format!("CHECK (\"kind\" IN ({kinds}))");
            sqlite_rewrite(manager, &["portal_tokens"], &check(from), &check(to)).await
        }
    }
}
