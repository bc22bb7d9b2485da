//! The double-entry ledger: accounts, immutable transfers, lots and what each transfer took from
//! them, holds, idempotency records and the rate card.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// System accounts every installation has; ids are fixed so every replica agrees on them.
const SYSTEM_ACCOUNTS: [(&str, &str); 9] = [
    ("00000000-0000-7000-8000-000000000001", "purchases"),
    ("00000000-0000-7000-8000-000000000002", "subscriptions"),
    ("00000000-0000-7000-8000-000000000003", "grants"),
    ("00000000-0000-7000-8000-000000000004", "promotions"),
    ("00000000-0000-7000-8000-000000000005", "usage"),
    ("00000000-0000-7000-8000-000000000006", "expiry"),
    ("00000000-0000-7000-8000-000000000007", "clawback"),
    ("00000000-0000-7000-8000-000000000008", "disputes"),
    ("00000000-0000-7000-8000-000000000009", "writeoff"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("accounts")
                    .col(pk_uuid("id"))
                    .col(string_len("kind", 16))
                    .col(string_len_null("code", 32).unique_key())
                    .col(uuid_null("user_id").unique_key())
                    // Cached for wallets only; a system account's balance is derived from its
                    // transfers so that no row is written by every spend of every user.
                    .col(big_integer("balance").default(0))
                    .col(big_integer("held").default(0))
                    .col(big_integer("debt").default(0).check(Expr::col("debt").gte(0)))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("accounts", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("transfers")
                    .col(big_pk_auto("seq"))
                    .col(uuid_uniq("id"))
                    .col(uuid("debit_account_id"))
                    .col(uuid("credit_account_id"))
                    .col(big_integer("amount").check(Expr::col("amount").gt(0)))
                    .col(string_len("kind", 32))
                    .col(big_integer_null("debit_balance_after"))
                    .col(big_integer_null("credit_balance_after"))
                    .col(string_len_null("description", 500))
                    .col(string_len_null("feature", 64))
                    .col(big_integer_null("quantity"))
                    .col(json_null("metadata"))
                    .col(string_len_null("idempotency_key", 255))
                    .col(string_len_null("request_fingerprint", 64))
                    .col(uuid_null("hold_id"))
                    .col(uuid_null("lot_id"))
                    .col(string_len_null("reference", 255))
                    .col(timestamp_with_time_zone("created_at"))
                    .check(Expr::col("debit_account_id").ne(Expr::col("credit_account_id")))
                    .foreign_key(ForeignKey::create().from("transfers", "debit_account_id").to("accounts", "id"))
                    .foreign_key(ForeignKey::create().from("transfers", "credit_account_id").to("accounts", "id"))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [("idx_transfers_debit", "debit_account_id"), ("idx_transfers_credit", "credit_account_id")]
        {
            manager.create_index(Index::create().name(name).table("transfers").col(col).col("seq").to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table("lots")
                    .col(pk_uuid("id"))
                    .col(uuid("account_id"))
                    .col(string_len("source", 32))
                    .col(big_integer("amount").check(Expr::col("amount").gt(0)))
                    .col(big_integer("remaining"))
                    .col(integer("priority"))
                    .col(timestamp_with_time_zone_null("expires_at"))
                    .col(timestamp_with_time_zone_null("expired_at"))
                    .col(string_len_uniq("reference", 255))
                    .col(uuid("transfer_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .check(Expr::col("remaining").gte(0).and(Expr::col("remaining").lte(Expr::col("amount"))))
                    .foreign_key(ForeignKey::create().from("lots", "account_id").to("accounts", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_lots_account").table("lots").col("account_id").col("remaining").to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_lots_expires").table("lots").col("expires_at").to_owned())
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("transfer_lots")
                    .col(uuid("transfer_id"))
                    .col(uuid("lot_id"))
                    .col(big_integer("amount").check(Expr::col("amount").gt(0)))
                    .primary_key(Index::create().col("transfer_id").col("lot_id"))
                    .foreign_key(ForeignKey::create().from("transfer_lots", "lot_id").to("lots", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_transfer_lots_lot").table("transfer_lots").col("lot_id").to_owned())
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("holds")
                    .col(pk_uuid("id"))
                    .col(uuid("account_id"))
                    .col(big_integer("amount").check(Expr::col("amount").gt(0)))
                    .col(string_len("status", 16))
                    .col(string_len_null("feature", 64))
                    .col(big_integer_null("quantity"))
                    .col(string_len_null("description", 500))
                    .col(json_null("metadata"))
                    .col(big_integer_null("captured_amount"))
                    .col(uuid_null("capture_transfer_id"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("closed_at"))
                    .foreign_key(ForeignKey::create().from("holds", "account_id").to("accounts", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_holds_account_status")
                    .table("holds")
                    .col("account_id")
                    .col("status")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_holds_status_expires")
                    .table("holds")
                    .col("status")
                    .col("expires_at")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .col(string_len("scope", 64))
                    .col(string_len("key", 255))
                    .col(string_len("fingerprint", 64))
                    .col(small_integer("status_code"))
                    .col(text("response"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("scope").col("key"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("features")
                    .col(string_len("key", 64).primary_key())
                    .col(string_len("name", 100))
                    .col(string_len_null("description", 500))
                    .col(string_len("unit", 64))
                    .col(big_integer("credits_per_unit").check(Expr::col("credits_per_unit").gte(0)))
                    .col(boolean("active").default(true))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;

        // Seed rows are written as literals: PostgreSQL types them from the column, and SQLite
        // stores a UUID as its 16 bytes, the way sqlx binds one.
        let sqlite = manager.get_database_backend() == sea_orm::DbBackend::Sqlite;
        let epoch = "'2026-01-01T00:00:00+00:00'";
        let connection = manager.get_connection();
        for (id, code) in SYSTEM_ACCOUNTS {
            let id = if sqlite { format!("X'{}'", id.replace('-', "")) } else { format!("'{id}'") };
            connection
                .execute_unprepared(&format!(
                    "INSERT INTO accounts (id, kind, code, balance, held, debt, created_at, updated_at) \
                     VALUES ({id}, 'system', '{code}', 0, 0, 0, {epoch}, {epoch})"
                ))
                .await?;
        }
        let active = if sqlite { "1" } else { "TRUE" };
        connection
            .execute_unprepared(&format!(
                "INSERT INTO features (key, name, description, unit, credits_per_unit, active, created_at, updated_at) \
                 VALUES ('example.summarize', 'Summarize text', \
                 'The example AI feature: an extractive summary of a text, priced by its length.', \
                 '1,000 characters', 5, {active}, {epoch}, {epoch})"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["features", "idempotency_keys", "holds", "transfer_lots", "lots", "transfers", "accounts"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
