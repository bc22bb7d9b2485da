//! The customer routes: the product's backend (server key) or an administrator acting on one
//! customer, named by the product's own id. Each credits route finds the customer's wallet and
//! runs what its `/credits/*` twin runs (`credits::handlers::wallet`).

use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Customer, CustomerPage, CustomerQuery, UpsertCustomerRequest};
use crate::{
    auth::extractors::{
        Admin, BillingWrite, CreditsGrant, CreditsRead, CreditsSpend, CustomersRead, CustomersWrite, ServerCaller,
    },
    billing::{dto::CheckoutSessionResponse, portal, service as billing},
    credits::{
        check::{CheckRequest, CheckResponse},
        dto::*,
        grants::Recipient,
        handlers::{WalletRoute, wallet},
    },
    error::{ApiError, ErrorCode, FieldError},
    idempotency,
    state::AppState,
};

crate::openapi::errors!(UpsertCustomerErrors: MissingScope, ServerKeyRequired);

/// Create the customer with this external id, or update it (a server key with
/// `customers:write`). A field left out keeps its value; `null` clears it. Safe to retry.
#[utoipa::path(
    tag = "customers",
    request_body = UpsertCustomerRequest,
    params(("external_id" = String, Path, description = "The product's own id for the customer: 1 to 255 printable characters, URL-encoded.")),
    responses(
        (status = 200, description = "Updated.", body = Customer),
        (status = 201, description = "Created, with an empty wallet.", body = Customer),
        UpsertCustomerErrors,
    ),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[put("/customers/{external_id}")]
pub async fn upsert_customer(
    state: web::Data<AppState>,
    _caller: ServerCaller<CustomersWrite>,
    external_id: web::Path<String>,
    body: web::Json<UpsertCustomerRequest>,
) -> Result<HttpResponse, ApiError> {
    let external_id = super::parse_external_id(&external_id)?;
    let (customer, created) = super::upsert(&state.db, &state.clock, &external_id, body.into_inner()).await?;
    Ok(if created { HttpResponse::Created().json(customer) } else { HttpResponse::Ok().json(customer) })
}

crate::openapi::errors!(GetCustomerErrors: MissingScope, ServerKeyRequired, CustomerNotFound);

/// A customer by the product's id (`customers:read`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path)),
    responses((status = 200, body = Customer), GetCustomerErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}")]
pub async fn get_customer(
    state: web::Data<AppState>,
    _caller: ServerCaller<CustomersRead>,
    external_id: web::Path<String>,
) -> Result<web::Json<Customer>, ApiError> {
    let found = super::find(&state.db, &external_id).await?;
    super::get_by_id(&state.db, found.id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::new(ErrorCode::CustomerNotFound, "No such customer."))
}

crate::openapi::errors!(ListCustomersErrors: MissingScope, ServerKeyRequired);

/// Customers, newest first, paged by cursor; filter by `email`, or search with `q`
/// (`customers:read`).
#[utoipa::path(
    tag = "customers",
    params(CustomerQuery),
    responses((status = 200, body = CustomerPage), ListCustomersErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers")]
pub async fn list_customers(
    state: web::Data<AppState>,
    _caller: ServerCaller<CustomersRead>,
    query: web::Query<CustomerQuery>,
) -> Result<web::Json<CustomerPage>, ApiError> {
    Ok(web::Json(super::list(&state.db, query.into_inner()).await?))
}

crate::openapi::errors!(AdminCustomerErrors: AdminRequired, CustomerNotFound);

/// A customer by Tollgate's id (admin), for those with no external id (people who signed up).
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Customer), AdminCustomerErrors),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/customers/{id}")]
pub async fn admin_get_customer(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<Uuid>,
) -> Result<web::Json<Customer>, ApiError> {
    super::get_by_id(&state.db, id.into_inner())
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::new(ErrorCode::CustomerNotFound, "No customer has this id."))
}

/// A customer's history by Tollgate's id (admin).
#[utoipa::path(
    tag = "customers",
    params(("id" = Uuid, Path), LedgerQuery),
    responses((status = 200, body = LedgerPage), AdminCustomerErrors),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/customers/{id}/ledger")]
