//! Drops `tollgate_spend_batch` (migration 6). A batch of spends is now read in bulk, judged in
//! the server and written in bulk, with the same statements on both databases (the server's
//! `credits::bulk`): a fixed number of statements per batch instead of ten or so per spend inside
//! PL/pgSQL. `tollgate_spend`, for a spend alone, stays.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS tollgate_spend_batch(jsonb, uuid, timestamptz)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(super::m20261125_000006_spend_batch::CREATE).await?;
        }
        Ok(())
    }
}
