//! Stripe: customers, the webhook inbox, the payments that bought lots (for refunds), and
//! disputes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("customers")
                    .col(uuid("user_id").primary_key())
                    .col(string_len_uniq("stripe_customer_id", 255))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(ForeignKey::create().from("customers", "user_id").to("users", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("stripe_events")
                    .col(string_len("id", 255).primary_key())
                    .col(string_len("type", 128))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(text("payload"))
                    .col(timestamp_with_time_zone("received_at"))
                    .col(timestamp_with_time_zone_null("processed_at"))
                    .col(integer("attempts").default(0))
                    .col(text_null("last_error"))
                    .col(string_len("status", 16))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_stripe_events_received").table("stripe_events").col("received_at").to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("payments")
                    // The PaymentIntent that paid for a lot.
                    .col(string_len("id", 255).primary_key())
                    .col(uuid("user_id"))
                    .col(uuid("lot_id"))
                    .col(big_integer("credits"))
                    .col(big_integer("amount"))
                    .col(string_len("currency", 3))
                    .col(big_integer("clawed_back").default(0))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(ForeignKey::create().from("payments", "lot_id").to("lots", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("disputes")
                    .col(string_len("id", 255).primary_key())
                    .col(string_len("payment_id", 255))
                    .col(uuid("user_id"))
                    .col(big_integer("credits"))
                    .col(string_len("status", 32))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("closed_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["disputes", "payments", "stripe_events", "customers"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
