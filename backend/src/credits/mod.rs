//! The credit ledger: wallets, lots, transfers, holds, the rate card, and the checks that prove
//! the books balance.
//!
//! How a write happens: a capability module (`spend`, `holds`, `grants`, `expiry`) turns a
//! request into a [`core::Command`] and submits it to the [`batch::Ledger`], which gathers
//! commands into batches; [`writer`] reads what a batch needs through its database's [`store`],
//! lets the pure [`core`] judge it, and writes the core's journal through the store.

pub mod batch;
pub mod check;
pub mod core;
pub mod dto;
pub mod error;
pub mod expiry;
pub mod export;
pub mod grants;
pub mod handlers;
pub mod history;
pub mod holds;
pub mod rate_card;
pub mod reconcile;
pub mod spend;
pub mod store;
pub mod writer;

pub use batch::Ledger;
pub use error::CreditsError;

use crate::idempotency::StoredResponse;

/// A write's answer: done now, or replayed from the first request with the same key.
#[derive(Debug)]
pub enum Outcome<T> {
    Fresh(T),
    Replayed(StoredResponse),
}
