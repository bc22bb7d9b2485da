//! HTTP side of the gateway and the model rate card. The gateway speaks OpenAI's wire format:
//! its errors carry OpenAI's `error` object beside Tollgate's problem members, so the official
//! SDKs show the message; the upstream's own errors pass through untouched.

use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, get, http::StatusCode, patch, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::{
    CUSTOMER_HEADER, Upstream,
    call::{Answered, Call, upstream_body},
    calls::{self, Claim, NewCall},
    lease::Reserved,
    models::{self, CreateModelRequest, ModelView, UpdateModelRequest},
    pricing::{Prices, TokenUsage},
    tokens::Tokenizer,
};
use crate::{
    auth::extractors::{Admin, CreditsSpend, SERVER_KEY_PREFIX, Scoped, ServerCaller},
    credits::{
        CreditsError,
        core::{Answer, Command, Op, TransferDetails},
        handlers::WalletRoute,
    },
    customers,
    error::{ApiError, ErrorCode},
    idempotency::{self, IdempotentRequest},
    request_id,
    state::AppState,
};

/// The most completions one call may ask for (`n`).
const MAX_CHOICES: u64 = 16;
/// Prompts longer than this are counted off the request's worker thread.
const COUNT_INLINE_BYTES: usize = 64 * 1024;

/// A chat completion request, as OpenAI defines it; members not named here are passed to the
/// upstream as they are.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// A model id from `GET /gateway/v1/models`.
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// The conversation: `{role, content}` objects, as OpenAI's API takes them.
    #[schema(value_type = Vec<Object>, min_items = 1)]
    pub messages: Vec<Value>,
    /// Stream the answer as server-sent events.
    pub stream: Option<bool>,
    /// The most output tokens; at most the model's `max_output_tokens`, which is the default.
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    /// The same, as newer OpenAI models name it.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u64>,
    /// Completions to generate (1 to 16); each is held at the output bound.
    #[schema(minimum = 1, maximum = 16)]
    pub n: Option<u64>,
    /// `{include_usage}`; Tollgate always asks the upstream for usage and passes the usage chunk
    /// on only when the client asked for it.
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
}

/// OpenAI's model list.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayModelList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<GatewayModel>,
}

/// A model, as OpenAI lists one.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayModel {
    #[schema(example = "gpt-4o-mini")]
    pub id: String,
    #[schema(example = "model")]
    pub object: String,
    /// When it was put on the rate card (Unix seconds).
    pub created: i64,
    #[schema(example = "tollgate")]
    pub owned_by: String,
}

/// Adds OpenAI's `error` object to a problem, for the SDKs.
fn openai_error(error: ApiError) -> HttpResponse {
    use actix_web::ResponseError;
    let status = error.code().status().as_u16();
    let kind = match status {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        404 | 409 | 422 | 400 | 413 => "invalid_request_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    let error = error.openai(kind);
    error.error_response()
}

/// The wallet a gateway call is charged to: the caller's own (a personal API key holding
/// `credits:spend`, or a session), or with a server key the customer `X-Tollgate-Customer` names.
async fn caller(req: &HttpRequest, state: &AppState) -> Result<WalletRoute, ApiError> {
    let mut payload = Payload::None;
    if let Some(value) = req.headers().get(CUSTOMER_HEADER) {
        let actor = ServerCaller::<CreditsSpend>::from_request(req, &mut payload).await?.0;
        let raw = std::str::from_utf8(value.as_bytes())
            .map_err(|_| ApiError::field("X-Tollgate-Customer", "invalid", "X-Tollgate-Customer must be UTF-8 text"))?;
        let external_id = customers::parse_external_id(raw).map_err(|_| {
            ApiError::field(
                "X-Tollgate-Customer",
                "length",
                "X-Tollgate-Customer must be 1 to 255 printable characters",
            )
        })?;
        return customers::wallet_route(state, &external_id, &actor).await;
    }
    let server_key =
        req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.trim_start_matches("Bearer ").trim_start_matches("bearer ").starts_with(SERVER_KEY_PREFIX)
        });
    if server_key {
        return Err(ApiError::field(
            "X-Tollgate-Customer",
            "required",
            "X-Tollgate-Customer is required with a server key: name the customer (your id for them) the call is charged to",
        ));
    }
    let principal = Scoped::<CreditsSpend>::from_request(req, &mut payload).await?.0;
    Ok(WalletRoute::own(&principal))
}

