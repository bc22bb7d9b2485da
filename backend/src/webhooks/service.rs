//! Endpoints and their deliveries: the rules behind the routes. The dispatcher
//! (`super::dispatcher`) does the sending.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::{dto::*, signing, urls};
use crate::{
    config::Environment,
    entities::{webhook_attempts, webhook_deliveries, webhook_endpoints},
    error::{ApiError, ErrorCode, FieldError},
    state::AppState,
};

/// How long a rotated-out secret keeps signing beside the new one.
pub const SECRET_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// The longest description.
const MAX_DESCRIPTION: usize = 500;
/// The type list that means every event.
pub const ALL_EVENTS: &str = "*";

/// Whether endpoint URLs must resolve to public addresses.
pub fn guard_on(state: &AppState) -> bool {
    state.settings.environment == Environment::Production && !state.settings.webhook_allow_private_urls
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::WebhookEndpointNotFound, "No such webhook endpoint.")
}

/// The types an endpoint asks for: known types, or `*` for all; without repeats.
fn parse_events(raw: &[String]) -> Result<Vec<String>, FieldError> {
    let known = crate::events::EVENT_TYPES;
    let fail = |code: &str, message: String| FieldError { field: "events".into(), code: code.into(), message };
    if raw.is_empty() {
        return Err(fail("required", "events must name at least one event type, or be [\"*\"] for all".into()));
    }
    let mut types: Vec<String> = Vec::new();
    for name in raw {
        let name = name.trim();
        if name != ALL_EVENTS && !known.contains(&name) {
            return Err(fail(
                "unknown_event_type",
                format!("`{name}` is not an event type; use \"*\" or some of {}", known.join(", ")),
            ));
        }
        if !types.iter().any(|t| t == name) {
            types.push(name.to_owned());
        }
    }
    if types.iter().any(|t| t == ALL_EVENTS) {
        return Ok(vec![ALL_EVENTS.to_owned()]);
    }
    Ok(types)
}

fn parse_description(raw: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = raw.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()) else { return Ok(None) };
    if text.chars().count() > MAX_DESCRIPTION || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError {
            field: "description".into(),
            code: "length".into(),
            message: format!("description must be at most {MAX_DESCRIPTION} printable characters"),
        });
    }
    Ok(Some(text))
}

