//! Two indexes that every spend paid for and no query needs, changed so that a spend dirties
//! fewer pages (each one a random page of the WAL on SQLite, an index insertion on PostgreSQL):
//!
//! - `idx_lots_account` was (account_id, remaining): every spend changes `remaining`, so every
//!   spend rewrote an entry of it, and on PostgreSQL no update of a lot could be HOT. It is now
//!   (account_id) alone: a wallet's live lots are its few lots, filtered by `remaining > 0`.
//! - `idx_transfer_lots_lot` (lot_id) is dropped: movements are read by transfer (the primary
//!   key's prefix), reconcile sums them over the whole table, and a lot is never deleted or
//!   re-keyed, so the foreign key never looks a lot's movements up.

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
        manager.drop_index(Index::drop().name("idx_lots_account").table("lots").to_owned()).await?;
        manager
            .create_index(
                Index::create().name("idx_lots_account").table("lots").col("account_id").col("remaining").to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_transfer_lots_lot").table("transfer_lots").col("lot_id").to_owned())
            .await
    }
}