pub async fn admin_customer_ledger(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<Uuid>,
    query: web::Query<LedgerQuery>,
) -> Result<web::Json<LedgerPage>, ApiError> {
    let id = id.into_inner();
    if super::get_by_id(&state.db, id).await?.is_none() {
        return Err(ApiError::new(ErrorCode::CustomerNotFound, "No customer has this id."));
    }
    let route = WalletRoute {
        owner: id,
        idempotency_scope: format!("{}:customer:{id}", admin.0.idempotency_scope()),
        limit_key: format!("admin:customer:{id}"),
    };
    Ok(web::Json(wallet::ledger(&state, &route, query.into_inner()).await?))
}

crate::openapi::errors!(CustomerReadErrors: MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound);

/// The customer's balance, what they can spend, and lots about to expire (`credits:read`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path)),
    responses((status = 200, body = BalanceResponse), CustomerReadErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/balance")]
pub async fn customer_balance(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
) -> Result<web::Json<BalanceResponse>, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::balance(&state, &route).await?))
}

crate::openapi::errors!(CustomerSpendErrors:
    IdempotencyKeyRequired, InsufficientCredits, OutstandingDebt, MissingScope, ServerKeyRequired, CustomerNotFound,
    WalletNotFound, IdempotencyKeyReused,
);

/// Spend the customer's credits (`credits:spend`), exactly as `POST /credits/spend` does.
/// Idempotency keys are scoped to the server key and the customer.
#[utoipa::path(
    tag = "customers",
    request_body = SpendRequest,
    params(
        ("external_id" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per spend; reuse it to retry safely."),
    ),
    responses((status = 200, description = "Spent.", body = SpendResponse), CustomerSpendErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/spend")]
pub async fn customer_spend(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsSpend>,
    external_id: web::Path<String>,
    body: web::Json<SpendRequest>,
) -> Result<HttpResponse, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    wallet::spend(&req, &state, &route, body.into_inner()).await
}

crate::openapi::errors!(CustomerCheckErrors: MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound);

/// Would this spend pass now (`credits:read`)? Writes nothing; `reason` names what would refuse
/// it.
#[utoipa::path(
    tag = "customers",
    request_body = CheckRequest,
    params(("external_id" = String, Path)),
    responses((status = 200, body = CheckResponse), CustomerCheckErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/check")]
pub async fn customer_check(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
    body: web::Json<CheckRequest>,
) -> Result<web::Json<CheckResponse>, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::check(&state, &route, body.into_inner()).await?))
}

crate::openapi::errors!(CustomerGrantErrors:
    IdempotencyKeyRequired, MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound, IdempotencyKeyReused,
);

/// Grant the customer credits (`credits:grant`), as a lot with optional expiry and priority.
#[utoipa::path(
    tag = "customers",
    request_body = CustomerGrantRequest,
    params(("external_id" = String, Path), ("Idempotency-Key" = String, Header, description = "Unique per grant.")),
    responses((status = 200, description = "Granted.", body = GrantResponse), CustomerGrantErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/grant")]
pub async fn customer_grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsGrant>,
    external_id: web::Path<String>,
    body: web::Json<CustomerGrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    state.limits.check_spend(&route.limit_key)?;
    let key = idempotency::require_key(req.headers())?;
    let body = body.into_inner();
    let fingerprint = body.clone();
    wallet::grant(&req, &state, route.idempotency_scope, key, Recipient::Id(route.owner), body, &fingerprint).await
}

crate::openapi::errors!(CustomerHoldErrors:
    IdempotencyKeyRequired, InsufficientCredits, OutstandingDebt, MissingScope, ServerKeyRequired, CustomerNotFound,
    WalletNotFound, IdempotencyKeyReused,
);

