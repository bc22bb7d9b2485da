//! HTTP handlers for the billing API.

use actix_web::{HttpRequest, HttpResponse, get, post, web};

use super::{
    dto::*,
    service::{self, BillingError},
    webhooks::{self, WebhookFailure},
};
use crate::{
    auth::extractors::{Admin, Authenticated, SessionUser},
    error::{ApiError, ErrorCode},
    state::AppState,
};

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        let detail = err.to_string();
        match err {
            BillingError::UnknownPrice(_) => ApiError::field("price_id", "unknown_price", detail),
            BillingError::AlreadySubscribed => ApiError::new(ErrorCode::AlreadySubscribed, detail),
            BillingError::SessionNotFound => ApiError::new(ErrorCode::CheckoutSessionNotFound, detail),
            BillingError::SessionClosed(_) => ApiError::new(ErrorCode::CheckoutSessionClosed, detail),
            BillingError::NoSubscription => ApiError::new(ErrorCode::SubscriptionNotFound, detail),
            BillingError::WalletNotFound => ApiError::new(ErrorCode::WalletNotFound, detail),
            BillingError::NoCustomer => ApiError::new(ErrorCode::NoCustomer, detail),
            BillingError::Stripe(e) => {
                log::error!("stripe: {e}");
                ApiError::new(
                    ErrorCode::StripeUnavailable,
                    "Stripe could not be reached or refused the request; retry shortly.",
                )
                .retry_after(5)
            }
            BillingError::Database(e) => e.into(),
        }
    }
}

/// The packs and plans on offer (public).
#[utoipa::path(tag = "billing", responses((status = 200, body = CatalogResponse)))]
#[get("/billing/catalog")]
pub async fn get_catalog(state: web::Data<AppState>) -> Result<web::Json<CatalogResponse>, ApiError> {
    Ok(web::Json(
        service::catalog(&state.db, state.settings.stripe_mode(), state.settings.stripe_publishable_key.clone())
            .await?,
    ))
}

crate::openapi::errors!(CreateCheckoutSessionErrors:
    SessionRequired, WalletNotFound, AlreadySubscribed, StripeUnavailable,
);

/// Start a checkout for a pack (one-time payment) or a plan (subscription). Returns the URL of
/// the hosted checkout page to send the browser to: Stripe's, or the sandbox page.
#[utoipa::path(
    tag = "billing",
    request_body = CheckoutSessionRequest,
    responses(
        (status = 200, body = CheckoutSessionResponse),
        CreateCheckoutSessionErrors,
    ),
    security(("bearer" = []))
)]
#[post("/billing/checkout-session")]
pub async fn create_checkout_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CheckoutSessionRequest>,
) -> Result<web::Json<CheckoutSessionResponse>, ApiError> {
    let key = crate::idempotency::key_from_headers(req.headers())?;
    let key = key.as_ref().map(|k| k.as_str());
    let returns = service::ReturnUrls::default();
    let session = checkout(&state, caller.0.user_id, &body.price_id, key, &returns).await?;
    Ok(web::Json(session))
}

/// Opens a checkout for a wallet's owner: Stripe's in Stripe mode, the sandbox page otherwise.
pub(crate) async fn checkout(
    state: &AppState,
    owner: uuid::Uuid,
    price_id: &str,
    key: Option<&str>,
    returns: &service::ReturnUrls,
) -> Result<CheckoutSessionResponse, ApiError> {
    let site = &state.settings.site_url;
    let (db, clock) = (&state.db, &state.clock);
    Ok(match state.payments.stripe() {
        Some(gateway) => {
            service::create_stripe_checkout(db, clock, gateway, site, owner, price_id, key, returns).await?
        }
        None => service::create_sandbox_checkout(db, clock, site, owner, price_id, returns).await?,
    })
}

