//! TEMPORARY STUB of the lead's events outbox (contract /work/contracts/events.md), so that the
//! webhooks branch builds and tests before the real migration lands on main. Replaced by main's
//! file at merge.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("events")
                    .col(big_integer("seq").auto_increment().primary_key())
                    .col(string_len("id", 40).unique_key())
                    .col(string_len("type", 64))
                    .col(uuid_null("customer_id"))
                    .col(text("data"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(big_integer_null("txid"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("events").to_owned()).await
    }
}