/// The request, read and checked.
struct Parsed {
    body: Map<String, Value>,
    model: String,
    stream: bool,
    /// `max_tokens` or `max_completion_tokens`, whichever is larger, if given.
    max_output: Option<u64>,
    choices: u64,
    /// The request's size in bytes.
    raw_len: usize,
}

fn parse(raw: &[u8]) -> Result<Parsed, ApiError> {
    let body: Map<String, Value> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            ApiError::field("body", "type", "the body must be a JSON object")
        } else {
            ApiError::new(ErrorCode::InvalidJson, format!("The body is not JSON: {e}"))
        }
    })?;
    let mut errors = Vec::new();
    let mut fail = |field: &str, code: &str, message: &str| {
        errors.push(crate::error::FieldError {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        })
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        None => {
            fail("model", "required", "model is required: a model id from GET /gateway/v1/models");
            String::new()
        }
        _ => {
            fail("model", "type", "model must be a non-empty string");
            String::new()
        }
    };
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() && m.iter().all(Value::is_object) => {}
        None => fail("messages", "required", "messages is required: the conversation, as [{role, content}]"),
        _ => fail("messages", "type", "messages must be a non-empty array of {role, content} objects"),
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        _ => {
            fail("stream", "type", "stream must be true or false");
            false
        }
    };
    let mut max_output = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => max_output = Some(max_output.unwrap_or(0).max(n)),
                _ => fail(field, "range", &format!("{field} must be a whole number of at least 1")),
            },
        }
    }
    let choices = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
            _ => {
                fail("n", "range", &format!("n must be between 1 and {MAX_CHOICES}"));
                1
            }
        },
    };
    if let Some(options) = body.get("stream_options")
        && !(options.is_object() || options.is_null())
    {
        fail("stream_options", "type", "stream_options must be an object");
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(Parsed { body, model, stream, max_output, choices, raw_len: raw.len() })
}

crate::openapi::errors!(ChatCompletionErrors:
    InvalidJson, InsufficientCredits, OutstandingDebt, InsufficientScope, ModelNotFound, CustomerNotFound,
    IdempotencyKeyInUse, IdempotencyKeyReused, UpstreamUnavailable, GatewayNotConfigured, UpstreamTimeout);

/// Chat completions, metered (OpenAI-compatible): the call is held at its worst case, forwarded
/// to the upstream, charged the tokens the upstream reports (never more than the hold), and the
/// rest released. Errors carry OpenAI's `error` object too; the upstream's own errors pass through
/// with their status and body, and nothing is charged for them.
#[utoipa::path(
    tag = "gateway",
    operation_id = "create_chat_completion",
    request_body = ChatCompletionRequest,
    params(
        ("X-Tollgate-Customer" = Option<String>, Header, description = "With a server key: the customer (external id) the call is charged to."),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry of a non-streamed call with the same key gets the first answer and is charged once; a streamed call's key cannot be reused."),
    ),
    responses(
        (status = 200, description = "The upstream's completion (JSON), or its stream (`text/event-stream`, when `stream` is true). Non-streamed answers carry `X-Tollgate-Charged`, the credits charged.",
            content((Object = "application/json"), (String = "text/event-stream"))),
        ChatCompletionErrors,
    ),
    security(("bearer" = []), ("server_key" = []))
)]
#[post("/chat/completions")]
pub async fn chat_completions(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    completions(&req, &body, &state).await.unwrap_or_else(|e| {
        if matches!(e.code(), ErrorCode::InsufficientCredits | ErrorCode::OutstandingDebt) {
            state.metrics.gateway_calls.with_label_values(&["refused"]).inc();
        }
        openai_error(e)
    })
}

