//! Liveness and readiness probes.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{db, state::AppState};

/// Readiness, with what the server runs on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// `sandbox` without Stripe keys, `live` or `test` with them.
    pub stripe_mode: String,
    pub version: String,
}

/// The process is up.
#[utoipa::path(tag = "health", responses((status = 200, description = "Up.")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database answers; 503 when it does not.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = ReadyResponse),
        (status = 503, description = "The database does not answer.", body = ReadyResponse),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = db::ping(&state.db).await.is_ok();
    let body = ReadyResponse {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        database: if state.settings.is_sqlite() { "sqlite" } else { "postgres" }.to_owned(),
        stripe_mode: state.settings.stripe_mode().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().insert_header((actix_web::http::header::RETRY_AFTER, "5")).json(body)
    }
}
