//! The outbox (#18): `events`, one row per change of credits or billing state, written in the
//! transaction that makes the change. `seq` orders them; `id` (`evt_…`) names them, sortable by
//! time. On PostgreSQL, `txid` is the writing transaction's id: a reader tailing by `seq` reads
//! only events of transactions older than every one still running (`pg_snapshot_xmin`), so a
//! transaction that took a lower `seq` but commits later is never skipped. A statement trigger
//! wakes `LISTEN tollgate_events` on every insert (delivered at commit).
//!
//! `accounts.low_balance_thresholds` holds a wallet's low-balance alert thresholds (a JSON array
//! of credit amounts), read with the wallet under its lock, so the writer decides `balance.low` in
//! the same transaction as the spend that crosses one.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE TABLE events (
                        seq bigserial PRIMARY KEY,
                        id varchar(40) NOT NULL UNIQUE,
                        type varchar(64) NOT NULL,
                        customer_id uuid NULL REFERENCES customers (id),
                        data json NOT NULL,
                        created_at timestamptz NOT NULL,
                        txid bigint NULL DEFAULT (pg_current_xact_id()::text::bigint)
                    )",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE FUNCTION tollgate_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN PERFORM pg_notify('tollgate_events', ''); RETURN NULL; END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER events_notify AFTER INSERT ON events \
                     FOR EACH STATEMENT EXECUTE FUNCTION tollgate_events_notify()",
                )
                .await?;
            }
            _ => {
                manager
                    .create_table(
                        Table::create()
                            .table("events")
                            .col(ColumnDef::new("seq").integer().not_null().auto_increment().primary_key())
                            .col(string_len_uniq("id", 40))
                            .col(string_len("type", 64))
                            .col(uuid_null("customer_id"))
                            .col(json("data"))
                            .col(timestamp_with_time_zone("created_at"))
                            .col(big_integer_null("txid"))
                            .foreign_key(
                                ForeignKey::create()
                                    .name("fk_events_customer")
                                    .from("events", "customer_id")
                                    .to("customers", "id"),
                            )
                            .to_owned(),
                    )
                    .await?;
            }
        }
        manager
            .create_index(
                Index::create().name("idx_events_customer").table("events").col("customer_id").col("seq").to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_events_type").table("events").col("type").col("seq").to_owned())
            .await?;
        manager
            .create_index(Index::create().name("idx_events_created").table("events").col("created_at").to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table("accounts").add_column(text_null("low_balance_thresholds")).to_owned())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("accounts").drop_column("low_balance_thresholds").to_owned()).await?;
        manager.drop_table(Table::drop().table("events").to_owned()).await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS tollgate_events_notify()").await?;
        }
        Ok(())
    }
}
