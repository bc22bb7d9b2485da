//! The webhook endpoint routes: an administrator, or the product's backend with a server key
//! holding `webhooks:write`.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use uuid::Uuid;

use super::{dto::*, service};
use crate::{
    auth::extractors::{ServerCaller, WebhooksWrite},
    error::ApiError,
    state::AppState,
};

/// Who may manage webhook endpoints: an administrator, or a server key with `webhooks:write`.
type Caller = ServerCaller<WebhooksWrite>;

crate::openapi::errors!(CreateWebhookEndpointErrors: MissingScope, ServerKeyRequired);

/// Register an endpoint (admin, or a server key with `webhooks:write`). The answer carries its
/// signing secret, shown this once.
#[utoipa::path(
    tag = "webhooks",
    request_body = CreateWebhookEndpointRequest,
    responses(
        (status = 201, description = "Registered; events from now on are sent to it.", body = WebhookEndpointWithSecret),
        CreateWebhookEndpointErrors,
    ),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/webhook-endpoints")]
pub async fn create_webhook_endpoint(
    state: web::Data<AppState>,
    _caller: Caller,
    body: web::Json<CreateWebhookEndpointRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, body.into_inner()).await?))
}

crate::openapi::errors!(ListWebhookEndpointsErrors: MissingScope, ServerKeyRequired);

/// Every endpoint, oldest first, without secrets.
#[utoipa::path(
    tag = "webhooks",
    responses((status = 200, body = WebhookEndpointList), ListWebhookEndpointsErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/webhook-endpoints")]
pub async fn list_webhook_endpoints(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<web::Json<WebhookEndpointList>, ApiError> {
    Ok(web::Json(service::list(&state.db, state.clock.now()).await?))
}

crate::openapi::errors!(WebhookEndpointErrors: MissingScope, ServerKeyRequired, WebhookEndpointNotFound);

/// One endpoint, without its secret.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookEndpoint), WebhookEndpointErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/webhook-endpoints/{id}")]
pub async fn get_webhook_endpoint(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<Uuid>,
) -> Result<web::Json<WebhookEndpoint>, ApiError> {
    Ok(web::Json(service::get(&state.db, id.into_inner(), state.clock.now()).await?))
}

/// Change an endpoint's URL, event types, description, or whether it is enabled.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path)),
    request_body = UpdateWebhookEndpointRequest,
    responses((status = 200, body = WebhookEndpoint), WebhookEndpointErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[patch("/webhook-endpoints/{id}")]
pub async fn update_webhook_endpoint(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<UpdateWebhookEndpointRequest>,
) -> Result<web::Json<WebhookEndpoint>, ApiError> {
    Ok(web::Json(service::update(&state, id.into_inner(), body.into_inner()).await?))
}

/// Remove an endpoint, with its deliveries and their history.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Removed."), WebhookEndpointErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[delete("/webhook-endpoints/{id}")]
pub async fn delete_webhook_endpoint(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete(&state.db, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Make a new signing secret, shown this once. The previous one keeps signing beside it for
/// 24 hours (both signatures are in `webhook-signature`), so receivers can switch without a gap.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookEndpointWithSecret), WebhookEndpointErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/webhook-endpoints/{id}/rotate-secret")]
pub async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<Uuid>,
) -> Result<web::Json<WebhookEndpointWithSecret>, ApiError> {
    Ok(web::Json(service::rotate_secret(&state, id.into_inner()).await?))
}

/// The endpoint's delivery attempts, newest first, paged by cursor: the event, the attempt's
/// number, the answer's status, when, how long, and why it failed.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path), WebhookAttemptQuery),
    responses((status = 200, body = WebhookAttemptPage), WebhookEndpointErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[get("/webhook-endpoints/{id}/deliveries")]
pub async fn list_webhook_deliveries(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<WebhookAttemptQuery>,
) -> Result<web::Json<WebhookAttemptPage>, ApiError> {
    Ok(web::Json(service::list_attempts(&state.db, id.into_inner(), query.into_inner()).await?))
}

crate::openapi::errors!(RedeliverErrors:
    MissingScope, ServerKeyRequired, WebhookEndpointNotFound, EventNotFound, WebhookEndpointDisabled,
);

/// Send an event to the endpoint again, now, as a new delivery (with its own retries), whether
/// or not it was sent before.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path), ("event_id" = String, Path, description = "The event's id, `evt_…`.")),
    responses((status = 202, description = "Queued; sent within a second.", body = WebhookDelivery), RedeliverErrors),
    security(("server_key" = []), ("bearer" = []), ("admin_key" = []))
)]
#[post("/webhook-endpoints/{id}/events/{event_id}/redeliver")]
pub async fn redeliver_webhook_event(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, event_id) = path.into_inner();
    Ok(HttpResponse::Accepted().json(service::redeliver(&state, id, &event_id).await?))
}
