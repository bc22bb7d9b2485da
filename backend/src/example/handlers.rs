//! `POST /example/estimate` and `POST /example/use-credits`.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::summarize;
use crate::{
    auth::extractors::{CreditsSpend, Scoped},
    credits::{
        Outcome,
        dto::{HoldResponse, WalletBalance},
        holds::{self, CaptureCommand, HoldCommand},
        spend::{self, Charge},
    },
    domain::{Credits, IdempotencyKey},
    error::ApiError,
    idempotency::{self, IdempotentRequest},
    state::AppState,
};

/// The rate-card feature this example is priced by.
pub const FEATURE: &str = "example.summarize";
/// Characters per billed unit.
pub const CHARS_PER_UNIT: usize = 1000;
/// The longest text accepted.
pub const MAX_CHARS: usize = 20_000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SummarizeRequest {
    /// The text to summarise, 1 to 20,000 characters.
    pub text: String,
}

/// What running the feature would cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct EstimateResponse {
    pub feature: String,
    /// Billed units: started blocks of 1,000 characters.
    pub units: i64,
    pub credits_per_unit: i64,
    /// The most it will cost (what is held while it runs).
    pub estimated_cost: i64,
}

/// The summary and what it cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummarizeResponse {
    pub summary: String,
    pub sentences_total: usize,
    pub sentences_kept: usize,
    /// What was held while the work ran.
    pub estimated_cost: i64,
    /// What was charged: priced on the characters analysed.
    pub cost: i64,
    pub hold_id: Uuid,
    pub transfer_id: Option<Uuid>,
    pub balance: WalletBalance,
}

fn units(chars: usize) -> i64 {
    chars.div_ceil(CHARS_PER_UNIT).max(1) as i64
}

fn check_text(text: &str) -> Result<usize, ApiError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(ApiError::field("text", "required", "text must not be empty"));
    }
    if chars > MAX_CHARS {
        return Err(ApiError::field("text", "length", format!("text must be at most {MAX_CHARS} characters")));
    }
    Ok(chars)
}

async fn unit_price(state: &AppState) -> Result<i64, ApiError> {
    let priced = spend::price(&state.db, &Charge::Feature { key: FEATURE.to_owned(), quantity: 1 }).await?;
    Ok(priced.amount.get())
}

/// What summarising this text would cost, without running it.
#[utoipa::path(
    tag = "example",
    request_body = SummarizeRequest,
    responses(
        (status = 200, body = EstimateResponse),
    )
)]
#[post("/example/estimate")]
pub async fn estimate_summary(
    state: web::Data<AppState>,
    body: web::Json<SummarizeRequest>,
) -> Result<web::Json<EstimateResponse>, ApiError> {
    let chars = check_text(&body.text)?;
    let price = unit_price(&state).await?;
    let units = units(chars);
    Ok(web::Json(EstimateResponse {
        feature: FEATURE.to_owned(),
        units,
        credits_per_unit: price,
        estimated_cost: price * units,
    }))
}

crate::openapi::errors!(UseCreditsErrors:
    InsufficientCredits, OutstandingDebt, InsufficientScope, WalletNotFound, IdempotencyKeyReused,
);

/// Summarise a text, paying with credits: holds the estimate, does the work, captures the
/// actual cost. With too few credits it answers 402 before doing any work.
#[utoipa::path(
    tag = "example",
    request_body = SummarizeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Reuse to retry without paying twice.")),
    responses(
        (status = 200, body = SummarizeResponse),
        UseCreditsErrors,
    ),
    security(("bearer" = []))
)]
#[post("/example/use-credits")]
pub async fn use_credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsSpend>,
    body: web::Json<SummarizeRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_spend(&crate::credits::handlers::WalletRoute::own(&caller.0).limit_key)?;
    let body = body.into_inner();
    let chars = check_text(&body.text)?;
    let user_id = caller.0.user_id;
    let scope = caller.0.idempotency_scope();
    let key = idempotency::key_from_headers(req.headers())?;
    let key = key.unwrap_or_else(IdempotencyKey::generate);
    let hold_request = IdempotentRequest {
        scope: scope.clone(),
        key: prefixed(&key, "hold"),
        fingerprint: idempotency::fingerprint(&req, &body),
    };
    let hold_command = HoldCommand {
        charge: Charge::Feature { key: FEATURE.to_owned(), quantity: units(chars) },
        description: Some("Summarize text".to_owned()),
        metadata: None,
        ttl: chrono::Duration::seconds(120),
    };
    let hold = match holds::create_hold(&state.ledger, user_id, &hold_request, hold_command).await? {
        Outcome::Fresh(h) => h.hold,
        Outcome::Replayed(stored) => {
            serde_json::from_value::<HoldResponse>(stored.body).map_err(ApiError::internal)?.hold
        }
    };

    let summary = summarize::summarize(&body.text);
    let price = hold.amount / hold.quantity.unwrap_or(1).max(1);
    let cost = (price * units(summary.analysed_chars)).min(hold.amount);
    let amount = Credits::new(cost).map_err(ApiError::internal)?;
    let captured = holds::capture_hold(
        &state.ledger,
        user_id,
        hold.id,
        None,
        CaptureCommand { amount, description: Some("Summarize text".to_owned()) },
    )
    .await;
    let captured = match captured {
        Ok(Outcome::Fresh(c)) => c,
        Ok(Outcome::Replayed(stored)) => serde_json::from_value(stored.body).map_err(ApiError::internal)?,
        Err(e) => {
            let _ = holds::release_hold(&state.ledger, user_id, hold.id, None).await;
            return Err(e.into());
        }
    };
    Ok(HttpResponse::Ok().json(SummarizeResponse {
        summary: summary.summary,
        sentences_total: summary.sentences_total,
        sentences_kept: summary.sentences_kept,
        estimated_cost: hold.amount,
        cost,
        hold_id: hold.id,
        transfer_id: captured.transfer.map(|t| t.id),
        balance: captured.balance,
    }))
}

fn prefixed(key: &IdempotencyKey, what: &str) -> IdempotencyKey {
    let raw = format!("example:{what}:{}", key.as_str());
    IdempotencyKey::parse(&raw[..raw.len().min(255)]).unwrap_or_else(|_| key.clone())
}
