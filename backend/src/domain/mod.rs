//! Types that carry meaning: parsed once at the edge, trusted inside.

pub mod billing;
mod credits;
mod email;
mod idempotency_key;
pub mod ledger;
mod password;

pub use credits::{Credits, CreditsError};
pub use email::Email;
pub use idempotency_key::IdempotencyKey;
pub use password::Password;
