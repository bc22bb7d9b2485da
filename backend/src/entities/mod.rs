//! Table models in sea-orm-cli's format: one file per table, no behaviour. Rules live in the
//! feature modules beside them.

pub mod accounts;
pub mod api_keys;
pub mod checkout_sessions;
pub mod customers;
pub mod disputes;
pub mod events;
pub mod features;
pub mod gateway_calls;
pub mod holds;
pub mod idempotency_keys;
pub mod login_failures;
pub mod lots;
pub mod models;
pub mod payments;
pub mod portal_tokens;
pub mod prices;
pub mod refresh_tokens;
pub mod server_keys;
pub mod stripe_customers;
pub mod stripe_events;
pub mod subscriptions;
pub mod transfer_lots;
pub mod transfers;
pub mod users;
pub mod webhook_attempts;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
