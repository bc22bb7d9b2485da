//! `disputes.freeze_transfer_id`: the transfer that froze a dispute's credits, so that a dispute
//! won (or an inquiry closed) gives each credit back to the kind of lot it was taken from, with
//! that lot's source, priority and expiry.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table("disputes").add_column(uuid_null("freeze_transfer_id")).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("disputes").drop_column("freeze_transfer_id").to_owned()).await
    }
}