async fn completions(req: &HttpRequest, raw: &[u8], state: &AppState) -> Result<HttpResponse, ApiError> {
    let wallet = caller(req, state).await?;
    state.limits.check_spend(&wallet.limit_key)?;
    let key = idempotency::key_from_headers(req.headers())?;
    let parsed = parse(raw)?;
    let model = state.rate_card.find_active(&state.db, &parsed.model).await?;
    if let Some(max) = parsed.max_output
        && max > u64::try_from(model.max_output_tokens).unwrap_or(0)
    {
        return Err(ApiError::field(
            if parsed.body.contains_key("max_completion_tokens") { "max_completion_tokens" } else { "max_tokens" },
            "range",
            format!("max_tokens must be at most {} for model `{}`", model.max_output_tokens, model.id),
        ));
    }
    let Some(upstream) = state.gateway.clone() else {
        return Err(ApiError::new(
            ErrorCode::GatewayNotConfigured,
            "The LLM gateway has no upstream: set GATEWAY_UPSTREAM_URL (and GATEWAY_UPSTREAM_KEY) and restart.",
        ));
    };
    let now = state.clock.now();
    let claim = match &key {
        None => None,
        Some(key) => {
            let request = IdempotentRequest {
                scope: format!("gateway:{}", wallet.idempotency_scope),
                key: key.clone(),
                fingerprint: idempotency::fingerprint(req, &Value::Object(parsed.body.clone())),
            };
            let call = NewCall {
                customer_id: wallet.owner,
                request: &request,
                model: &model.id,
                stream: parsed.stream,
                now,
                expires_at: now + upstream.hold_ttl(),
            };
            match calls::claim(&state.db, call).await? {
                Claim::Fresh(id) => Some(id),
                Claim::Replay { status, body } => {
                    state.metrics.gateway_calls.with_label_values(&["replayed"]).inc();
                    return Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
                        .content_type("application/json")
                        .insert_header((idempotency::REPLAYED_HEADER, "true"))
                        .body(body));
                }
            }
        }
    };
    let result = place_and_send(state, upstream, &wallet, model, parsed, claim).await;
    if result.is_err()
        && let Some(id) = claim
    {
        // Refused before anything was sent: the key is free again.
        calls::forget(&state.db, id).await?;
    }
    result
}

async fn place_and_send(
    state: &AppState,
    upstream: Arc<Upstream>,
    wallet: &WalletRoute,
    model: crate::entities::models::Model,
    parsed: Parsed,
    claim: Option<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tokenizer = Tokenizer::for_model(&model.upstream_model);
    let prices = model.prices();
    let max_output = parsed.max_output.unwrap_or_else(|| u64::try_from(model.max_output_tokens).unwrap_or(1));
    // Counted on the client's request: what `upstream_body` changes (model, output bound, stream
    // options) is not input.
    let input_bound = if parsed.raw_len > COUNT_INLINE_BYTES {
        let counted = parsed.body.clone();
        tokio::task::spawn_blocking(move || tokenizer.count_input(&counted))
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("counting tokens: {e}")))?
    } else {
        tokenizer.count_input(&parsed.body)
    };
    let (body, client_wants_usage) = upstream_body(parsed.body, &model, parsed.stream, max_output);
    // The worst case: every input token at the dearer input price, every choice at the bound.
    let worst = TokenUsage {
        input_tokens: input_bound,
        cached_input_tokens: 0,
        output_tokens: max_output.saturating_mul(parsed.choices),
    };
    let worst_prices = Prices { input: prices.input.max(prices.cached_input), ..prices };
    let price = worst_prices.charge(&worst).map_err(|_| {
        ApiError::field(
            "max_tokens",
            "range",
            "the call's worst case is more credits than one request may move: lower max_tokens",
        )
    })?;
    let request_id = request_id::current().unwrap_or_default();
    let started = std::time::Instant::now();
    // A call without a key may share a lease with its wallet's other calls in flight.
    let ticket = match claim {
        None if !price.is_zero() => Some(upstream.leases.reserve(&state.ledger, wallet.owner, price).await),
        _ => None,
    };
    let hold = if price.is_zero() {
        None
    } else if let Some(Reserved::Lease { hold_id }) = ticket.as_ref().map(|t| t.reserved) {
        state.metrics.gateway_hold_seconds.observe(started.elapsed().as_secs_f64());
        Some((hold_id, price))
    } else {
        let details = TransferDetails {
            description: Some(model.call_description()),
            feature: Some(model.feature()),
            metadata: Some(json!({ "llm": {
                "model": model.id,
                "request_id": request_id,
                "input_tokens_bound": input_bound,
                "output_tokens_bound": worst.output_tokens,
            }})),
            ..TransferDetails::default()
        };
        let op = Op::Hold { amount: price, details, ttl: upstream.hold_ttl() };
        let placed = state.ledger.submit(Command { user_id: wallet.owner, key: None, op }).await;
        state.metrics.gateway_hold_seconds.observe(started.elapsed().as_secs_f64());
        match placed {
            Ok(Answer::Hold(held)) => Some((held.hold.id, price)),
            Ok(other) => return Err(ApiError::internal(anyhow::anyhow!("a hold was answered {other:?}"))),
            Err(e @ CreditsError::InsufficientCredits { .. }) => {
                return Err(ApiError::from(e).with("price", price.get()));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let (Some(id), Some((hold_id, _))) = (claim, hold) {
        calls::held(&state.db, id, hold_id).await?;
    }
    let call = Call {
        state: state.clone(),
        upstream,
        owner: wallet.owner,
        model,
        prices,
        tokenizer,
        hold,
        ticket,
        claim,
        request_id,
        input_bound,
        body,
        client_wants_usage,
    };
    Ok(match call.run(parsed.stream).await {
        Answered::Whole { status, content_type, body, charged } => {
            let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
            response.content_type(content_type);
            if let Some(charged) = charged {
                response.insert_header(("x-tollgate-charged", charged.to_string()));
            }
            response.body(body)
        }
        Answered::Stream(rx) => {
            let events = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
            });
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(events)
        }
        Answered::Unreachable { timed_out: true } => {
            return Err(ApiError::new(
                ErrorCode::UpstreamTimeout,
                "The model's provider did not answer in time; nothing was charged.",
            ));
        }
        Answered::Unreachable { timed_out: false } => {
            return Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "The model's provider could not be reached; nothing was charged.",
            )
            .retry_after(5));
        }
    })
}

