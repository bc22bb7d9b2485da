//! The outbox's rows stop checking their customer against `customers` on PostgreSQL. The
//! customer of a ledger event is the wallet's owner, which the batch has just locked, so the check
//! never failed; it cost a trigger per event (4 to 9 µs each, `EXPLAIN ANALYZE` of a batch) and a
//! `FOR KEY SHARE` lock on the customer's row in every batch that wrote for them. SQLite's check is
//! a lookup in the same file and stays.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_customer_id_fkey")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE events ADD CONSTRAINT events_customer_id_fkey \
                     FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
                )
                .await?;
        }
        Ok(())
    }
}
