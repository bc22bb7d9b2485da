//! HTTP handlers for the credits API: parse, call one service function, answer.

use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use uuid::Uuid;

use super::{
    Outcome,
    check::{self, CheckRequest, CheckResponse},
    dto::*,
    grants::{self, GrantCommand, Recipient},
    history,
    holds::{self, CaptureCommand, HoldCommand},
    rate_card,
    spend::{self, SpendCommand},
};
use crate::{
    auth::extractors::{Admin, CreditsRead, CreditsSpend, Principal, Scoped},
    domain::IdempotencyKey,
    domain::ledger::LotSource,
    error::{ApiError, ErrorCode},
    idempotency::{self, IdempotentRequest},
    metrics::Metrics,
    state::AppState,
};

/// Answers a write: 200 with the fresh result, or the stored answer marked as replayed.
pub(crate) fn respond<T: serde::Serialize>(outcome: Outcome<T>) -> HttpResponse {
    match outcome {
        Outcome::Fresh(body) => HttpResponse::Ok().json(body),
        Outcome::Replayed(stored) => {
            let status =
                actix_web::http::StatusCode::from_u16(stored.status).unwrap_or(actix_web::http::StatusCode::OK);
            HttpResponse::build(status).insert_header((idempotency::REPLAYED_HEADER, "true")).json(stored.body)
        }
    }
}

fn keyed(req: &HttpRequest, scope: String, key: IdempotencyKey, body: &impl serde::Serialize) -> IdempotentRequest {
    IdempotentRequest { scope, key, fingerprint: idempotency::fingerprint(req, body) }
}

/// Whose wallet a route acts on, and in whose name: the only thing in which a `/credits/*` route
/// and its `/customers/{external_id}/*` twin differ. Both call the functions in [`wallet`].
#[derive(Debug, Clone)]
pub struct WalletRoute {
    /// The wallet's owner (a customer id; a signed-up user's is their user id).
    pub owner: Uuid,
    /// The namespace of the caller's idempotency keys.
    pub idempotency_scope: String,
    /// Whom the rate limit on credit-moving requests counts.
    pub limit_key: String,
}

impl WalletRoute {
    /// The signed-in caller's own wallet (a session or a personal API key).
    pub fn own(caller: &Principal) -> Self {
        Self {
            owner: caller.user_id,
            idempotency_scope: caller.idempotency_scope(),
            limit_key: format!("user:{}", caller.user_id),
        }
    }

    fn keyed(&self, req: &HttpRequest, key: IdempotencyKey, body: &impl serde::Serialize) -> IdempotentRequest {
        keyed(req, self.idempotency_scope.clone(), key, body)
    }
}

/// What each wallet route does, whichever way its wallet was found.
pub mod wallet {
    use super::*;

    pub async fn balance(state: &AppState, wallet: &WalletRoute) -> Result<BalanceResponse, ApiError> {
        Ok(history::balance(&state.ledger, wallet.owner).await?)
    }

    pub async fn spend(
        req: &HttpRequest,
        state: &AppState,
        wallet: &WalletRoute,
        body: SpendRequest,
    ) -> Result<HttpResponse, ApiError> {
        state.limits.check_spend(&wallet.limit_key)?;
        let key = idempotency::require_key(req.headers())?;
        spend::check_details(&body.description, &body.metadata)?;
        let charge = spend::parse_spend_charge(
            body.amount,
            body.feature.clone(),
            body.quantity,
            body.model.clone(),
            body.usage,
            &body.metadata,
        )?;
        let request = wallet.keyed(req, key, &body);
        let command = SpendCommand { charge, description: body.description, metadata: body.metadata };
        let result = spend::spend(&state.ledger, wallet.owner, &request, command).await;
        state.metrics.spends.with_label_values(&[Metrics::outcome(&result)]).inc();
        Ok(respond(result?))
    }

    pub async fn check(state: &AppState, wallet: &WalletRoute, body: CheckRequest) -> Result<CheckResponse, ApiError> {
        let charge =
            spend::parse_spend_charge(body.amount, body.feature, body.quantity, body.model, body.usage, &None)?;
        Ok(check::check(&state.ledger, wallet.owner, charge).await?)
    }

