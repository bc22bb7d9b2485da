//! Webhooks to the product (#18): `webhook_endpoints` (where to send which events, with the
//! signing secret and, for 24 h after a rotation, the previous one), `webhook_deliveries` (one row
//! per endpoint and event, written before anything is sent: at least once), `webhook_attempts`
//! (each try, as `GET …/deliveries` shows it) and `webhook_dispatch`, the one-row cursor into the
//! events outbox (the last event's position: its transaction id on PostgreSQL, and `seq`) that the
//! dispatcher advances in the transaction that writes the deliveries.
//!
//! A delivery's `status` takes only the dispatcher's values (a CHECK, on both databases);
//! `(delivery_id, attempt)` is unique, so no attempt is ever recorded twice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("webhook_endpoints")
                    .col(pk_uuid("id"))
                    .col(string_len("url", 2048))
                    .col(string_len_null("description", 500))
                    .col(text("event_types"))
                    .col(boolean("enabled"))
                    .col(string_len("secret", 100))
                    .col(string_len_null("previous_secret", 100))
                    .col(timestamp_with_time_zone_null("previous_secret_expires_at"))
                    .col(timestamp_with_time_zone_null("failing_since"))
                    .col(timestamp_with_time_zone_null("disabled_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_deliveries")
                    .col(pk_uuid("id"))
                    .col(uuid("endpoint_id"))
                    .col(string_len("event_id", 40))
                    .col(string_len("event_type", 64))
                    .col(text("payload"))
                    .col(string_len("status", 16).check(Expr::col("status").is_in(["pending", "succeeded", "failed"])))
                    .col(integer("attempts").check(Expr::col("attempts").gte(0)))
                    .col(timestamp_with_time_zone_null("next_attempt_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_endpoint")
                            .from("webhook_deliveries", "endpoint_id")
                            .to("webhook_endpoints", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_due")
                    .table("webhook_deliveries")
                    .col("status")
                    .col("next_attempt_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_endpoint_event")
                    .table("webhook_deliveries")
                    .col("endpoint_id")
                    .col("event_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_attempts")
                    .col(pk_uuid("id"))
                    .col(uuid("delivery_id"))
                    .col(uuid("endpoint_id"))
                    .col(string_len("event_id", 40))
                    .col(integer("attempt").check(Expr::col("attempt").gt(0)))
                    .col(integer_null("status_code"))
                    .col(text_null("error"))
                    .col(boolean("succeeded"))
                    .col(timestamp_with_time_zone("attempted_at"))
                    .col(big_integer("duration_ms"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_attempts_delivery")
                            .from("webhook_attempts", "delivery_id")
                            .to("webhook_deliveries", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_delivery_attempt")
                    .table("webhook_attempts")
                    .col("delivery_id")
                    .col("attempt")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_endpoint")
                    .table("webhook_attempts")
                    .col("endpoint_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_dispatch")
                    .col(integer("id").primary_key())
                    .col(big_integer("last_txid"))
                    .col(big_integer("last_seq"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("webhook_dispatch")
                    .columns(["id", "last_txid", "last_seq"])
                    .values_panic([1.into(), 0i64.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["webhook_dispatch", "webhook_attempts", "webhook_deliveries", "webhook_endpoints"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
