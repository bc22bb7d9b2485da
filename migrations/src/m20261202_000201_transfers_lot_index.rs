//! A partial index on `transfers(lot_id)`: a refund or a dispute reads what left a paid lot
//! through expiry, so that credits which already expired are not taken back a second time.
//! Only grants and expiries name a lot, so spends (the hot path) never write an entry of it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The same text on both databases; sea-query has no portable partial index.
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX idx_transfers_lot ON transfers (lot_id) WHERE lot_id IS NOT NULL")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_transfers_lot").table("transfers").to_owned()).await
    }
}