    /// A grant; `fingerprint` is what the caller's request asked for (the key aside).
    pub async fn grant(
        req: &HttpRequest,
        state: &AppState,
        scope: String,
        key: IdempotencyKey,
        recipient: Recipient,
        body: CustomerGrantRequest,
        fingerprint: &impl serde::Serialize,
    ) -> Result<HttpResponse, ApiError> {
        let amount = spend::parse_amount("amount", body.amount, false)?;
        let reason = body.reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ApiError::field("reason", "length", "reason must be 1 to 500 characters"));
        }
        let source = match body.source.as_deref() {
            None => LotSource::Grant,
            Some(raw) => GrantSource::parse(raw).ok_or_else(|| {
                ApiError::field("source", "invalid", format!("source `{raw}` is not `grant` or `promotion`"))
            })?,
        };
        if body.expires_at.is_some_and(|at| at <= state.clock.now()) {
            return Err(ApiError::field("expires_at", "invalid", "expires_at must be in the future"));
        }
        if body.priority.is_some_and(|p| !(0..=1000).contains(&p)) {
            return Err(ApiError::field("priority", "range", "priority must be between 0 and 1000"));
        }
        let request = keyed(req, scope, key, fingerprint);
        let command =
            GrantCommand { recipient, amount, reason, source, priority: body.priority, expires_at: body.expires_at };
        let result = grants::grant(&state.ledger, &request, command).await;
        state.metrics.grants.with_label_values(&[Metrics::outcome(&result)]).inc();
        Ok(respond(result?))
    }

    pub async fn create_hold(
        req: &HttpRequest,
        state: &AppState,
        wallet: &WalletRoute,
        body: CreateHoldRequest,
    ) -> Result<HttpResponse, ApiError> {
        state.limits.check_spend(&wallet.limit_key)?;
        let key = idempotency::require_key(req.headers())?;
        spend::check_details(&body.description, &body.metadata)?;
        if holds::carries_llm(body.metadata.as_ref()) {
            return Err(ApiError::field(
                "metadata",
                "invalid",
                "metadata must not hold `llm`: it marks the holds of the LLM gateway's calls",
            ));
        }
        let charge = spend::parse_charge(body.amount, body.feature.clone(), body.quantity)?;
        let ttl = body.ttl_seconds.unwrap_or(holds::DEFAULT_HOLD_TTL_SECONDS);
        if !(1..=holds::MAX_HOLD_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::field("ttl_seconds", "range", "ttl_seconds must be between 1 and 3600"));
        }
        let request = wallet.keyed(req, key, &body);
        let command = HoldCommand {
            charge,
            description: body.description,
            metadata: body.metadata,
            ttl: chrono::Duration::seconds(ttl),
        };
        let result = holds::create_hold(&state.ledger, wallet.owner, &request, command).await;
        state.metrics.holds.with_label_values(&["place", Metrics::outcome(&result)]).inc();
        Ok(respond(result?))
    }

    pub async fn get_hold(state: &AppState, wallet: &WalletRoute, id: Uuid) -> Result<HoldView, ApiError> {
        Ok(holds::get_hold(&state.ledger, wallet.owner, id).await?)
    }

    pub async fn capture_hold(
        req: &HttpRequest,
        state: &AppState,
        wallet: &WalletRoute,
        id: Uuid,
        body: CaptureHoldRequest,
    ) -> Result<HttpResponse, ApiError> {
        state.limits.check_spend(&wallet.limit_key)?;
        let key = idempotency::key_from_headers(req.headers())?;
        spend::check_details(&body.description, &None)?;
        let amount = spend::parse_amount("amount", body.amount, true)?;
        let request = key.map(|k| wallet.keyed(req, k, &body));
        let command = CaptureCommand { amount, description: body.description };
        holds::ensure_not_gateways(&state.ledger, wallet.owner, id).await?;
        let result = holds::capture_hold(&state.ledger, wallet.owner, id, request.as_ref(), command).await;
        state.metrics.holds.with_label_values(&["capture", Metrics::outcome(&result)]).inc();
        Ok(respond(result?))
    }

    pub async fn release_hold(
        req: &HttpRequest,
        state: &AppState,
        wallet: &WalletRoute,
        id: Uuid,
    ) -> Result<HttpResponse, ApiError> {
        state.limits.check_spend(&wallet.limit_key)?;
        let key = idempotency::key_from_headers(req.headers())?;
        let request = key.map(|k| wallet.keyed(req, k, &serde_json::Value::Null));
        holds::ensure_not_gateways(&state.ledger, wallet.owner, id).await?;
        let result = holds::release_hold(&state.ledger, wallet.owner, id, request.as_ref()).await;
        state.metrics.holds.with_label_values(&["release", Metrics::outcome(&result)]).inc();
        Ok(respond(result?))
    }

    pub async fn ledger(state: &AppState, wallet: &WalletRoute, query: LedgerQuery) -> Result<LedgerPage, ApiError> {
        Ok(history::list_ledger(&state.db, wallet.owner, query).await?)
    }

    pub async fn usage(state: &AppState, wallet: &WalletRoute, query: UsageQuery) -> Result<UsageResponse, ApiError> {
        Ok(history::usage(&state.ledger, wallet.owner, query).await?)
    }

    pub async fn balance_history(
        state: &AppState,
        wallet: &WalletRoute,
        query: BalanceHistoryQuery,
    ) -> Result<BalanceHistory, ApiError> {
        Ok(history::balance_history(&state.ledger, wallet.owner, query).await?)
    }

    /// The whole filtered history as a CSV download, streamed page by page.
    pub async fn ledger_csv(
        state: &AppState,
        wallet: &WalletRoute,
        query: LedgerExportQuery,
    ) -> Result<HttpResponse, ApiError> {
        let found = crate::credits::store::find_wallet(&state.db, wallet.owner).await?;
        let found = found.ok_or(crate::credits::CreditsError::WalletNotFound)?;
        let filter = history::LedgerFilter::new(found.id, query.kind.as_deref(), query.from, query.to)?;
        Ok(HttpResponse::Ok()
            .insert_header((actix_web::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"))
            .insert_header((actix_web::http::header::CONTENT_DISPOSITION, "attachment; filename=\"ledger.csv\""))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .streaming(crate::credits::export::ledger_csv(state.db.clone(), filter)))
    }
}

crate::openapi::errors!(GetBalanceErrors: InsufficientScope, WalletNotFound);

/// The caller's balance, what they can spend, and lots about to expire.
#[utoipa::path(
    tag = "credits",
    responses(
        (status = 200, body = BalanceResponse),
        GetBalanceErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/balance")]
pub async fn get_balance(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
) -> Result<web::Json<BalanceResponse>, ApiError> {
    Ok(web::Json(wallet::balance(&state, &WalletRoute::own(&caller.0)).await?))
}

crate::openapi::errors!(SpendCreditsErrors:
    IdempotencyKeyRequired, InsufficientCredits, OutstandingDebt, InsufficientScope, WalletNotFound,
    IdempotencyKeyReused,
);

/// Spend credits: an explicit `amount`, or a `feature` and `quantity` priced by the rate card.
///
/// Requires an `Idempotency-Key`. Retrying with the same key and body returns the first answer
/// (with `Idempotent-Replayed: true`) and spends nothing more.
#[utoipa::path(
    tag = "credits",
    request_body = SpendRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per spend; reuse it to retry safely.")),
    responses(
        (status = 200, description = "Spent.", body = SpendResponse),
        SpendCreditsErrors,
    ),
    security(("bearer" = []))
)]
#[post("/credits/spend")]
pub async fn spend_credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsSpend>,
    body: web::Json<SpendRequest>,
) -> Result<HttpResponse, ApiError> {
    wallet::spend(&req, &state, &WalletRoute::own(&caller.0), body.into_inner()).await
}