crate::openapi::errors!(GatewayModelsErrors: InsufficientScope, CustomerNotFound, ValidationFailed);

/// The models this gateway offers, as OpenAI lists them.
#[utoipa::path(
    tag = "gateway",
    operation_id = "list_gateway_models",
    params(("X-Tollgate-Customer" = Option<String>, Header, description = "With a server key: the customer.")),
    responses((status = 200, body = GatewayModelList), GatewayModelsErrors),
    security(("bearer" = []), ("server_key" = []))
)]
#[get("/models")]
pub async fn list_gateway_models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let list = async {
        caller(&req, &state).await?;
        let data = models::list(&state.db, false)
            .await?
            .into_iter()
            .map(|m| GatewayModel {
                id: m.id,
                object: "model".to_owned(),
                created: m.created_at.timestamp(),
                owned_by: "tollgate".to_owned(),
            })
            .collect();
        Ok::<_, ApiError>(GatewayModelList { object: "list".to_owned(), data })
    };
    match list.await {
        Ok(list) => HttpResponse::Ok().json(list),
        Err(e) => openai_error(e),
    }
}

/// The gateway's rate card: active models and their prices (public).
#[utoipa::path(tag = "models", operation_id = "list_models", responses((status = 200, body = Vec<ModelView>)))]
#[get("/models")]
pub async fn list_models(state: web::Data<AppState>) -> Result<web::Json<Vec<ModelView>>, ApiError> {
    Ok(web::Json(models::list(&state.db, false).await?))
}

/// Every model, inactive ones too (admin).
#[utoipa::path(
    tag = "models",
    operation_id = "admin_list_models",
    responses((status = 200, body = Vec<ModelView>)),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/models")]
pub async fn admin_list_models(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<ModelView>>, ApiError> {
    Ok(web::Json(models::list(&state.db, true).await?))
}

crate::openapi::errors!(CreateModelErrors: ModelExists);

/// Adds a model to the rate card (admin). Prices are credits per million tokens, never negative.
#[utoipa::path(
    tag = "models",
    operation_id = "create_model",
    request_body = CreateModelRequest,
    responses((status = 201, body = ModelView), CreateModelErrors),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/models")]
pub async fn create_model(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<CreateModelRequest>,
) -> Result<HttpResponse, ApiError> {
    let model = state.rate_card.add(models::create(&state.db, &state.clock, body.into_inner())).await?;
    Ok(HttpResponse::Created().json(model))
}

crate::openapi::errors!(UpdateModelErrors: ModelNotFound);

/// Changes a model (admin).
///
/// Calls already running keep the prices they started with; calls that start after the answer get
/// the change on every replica (on PostgreSQL the answer comes 1 s after the commit, when no
/// replica prices with what it read before).
#[utoipa::path(
    tag = "models",
    operation_id = "update_model",
    request_body = UpdateModelRequest,
    params(("id" = String, Path, description = "The model id (URL-encoded: `meta-llama%2FLlama-3.1-8B`).")),
    responses((status = 200, body = ModelView), UpdateModelErrors),
    security(("bearer" = []), ("admin_key" = []))
)]
#[patch("/models/{id}")]
pub async fn update_model(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UpdateModelRequest>,
) -> Result<web::Json<ModelView>, ApiError> {
    Ok(web::Json(state.rate_card.change(models::update(&state.db, &state.clock, &id, body.into_inner())).await?))
}
