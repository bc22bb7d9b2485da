//! One index that every spend paid for and no query needs: `idx_transfer_lots_lot` (lot_id) is
//! dropped, so a spend dirties fewer pages (each one a random page of the WAL on SQLite, an index
//! insertion on PostgreSQL). Movements are read by transfer (the primary key's prefix), reconcile
//! sums them over the whole table, and a lot is never deleted or re-keyed, so the foreign key
//! never looks a lot's movements up.
//!
//! It also drops and recreates `idx_lots_account` on (account_id): a no-op, since migration 5
//! had already narrowed it from (account_id, remaining), kept so that every database runs the
//! same history. (An earlier text said this migration narrowed it, and its `down` widened it
//! again, leaving a database rolled back to migration 7 with an index migration 7 never had;
//! `down` now restores only what `up` changed.)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_transfer_lots_lot").table("transfer_lots").to_owned()).await?;
        manager.drop_index(Index::drop().name("idx_lots_account").table("lots").to_owned()).await?;
        manager.create_index(Index::create().name("idx_lots_account").table("lots").col("account_id").to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name("idx_transfer_lots_lot").table("transfer_lots").col("lot_id").to_owned())
            .await
    }
}
