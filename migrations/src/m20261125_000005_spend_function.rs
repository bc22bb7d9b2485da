//! The spend's hot path, measured and trimmed.
//!
//! PostgreSQL: `tollgate_spend` runs the common spend inside the database, in one statement: lock
//! the wallet, judge the idempotency key, check what is available, take from the lots in spend
//! order, post the transfer, save the wallet and store the answer. The wallet's row lock is held
//! for one call instead of four client round trips, which is what a hot wallet waits on.
//!
//! It handles only the case with nothing to settle. When a lot has passed its expiry with
//! credits left, or an open hold is overdue, it changes nothing and answers `settle`, and the
//! server runs the general path (which posts the expiry first). Every other outcome has the same
//! meaning as in the server's general path, and the tests run both paths against the same
//! scenarios: on PostgreSQL through this function, on SQLite through the general path.
//!
//! Each statement in a PL/pgSQL function takes a fresh snapshot under READ COMMITTED, so what is
//! read after `FOR UPDATE` returns is what the previous holder of the lock committed.
//!
//! PostgreSQL also drops the foreign keys from `transfers` to `accounts`. Every transfer has a
//! system account on one side, and checking a foreign key takes a share lock on the referenced
//! row: every spend of every user locked the `usage` account's row, the shared row the ledger's
//! design forbids (its cost is in docs/performance.md). Accounts are never
//! deleted, wallets are locked before anything is posted to them, and `reconcile` checks that
//! every transfer names existing accounts.
//!
//! Both databases: the lots index no longer includes `remaining`, so taking from a lot does not
//! rewrite the lot's index entries (on PostgreSQL the update becomes a heap-only update).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION tollgate_spend(
    p_user_id uuid,
    p_amount bigint,
    p_usage_account uuid,
    p_scope text,
    p_key text,
    p_fingerprint text,
    p_transfer_id uuid,
    p_description text,
    p_feature text,
    p_quantity bigint,
    p_metadata jsonb,
    p_now timestamptz,
    p_view jsonb
) RETURNS TABLE (outcome text, balance bigint, held bigint, debt bigint, status_code smallint, response text)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    w accounts%ROWTYPE;
    stored idempotency_keys%ROWTYPE;
    lot record;
    left_to_take bigint := p_amount;
    take bigint;
    moved jsonb := '[]'::jsonb;
    after bigint;
    body text;
