//! The LLM gateway (#16): `models`, the rate card of models priced per million tokens, and
//! `gateway_calls`, the calls sent with an `Idempotency-Key` (the key's claim while the call is in
//! flight, and the first answer afterwards).
//!
//! Prices are never negative: a CHECK says so on both databases (SQLite accepts CHECK in
//! `CREATE TABLE`), whoever writes the row.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("models")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("upstream_model", 200))
                    .col(big_integer("input_per_million").check(Expr::col("input_per_million").gte(0)))
                    .col(big_integer("cached_input_per_million").check(Expr::col("cached_input_per_million").gte(0)))
                    .col(big_integer("output_per_million").check(Expr::col("output_per_million").gte(0)))
                    .col(big_integer("max_output_tokens").check(Expr::col("max_output_tokens").gt(0)))
                    .col(boolean("active"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("gateway_calls")
                    .col(pk_uuid("id"))
                    .col(uuid("customer_id"))
                    .col(string_len("idempotency_scope", 255))
                    .col(string_len("idempotency_key", 255))
                    .col(string_len("fingerprint", 64))
                    .col(string_len("model", 64))
                    .col(boolean("stream"))
                    .col(string_len("status", 16))
                    .col(uuid_null("hold_id"))
                    .col(integer_null("response_status"))
                    .col(text_null("response_body"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_gateway_calls_customer")
                            .from("gateway_calls", "customer_id")
                            .to("customers", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_gateway_calls_key")
                    .table("gateway_calls")
                    .col("idempotency_scope")
                    .col("idempotency_key")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_gateway_calls_created").table("gateway_calls").col("created_at").to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("gateway_calls").to_owned()).await?;
        manager.drop_table(Table::drop().table("models").to_owned()).await?;
        Ok(())
    }
}
