//! The calls Tollgate makes to Stripe, through async-stripe. Every creating call carries an
//! idempotency key derived from what it is for, so a retry never creates a second customer or
//! session.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use stripe::{Client, ClientBuilder, RequestStrategy, StripeRequest};
use stripe_billing::{billing_portal_session::CreateBillingPortalSession, subscription::RetrieveSubscription};
use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems};
use stripe_core::customer::CreateCustomer;
use stripe_product::price::ListPrice;
use stripe_shared::{CheckoutSessionMode, Price, Subscription};
use uuid::Uuid;

use crate::config::{Payments, Settings};

/// A failed call to Stripe.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Stripe request failed: {0}")]
    Stripe(#[from] stripe::StripeError),
    #[error("Stripe answered without {0}")]
    Missing(&'static str),
    #[error("invalid idempotency key: {0}")]
    Key(String),
}

/// A client for Stripe's API.
#[derive(Clone)]
pub struct StripeGateway {
    client: Client,
}

/// What a checkout session needs.
pub struct CheckoutRequest<'a> {
    pub customer: &'a str,
    pub price_id: &'a str,
    pub subscription: bool,
    pub user_id: Uuid,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: String,
}

fn idempotent(key: &str) -> Result<RequestStrategy, GatewayError> {
    stripe::IdempotencyKey::new(key).map(RequestStrategy::Idempotent).map_err(|e| GatewayError::Key(e.to_string()))
}

/// How this server takes payments, fixed once at start. It decides which routes exist: the
/// sandbox's checkout and portal pages are mounted only in `Sandbox`, so in Stripe mode no one
/// can "pay" a real Stripe session through them.
#[derive(Clone)]
pub enum PaymentMode {
    /// Local pages stand in for Stripe; no payment is taken.
    Sandbox,
    /// Stripe's hosted checkout and portal, credited by its webhooks. Boxed: the client is
    /// large and the state is cloned into every worker.
    Stripe(Box<StripeGateway>),
}

impl PaymentMode {
    /// The mode the settings ask for, with its Stripe client.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        match settings.payments {
            Payments::Sandbox if settings.stripe_secret_key.is_some() => {
                anyhow::bail!("PAYMENTS is `sandbox` but STRIPE_SECRET_KEY is set: unset one of them")
            }
            Payments::Sandbox => Ok(Self::Sandbox),
            Payments::Stripe => StripeGateway::from_settings(settings)?
                .map(|gateway| Self::Stripe(Box::new(gateway)))
                .ok_or_else(|| anyhow::anyhow!("STRIPE_SECRET_KEY is required with PAYMENTS=stripe")),
        }
    }

    /// Stripe's API, unless this is the sandbox.
    pub fn stripe(&self) -> Option<&StripeGateway> {
        match self {
            Self::Sandbox => None,
            Self::Stripe(gateway) => Some(gateway),
        }
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self, Self::Sandbox)
    }
}

impl StripeGateway {
    /// The gateway for the configured key; `None` without one.
    fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(key) = &settings.stripe_secret_key else { return Ok(None) };
        let mut builder = ClientBuilder::new(key.expose());
        if let Some(base) = &settings.stripe_api_base {
            let base = if base.ends_with('/') { base.clone() } else { format!("{base}/") };
            builder = builder.url(base);
        }
        Ok(Some(Self { client: builder.build()? }))
    }

    /// Creates the user's Stripe customer; the key derived from the user makes it happen once.
    pub async fn create_customer(&self, user_id: Uuid, email: Option<&str>) -> Result<String, GatewayError> {
        let metadata = HashMap::from([("user_id".to_owned(), user_id.to_string())]);
        let mut create = CreateCustomer::new().metadata(metadata);
        if let Some(email) = email {
            create = create.email(email);
        }
        let customer = create
            .customize()
            .request_strategy(idempotent(&format!("tollgate-customer-{user_id}"))?)
            .send(&self.client)
            .await?;
        Ok(customer.id.to_string())
    }

    /// Opens a hosted checkout session; returns its id and URL.
    pub async fn create_checkout_session(
        &self,
        request: CheckoutRequest<'_>,
    ) -> Result<(String, String), GatewayError> {
        let metadata = HashMap::from([
            ("user_id".to_owned(), request.user_id.to_string()),
            ("price_id".to_owned(), request.price_id.to_owned()),
        ]);
        let line = CreateCheckoutSessionLineItems {
            price: Some(request.price_id.to_owned()),
            quantity: Some(1),
            ..CreateCheckoutSessionLineItems::new()
        };
        let mode = if request.subscription { CheckoutSessionMode::Subscription } else { CheckoutSessionMode::Payment };
        let session = CreateCheckoutSession::new()
            .mode(mode)
            .customer(request.customer)
            .client_reference_id(request.user_id.to_string())
            .metadata(metadata)
            .line_items(vec![line])
            .success_url(request.success_url)
            .cancel_url(request.cancel_url)
            .customize()
            .request_strategy(idempotent(&request.idempotency_key)?)
            .send(&self.client)
            .await?;
        let url = session.url.ok_or(GatewayError::Missing("a checkout URL"))?;
        Ok((session.id.to_string(), url))
    }

    /// Opens a billing portal session for the customer; returns its URL.
    pub async fn create_portal_session(&self, customer: &str, return_url: &str) -> Result<String, GatewayError> {
        let session =
            CreateBillingPortalSession::new().customer(customer).return_url(return_url).send(&self.client).await?;
        Ok(session.url)
    }

    /// The subscription as Stripe holds it now: the tie-breaker when two events about it carry
    /// the same second.
    pub async fn retrieve_subscription(&self, id: &str) -> Result<Subscription, GatewayError> {
        Ok(RetrieveSubscription::new(id).send(&self.client).await?)
    }

    /// Every active price, with its product, across all pages.
    pub async fn list_active_prices(&self) -> Result<Vec<Price>, GatewayError> {
        let prices = ListPrice::new()
            .active(true)
            .limit(100)
            .expand(vec!["data.product".to_owned()])
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        Ok(prices)
    }
}
