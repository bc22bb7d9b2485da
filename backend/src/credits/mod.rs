//! The credit ledger: wallets, lots, transfers, holds, the rate card, and the checks that prove
//! the books balance.

pub mod batch;
pub mod bulk;
pub mod dto;
pub mod handlers;
pub mod ledger;
pub mod reconcile;
pub mod service;
