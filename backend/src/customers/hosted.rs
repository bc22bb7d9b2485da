//! Tollgate's hosted pages for one customer: what the product's "Billing" link opens. The
//! product's backend mints a single-use link (`POST /customers/{external_id}/portal-session`);
//! opening it (`GET /hosted/open`) trades it for a session cookie scoped to
//! `/api/v1/hosted` and sends the browser to the SPA's `/hosted` page, which reads the routes
//! below with that cookie. The cookie is not a bearer credential: nothing else accepts it, and
//! it opens nothing but this customer's balance, history, usage, subscription and checkout.

use std::{future::Future, pin::Pin};

use actix_web::{
    FromRequest, HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite},
    dev::Payload,
    get,
    http::header,
    post, web,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    billing::{
        dto::{CheckoutSessionRequest, CheckoutSessionResponse, SubscriptionResponse},
        portal::{self, HostedSession},
        service as billing,
    },
    credits::{
        dto::*,
        handlers::{WalletRoute, wallet},
    },
    entities::customers,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// Where the hosted session cookie is sent: the hosted API and nothing else.
const COOKIE_PATH: &str = "/api/v1/hosted";

#[derive(Debug, Deserialize)]
pub struct OpenQuery {
    token: Option<String>,
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Opens a hosted link: a live, unused one gives the browser its session cookie; any other
/// sends it to the page's "link expired" state. Either way the token leaves the address bar.
#[get("/hosted/open")]
pub async fn open(state: web::Data<AppState>, query: web::Query<OpenQuery>) -> Result<HttpResponse, ApiError> {
    let opened = match &query.token {
        Some(token) => portal::open_hosted_link(&state.db, &state.clock, token).await?,
        None => None,
    };
    let Some(token) = opened else {
        return Ok(see_other("/hosted?error=link_expired"));
    };
    let cookie = Cookie::build(portal::HOSTED_COOKIE, token)
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(state.settings.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(portal::SESSION_TTL.num_seconds()))
        .finish();
    let mut response = see_other("/hosted");
    response.add_cookie(&cookie).map_err(ApiError::internal)?;
    Ok(response)
}

/// The customer whose hosted session the request's cookie carries.
pub struct HostedCustomer(pub HostedSession);

impl HostedCustomer {
    fn wallet(&self) -> WalletRoute {
        let id = self.0.customer_id;
        WalletRoute { owner: id, idempotency_scope: format!("hosted:{id}"), limit_key: format!("hosted:{id}") }
    }
}

fn session_required() -> ApiError {
    ApiError::new(
        ErrorCode::PortalSessionRequired,
        "This page's session has ended or was never opened: go back to the product and open it again.",
    )
}

impl FromRequest for HostedCustomer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = crate::auth::extractors::state(&req)?;
            let Some(cookie) = req.cookie(portal::HOSTED_COOKIE) else {
                return Err(session_required());
            };
            portal::hosted_session(&state.db, &state.clock, cookie.value())
                .await?
                .map(HostedCustomer)
                .ok_or_else(session_required)
        })
    }
}

/// Who the hosted pages are for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostedCustomerView {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// `GET /hosted/session`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostedSessionResponse {
    pub customer: HostedCustomerView,
    /// Where the "Back to …" link goes, as the product gave it.
    pub return_url: Option<String>,
    /// The return URL's host, to name the product in that link.
    #[schema(example = "app.example.com")]
    pub return_label: Option<String>,
    /// When the session ends.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Whose hosted pages these are, and where to go back to (hosted session cookie).
#[utoipa::path(tag = "hosted", responses((status = 200, body = HostedSessionResponse)), security(("hosted_session" = [])))]
#[get("/hosted/session")]
pub async fn session(
    state: web::Data<AppState>,
    caller: HostedCustomer,
) -> Result<web::Json<HostedSessionResponse>, ApiError> {
    use sea_orm::EntityTrait;
    let customer =
        customers::Entity::find_by_id(caller.0.customer_id).one(&state.db).await?.ok_or_else(session_required)?;
    let return_label = caller
        .0
        .return_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    Ok(web::Json(HostedSessionResponse {
        customer: HostedCustomerView {
            id: customer.id,
            external_id: customer.external_id,
            email: customer.email,
            name: customer.name,
        },
        return_url: caller.0.return_url.clone(),
        return_label,
        expires_at: caller.0.expires_at,
    }))
}

/// The customer's balance (hosted session cookie).
#[utoipa::path(tag = "hosted", responses((status = 200, body = BalanceResponse)), security(("hosted_session" = [])))]
#[get("/hosted/balance")]
pub async fn balance(
    state: web::Data<AppState>,
    caller: HostedCustomer,
) -> Result<web::Json<BalanceResponse>, ApiError> {
    Ok(web::Json(wallet::balance(&state, &caller.wallet()).await?))
}

/// The customer's history (hosted session cookie).
#[utoipa::path(tag = "hosted", params(LedgerQuery), responses((status = 200, body = LedgerPage)), security(("hosted_session" = [])))]
#[get("/hosted/ledger")]
pub async fn ledger(
    state: web::Data<AppState>,
    caller: HostedCustomer,
    query: web::Query<LedgerQuery>,
) -> Result<web::Json<LedgerPage>, ApiError> {
    Ok(web::Json(wallet::ledger(&state, &caller.wallet(), query.into_inner()).await?))
}

/// The customer's usage (hosted session cookie).
#[utoipa::path(tag = "hosted", params(UsageQuery), responses((status = 200, body = UsageResponse)), security(("hosted_session" = [])))]
#[get("/hosted/usage")]
pub async fn usage(
    state: web::Data<AppState>,
    caller: HostedCustomer,
    query: web::Query<UsageQuery>,
) -> Result<web::Json<UsageResponse>, ApiError> {
    Ok(web::Json(wallet::usage(&state, &caller.wallet(), query.into_inner()).await?))
}

/// The customer's plan (hosted session cookie).
#[utoipa::path(tag = "hosted", responses((status = 200, body = SubscriptionResponse)), security(("hosted_session" = [])))]
#[get("/hosted/subscription")]
pub async fn subscription(
    state: web::Data<AppState>,
    caller: HostedCustomer,
) -> Result<web::Json<SubscriptionResponse>, ApiError> {
    Ok(web::Json(billing::subscription(&state.db, caller.0.customer_id).await?))
}

crate::openapi::errors!(HostedCheckoutErrors: AlreadySubscribed, StripeUnavailable);

/// Buy a pack or a plan from the hosted pages (hosted session cookie): returns the checkout URL;
/// it comes back to `/hosted`.
#[utoipa::path(
    tag = "hosted",
    request_body = CheckoutSessionRequest,
    responses((status = 200, body = CheckoutSessionResponse), HostedCheckoutErrors),
    security(("hosted_session" = []))
)]
#[post("/hosted/checkout-session")]
pub async fn checkout(
    state: web::Data<AppState>,
    caller: HostedCustomer,
    body: web::Json<CheckoutSessionRequest>,
) -> Result<web::Json<CheckoutSessionResponse>, ApiError> {
    let site = &state.settings.site_url;
    let returns = billing::ReturnUrls {
        success: Some(format!("{site}/hosted?checkout=success&session_id={{CHECKOUT_SESSION_ID}}")),
        cancel: Some(format!("{site}/hosted?checkout=cancelled")),
    };
    let owner = caller.0.customer_id;
    Ok(web::Json(crate::billing::handlers::checkout(&state, owner, &body.price_id, None, &returns).await?))
}