crate::openapi::errors!(CheckCreditsErrors: InsufficientScope, WalletNotFound);

/// Would this spend pass now? Prices it like a spend and judges it against the caller's wallet;
/// writes nothing. `reason` names what would refuse it.
#[utoipa::path(
    tag = "credits",
    request_body = CheckRequest,
    responses(
        (status = 200, body = CheckResponse),
        CheckCreditsErrors,
    ),
    security(("bearer" = []))
)]
#[post("/credits/check")]
pub async fn check_credits(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    body: web::Json<CheckRequest>,
) -> Result<web::Json<CheckResponse>, ApiError> {
    Ok(web::Json(wallet::check(&state, &WalletRoute::own(&caller.0), body.into_inner()).await?))
}

crate::openapi::errors!(GrantCreditsErrors: IdempotencyKeyRequired, UserNotFound, WalletNotFound, IdempotencyKeyReused);

/// Grant credits to a user (admin), as a lot with optional expiry and priority.
///
/// The idempotency key comes from the `Idempotency-Key` header or, as the seed's clients send
/// it, `idempotencyKey` in the body.
#[utoipa::path(
    tag = "credits",
    request_body = GrantRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Required here or as `idempotencyKey` in the body.")),
    responses(
        (status = 200, description = "Granted.", body = GrantResponse),
        GrantCreditsErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/credits/grant")]
pub async fn grant_credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    body: web::Json<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut body = body.into_inner();
    let key = match idempotency::key_from_headers(req.headers())? {
        Some(key) => key,
        None => match body.idempotency_key.as_deref() {
            Some(raw) => IdempotencyKey::parse(raw)
                .map_err(|m| ApiError::field("idempotencyKey", "invalid", format!("idempotencyKey {m}")))?,
            None => {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyRequired,
                    "Send an Idempotency-Key header (or `idempotencyKey` in the body).",
                ));
            }
        },
    };
    let recipient = match (body.user_id, body.email.as_deref()) {
        (Some(id), None) => Recipient::Id(id),
        (None, Some(email)) => Recipient::Email(email.to_owned()),
        _ => {
            return Err(ApiError::field(
                "user_id",
                "invalid",
                "user_id (or userId) and email: give exactly one, the user's Tollgate id (a UUID) or their email",
            ));
        }
    };
    // The key is not part of what the request asks for.
    body.idempotency_key = None;
    let fingerprint = body.clone();
    let terms = CustomerGrantRequest {
        amount: body.amount,
        reason: body.reason,
        source: body.source,
        priority: body.priority,
        expires_at: body.expires_at,
    };
    wallet::grant(&req, &state, admin.0.idempotency_scope(), key, recipient, terms, &fingerprint).await
}

