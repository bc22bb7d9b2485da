//! Spends in batches: one transaction, one round trip and one commit for many spends.
//!
//! PostgreSQL: `tollgate_spend_batch` takes a JSON array of spends and runs `tollgate_spend` on
//! each, in order, inside the caller's one statement. Before the first, it locks every wallet the
//! batch names in one order (account id), so two batches on different connections or replicas
//! never wait on each other in a cycle; every other writer locks a single wallet. (The wallets
//! are found with `= ANY (ARRAY(...))`, not `IN (SELECT ...)`, which the planner hash-joins
//! against a scan of every account.) It answers one row per spend, numbered from 0, with
//! `tollgate_spend`'s outcome and figures.
//!
//! A spend that fails with an error (a racing replica committed the same key first, say) aborts
//! the whole batch, and the server then runs each of its spends alone; so nothing in the batch
//! is answered before the batch has committed.
//!
//! SQLite needs no function: the server runs a batch as one `BEGIN IMMEDIATE` transaction with a
//! savepoint per spend.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION tollgate_spend_batch(p_items jsonb, p_usage_account uuid, p_now timestamptz)
RETURNS TABLE (idx integer, outcome text, balance bigint, held bigint, debt bigint, status_code smallint,
               response text)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    item record;
BEGIN
    PERFORM 1 FROM accounts a
    WHERE a.user_id = ANY (ARRAY(SELECT (e ->> 'user_id')::uuid FROM jsonb_array_elements(p_items) e))
    ORDER BY a.id
    FOR UPDATE;

    FOR item IN
        SELECT (e.n - 1)::integer AS n, x.user_id, x.amount, x.scope, x.key, x.fingerprint, x.transfer_id,
               x.description, x.feature, x.quantity, x.metadata, x.view
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, n),
             LATERAL jsonb_to_record(e.value) AS x(user_id uuid, amount bigint, scope text, key text,
                 fingerprint text, transfer_id uuid, description text, feature text, quantity bigint,
                 metadata jsonb, view jsonb)
        ORDER BY e.n
    LOOP
        RETURN QUERY
        SELECT item.n, s.outcome, s.balance, s.held, s.debt, s.status_code, s.response
        FROM tollgate_spend(item.user_id, item.amount, p_usage_account, item.scope, item.key, item.fingerprint,
                            item.transfer_id, item.description, item.feature, item.quantity, item.metadata,
                            p_now, item.view) s;
    END LOOP;
END
$fn$
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(CREATE).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS tollgate_spend_batch(jsonb, uuid, timestamptz)")
                .await?;
        }
        Ok(())
    }
}