/// Reserve the customer's credits for work whose cost is known only afterwards
/// (`credits:spend`).
#[utoipa::path(
    tag = "customers",
    request_body = CreateHoldRequest,
    params(("external_id" = String, Path), ("Idempotency-Key" = String, Header, description = "Unique per hold.")),
    responses((status = 200, description = "Held.", body = HoldResponse), CustomerHoldErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/holds")]
pub async fn customer_create_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsSpend>,
    external_id: web::Path<String>,
    body: web::Json<CreateHoldRequest>,
) -> Result<HttpResponse, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    wallet::create_hold(&req, &state, &route, body.into_inner()).await
}

crate::openapi::errors!(CustomerGetHoldErrors:
    MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound, HoldNotFound,
);

/// A hold of the customer's (`credits:read`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = HoldView), CustomerGetHoldErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/holds/{id}")]
pub async fn customer_get_hold(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    path: web::Path<(String, Uuid)>,
) -> Result<web::Json<HoldView>, ApiError> {
    let (external_id, id) = path.into_inner();
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::get_hold(&state, &route, id).await?))
}

crate::openapi::errors!(CustomerCaptureErrors:
    InsufficientCredits, OutstandingDebt, MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound,
    HoldNotFound, IdempotencyKeyReused, HoldExpired, HoldNotOpen, HoldAlreadyCaptured, HoldOwnedByGateway,
);

/// Spend the actual cost of a hold (at most the hold) and release the rest (`credits:spend`).
#[utoipa::path(
    tag = "customers",
    request_body = CaptureHoldRequest,
    params(("external_id" = String, Path), ("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, description = "Captured.", body = HoldResponse), CustomerCaptureErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/holds/{id}/capture")]
pub async fn customer_capture_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsSpend>,
    path: web::Path<(String, Uuid)>,
    body: web::Json<CaptureHoldRequest>,
) -> Result<HttpResponse, ApiError> {
    let (external_id, id) = path.into_inner();
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    wallet::capture_hold(&req, &state, &route, id, body.into_inner()).await
}

crate::openapi::errors!(CustomerReleaseErrors:
    MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound, HoldNotFound, IdempotencyKeyReused,
    HoldAlreadyCaptured, HoldOwnedByGateway,
);

/// Release a hold of the customer's without spending (`credits:spend`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path), ("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, description = "Released (or already released or expired).", body = HoldResponse),
        CustomerReleaseErrors,
    ),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/holds/{id}/release")]
pub async fn customer_release_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsSpend>,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (external_id, id) = path.into_inner();
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    wallet::release_hold(&req, &state, &route, id).await
}

/// The customer's history, newest first, paged by cursor (`credits:read`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path), LedgerQuery),
    responses((status = 200, body = LedgerPage), CustomerReadErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/ledger")]
pub async fn customer_ledger(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
    query: web::Query<LedgerQuery>,
) -> Result<web::Json<LedgerPage>, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::ledger(&state, &route, query.into_inner()).await?))
}

/// The customer's usage by day or feature (`credits:read`).
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageResponse), CustomerReadErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/usage")]
pub async fn customer_usage(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result<web::Json<UsageResponse>, ApiError> {
    let route = super::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::usage(&state, &route, query.into_inner()).await?))
}

/// `POST /customers/{external_id}/checkout-session`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CustomerCheckoutRequest {
    /// A price from `GET /billing/catalog`.
    #[schema(example = "price_pack_1000")]
    pub price_id: String,
    /// Where the browser goes after paying: on `SITE_URL` or an `ALLOWED_RETURN_ORIGINS` origin.
    /// Stripe replaces `{CHECKOUT_SESSION_ID}` in it.
    #[schema(example = "https://app.example.com/billing?paid=1")]
    pub success_url: Option<String>,
    /// Where the browser goes if the customer cancels; same rule.
    #[schema(example = "https://app.example.com/billing")]
    pub cancel_url: Option<String>,
}