crate::openapi::errors!(CreateHoldErrors:
    IdempotencyKeyRequired, InsufficientCredits, OutstandingDebt, InsufficientScope, WalletNotFound,
    IdempotencyKeyReused,
);

/// Reserve credits for work whose cost is known only afterwards.
///
/// The hold releases itself after `ttl_seconds` (default 300, at most 3600) unless captured.
#[utoipa::path(
    tag = "holds",
    request_body = CreateHoldRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per hold.")),
    responses(
        (status = 200, description = "Held.", body = HoldResponse),
        CreateHoldErrors,
    ),
    security(("bearer" = []))
)]
#[post("/credits/holds")]
pub async fn create_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsSpend>,
    body: web::Json<CreateHoldRequest>,
) -> Result<HttpResponse, ApiError> {
    wallet::create_hold(&req, &state, &WalletRoute::own(&caller.0), body.into_inner()).await
}

crate::openapi::errors!(GetHoldErrors: InsufficientScope, WalletNotFound, HoldNotFound);

/// A hold of the caller's.
#[utoipa::path(
    tag = "holds",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = HoldView),
        GetHoldErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/holds/{id}")]
pub async fn get_hold(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    id: web::Path<Uuid>,
) -> Result<web::Json<HoldView>, ApiError> {
    Ok(web::Json(wallet::get_hold(&state, &WalletRoute::own(&caller.0), id.into_inner()).await?))
}

crate::openapi::errors!(CaptureHoldErrors:
    InsufficientCredits, OutstandingDebt, InsufficientScope, WalletNotFound, HoldNotFound, IdempotencyKeyReused,
    HoldExpired, HoldNotOpen, HoldAlreadyCaptured, HoldOwnedByGateway,
);

/// Spend the actual cost (at most the hold) and release the rest.
///
/// Capturing an already captured hold with the same amount answers as the first capture did.
#[utoipa::path(
    tag = "holds",
    request_body = CaptureHoldRequest,
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, description = "Captured.", body = HoldResponse),
        CaptureHoldErrors,
    ),
    security(("bearer" = []))
)]
#[post("/credits/holds/{id}/capture")]
pub async fn capture_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsSpend>,
    id: web::Path<Uuid>,
    body: web::Json<CaptureHoldRequest>,
) -> Result<HttpResponse, ApiError> {
    wallet::capture_hold(&req, &state, &WalletRoute::own(&caller.0), id.into_inner(), body.into_inner()).await
}

crate::openapi::errors!(ReleaseHoldErrors:
    InsufficientScope, WalletNotFound, HoldNotFound, IdempotencyKeyReused, HoldAlreadyCaptured, HoldOwnedByGateway,
);

/// Release a hold without spending.
#[utoipa::path(
    tag = "holds",
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, description = "Released (or already released or expired).", body = HoldResponse),
        ReleaseHoldErrors,
    ),
    security(("bearer" = []))
)]
#[post("/credits/holds/{id}/release")]
pub async fn release_hold(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsSpend>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    wallet::release_hold(&req, &state, &WalletRoute::own(&caller.0), id.into_inner()).await
}

crate::openapi::errors!(ListLedgerEntriesErrors: InsufficientScope, WalletNotFound);

