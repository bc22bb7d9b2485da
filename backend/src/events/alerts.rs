//! Low-balance alerts: up to five thresholds per wallet (absolute credit amounts). The ledger's
//! writer reads them with the wallet, under its lock, and records `balance.low` in the same
//! transaction as the spend or hold whose available credits fall from above a threshold to or
//! below it: once per crossing, whatever runs at once, and again only after they rose above it.

use actix_web::{get, put, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::extractors::{CreditsRead, CustomersWrite, Scoped, ServerCaller},
    credits::{core::thresholds, handlers::WalletRoute},
    customers,
    domain::ledger::available,
    entities::accounts,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// The most thresholds a wallet may have.
pub const MAX_THRESHOLDS: usize = 5;

/// `PUT …/alerts`: the thresholds, replacing the ones set before (`[]` clears them).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsRequest {
    /// Up to 5 credit amounts (0 to 1,000,000,000,000), in any order.
    #[schema(example = json!([100, 20]))]
    pub thresholds: Vec<i64>,
}

/// A wallet's alerts and where it stands against them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsResponse {
    /// Highest first.
    pub thresholds: Vec<i64>,
    /// What the wallet can spend now.
    pub available: i64,
    /// The thresholds available credits are at or below now (a banner's reason).
    pub below: Vec<i64>,
}

fn parse(request: AlertsRequest) -> Result<Vec<i64>, ApiError> {
    if request.thresholds.len() > MAX_THRESHOLDS {
        return Err(ApiError::field("thresholds", "length", "thresholds may hold at most 5 amounts"));
    }
    if request.thresholds.iter().any(|t| !(0..=crate::domain::Credits::MAX_PER_REQUEST).contains(t)) {
        return Err(ApiError::field("thresholds", "range", "thresholds must be between 0 and 1000000000000"));
    }
    let mut thresholds = request.thresholds;
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    thresholds.dedup();
    Ok(thresholds)
}

async fn wallet(state: &AppState, owner: Uuid) -> Result<accounts::Model, ApiError> {
    crate::credits::store::find_wallet(&state.db, owner)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::WalletNotFound, "the wallet does not exist"))
}

fn answer(wallet: &accounts::Model) -> AlertsResponse {
    let thresholds = thresholds(wallet);
    let available = available(wallet);
    let below = thresholds.iter().copied().filter(|t| available <= *t).collect();
    AlertsResponse { thresholds, available, below }
}

async fn get_alerts(state: &AppState, route: &WalletRoute) -> Result<AlertsResponse, ApiError> {
    Ok(answer(&wallet(state, route.owner).await?))
}

async fn set_alerts(state: &AppState, route: &WalletRoute, request: AlertsRequest) -> Result<AlertsResponse, ApiError> {
    let thresholds = parse(request)?;
    let stored = (!thresholds.is_empty()).then(|| serde_json::to_string(&thresholds).unwrap_or_default());
    let done = accounts::Entity::update_many()
        .col_expr(accounts::Column::LowBalanceThresholds, Expr::value(stored))
        .filter(accounts::Column::UserId.eq(route.owner))
        .exec(&state.db)
        .await?;
    if done.rows_affected != 1 {
        return Err(ApiError::new(ErrorCode::WalletNotFound, "the wallet does not exist"));
    }
    Ok(answer(&wallet(state, route.owner).await?))
}

crate::openapi::errors!(AlertErrors: InsufficientScope, WalletNotFound);

/// The caller's low-balance alerts.
#[utoipa::path(tag = "credits", operation_id = "get_alerts", responses((status = 200, body = AlertsResponse), AlertErrors), security(("bearer" = [])))]
#[get("/credits/alerts")]
pub async fn get_own_alerts(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
) -> Result<web::Json<AlertsResponse>, ApiError> {
    Ok(web::Json(get_alerts(&state, &WalletRoute::own(&caller.0)).await?))
}

/// Sets the caller's low-balance alerts: `balance.low` is recorded when available credits fall to
/// or below one (once per crossing).
#[utoipa::path(
    tag = "credits",
    operation_id = "set_alerts",
    request_body = AlertsRequest,
    responses((status = 200, body = AlertsResponse), AlertErrors),
    security(("bearer" = []))
)]
#[put("/credits/alerts")]
pub async fn set_own_alerts(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    body: web::Json<AlertsRequest>,
) -> Result<web::Json<AlertsResponse>, ApiError> {
    Ok(web::Json(set_alerts(&state, &WalletRoute::own(&caller.0), body.into_inner()).await?))
}

crate::openapi::errors!(CustomerAlertErrors: MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound);

/// A customer's low-balance alerts (`credits:read`).
#[utoipa::path(
    tag = "customers",
    operation_id = "get_customer_alerts",
    params(("external_id" = String, Path)),
    responses((status = 200, body = AlertsResponse), CustomerAlertErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/alerts")]
pub async fn get_customer_alerts(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
) -> Result<web::Json<AlertsResponse>, ApiError> {
    let route = customers::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(get_alerts(&state, &route).await?))
}

/// Sets a customer's low-balance alerts (`customers:write`).
#[utoipa::path(
    tag = "customers",
    operation_id = "set_customer_alerts",
    params(("external_id" = String, Path)),
    request_body = AlertsRequest,
    responses((status = 200, body = AlertsResponse), CustomerAlertErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[put("/customers/{external_id}/alerts")]
pub async fn set_customer_alerts(
    state: web::Data<AppState>,
    caller: ServerCaller<CustomersWrite>,
    external_id: web::Path<String>,
    body: web::Json<AlertsRequest>,
) -> Result<web::Json<AlertsResponse>, ApiError> {
    let route = customers::wallet_route(&state, &external_id, &caller.0).await?;
    Ok(web::Json(set_alerts(&state, &route, body.into_inner()).await?))
}
