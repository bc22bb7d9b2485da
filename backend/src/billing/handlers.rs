//! HTTP handlers for the billing API.

use actix_web::{get, post, web};

use super::{
    dto::*,
    service::{self, BillingError},
};
use crate::{
    auth::extractors::{Authenticated, SessionUser},
    error::{ApiError, Problem},
    state::AppState,
};

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        let detail = err.to_string();
        match err {
            BillingError::UnknownPrice(_) => ApiError::field("price_id", "unknown_price", detail),
            BillingError::AlreadySubscribed => ApiError::conflict("already_subscribed", detail),
            BillingError::SessionNotFound => {
                ApiError::not_found("checkout_session_not_found", detail)
            }
            BillingError::SessionClosed(_) => ApiError::conflict("checkout_session_closed", detail),
            BillingError::NoSubscription => ApiError::not_found("subscription_not_found", detail),
            BillingError::WalletNotFound => ApiError::not_found("wallet_not_found", detail),
            BillingError::Database(e) => e.into(),
        }
    }
}

/// The packs and plans on offer (public).
#[utoipa::path(tag = "billing", responses((status = 200, body = CatalogResponse)))]
#[get("/billing/catalog")]
pub async fn get_catalog(
    state: web::Data<AppState>,
) -> Result<web::Json<CatalogResponse>, ApiError> {
    Ok(web::Json(
        service::catalog(&state.db, state.settings.stripe_mode()).await?,
    ))
}

/// Start a checkout for a pack (one-time payment) or a plan (subscription). Returns the URL of
/// the hosted checkout page to send the browser to: Stripe's, or the sandbox page.
#[utoipa::path(
    tag = "billing",
    request_body = CheckoutSessionRequest,
    responses(
        (status = 200, body = CheckoutSessionResponse),
        (status = 409, description = "`already_subscribed`: change plans in the portal", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (`unknown_price`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/billing/checkout-session")]
pub async fn create_checkout_session(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CheckoutSessionRequest>,
) -> Result<web::Json<CheckoutSessionResponse>, ApiError> {
    let session = service::create_sandbox_checkout(
        &state.db,
        &state.settings.site_url,
        caller.0.user_id,
        &body.price_id,
    )
    .await?;
    Ok(web::Json(session))
}

fn portal_link(state: &AppState, caller: &Authenticated) -> Result<PortalLinkResponse, ApiError> {
    let token = state
        .jwt
        .issue(caller.0.user_id, caller.0.role)
        .map_err(ApiError::internal)?;
    Ok(PortalLinkResponse {
        url: format!("{}/sandbox/portal?token={token}", state.settings.site_url),
    })
}

/// A link to the billing portal, where a subscriber changes or cancels their plan.
#[utoipa::path(tag = "billing", responses((status = 200, body = PortalLinkResponse)), security(("bearer" = [])))]
#[post("/billing/portal-link")]
pub async fn create_portal_link(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<web::Json<PortalLinkResponse>, ApiError> {
    Ok(web::Json(portal_link(&state, &caller)?))
}

/// The same link, by GET, as the seed allowed.
#[utoipa::path(tag = "billing", responses((status = 200, body = PortalLinkResponse)), security(("bearer" = [])))]
#[get("/billing/portal-link")]
pub async fn get_portal_link(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<web::Json<PortalLinkResponse>, ApiError> {
    Ok(web::Json(portal_link(&state, &caller)?))
}

/// The caller's plan: status, current period, cancellation at period end.
#[utoipa::path(tag = "billing", responses((status = 200, body = SubscriptionResponse)), security(("bearer" = [])))]
#[get("/billing/subscription")]
pub async fn get_subscription(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<web::Json<SubscriptionResponse>, ApiError> {
    Ok(web::Json(
        service::subscription(&state.db, caller.0.user_id).await?,
    ))
}