/// The caller's history, newest first, paged by cursor.
#[utoipa::path(
    tag = "credits",
    params(LedgerQuery),
    responses(
        (status = 200, body = LedgerPage),
        ListLedgerEntriesErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/ledger")]
pub async fn list_ledger_entries(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    query: web::Query<LedgerQuery>,
) -> Result<web::Json<LedgerPage>, ApiError> {
    Ok(web::Json(wallet::ledger(&state, &WalletRoute::own(&caller.0), query.into_inner()).await?))
}

/// The caller's whole history (with the filters of `GET /credits/ledger`) as a CSV file for a
/// spreadsheet, newest first: a header row, times in ISO 8601 (UTC), amounts as integers signed
/// from the wallet's view, RFC 4180 quoting, and text that a spreadsheet would run as a formula
/// prefixed with `'`. Streamed as it is read, however long the history.
#[utoipa::path(
    tag = "credits",
    params(LedgerExportQuery),
    responses(
        (
            status = 200,
            description = "The CSV (`Content-Disposition: attachment; filename=\"ledger.csv\"`).",
            content_type = "text/csv",
            body = String,
            example = "created_at,id,kind,amount,balance_after,feature,quantity,description,hold_id,lot_id,metadata\r\n2026-01-31T12:00:00.123456Z,0194b1c2-0000-7000-8000-000000000001,spend,-5,95,example.summarize,1,Summarize text,,,\r\n",
        ),
        ListLedgerEntriesErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/ledger.csv")]
pub async fn export_ledger_csv(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    query: web::Query<LedgerExportQuery>,
) -> Result<HttpResponse, ApiError> {
    wallet::ledger_csv(&state, &WalletRoute::own(&caller.0), query.into_inner()).await
}

crate::openapi::errors!(GetBalanceHistoryErrors: InsufficientScope, WalletNotFound);

/// The caller's balance at the end of each day (or hour) of a range, for charts: every day or
/// hour has its point, those without entries carrying the balance over. Default: the last 30
/// days. `interval=hour` covers at most 7 days, `day` at most 400.
#[utoipa::path(
    tag = "credits",
    params(BalanceHistoryQuery),
    responses(
        (status = 200, body = BalanceHistory),
        GetBalanceHistoryErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/balance-history")]
pub async fn get_balance_history(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    query: web::Query<BalanceHistoryQuery>,
) -> Result<web::Json<BalanceHistory>, ApiError> {
    Ok(web::Json(wallet::balance_history(&state, &WalletRoute::own(&caller.0), query.into_inner()).await?))
}

crate::openapi::errors!(GetUsageErrors: InsufficientScope, WalletNotFound);

/// Usage aggregated by day or feature, for charts.
#[utoipa::path(
    tag = "credits",
    params(UsageQuery),
    responses(
        (status = 200, body = UsageResponse),
        GetUsageErrors,
    ),
    security(("bearer" = []))
)]
#[get("/usage")]
pub async fn get_usage(
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
    query: web::Query<UsageQuery>,
) -> Result<web::Json<UsageResponse>, ApiError> {
    Ok(web::Json(wallet::usage(&state, &WalletRoute::own(&caller.0), query.into_inner()).await?))
}

/// The public rate card.
#[utoipa::path(tag = "features", responses((status = 200, body = Vec<FeatureView>)))]
#[get("/features")]
pub async fn list_features(state: web::Data<AppState>) -> Result<web::Json<Vec<FeatureView>>, ApiError> {
    Ok(web::Json(rate_card::list_features(&state.db, false).await?))
}

crate::openapi::errors!(CreateFeatureErrors: FeatureExists);

/// Add a feature to the rate card (admin).
#[utoipa::path(
    tag = "features",
    request_body = CreateFeatureRequest,
    responses(
        (status = 201, body = FeatureView),
        CreateFeatureErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/features")]
pub async fn create_feature(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<CreateFeatureRequest>,
) -> Result<HttpResponse, ApiError> {
    let feature = rate_card::create_feature(&state.db, &state.clock, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(feature))
}

/// Change a feature's price, wording or availability (admin).
#[utoipa::path(
    tag = "features",
    request_body = UpdateFeatureRequest,
    params(("key" = String, Path)),
    responses(
        (status = 200, body = FeatureView),
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[patch("/features/{key}")]
pub async fn update_feature(
    state: web::Data<AppState>,
    _admin: Admin,
    key: web::Path<String>,
    body: web::Json<UpdateFeatureRequest>,
) -> Result<web::Json<FeatureView>, ApiError> {
    Ok(web::Json(rate_card::update_feature(&state.db, &state.clock, &key, body.into_inner()).await?))
}

/// Check the ledger's invariants over the whole database (admin).
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The report; `ok` is false when any check found a violation.", body = super::reconcile::ReconcileReport),
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/reconcile")]
pub async fn reconcile_ledger(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<web::Json<super::reconcile::ReconcileReport>, ApiError> {
    Ok(web::Json(super::reconcile::reconcile(&state.db, &state.clock).await?))
}
