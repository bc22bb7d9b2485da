//! What the webhooks read from and write to the events outbox (`crate::events`), in one place.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use crate::{
    entities::webhook_endpoints,
    error::{ApiError, ErrorCode},
    events::{self, Event},
};

/// The type of the event recorded when an endpoint is disabled after a run of failures.
pub const ENDPOINT_DISABLED: &str = "webhook_endpoint.disabled";

/// The 404 for an event id the outbox does not hold (never written, or purged).
pub fn event_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::EventNotFound,
        "No such event in the event log (events are kept for EVENT_RETENTION_DAYS).",
    )
}

/// One committed event by its id.
pub async fn find_event(db: &impl ConnectionTrait, id: &str) -> Result<Option<Event>, DbErr> {
    events::find(db, id).await
}

/// Records `webhook_endpoint.disabled` in the caller's transaction.
pub async fn record_disabled(
    db: &impl ConnectionTrait,
    endpoint: &webhook_endpoints::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let data = serde_json::json!({
        "endpoint": {
            "id": endpoint.id,
            "url": endpoint.url,
            "description": endpoint.description,
        },
        "failing_since": endpoint.failing_since,
        "disabled_at": now,
    });
    let event = events::NewEvent::new(events::new_event_id(now), ENDPOINT_DISABLED, None, &data);
    events::insert(db, &[event], now).await
}