async fn portal_link(state: &AppState, caller: &SessionUser) -> Result<PortalLinkResponse, ApiError> {
    if let Some(gateway) = state.payments.stripe() {
        let return_url = &state.settings.billing_portal_return_url;
        return Ok(service::stripe_portal_link(&state.db, gateway, caller.0.user_id, return_url).await?);
    }
    let token = super::portal::mint_link(&state.db, &state.clock, caller.0.user_id).await?;
    Ok(PortalLinkResponse { url: format!("{}/sandbox/portal?token={token}", state.settings.site_url) })
}

/// A link to the billing portal, where a subscriber changes or cancels their plan. Needs a
/// signed-in session (not an API key). In sandbox mode the link opens once, within 5 minutes,
/// and grants the portal and nothing else.
#[utoipa::path(
    tag = "billing",
    responses(
        (status = 200, body = PortalLinkResponse),
        PortalLinkErrors,
    ),
    security(("bearer" = []))
)]
#[post("/billing/portal-link")]
pub async fn create_portal_link(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<web::Json<PortalLinkResponse>, ApiError> {
    Ok(web::Json(portal_link(&state, &caller).await?))
}

crate::openapi::errors!(PortalLinkErrors: SessionRequired, NoCustomer, StripeUnavailable);

/// The same link, by GET, as the seed allowed.
#[utoipa::path(
    tag = "billing",
    responses(
        (status = 200, body = PortalLinkResponse),
        PortalLinkErrors,
    ),
    security(("bearer" = []))
)]
#[get("/billing/portal-link")]
pub async fn get_portal_link(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<web::Json<PortalLinkResponse>, ApiError> {
    Ok(web::Json(portal_link(&state, &caller).await?))
}

/// The caller's plan: status, current period, cancellation at period end.
#[utoipa::path(tag = "billing", responses((status = 200, body = SubscriptionResponse)), security(("bearer" = [])))]
#[get("/billing/subscription")]
pub async fn get_subscription(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<web::Json<SubscriptionResponse>, ApiError> {
    Ok(web::Json(service::subscription(&state.db, caller.0.user_id).await?))
}

crate::openapi::errors!(SyncPricesErrors: SandboxMode, StripeUnavailable);

/// Mirror Stripe's active prices into the catalog now (admin); `product.*` and `price.*` events
/// keep it fresh afterwards.
#[utoipa::path(
    tag = "billing",
    responses(
        (status = 200, body = SyncPricesResponse),
        SyncPricesErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/billing/sync-prices")]
pub async fn sync_prices(state: web::Data<AppState>, _admin: Admin) -> Result<web::Json<SyncPricesResponse>, ApiError> {
    let Some(gateway) = state.payments.stripe() else {
        return Err(ApiError::new(ErrorCode::SandboxMode, "Sandbox mode has no Stripe account to sync prices from."));
    };
    let (synced, deactivated) = service::sync_prices(&state.db, &state.clock, gateway).await?;
    Ok(web::Json(SyncPricesResponse { synced, deactivated }))
}

impl From<WebhookFailure> for ApiError {
    fn from(err: WebhookFailure) -> Self {
        let detail = err.to_string();
        match err {
            WebhookFailure::MissingSignature => ApiError::new(ErrorCode::MissingSignature, detail),
            WebhookFailure::BadSignature => ApiError::new(ErrorCode::InvalidSignature, detail),
            WebhookFailure::StaleSignature => ApiError::new(ErrorCode::StaleSignature, detail),
            WebhookFailure::NotConfigured => ApiError::new(ErrorCode::WebhooksNotConfigured, detail),
            WebhookFailure::InvalidPayload(_) => ApiError::new(ErrorCode::InvalidPayload, detail),
            WebhookFailure::Apply(message) => ApiError::internal(anyhow::anyhow!("webhook: {message}")),
            WebhookFailure::SubscriptionTie(_) => ApiError::internal(anyhow::anyhow!("webhook: {detail}")),
            WebhookFailure::Database(e) => e.into(),
        }
    }
}

async fn receive_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidPayload, "The body is not UTF-8 text."))?;
    let signature = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let secret = state.settings.stripe_webhook_secret.as_ref().map(|s| s.expose());
    let result = webhooks::receive(&state.db, &state.clock, state.payments.stripe(), secret, signature, payload).await;
    let outcome = match &result {
        Ok(delivery) => delivery.as_str(),
        Err(WebhookFailure::Apply(_) | WebhookFailure::Database(_) | WebhookFailure::SubscriptionTie(_)) => "failed",
        Err(_) => "rejected",
    };
    state.metrics.webhook_events.with_label_values(&[outcome]).inc();
    let delivery = result?;
    let status = delivery.as_str();
    Ok(HttpResponse::Ok().json(WebhookAck { received: true, status: status.to_owned() }))
}

