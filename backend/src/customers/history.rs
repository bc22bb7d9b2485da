//! A customer's balance over time: the twin of `GET /credits/balance-history`, run by the same
//! function (`credits::handlers::wallet::balance_history`).

use actix_web::{get, web};

use crate::{
    auth::extractors::{CreditsRead, ServerCaller},
    credits::{
        dto::{BalanceHistory, BalanceHistoryQuery},
        handlers::wallet,
    },
    error::ApiError,
    state::AppState,
};

crate::openapi::errors!(CustomerBalanceHistoryErrors:
    MissingScope, ServerKeyRequired, CustomerNotFound, WalletNotFound,
);

/// The customer's balance at the end of each day (or hour) of a range (`credits:read`), exactly
/// as `GET /credits/balance-history` gives it.
#[utoipa::path(
    tag = "customers",
    params(("external_id" = String, Path), BalanceHistoryQuery),
    responses((status = 200, body = BalanceHistory), CustomerBalanceHistoryErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/balance-history")]
pub async fn customer_balance_history(
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
    query: web::Query<BalanceHistoryQuery>,
) -> Result<web::Json<BalanceHistory>, ApiError> {
    let route = crate::customers::wallet_route(&state.db, &external_id, &caller.0).await?;
    Ok(web::Json(wallet::balance_history(&state, &route, query.into_inner()).await?))
}
