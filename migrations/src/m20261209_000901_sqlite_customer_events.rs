//! SQLite: a customer's events are found through `customer_events`, which a background task fills
//! in bulk (`tollgate::events::index_customers`), instead of through `idx_events_customer`, which
//! every event wrote to as it was made.
//!
//! Under a spread load each spend's entry in `idx_events_customer` landed on another customer's
//! page of the index: one more page per spend for SQLite to read, write to the WAL at commit and
//! copy back at the checkpoint. Filled once a second, the same pages are written once for all of
//! that second's events. What the task has not yet copied (the events after
//! `customer_events_through.seq`) is read from the log itself, so a customer's reads miss nothing.
//! PostgreSQL keeps its index: it is not where its cost goes.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE customer_events (customer_id blob NOT NULL, seq integer NOT NULL, \
             PRIMARY KEY (customer_id, seq)) WITHOUT ROWID",
            "CREATE TABLE customer_events_through (id integer PRIMARY KEY CHECK (id = 1), seq integer NOT NULL)",
            "INSERT INTO customer_events (customer_id, seq) \
             SELECT customer_id, seq FROM events WHERE customer_id IS NOT NULL",
            "INSERT INTO customer_events_through (id, seq) VALUES (1, COALESCE((SELECT MAX(seq) FROM events), 0))",
            "DROP INDEX IF EXISTS idx_events_customer",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for sql in [
            "CREATE INDEX idx_events_customer ON events (customer_id, seq)",
            "DROP TABLE customer_events_through",
            "DROP TABLE customer_events",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
