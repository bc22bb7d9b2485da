//! The outbox drops two of its indexes: `(type, seq)` and `created_at`. Every spend wrote an entry
//! in each, and nothing read them well: `GET /events` filters type and time in one query whose
//! optional terms (`? IS NULL OR …`) no plan can take an index for, and it walks the log by `seq`
//! anyway. The retention purge, their one reader, now deletes by `id`: an event's id begins with
//! the time it was made (a UUID v7), so "made before T" is a range of the unique index on `id`.
//! Measured on the spend benchmark: 3 to 7% more spends per second (SQLite), 2% (PostgreSQL).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_events_type", "idx_events_created"] {
            manager.drop_index(Index::drop().name(name).table("events").if_exists().to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name("idx_events_type").table("events").col("type").col("seq").to_owned())
            .await?;
        manager
            .create_index(Index::create().name("idx_events_created").table("events").col("created_at").to_owned())
            .await?;
        Ok(())
    }
}
