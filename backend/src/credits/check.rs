//! Preflight: would this spend pass now? Prices the charge with the rate card and judges it
//! against the wallet as the next write would see it (`core::refusal`, the rule the spend itself
//! applies), and writes nothing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    batch::Ledger,
    core::{available, refusal},
    error::CreditsError,
    history,
    spend::{self, Charge},
};

/// `POST /credits/check`: the same `amount`, or `feature` and `quantity`, as a spend.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckRequest {
    /// Credits to spend, when not priced by a feature.
    #[schema(example = json!(null))]
    pub amount: Option<i64>,
    /// A feature on the rate card.
    #[schema(example = "summarize")]
    pub feature: Option<String>,
    /// Units of the feature (default 1).
    #[schema(example = 3)]
    pub quantity: Option<i64>,
    /// A model on the gateway's rate card, priced by `usage` (as a spend would be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The tokens, with `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::gateway::pricing::TokenUsage>,
}

/// What would refuse the spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    /// The wallet's available credits are fewer than the price.
    InsufficientCredits,
    /// The wallet owes credits from a refund or dispute.
    Debt,
    /// The feature (or model) is not on the rate card, or is not offered now.
    UnknownFeature,
}

/// Whether the spend would pass now, and why not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResponse {
    /// True when a spend of this charge would pass now.
    pub allowed: bool,
    /// What it would cost; null for an unknown feature.
    #[schema(required = true)]
    pub price: Option<i64>,
    /// What the wallet can spend now.
    pub available: i64,
    /// The wallet's balance.
    pub balance: i64,
    /// What would refuse it; null when allowed.
    #[schema(required = true)]
    pub reason: Option<CheckReason>,
}

/// Judges a charge against the wallet without writing.
pub async fn check(ledger: &Ledger, user_id: Uuid, charge: Charge) -> Result<CheckResponse, CreditsError> {
    let (wallet, _) = history::settled(ledger, user_id).await?;
    let priced = match spend::price(ledger.db(), &charge).await {
        Ok(priced) => Some(priced.amount),
        Err(CreditsError::UnknownFeature(_) | CreditsError::FeatureInactive(_) | CreditsError::UnknownModel(_)) => None,
        Err(e) => return Err(e),
    };
    let reason = match priced {
        None => Some(CheckReason::UnknownFeature),
        Some(amount) => refusal(&wallet, amount).map(|refused| match refused {
            CreditsError::OutstandingDebt { .. } => CheckReason::Debt,
            _ => CheckReason::InsufficientCredits,
        }),
    };
    Ok(CheckResponse {
        allowed: reason.is_none(),
        price: priced.map(|p| p.get()),
        available: available(&wallet),
        balance: wallet.balance,
        reason,
    })
}
