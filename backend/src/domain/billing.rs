//! Billing's statuses: a subscription's (Stripe's vocabulary), a checkout session's and a
//! dispute's. Like the ledger's enums, each is stored as its `as_str` in a text column that
//! migration `m20261203_000301_status_checks` constrains to these values, and serialised as the
//! same string.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A subscription's status, as Stripe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Canceled,
    Incomplete,
    IncompleteExpired,
    PastDue,
    Paused,
    Trialing,
    Unpaid,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        Self::Active,
        Self::Canceled,
        Self::Incomplete,
        Self::IncompleteExpired,
        Self::PastDue,
        Self::Paused,
        Self::Trialing,
        Self::Unpaid,
    ];

    /// The statuses in which a subscription still entitles its owner.
    pub const LIVE: [SubscriptionStatus; 3] = [Self::Active, Self::Trialing, Self::PastDue];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Canceled => "canceled",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::PastDue => "past_due",
            Self::Paused => "paused",
            Self::Trialing => "trialing",
            Self::Unpaid => "unpaid",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A checkout session's life: open until paid (complete) or abandoned (expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Open,
    Complete,
    Expired,
}

impl CheckoutStatus {
    pub const ALL: [CheckoutStatus; 3] = [Self::Open, Self::Complete, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Complete => "complete",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A dispute as Tollgate keeps it: open (its credits frozen) until Stripe closes it with one of
/// the closing statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    /// The merchant lost: the frozen credits are taken for good.
    Lost,
    Won,
    /// An inquiry closed without becoming a dispute.
    WarningClosed,
    /// Prevented (by early refund): no chargeback.
    Prevented,
}

impl DisputeStatus {
    pub const ALL: [DisputeStatus; 5] = [Self::Open, Self::Lost, Self::Won, Self::WarningClosed, Self::Prevented];

    /// The closing statuses that give the frozen credits back.
    pub const RETURNED: [DisputeStatus; 3] = [Self::Won, Self::WarningClosed, Self::Prevented];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Lost => "lost",
            Self::Won => "won",
            Self::WarningClosed => "warning_closed",
            Self::Prevented => "prevented",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CheckoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DisputeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_string() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
        for s in CheckoutStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(CheckoutStatus::parse(s.as_str()), Some(s));
        }
        for s in DisputeStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(DisputeStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn subscription_statuses_are_stripes() {
        use stripe_shared::SubscriptionStatus as Stripe;
        for stripe in [
            Stripe::Active,
            Stripe::Canceled,
            Stripe::Incomplete,
            Stripe::IncompleteExpired,
            Stripe::PastDue,
            Stripe::Paused,
            Stripe::Trialing,
            Stripe::Unpaid,
        ] {
            assert!(SubscriptionStatus::parse(stripe.as_str()).is_some(), "{}", stripe.as_str());
        }
        for closing in [stripe_shared::DisputeStatus::Lost, stripe_shared::DisputeStatus::Won] {
            assert!(DisputeStatus::parse(closing.as_str()).is_some());
        }
        assert!(DisputeStatus::parse(stripe_shared::DisputeStatus::WarningClosed.as_str()).is_some());
        assert!(DisputeStatus::parse(stripe_shared::DisputeStatus::Prevented.as_str()).is_some());
    }
}
