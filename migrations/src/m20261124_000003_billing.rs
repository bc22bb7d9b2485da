//! Billing: the local catalog mirrored from Stripe (or the sandbox offer), checkout sessions, and
//! subscriptions.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("prices")
                    .col(string_len("id", 255).primary_key())
                    .col(string_len("product_id", 255))
                    .col(string_len("product_name", 255))
                    .col(string_len_null("product_description", 1000))
                    .col(string_len("kind", 16))
                    .col(string_len_null("interval", 16))
                    .col(big_integer("unit_amount").check(Expr::col("unit_amount").gte(0)))
                    .col(string_len("currency", 3))
                    .col(big_integer("credits").check(Expr::col("credits").gte(0)))
                    .col(boolean("rollover").default(false))
                    .col(boolean("active").default(true))
                    .col(integer("display_order").default(0))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("checkout_sessions")
                    .col(string_len("id", 255).primary_key())
                    .col(uuid("user_id"))
                    .col(string_len("price_id", 255))
                    .col(string_len("mode", 16))
                    .col(string_len("status", 16))
                    .col(string_len("url", 2048))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(ForeignKey::create().from("checkout_sessions", "user_id").to("users", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("subscriptions")
                    .col(string_len("id", 255).primary_key())
                    .col(uuid("user_id"))
                    .col(string_len("price_id", 255))
                    .col(string_len("status", 32))
                    .col(timestamp_with_time_zone("current_period_start"))
                    .col(timestamp_with_time_zone("current_period_end"))
                    .col(boolean("cancel_at_period_end").default(false))
                    // When the source (Stripe's event, or the sandbox) last changed it: older
                    // updates never overwrite newer ones.
                    .col(timestamp_with_time_zone("source_updated_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(ForeignKey::create().from("subscriptions", "user_id").to("users", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_subscriptions_user").table("subscriptions").col("user_id").to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["subscriptions", "checkout_sessions", "prices"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
