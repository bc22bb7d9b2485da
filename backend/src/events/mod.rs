//! TEMPORARY STUB of the lead's `crate::events` (contract /work/contracts/events.md), so that the
//! webhooks branch builds before the real module lands on main. Replaced by main's at merge.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, Statement};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub const EVENT_TYPES: &[&str] = &[
    "credits.granted",
    "credits.spent",
    "credits.hold.created",
    "credits.hold.captured",
    "credits.hold.released",
    "credits.hold.expired",
    "credits.expired",
    "credits.clawed_back",
    "credits.dispute.frozen",
    "credits.dispute.returned",
    "balance.low",
    "subscription.updated",
    "checkout.completed",
    "webhook_endpoint.disabled",
];

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub customer: Option<EventCustomer>,
    pub data: serde_json::Value,
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct EventCustomer {
    pub id: Uuid,
    pub external_id: Option<String>,
}

fn event_of(row: &sea_orm::QueryResult) -> Result<Event, DbErr> {
    let data: String = row.try_get("", "data")?;
    Ok(Event {
        seq: row.try_get("", "seq")?,
        id: row.try_get("", "id")?,
        kind: row.try_get("", "type")?,
        created_at: row.try_get("", "created_at")?,
        customer: row.try_get::<Option<Uuid>>("", "customer_id")?.map(|id| EventCustomer { id, external_id: None }),
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}

pub async fn committed_after(
    db: &impl ConnectionTrait,
    after: i64,
    customer: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Event>, DbErr> {
    let _ = customer;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "SELECT seq, id, type, customer_id, data, created_at FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        }
        _ => "SELECT seq, id, type, customer_id, data, created_at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
    };
    let rows =
        db.query_all_raw(Statement::from_sql_and_values(backend, sql, [after.into(), (limit as i64).into()])).await?;
    rows.iter().map(event_of).collect()
}

pub async fn seq_of(db: &impl ConnectionTrait, id: &str) -> Result<Option<i64>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT seq FROM events WHERE id = $1",
        _ => "SELECT seq FROM events WHERE id = ?",
    };
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into()])).await?;
    row.map(|r| r.try_get("", "seq")).transpose()
}

/// STUB helper (asked of the lead): records an event inside the caller's transaction.
pub async fn record(
    db: &impl ConnectionTrait,
    kind: &str,
    customer: Option<Uuid>,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<String, DbErr> {
    let id = format!("evt_{}", Uuid::now_v7().simple());
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO events (id, type, customer_id, data, created_at) VALUES ($1, $2, $3, $4, $5)"
        }
        _ => "INSERT INTO events (id, type, customer_id, data, created_at) VALUES (?, ?, ?, ?, ?)",
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [id.clone().into(), kind.into(), customer.into(), data.to_string().into(), now.into()],
    ))
    .await?;
    Ok(id)
}

#[derive(Clone)]
pub struct Signal(std::sync::Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Signal {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Signal {
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}
