//! Wire types of the billing API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    domain::billing::SubscriptionStatus,
    entities::{prices, subscriptions},
};

/// A price on offer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogPrice {
    #[schema(example = "sandbox_pack_100")]
    pub price_id: String,
    pub product_id: String,
    pub name: String,
    pub description: Option<String>,
    /// `one_time` (a credit pack) or `recurring` (a plan).
    pub kind: String,
    /// `month` or `year` for plans.
    pub interval: Option<String>,
    /// In the currency's minor units (cents).
    pub unit_amount: i64,
    #[schema(example = "usd")]
    pub currency: String,
    /// Credits granted per purchase, or per period for a plan.
    pub credits: i64,
}

impl From<prices::Model> for CatalogPrice {
    fn from(p: prices::Model) -> Self {
        Self {
            price_id: p.id,
            product_id: p.product_id,
            name: p.product_name,
            description: p.product_description,
            kind: p.kind,
            interval: p.interval,
            unit_amount: p.unit_amount,
            currency: p.currency,
            credits: p.credits,
        }
    }
}

/// `GET /billing/catalog`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogResponse {
    /// `sandbox` when no Stripe keys are configured: no real payments.
    pub mode: String,
    /// Stripe's publishable key, for clients that use Stripe.js (absent in sandbox mode).
    pub publishable_key: Option<String>,
    pub packs: Vec<CatalogPrice>,
    pub plans: Vec<CatalogPrice>,
}

/// `POST /billing/checkout-session`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CheckoutSessionRequest {
    #[schema(example = "sandbox_pack_100")]
    pub price_id: String,
}

/// Where to send the browser to pay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutSessionResponse {
    pub session_id: String,
    pub url: String,
}

/// Where to send the browser to manage a subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLinkResponse {
    pub url: String,
}

/// A subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    /// Stripe's status; `active`, `trialing` and `past_due` still entitle the subscriber.
    pub status: SubscriptionStatus,
    pub plan_name: Option<String>,
    pub price_id: String,
    pub interval: Option<String>,
    pub credits_per_period: Option<i64>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
}

impl SubscriptionView {
    /// Fails for a status the schema does not allow (only a row written by hand can have one).
    pub fn new(sub: subscriptions::Model, price: Option<prices::Model>) -> Result<Self, sea_orm::DbErr> {
        let status = SubscriptionStatus::parse(&sub.status).ok_or_else(|| {
            sea_orm::DbErr::Custom(format!("subscription {} has the unknown status {:?}", sub.id, sub.status))
        })?;
        Ok(Self {
            id: sub.id,
            status,
            plan_name: price.as_ref().map(|p| p.product_name.clone()),
            price_id: sub.price_id,
            interval: price.as_ref().and_then(|p| p.interval.clone()),
            credits_per_period: price.as_ref().map(|p| p.credits),
            current_period_start: sub.current_period_start,
            current_period_end: sub.current_period_end,
            cancel_at_period_end: sub.cancel_at_period_end,
        })
    }
}

/// `GET /billing/subscription`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionResponse {
    /// Absent when the user never subscribed.
    pub subscription: Option<SubscriptionView>,
}

/// What `sync-prices` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncPricesResponse {
    /// Active prices listed by Stripe and mirrored.
    pub synced: usize,
    /// Local prices Stripe no longer offers, now inactive.
    pub deactivated: u64,
}

/// An event in the Stripe inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct StripeEventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// When Stripe created it.
    pub created_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// `processed`, `ignored` (a type Tollgate does not act on) or `failed`.
    pub status: String,
}

/// A page of the inbox, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct StripeEventPage {
    pub events: Vec<StripeEventView>,
    pub next_cursor: Option<String>,
}

/// The answer to a webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// `processed`, `ignored` or `duplicate`.
    pub status: String,
}