/// Checks the URL, collecting a failure into `errors` rather than stopping at it.
async fn check_url(raw: &str, guard: bool, errors: &mut Vec<FieldError>) -> Option<String> {
    match urls::check(raw, guard).await {
        Ok(url) => Some(url),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Whether an endpoint subscribed to `kind`.
pub fn wants(endpoint: &webhook_endpoints::Model, kind: &str) -> bool {
    let types: Vec<String> = serde_json::from_str(&endpoint.event_types).unwrap_or_default();
    types.iter().any(|t| t == ALL_EVENTS || t == kind)
}

/// Registers an endpoint and makes its secret.
pub async fn create(
    state: &AppState,
    request: CreateWebhookEndpointRequest,
) -> Result<WebhookEndpointWithSecret, ApiError> {
    let mut errors = Vec::new();
    let url = check_url(&request.url, guard_on(state), &mut errors).await;
    let events = parse_events(&request.events).map_err(|e| errors.push(e)).ok();
    let description = parse_description(request.description).map_err(|e| errors.push(e)).ok().flatten();
    let (Some(url), Some(events), true) = (url, events, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let now = state.clock.now();
    let secret = signing::new_secret();
    let model = webhook_endpoints::Model {
        id: Uuid::now_v7(),
        url,
        description,
        event_types: serde_json::to_string(&events).map_err(ApiError::internal)?,
        enabled: true,
        secret: secret.clone(),
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    let txn = crate::db::begin_write(&state.db).await?;
    super::dispatcher::start_from_now(&txn, model.id).await?;
    webhook_endpoints::Entity::insert(webhook_endpoints::ActiveModel::from(model.clone()))
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(WebhookEndpointWithSecret { endpoint: WebhookEndpoint::of(model, now), secret })
}

/// Every endpoint, oldest first.
pub async fn list(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<WebhookEndpointList, ApiError> {
    let rows = webhook_endpoints::Entity::find().order_by_asc(webhook_endpoints::Column::Id).all(db).await?;
    Ok(WebhookEndpointList { data: rows.into_iter().map(|m| WebhookEndpoint::of(m, now)).collect() })
}

async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<webhook_endpoints::Model, ApiError> {
    webhook_endpoints::Entity::find_by_id(id).one(db).await?.ok_or_else(not_found)
}

pub async fn get(db: &DatabaseConnection, id: Uuid, now: DateTime<Utc>) -> Result<WebhookEndpoint, ApiError> {
    Ok(WebhookEndpoint::of(find(db, id).await?, now))
}

/// Changes what is given. Re-enabling clears the failure run, so the endpoint gets its full
/// `WEBHOOK_DISABLE_AFTER_SECONDS` again.
pub async fn update(
    state: &AppState,
    id: Uuid,
    request: UpdateWebhookEndpointRequest,
) -> Result<WebhookEndpoint, ApiError> {
    let mut errors = Vec::new();
    let url = match &request.url {
        Some(raw) => check_url(raw, guard_on(state), &mut errors).await,
        None => None,
    };
    let events = request.events.as_deref().and_then(|raw| parse_events(raw).map_err(|e| errors.push(e)).ok());
    let description = match request.description {
        Some(raw) => parse_description(raw).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = state.clock.now();
    let txn = crate::db::begin_write(&state.db).await?;
    let current = find(&txn, id).await?;
    let mut model: webhook_endpoints::ActiveModel = current.clone().into();
    if let Some(url) = url {
        model.url = Set(url);
    }
    if let Some(events) = events {
        model.event_types = Set(serde_json::to_string(&events).map_err(ApiError::internal)?);
    }
    if let Some(description) = description {
        model.description = Set(description);
    }
    match request.enabled {
        Some(true) if !current.enabled => {
            super::dispatcher::start_from_now(&txn, id).await?;
            model.enabled = Set(true);
            model.disabled_at = Set(None);
            model.failing_since = Set(None);
        }
        Some(false) if current.enabled => model.enabled = Set(false),
        _ => {}
    }
    model.updated_at = Set(now);
    let updated = model.update(&txn).await?;
    txn.commit().await?;
    if updated.enabled {
        state.webhooks.wake();
    }
    Ok(WebhookEndpoint::of(updated, now))
}

/// Removes an endpoint with its deliveries and their attempts.
pub async fn delete(db: &DatabaseConnection, id: Uuid) -> Result<(), ApiError> {
    let txn = crate::db::begin_write(db).await?;
    find(&txn, id).await?;
    webhook_attempts::Entity::delete_many().filter(webhook_attempts::Column::EndpointId.eq(id)).exec(&txn).await?;
    webhook_deliveries::Entity::delete_many().filter(webhook_deliveries::Column::EndpointId.eq(id)).exec(&txn).await?;
    webhook_endpoints::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Makes a new secret; the current one keeps signing beside it for `SECRET_OVERLAP`.
pub async fn rotate_secret(state: &AppState, id: Uuid) -> Result<WebhookEndpointWithSecret, ApiError> {
    let now = state.clock.now();
    let txn = crate::db::begin_write(&state.db).await?;
    let current = find(&txn, id).await?;
    let secret = signing::new_secret();
    let mut model: webhook_endpoints::ActiveModel = current.clone().into();
    model.previous_secret = Set(Some(current.secret));
    model.previous_secret_expires_at = Set(Some(now + SECRET_OVERLAP));
    model.secret = Set(secret.clone());
    model.updated_at = Set(now);
    let updated = model.update(&txn).await?;
    txn.commit().await?;
    Ok(WebhookEndpointWithSecret { endpoint: WebhookEndpoint::of(updated, now), secret })
}

/// The secrets that sign now: the current one, and the previous one during its overlap.
pub fn signing_secrets(endpoint: &webhook_endpoints::Model, now: DateTime<Utc>) -> Vec<String> {
    let mut secrets = vec![endpoint.secret.clone()];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_expires_at)
        && until > now
    {
        secrets.push(previous.clone());
    }
    secrets
}

/// An endpoint's attempts, newest first, paged by cursor (the last attempt's id).
pub async fn list_attempts(
    db: &DatabaseConnection,
    id: Uuid,
    query: WebhookAttemptQuery,
) -> Result<WebhookAttemptPage, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "range", "limit must be between 1 and 100"));
    }
    find(db, id).await?;
    let mut select = webhook_attempts::Entity::find()
        .filter(webhook_attempts::Column::EndpointId.eq(id))
        .order_by_desc(webhook_attempts::Column::Id)
        .limit(limit + 1);
    if let Some(cursor) = &query.cursor {
        let before = Uuid::parse_str(cursor)
            .map_err(|_| ApiError::field("cursor", "invalid", "cursor must be a next_cursor from a previous page"))?;
        select = select.filter(webhook_attempts::Column::Id.lt(before));
    }
    if let Some(event_id) = &query.event_id {
        select = select.filter(webhook_attempts::Column::EventId.eq(event_id.clone()));
    }
    let mut rows = select.all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|a| a.id.to_string())).flatten();
    let delivery_ids: Vec<Uuid> = rows.iter().map(|a| a.delivery_id).collect();
    let deliveries =
        webhook_deliveries::Entity::find().filter(webhook_deliveries::Column::Id.is_in(delivery_ids)).all(db).await?;
    let data = rows
        .into_iter()
        .map(|a| {
            let delivery = deliveries.iter().find(|d| d.id == a.delivery_id);
            WebhookAttempt::of(a, delivery)
        })
        .collect();
    Ok(WebhookAttemptPage { data, next_cursor })
}

/// Queues a new delivery of an event to an endpoint, due now.
pub async fn redeliver(state: &AppState, id: Uuid, event_id: &str) -> Result<WebhookDelivery, ApiError> {
    let endpoint = find(&state.db, id).await?;
    if !endpoint.enabled {
        return Err(ApiError::new(
            ErrorCode::WebhookEndpointDisabled,
            "The endpoint is disabled: enable it (PATCH with enabled: true) first.",
        ));
    }
    let event = super::outbox::find_event(&state.db, event_id).await?.ok_or_else(super::outbox::event_not_found)?;
    let now = state.clock.now();
    let delivery = super::dispatcher::new_delivery(&endpoint, &event, now)?;
    webhook_deliveries::Entity::insert(webhook_deliveries::ActiveModel::from(delivery.clone()))
        .exec_without_returning(&state.db)
        .await?;
    state.webhooks.wake();
    Ok(delivery.into())
}
