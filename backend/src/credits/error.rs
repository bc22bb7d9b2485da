//! What can go wrong in the ledger, and how each answers over HTTP.

use chrono::{DateTime, Utc};
use sea_orm::DbErr;

use crate::{
    error::{ApiError, ErrorCode},
    idempotency,
};

/// What went wrong, in the ledger's words.
#[derive(Debug, thiserror::Error)]
pub enum CreditsError {
    #[error("the wallet does not exist")]
    WalletNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error("not enough credits: {available} available, {requested} requested")]
    InsufficientCredits { available: i64, requested: i64 },
    #[error("the wallet owes {debt} credits from a refund or dispute; they must be covered before spending")]
    OutstandingDebt { debt: i64 },
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("no feature `{0}` on the rate card")]
    UnknownFeature(String),
    #[error("feature `{0}` is not available")]
    FeatureInactive(String),
    #[error("no model `{0}` on the rate card, or it is not offered now")]
    UnknownModel(String),
    #[error("a feature with key `{0}` already exists")]
    FeatureExists(String),
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold expired at {expires_at}; its credits were released")]
    HoldExpired { expires_at: DateTime<Utc> },
    #[error("the hold is {status}")]
    HoldNotOpen { status: String },
    #[error("the hold was already captured for {captured}")]
    HoldAlreadyCaptured { captured: i64 },
    #[error("the hold belongs to the LLM gateway's calls, which capture or release it themselves")]
    HoldOwnedByGateway,
    #[error("cannot capture {requested}: the hold is for {held}")]
    CaptureExceedsHold { held: i64, requested: i64 },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// A request's field that fails a rule.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> CreditsError {
    CreditsError::Invalid { field, message: message.into() }
}

impl CreditsError {
    /// The books disagree with themselves (a lot short of its wallet's balance, an overflow):
    /// the command is refused, nothing of it is written, and the operator is told (a 500, logged).
    pub fn invariant(message: impl Into<String>) -> Self {
        Self::Database(DbErr::Custom(format!("the ledger refused an inconsistent write: {}", message.into())))
    }
}

impl From<CreditsError> for ApiError {
    fn from(err: CreditsError) -> Self {
        let detail = err.to_string();
        match err {
            CreditsError::WalletNotFound => ApiError::new(ErrorCode::WalletNotFound, detail),
            CreditsError::UserNotFound => ApiError::new(ErrorCode::UserNotFound, detail),
            CreditsError::InsufficientCredits { available, requested } => {
                ApiError::new(ErrorCode::InsufficientCredits, detail)
                    .with("available", available)
                    .with("requested", requested)
            }
            CreditsError::OutstandingDebt { debt } => {
                ApiError::new(ErrorCode::OutstandingDebt, detail).with("debt", debt).with("available", 0)
            }
            CreditsError::IdempotencyKeyReused => idempotency::reused_error(),
            CreditsError::UnknownFeature(_) => ApiError::field("feature", "unknown_feature", detail),
            CreditsError::FeatureInactive(_) => ApiError::field("feature", "feature_inactive", detail),
            CreditsError::UnknownModel(_) => ApiError::field("model", "unknown_model", detail),
            CreditsError::FeatureExists(_) => ApiError::new(ErrorCode::FeatureExists, detail),
            CreditsError::HoldNotFound => ApiError::new(ErrorCode::HoldNotFound, detail),
            CreditsError::HoldExpired { .. } => ApiError::new(ErrorCode::HoldExpired, detail),
            CreditsError::HoldNotOpen { .. } => ApiError::new(ErrorCode::HoldNotOpen, detail),
            CreditsError::HoldOwnedByGateway => ApiError::new(ErrorCode::HoldOwnedByGateway, detail),
            CreditsError::HoldAlreadyCaptured { captured } => {
                ApiError::new(ErrorCode::HoldAlreadyCaptured, detail).with("captured_amount", captured)
            }
            CreditsError::CaptureExceedsHold { held, requested } => {
                ApiError::field("amount", "capture_exceeds_hold", detail)
                    .with("held", held)
                    .with("requested", requested)
            }
            CreditsError::Invalid { field, message } => ApiError::field(field, "invalid", format!("{field} {message}")),
            CreditsError::Database(e) => e.into(),
        }
    }
}