/// Stripe's webhook endpoint. The signature (`Stripe-Signature`) is checked over the raw body
/// before anything is parsed; each event is applied once, whatever the order and however often
/// it arrives. Enable: `checkout.session.completed`, `checkout.session.async_payment_succeeded`,
/// `checkout.session.async_payment_failed`, `invoice.paid`, `customer.subscription.created`,
/// `customer.subscription.updated`, `customer.subscription.deleted`, `charge.refunded`,
/// `charge.dispute.created`, `charge.dispute.closed`, `price.*`, `product.*`.
#[utoipa::path(
    tag = "billing",
    request_body(content = String, content_type = "application/json", description = "The event, exactly as Stripe sent it."),
    params(("Stripe-Signature" = String, Header, description = "`t=…,v1=…`")),
    responses(
        (status = 200, description = "Acknowledged: processed, ignored (unused type) or duplicate.", body = WebhookAck),
        WebhookErrors,
    )
)]
#[post("/webhooks/stripe")]
pub async fn stripe_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive_webhook(req, state, body).await
}

crate::openapi::errors!(WebhookErrors:
    MissingSignature, InvalidSignature, StaleSignature, InvalidPayload, WebhooksNotConfigured,
);

/// The seed's webhook path, so an existing Stripe endpoint keeps working.
#[utoipa::path(
    tag = "billing",
    request_body(content = String, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header)),
    responses(
        (status = 200, body = WebhookAck),
        WebhookErrors,
    )
)]
#[post("/api/webhooks/stripe")]
pub async fn stripe_webhook_legacy(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive_webhook(req, state, body).await
}

/// Inbox filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StripeEventQuery {
    /// `processed`, `ignored` or `failed`.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// The Stripe event inbox, newest first (admin).
#[utoipa::path(
    tag = "admin",
    params(StripeEventQuery),
    responses(
        (status = 200, body = StripeEventPage),
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/stripe-events")]
pub async fn list_stripe_events(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<StripeEventQuery>,
) -> Result<web::Json<StripeEventPage>, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "range", "limit must be between 1 and 200"));
    }
    Ok(web::Json(service::list_events(&state.db, query.status, query.cursor, limit).await?))
}

crate::openapi::errors!(RetryStripeEventErrors: EventNotFound);

/// Re-apply an event that failed (admin).
#[utoipa::path(
    tag = "admin",
    params(("id" = String, Path, description = "The Stripe event id, `evt_…`")),
    responses(
        (status = 200, body = WebhookAck),
        RetryStripeEventErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/admin/stripe-events/{id}/retry")]
pub async fn retry_stripe_event(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<web::Json<WebhookAck>, ApiError> {
    if !service::event_exists(&state.db, &id).await? {
        return Err(ApiError::new(ErrorCode::EventNotFound, "No such event in the inbox."));
    }
    let status = webhooks::retry(&state.db, &state.clock, state.payments.stripe(), &id).await?.as_str();
    Ok(web::Json(WebhookAck { received: true, status: status.to_owned() }))
}
