//! The stream routes. They differ only in how the wallet is found; `open` does the rest.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, http::header, web};
use uuid::Uuid;

use super::stream::EventStream;
use crate::{
    auth::extractors::{CreditsRead, Scoped, ServerCaller},
    customers::hosted::HostedCustomer,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// How long a new stream waits for a replica that has just started to find the end of its
/// outbox, before it answers 503.
const READY_WAIT: Duration = Duration::from_secs(5);

/// What the spec says about the stream's body, for every stream route.
const STREAM_DESCRIPTION: &str = "A `text/event-stream` that stays open. It starts with a `retry:` hint; each event of the wallet then comes as `id: <evt_…>`, `event: <type>` and `data: <Event JSON>` lines and a blank line, in the order they were committed, each once; after `STREAM_HEARTBEAT_SECONDS` (15) without one, a `: heartbeat` comment. The stream ends when the server shuts down, or when the client reads so slowly that more than `STREAM_BUFFER_EVENTS` events wait for it: reconnect with `Last-Event-ID` to get what followed.";

crate::openapi::errors!(CreditsStreamErrors: InsufficientScope, ValidationFailed);

/// The caller's wallet's events as they happen (`credits:read`): server-sent events. A client
/// that reconnects with `Last-Event-ID` gets every event after that one, then the live ones,
/// without a gap; an id that names no event of this wallet (unknown, or purged after
/// `EVENT_RETENTION_DAYS`) is 422: read the balance again and reconnect without it.
#[utoipa::path(
    tag = "credits",
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the stream resumes after it (browsers' `EventSource` sends it when it reconnects).")),
    responses(
        (status = 200, description = STREAM_DESCRIPTION, content((String = "text/event-stream"))),
        CreditsStreamErrors,
    ),
    security(("bearer" = []))
)]
#[get("/credits/stream")]
pub async fn stream_credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Scoped<CreditsRead>,
) -> Result<HttpResponse, ApiError> {
    open(&req, &state, caller.0.user_id).await
}

crate::openapi::errors!(CustomerStreamErrors: MissingScope, ServerKeyRequired, CustomerNotFound, ValidationFailed);

/// The customer's wallet's events as they happen (`credits:read`): server-sent events, exactly
/// as `GET /credits/stream` sends them, `Last-Event-ID` included.
#[utoipa::path(
    tag = "customers",
    params(
        ("external_id" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the stream resumes after it."),
    ),
    responses(
        (status = 200, description = STREAM_DESCRIPTION, content((String = "text/event-stream"))),
        CustomerStreamErrors,
    ),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/customers/{external_id}/stream")]
pub async fn stream_customer(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ServerCaller<CreditsRead>,
    external_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let route = crate::customers::wallet_route(&state, &external_id, &caller.0).await?;
    open(&req, &state, route.owner).await
}

crate::openapi::errors!(HostedStreamErrors: ValidationFailed);

/// The hosted session's customer's wallet events as they happen (hosted session cookie):
/// server-sent events, exactly as `GET /credits/stream` sends them, `Last-Event-ID` included.
/// What keeps the hosted pages' balance current without polling.
#[utoipa::path(
    tag = "hosted",
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the stream resumes after it.")),
    responses(
        (status = 200, description = STREAM_DESCRIPTION, content((String = "text/event-stream"))),
        HostedStreamErrors,
    ),
    security(("hosted_session" = []))
)]
#[get("/hosted/stream")]
pub async fn stream_hosted(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: HostedCustomer,
) -> Result<HttpResponse, ApiError> {
    open(&req, &state, caller.0.customer_id).await
}

/// Checks `Last-Event-ID`, joins the hub, and answers with the stream.
async fn open(req: &HttpRequest, state: &AppState, customer: Uuid) -> Result<HttpResponse, ApiError> {
    let after = match last_event_id(req)? {
        Some(id) => Some(resume_point(state, customer, &id).await?),
        None => None,
    };
    let Some(subscription) = state.streams.subscribe(customer, READY_WAIT).await else {
        return Err(ApiError::new(
            ErrorCode::DatabaseUnavailable,
            "The server is starting or stopping. Retry shortly.",
        )
        .retry_after(2));
    };
    let stream = EventStream::new(
        state.db.clone(),
        customer,
        subscription,
        after,
        state.streams.closing(),
        state.settings.stream_heartbeat,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx and its kin pass each event on at once instead of buffering the response.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream.into_body()))
}

/// The `Last-Event-ID` header, if the client sent a non-empty one.
fn last_event_id(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("last-event-id") else { return Ok(None) };
    let value = value.to_str().map_err(|_| unknown_event())?.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// The seq to resume after: that of the named event, which must be one of this wallet's.
async fn resume_point(state: &AppState, customer: Uuid, id: &str) -> Result<i64, ApiError> {
    if id.len() > 40 || !id.starts_with("evt_") {
        return Err(unknown_event());
    }
    match crate::events::find(&state.db, id).await? {
        Some(event) if event.customer.as_ref().is_some_and(|c| c.id == customer) => Ok(event.position.seq),
        _ => Err(unknown_event()),
    }
}

fn unknown_event() -> ApiError {
    ApiError::field(
        "Last-Event-ID",
        "unknown_event",
        "Last-Event-ID names no event of this wallet (it may have been purged): read the balance again and \
         reconnect without it.",
    )
}
