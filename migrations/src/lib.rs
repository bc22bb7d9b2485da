//! Tollgate's database schema, one migration per change, applied in order by `Migrator`.
//! Landed migrations are never edited: a change is a new file.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_foundation;
mod m20261124_000002_ledger;
mod m20261124_000003_billing;
mod m20261124_000004_stripe;
mod m20261125_000005_spend_function;
mod m20261125_000006_spend_batch;
mod m20261125_000007_drop_spend_batch;
mod m20261125_000008_lean_spend_indexes;
mod m20261202_000009_portal_tokens;
mod m20261202_000101_idna_emails;
mod m20261202_000201_transfers_lot_index;
mod m20261202_000202_dispute_freeze_transfer;
mod m20261203_000301_status_checks;
mod m20261203_000302_drop_spend_function;
mod m20261204_000401_customers;
mod m20261205_000501_gateway;
mod m20261206_000601_events;
mod m20261206_000602_webhooks;
mod m20261207_000701_events_without_customer_key;
mod m20261208_000801_events_lean_indexes;
mod m20261209_000901_sqlite_customer_events;

/// The values each status, kind and source column accepts (migration `000301`), for the
/// server's test that they are its enums' values.
pub use m20261203_000301_status_checks::{CHECKS as STATUS_CHECKS, Check};

/// Every migration Tollgate knows, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_foundation::Migration),
            Box::new(m20261124_000002_ledger::Migration),
            Box::new(m20261124_000003_billing::Migration),
            Box::new(m20261124_000004_stripe::Migration),
            Box::new(m20261125_000005_spend_function::Migration),
            Box::new(m20261125_000006_spend_batch::Migration),
            Box::new(m20261125_000007_drop_spend_batch::Migration),
            Box::new(m20261125_000008_lean_spend_indexes::Migration),
            Box::new(m20261202_000009_portal_tokens::Migration),
            Box::new(m20261202_000101_idna_emails::Migration),
            Box::new(m20261202_000201_transfers_lot_index::Migration),
            Box::new(m20261202_000202_dispute_freeze_transfer::Migration),
            Box::new(m20261203_000301_status_checks::Migration),
            Box::new(m20261203_000302_drop_spend_function::Migration),
            Box::new(m20261204_000401_customers::Migration),
            Box::new(m20261205_000501_gateway::Migration),
            Box::new(m20261206_000601_events::Migration),
            Box::new(m20261206_000602_webhooks::Migration),
            Box::new(m20261207_000701_events_without_customer_key::Migration),
            Box::new(m20261208_000801_events_lean_indexes::Migration),
            Box::new(m20261209_000901_sqlite_customer_events::Migration),
        ]
    }
}