BEGIN
    IF p_amount <= 0 THEN
        RAISE EXCEPTION 'tollgate_spend: amount must be positive, got %', p_amount;
    END IF;

    SELECT * INTO w FROM accounts a WHERE a.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_wallet'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::smallint, NULL::text;
        RETURN;
    END IF;

    SELECT * INTO stored FROM idempotency_keys i WHERE i.scope = p_scope AND i.key = p_key;
    IF FOUND THEN
        IF stored.fingerprint <> p_fingerprint THEN
            RETURN QUERY SELECT 'mismatch'::text, w.balance, w.held, w.debt, NULL::smallint, NULL::text;
        ELSE
            RETURN QUERY SELECT 'replay'::text, w.balance, w.held, w.debt, stored.status_code, stored.response;
        END IF;
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM lots l WHERE l.account_id = w.id AND l.remaining > 0 AND l.expires_at <= p_now)
       OR (w.held > 0 AND EXISTS (SELECT 1 FROM holds h WHERE h.account_id = w.id AND h.status = 'open'
                                  AND h.expires_at <= p_now)) THEN
        RETURN QUERY SELECT 'settle'::text, w.balance, w.held, w.debt, NULL::smallint, NULL::text;
        RETURN;
    END IF;

    IF w.debt > 0 THEN
        RETURN QUERY SELECT 'debt'::text, w.balance, w.held, w.debt, NULL::smallint, NULL::text;
        RETURN;
    END IF;
    IF w.balance - w.held < p_amount THEN
        RETURN QUERY SELECT 'insufficient'::text, w.balance, w.held, w.debt, NULL::smallint, NULL::text;
        RETURN;
    END IF;

    -- Spend order: priority, then soonest expiry (none last), then oldest.
    FOR lot IN
        SELECT l.id, l.remaining FROM lots l
        WHERE l.account_id = w.id AND l.remaining > 0
        ORDER BY l.priority, l.expires_at NULLS LAST, l.created_at, l.id
    LOOP
        take := LEAST(lot.remaining, left_to_take);
        UPDATE lots SET remaining = lots.remaining - take WHERE lots.id = lot.id;
        INSERT INTO transfer_lots (transfer_id, lot_id, amount) VALUES (p_transfer_id, lot.id, take);
        moved := moved || jsonb_build_array(jsonb_build_object('lot_id', lot.id, 'amount', take));
        left_to_take := left_to_take - take;
        EXIT WHEN left_to_take = 0;
    END LOOP;
    IF left_to_take > 0 THEN
        RAISE EXCEPTION 'wallet % has fewer credits in lots than its balance', w.id;
    END IF;

    after := w.balance - p_amount;
    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, debit_balance_after,
                           description, feature, quantity, metadata, idempotency_key, request_fingerprint, created_at)
    VALUES (p_transfer_id, w.id, p_usage_account, p_amount, 'spend', after,
            p_description, p_feature, p_quantity, p_metadata::json, p_key, p_fingerprint, p_now);
    UPDATE accounts SET balance = after, updated_at = p_now WHERE accounts.id = w.id;

    body := jsonb_build_object(
        'transfer', p_view || jsonb_build_object('lots', moved),
        'balance', jsonb_build_object('balance', after, 'available', GREATEST(after - w.held, 0),
                                      'held', w.held, 'debt', w.debt)
    )::text;
    INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response, created_at)
    VALUES (p_scope, p_key, p_fingerprint, 200, body, p_now);

    RETURN QUERY SELECT 'spent'::text, after, w.held, w.debt, 200::smallint, body;
END
$fn$
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        lots_index(manager, false).await?;
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            let connection = manager.get_connection();
            connection
                .execute_unprepared(
                    "ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_debit_account_id_fkey, \
                     DROP CONSTRAINT IF EXISTS transfers_credit_account_id_fkey",
                )
                .await?;
            // Room on each page for the next version of a row: wallets and lots change on every spend.
            connection.execute_unprepared("ALTER TABLE accounts SET (fillfactor = 90)").await?;
            connection.execute_unprepared("ALTER TABLE lots SET (fillfactor = 90)").await?;
            connection.execute_unprepared(CREATE).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        lots_index(manager, true).await?;
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            let connection = manager.get_connection();
            connection.execute_unprepared("ALTER TABLE accounts RESET (fillfactor)").await?;
            connection.execute_unprepared("ALTER TABLE lots RESET (fillfactor)").await?;
            connection
                .execute_unprepared(
                    "ALTER TABLE transfers \
                     ADD CONSTRAINT transfers_debit_account_id_fkey FOREIGN KEY (debit_account_id) REFERENCES accounts (id), \
                     ADD CONSTRAINT transfers_credit_account_id_fkey FOREIGN KEY (credit_account_id) REFERENCES accounts (id)",
                )
                .await?;
            connection
                .execute_unprepared(
                    "DROP FUNCTION IF EXISTS tollgate_spend(uuid, bigint, uuid, text, text, text, uuid, text, text, \
                     bigint, jsonb, timestamptz, jsonb)",
                )
                .await?;
        }
        Ok(())
    }
}

/// The lots of a wallet, found by account only (`with_remaining`: the index as it was before).
async fn lots_index(manager: &SchemaManager<'_>, with_remaining: bool) -> Result<(), DbErr> {
    manager.drop_index(Index::drop().name("idx_lots_account").table("lots").to_owned()).await?;
    let mut index = Index::create().name("idx_lots_account").table("lots").col("account_id").to_owned();
    if with_remaining {
        index.col("remaining");
    }
    manager.create_index(index).await
}
