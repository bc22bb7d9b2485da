//! `GET /events` and `GET /events/{id}`: the outbox, for an administrator or a server key with
//! `events:read`.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{EVENT_TYPES, Event, EventRow, SELECT};
use crate::{
    auth::extractors::{EventsRead, ServerCaller},
    customers,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// `GET /events` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only events of the customer with this external id.
    pub customer: Option<String>,
    /// Only events made at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events made before this time.
    pub to: Option<DateTime<Utc>>,
    /// Events after this one (an event id, e.g. the previous page's `next_cursor`).
    pub after: Option<String>,
    /// At most this many (1 to 100, default 50).
    pub limit: Option<u64>,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<Event>,
    /// Pass as `after` for the next page; null when this page is the last for now.
    pub next_cursor: Option<String>,
}

crate::openapi::errors!(EventErrors: CustomerNotFound, EventNotFound);

/// The event log, oldest first: poll with `after` set to the last id seen. Events are kept for
/// `EVENT_RETENTION_DAYS`.
#[utoipa::path(
    tag = "events",
    operation_id = "list_events",
    params(EventQuery),
    responses((status = 200, body = EventPage), EventErrors),
    security(("server_key" = []), ("admin_key" = []))
)]
#[get("/events")]
pub async fn list_events(
    _caller: ServerCaller<EventsRead>,
    state: web::Data<AppState>,
    query: web::Query<EventQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "range", "limit must be between 1 and 100"));
    }
    if let Some(kind) = &query.kind
        && !EVENT_TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::field("type", "invalid", format!("type must be one of {}", EVENT_TYPES.join(", "))));
    }
    let customer = match &query.customer {
        Some(external_id) => Some(customers::find(&state.db, &customers::parse_external_id(external_id)?).await?.id),
        None => None,
    };
    let after = match &query.after {
        Some(id) => super::seq_of(&state.db, id)
            .await?
            .ok_or_else(|| ApiError::field("after", "unknown", "after must be an event id from this log"))?,
        None => 0,
    };
    let backend = crate::db::backend(&state.db);
    let limit_plus = i64::try_from(limit).unwrap_or(100) + 1;
    let (sql, values): (String, Vec<sea_orm::Value>) = match backend {
        DbBackend::Postgres => (
            format!(
                "{SELECT} WHERE e.seq > $1 AND ($2::text IS NULL OR e.type = $2) AND ($3::uuid IS NULL OR e.customer_id = $3) \
                 AND ($4::timestamptz IS NULL OR e.created_at >= $4) AND ($5::timestamptz IS NULL OR e.created_at < $5) \
                 AND e.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint ORDER BY e.seq LIMIT $6"
            ),
            vec![
                after.into(),
                query.kind.clone().into(),
                customer.into(),
                query.from.into(),
                query.to.into(),
                limit_plus.into(),
            ],
        ),
        _ => (
            format!(
                "{SELECT} WHERE e.seq > ? AND (? IS NULL OR e.type = ?) AND (? IS NULL OR e.customer_id = ?) \
                 AND (? IS NULL OR e.created_at >= ?) AND (? IS NULL OR e.created_at < ?) ORDER BY e.seq LIMIT ?"
            ),
            vec![
                after.into(),
                query.kind.clone().into(),
                query.kind.clone().into(),
                customer.into(),
                customer.into(),
                query.from.into(),
                query.from.into(),
                query.to.into(),
                query.to.into(),
                limit_plus.into(),
            ],
        ),
    };
    let mut rows: Vec<Event> = EventRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
        .all(&state.db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let more = rows.len() > usize::try_from(limit).unwrap_or(100);
    rows.truncate(usize::try_from(limit).unwrap_or(100));
    let next_cursor = if more { rows.last().map(|e| e.id.clone()) } else { None };
    Ok(web::Json(EventPage { data: rows, next_cursor }))
}

/// One event.
#[utoipa::path(
    tag = "events",
    operation_id = "get_event",
    params(("id" = String, Path, description = "`evt_…`")),
    responses((status = 200, body = Event), EventErrors),
    security(("server_key" = []), ("admin_key" = []))
)]
#[get("/events/{id}")]
pub async fn get_event(
    _caller: ServerCaller<EventsRead>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<Event>, ApiError> {
    let event = super::find(&state.db, &id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::EventNotFound, format!("No event `{id}` (events are kept for EVENT_RETENTION_DAYS)."))
    })?;
    Ok(web::Json(event))
}
