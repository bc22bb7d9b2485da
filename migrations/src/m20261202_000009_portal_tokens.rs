//! Two fixes from the audit:
//!
//! - `portal_tokens`: a billing portal link is a single-use, short-lived token of its own, stored
//!   hashed, that opens the portal and nothing else; opening it trades it for a portal session
//!   (a cookie, also stored hashed). Before, the link carried the user's access token.
//! - A lot's and a transfer's `reference` embed the caller's idempotency key (`grant:{scope}:{key}`),
//!   which with a 255-character key overflowed `VARCHAR(255)` on PostgreSQL. They become `TEXT`
//!   (binary-compatible: no table rewrite). SQLite does not enforce lengths.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("portal_tokens")
                    .col(pk_uuid("id"))
                    .col(string_len_uniq("token_hash", 64))
                    .col(uuid("user_id"))
                    .col(string_len("kind", 16).check(Expr::col("kind").is_in(["link", "session"])))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("portal_tokens", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_portal_tokens_expires").table("portal_tokens").col("expires_at").to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("ALTER TABLE lots ALTER COLUMN reference TYPE TEXT").await?;
            db.execute_unprepared("ALTER TABLE transfers ALTER COLUMN reference TYPE TEXT").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("ALTER TABLE lots ALTER COLUMN reference TYPE VARCHAR(255)").await?;
            db.execute_unprepared("ALTER TABLE transfers ALTER COLUMN reference TYPE VARCHAR(255)").await?;
        }
        manager.drop_table(Table::drop().table("portal_tokens").to_owned()).await
    }
}