/// Checks that a return URL the product gave is on an origin it may send customers back to.
pub fn check_return_url(state: &AppState, field: &str, raw: &str) -> Result<String, FieldError> {
    let refuse = |message: String| FieldError { field: field.into(), code: "return_url_not_allowed".into(), message };
    let url = url::Url::parse(raw).map_err(|_| refuse(format!("{field} must be an absolute http(s) URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refuse(format!("{field} must be an absolute http(s) URL")));
    }
    let origin = url.origin().ascii_serialization();
    if state.settings.allowed_return_origins().contains(&origin) {
        Ok(url.to_string())
    } else {
        Err(refuse(format!(
            "{field} must be on {}; add its origin ({origin}) to ALLOWED_RETURN_ORIGINS to allow it",
            state.settings.allowed_return_origins().join(" or ")
        )))
    }
}

fn return_urls<const N: usize>(
    state: &AppState,
    urls: [(&str, Option<&String>); N],
) -> Result<[Option<String>; N], ApiError> {
    let mut errors = Vec::new();
    let checked = urls
        .map(|(field, url)| url.and_then(|raw| check_return_url(state, field, raw).map_err(|e| errors.push(e)).ok()));
    if errors.is_empty() { Ok(checked) } else { Err(ApiError::validation(errors)) }
}

crate::openapi::errors!(CustomerCheckoutErrors:
    MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound, AlreadySubscribed, StripeUnavailable,
);

/// Start a checkout for the customer (`billing:write`): returns the URL of the hosted checkout
/// page (Stripe's, or the sandbox page) for the product to send the browser to.
#[utoipa::path(
    tag = "customers",
    request_body = CustomerCheckoutRequest,
    params(("external_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CheckoutSessionResponse), CustomerCheckoutErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/checkout-session")]
pub async fn customer_checkout_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    _caller: ServerCaller<BillingWrite>,
    external_id: web::Path<String>,
    body: web::Json<CustomerCheckoutRequest>,
) -> Result<web::Json<CheckoutSessionResponse>, ApiError> {
    let customer = super::find(&state.db, &external_id).await?;
    let [success, cancel] =
        return_urls(&state, [("success_url", body.success_url.as_ref()), ("cancel_url", body.cancel_url.as_ref())])?;
    let returns = billing::ReturnUrls { success, cancel };
    let key = idempotency::key_from_headers(req.headers())?;
    Ok(web::Json(
        crate::billing::handlers::checkout(
            &state,
            customer.id,
            &body.price_id,
            key.as_ref().map(|k| k.as_str()),
            &returns,
        )
        .await?,
    ))
}

/// `POST /customers/{external_id}/portal-session`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PortalSessionRequest {
    /// Where the hosted pages' "Back to …" link goes: on `SITE_URL` or an
    /// `ALLOWED_RETURN_ORIGINS` origin.
    #[schema(example = "https://app.example.com/account")]
    pub return_url: Option<String>,
}

/// A single-use link to Tollgate's hosted pages for one customer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortalSessionResponse {
    /// Open it in the customer's browser within 5 minutes; it works once.
    #[schema(example = "http://127.0.0.1:8080/hosted/open?token=…")]
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

crate::openapi::errors!(CustomerPortalErrors: MissingScope, ServerKeyRequired, CustomerNotFound);

/// A link that opens Tollgate's hosted pages signed in as this customer and no one else:
/// balance, buying credits, subscription, history and usage (`billing:write`). Single use,
/// valid 5 minutes; the session it opens lasts 30 minutes and works only on those pages.
#[utoipa::path(
    tag = "customers",
    request_body = PortalSessionRequest,
    params(("external_id" = String, Path)),
    responses((status = 200, body = PortalSessionResponse), CustomerPortalErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/customers/{external_id}/portal-session")]
pub async fn customer_portal_session(
    state: web::Data<AppState>,
    _caller: ServerCaller<BillingWrite>,
    external_id: web::Path<String>,
    body: Option<web::Json<PortalSessionRequest>>,
) -> Result<web::Json<PortalSessionResponse>, ApiError> {
    let customer = super::find(&state.db, &external_id).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let [return_url] = return_urls(&state, [("return_url", body.return_url.as_ref())])?;
    let (token, expires_at) = portal::mint_hosted_link(&state.db, &state.clock, customer.id, return_url).await?;
    Ok(web::Json(PortalSessionResponse {
        url: format!("{}/hosted/open?token={token}", state.settings.site_url),
        expires_at,
    }))
}
