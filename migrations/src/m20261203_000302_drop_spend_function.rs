//! Drops `tollgate_spend` (migration 5), PostgreSQL's one-statement spend. It repeated the spend
//! rules and the answer's JSON shape inside the database, a second copy of what the server's
//! ledger core decides; every spend now goes through that core and the store that writes its
//! journal (`credits::core`, `credits::store`), on both databases.
//!
//! What migration 5 did besides stays: `transfers` keeps no foreign keys to `accounts` on
//! PostgreSQL (checking one share-locks the system account's row on every spend; `reconcile`
//! checks that every transfer names existing accounts), and the lots index stays on
//! `account_id` alone.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "DROP FUNCTION IF EXISTS tollgate_spend(uuid, bigint, uuid, text, text, text, uuid, text, text, \
                     bigint, jsonb, timestamptz, jsonb)",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(crate::m20261125_000005_spend_function::CREATE).await?;
        }
        Ok(())
    }
}
