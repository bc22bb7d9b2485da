//! The outbox: every change of credits or billing state is recorded as an event, in the
//! transaction that makes the change (the ledger's writer adds its events to the batch's
//! journal; billing inserts its own beside its rows). Webhooks and live streams read them back in
//! order with [`committed_after`], and `GET /events` lists them.

pub mod alerts;
pub mod handlers;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use utoipa::ToSchema;
use uuid::Uuid;

/// Every event type Tollgate records.
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

/// An event about to be written: the ledger's core makes these, billing too.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: &'static str,
    pub customer_id: Option<Uuid>,
    /// The event's data as JSON text, serialized once from what made it (a spend's is a plain
    /// struct, never a `serde_json::Value` built key by key) and written as it is.
    pub data: Box<serde_json::value::RawValue>,
}

impl NewEvent {
    pub fn new(id: String, kind: &'static str, customer_id: Option<Uuid>, data: &impl Serialize) -> Self {
        // What events carry is strings, numbers, ids, times and JSON objects with string keys:
        // serde_json cannot fail on it.
        let data = serde_json::value::to_raw_value(data).expect("an event's data serializes to JSON");
        Self { id, kind, customer_id, data }
    }

    /// The data, parsed.
    pub fn data(&self) -> Value {
        serde_json::from_str(self.data.get()).unwrap_or_default()
    }
}

/// `evt_` and a time-ordered UUID (v7) in Crockford's base32: 26 characters that sort as the
/// events were made.
pub fn event_id(uuid: Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut n = uuid.as_u128();
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    format!("evt_{}", String::from_utf8_lossy(&out))
}

/// A new event's id, made at `now` (the clock's, as the event's `created_at`).
pub fn new_event_id(now: DateTime<Utc>) -> String {
    let secs = u64::try_from(now.timestamp()).unwrap_or_default();
    event_id(Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, now.timestamp_subsec_nanos())))
}

/// The least id an event made at or after `t` can have: its time is the UUID's first 48 bits,
/// and the rest of the bits are zero here, so `id < id_floor(t)` is exactly "made before `t`"
/// (to the millisecond) for every id [`event_id`] made from a UUID v7.
pub fn id_floor(t: DateTime<Utc>) -> String {
    let ms = u128::try_from(t.timestamp_millis()).unwrap_or_default() & ((1 << 48) - 1);
    event_id(Uuid::from_u128(ms << 80))
}

/// Whose wallet an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EventCustomer {
    /// Tollgate's id (a signed-up user's is their user id).
    pub id: Uuid,
    /// The product's id for the customer, if it gave one.
    pub external_id: Option<String>,
}

/// An event as the API, webhooks and streams send it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Event {
    /// `evt_…`, sortable by time.
    #[schema(example = "evt_01JEXAMPLE0000000000000000")]
    pub id: String,
    /// One of the types in `EVENT_TYPES`, e.g. `credits.spent`.
    #[serde(rename = "type")]
    #[schema(example = "credits.spent")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub customer: Option<EventCustomer>,
    /// What happened; every credits and balance event carries `balance`, the wallet's figures after it.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Where it sits in the log (for cursors; not sent).
    #[serde(skip)]
    pub position: Position,
}

/// Where an event sits in the log, the order readers see events in: on PostgreSQL by the
/// writing transaction's id and then `seq` (events become readable only once no transaction that
/// could precede them is running, see [`committed_after`]); on SQLite, which has one writer, by
/// `seq` (`txid` 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub txid: i64,
    pub seq: i64,
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct EventRow {
    seq: i64,
    txid: Option<i64>,
    id: String,
    kind: String,
    customer_id: Option<Uuid>,
    data: Value,
    created_at: DateTime<Utc>,
    external_id: Option<String>,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            created_at: r.created_at,
            customer: r.customer_id.map(|id| EventCustomer { id, external_id: r.external_id }),
            data: r.data,
            position: Position { txid: r.txid.unwrap_or(0), seq: r.seq },
        }
    }
}

pub(crate) const SELECT: &str = "SELECT e.seq, e.txid, e.id, e.type AS kind, e.customer_id, e.data, e.created_at, c.external_id \
    FROM events e LEFT JOIN customers c ON c.id = e.customer_id";

/// PostgreSQL: the oldest transaction of this database that the statement's snapshot sees as
/// still running (or, when none, the next transaction id). Every transaction of this database
/// below it has ended, so its events, if it committed, are visible; none can still appear below
/// it. Running transactions of other databases on the cluster do not hold it back; one that ended
/// between the snapshot and the look at `pg_stat_activity` counts as running, which only delays.
pub(crate) const HORIZON: &str = "(WITH snap AS (SELECT pg_current_snapshot() AS s), \
    blocking AS (SELECT x FROM snap, pg_snapshot_xip(snap.s) AS x WHERE NOT EXISTS ( \
        SELECT 1 FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL \
          AND a.backend_xid::text::bigint = (x::text::bigint % 4294967296) \
          AND a.datname IS DISTINCT FROM current_database())) \
    SELECT COALESCE((SELECT MIN(x::text::bigint) FROM blocking), (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)))";

/// SQLite: the seqs of one customer's events (`?1`) after the seq `?2`, at most `?3` of them, in
/// order. Up to where [`index_customers`] got they are read from `customer_events`, after it
/// from the log itself (a short stretch: the task runs every second). One statement, so both
/// halves are read from one snapshot and meet exactly at `customer_events_through`.
pub(crate) const SQLITE_CUSTOMER_SEQS: &str = "SELECT seq FROM (SELECT seq FROM customer_events \
        WHERE customer_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3) \
    UNION ALL SELECT seq FROM (SELECT seq FROM events \
        WHERE seq > MAX(?2, (SELECT seq FROM customer_events_through WHERE id = 1)) AND customer_id = ?1 \
        ORDER BY seq LIMIT ?3)";

/// Events copied into `customer_events` per transaction.
pub const INDEX_BATCH: i64 = 20_000;

/// SQLite: copies the customers of the events made since the last copy into `customer_events`
/// (at most `INDEX_BATCH` events, in one transaction) and moves `customer_events_through` past
/// them; returns how many of the log's seqs it passed. Nothing on PostgreSQL, whose log keeps
/// an index on the customer (see migration `m20261209_000901`).
pub async fn index_customers(db: &DatabaseConnection) -> Result<i64, DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(0);
    }
    let bounds = "SELECT (SELECT seq FROM customer_events_through WHERE id = 1) AS through, \
        CAST(COALESCE((SELECT MAX(seq) FROM events), 0) AS BIGINT) AS last";
    let read = |row: Option<sea_orm::QueryResult>| -> Result<(i64, i64), DbErr> {
        let row = row.ok_or_else(|| DbErr::Custom("customer_events_through has no row".to_owned()))?;
        Ok((row.try_get("", "through")?, row.try_get("", "last")?))
    };
    // A look first, outside a transaction: with nothing new, the write lock is not taken.
    let (through, last) = read(db.query_one_raw(Statement::from_string(DbBackend::Sqlite, bounds)).await?)?;
    if last <= through {
        return Ok(0);
    }
    let txn = crate::db::begin_write(db).await?;
    let (through, last) = read(txn.query_one_raw(Statement::from_string(DbBackend::Sqlite, bounds)).await?)?;
    let end = last.min(through + INDEX_BATCH);
    if end > through {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO customer_events (customer_id, seq) SELECT customer_id, seq FROM events \
             WHERE seq > ? AND seq <= ? AND customer_id IS NOT NULL ORDER BY customer_id, seq",
            [through.into(), end.into()],
        ))
        .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "UPDATE customer_events_through SET seq = ? WHERE id = 1",
            [end.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(end - through)
}

/// Committed events after `after`, in log order, at most `limit`, of one customer or all. A
/// reader that moves its position to the last event it read never skips one: on PostgreSQL, an
/// event of a transaction still running is not returned, nor anything after it.
pub async fn committed_after(
    db: &impl ConnectionTrait,
    after: Position,
    customer: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Event>, DbErr> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let backend = db.get_database_backend();
    let (sql, values): (String, Vec<sea_orm::Value>) = match (backend, customer) {
        (DbBackend::Postgres, customer) => (
            format!(
                "{SELECT} WHERE (e.txid, e.seq) > ($1, $2) AND ($3::uuid IS NULL OR e.customer_id = $3) \
                 AND e.txid < {HORIZON} ORDER BY e.txid, e.seq LIMIT $4"
            ),
            vec![after.txid.into(), after.seq.into(), customer.into(), limit.into()],
        ),
        (_, Some(customer)) => (
            format!("{SELECT} WHERE e.seq IN ({SQLITE_CUSTOMER_SEQS}) ORDER BY e.seq LIMIT ?3"),
            vec![customer.into(), after.seq.into(), limit.into()],
        ),
        (_, None) => (format!("{SELECT} WHERE e.seq > ? ORDER BY e.seq LIMIT ?"), vec![after.seq.into(), limit.into()]),
    };
    let rows = EventRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(db).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The position after every event readable now: where a reader that wants only what comes next
/// starts.
pub async fn head(db: &impl ConnectionTrait) -> Result<Position, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT CAST(COALESCE(MAX(txid), 0) AS BIGINT) AS txid, CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS seq \
             FROM events WHERE txid = (SELECT MAX(txid) FROM events WHERE txid < {HORIZON})"
        ),
        _ => "SELECT CAST(0 AS BIGINT) AS txid, CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS seq FROM events".to_owned(),
    };
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await?;
    Ok(match row {
        Some(r) => Position { txid: r.try_get("", "txid")?, seq: r.try_get("", "seq")? },
        None => Position::default(),
    })
}

/// The newest `seq` (0 when there is none), whatever its transaction: where the live streams'
/// hub starts (it tracks the seqs it passed over itself).
pub async fn last_seq(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS n FROM events",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

/// The position of the event `id`.
pub async fn position_of(db: &impl ConnectionTrait, id: &str) -> Result<Option<Position>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT seq, COALESCE(txid, 0) AS txid FROM events WHERE id = $1",
        _ => "SELECT seq, CAST(0 AS BIGINT) AS txid FROM events WHERE id = ?",
    };
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into()])).await?;
    row.map(|r| Ok(Position { txid: r.try_get("", "txid")?, seq: r.try_get("", "seq")? })).transpose()
}

/// One event by id.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Event>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!("{SELECT} WHERE e.id = $1"),
        _ => format!("{SELECT} WHERE e.id = ?"),
    };
    let row = EventRow::find_by_statement(Statement::from_sql_and_values(backend, sql, [id.into()])).one(db).await?;
    Ok(row.map(Into::into))
}

/// Inserts events outside the ledger's writer (billing, webhooks), in the caller's transaction.
pub async fn insert(db: &impl ConnectionTrait, events: &[NewEvent], now: DateTime<Utc>) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<crate::entities::events::ActiveModel> = events
        .iter()
        .map(|e| crate::entities::events::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
            id: sea_orm::ActiveValue::Set(e.id.clone()),
            kind: sea_orm::ActiveValue::Set(e.kind.to_owned()),
            customer_id: sea_orm::ActiveValue::Set(e.customer_id),
            data: sea_orm::ActiveValue::Set(e.data()),
            created_at: sea_orm::ActiveValue::Set(now),
            txid: sea_orm::ActiveValue::NotSet,
        })
        .collect();
    use sea_orm::EntityTrait;
    crate::entities::events::Entity::insert_many(rows).exec_without_returning(db).await?;
    Ok(())
}

/// Deletes events made before `before`; returns how many. By id, whose unique index is the
/// log's time order too (see [`id_floor`]); the log keeps no index on `created_at`. On SQLite
/// their entries in `customer_events` go in the same transaction, one key lookup each.
pub async fn purge(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let floor: sea_orm::Value = id_floor(before).into();
    if backend == DbBackend::Postgres {
        let sql = "DELETE FROM events WHERE id < $1";
        return Ok(db.execute_raw(Statement::from_sql_and_values(backend, sql, [floor])).await?.rows_affected());
    }
    let txn = crate::db::begin_write(db).await?;
    txn.execute_raw(Statement::from_sql_and_values(backend, SQLITE_PURGE_CUSTOMER_EVENTS, [floor.clone()])).await?;
    let done =
        txn.execute_raw(Statement::from_sql_and_values(backend, "DELETE FROM events WHERE id < ?", [floor])).await?;
    txn.commit().await?;
    Ok(done.rows_affected())
}

/// SQLite: the `customer_events` entries of the events made before the id `?`.
pub(crate) const SQLITE_PURGE_CUSTOMER_EVENTS: &str = "DELETE FROM customer_events WHERE (customer_id, seq) IN \
    (SELECT customer_id, seq FROM events WHERE id < ? AND customer_id IS NOT NULL)";

/// Rung after every commit that wrote events, so in-process readers (streams, the webhook
/// dispatcher) look at once instead of at their next poll. On PostgreSQL `LISTEN tollgate_events`
/// also hears other replicas' commits.
#[derive(Clone)]
pub struct Signal(std::sync::Arc<watch::Sender<u64>>);

impl Default for Signal {
    fn default() -> Self {
        Self(std::sync::Arc::new(watch::channel(0).0))
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signal")
    }
}

impl Signal {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_they_were_made() {
        let ids: Vec<String> = (0..100).map(|_| event_id(Uuid::now_v7())).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| id.len() == 30 && id.starts_with("evt_")));
        assert_eq!(event_id(Uuid::nil()), "evt_00000000000000000000000000");
    }

    #[test]
    fn the_id_floor_of_a_time_parts_the_ids_made_before_it_from_the_rest() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00.250Z").unwrap().with_timezone(&Utc);
        let floor = id_floor(t);
        for ms in [-86_400_000, -1, 0, 1, 86_400_000] {
            let at = t + chrono::Duration::milliseconds(ms);
            for _ in 0..50 {
                let id = new_event_id(at);
                assert_eq!(id < floor, ms < 0, "{id} made {ms} ms from the floor {floor}");
            }
        }
    }
}

/// Billing's events, written in billing's own transactions.
pub mod billing {
    use chrono::{DateTime, Utc};
    use sea_orm::{ConnectionTrait, DbErr, EntityTrait};
    use serde_json::json;

    use super::{NewEvent, insert, new_event_id};
    use crate::entities::{checkout_sessions, subscriptions};

    /// `subscription.updated`, with the subscription as `txn` now holds it.
    pub async fn subscription_updated(txn: &impl ConnectionTrait, id: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
        let Some(sub) = subscriptions::Entity::find_by_id(id.to_owned()).one(txn).await? else {
            return Ok(());
        };
        let data = json!({ "subscription": {
            "id": sub.id,
            "price_id": sub.price_id,
            "status": sub.status,
            "current_period_start": sub.current_period_start,
            "current_period_end": sub.current_period_end,
            "cancel_at_period_end": sub.cancel_at_period_end,
        }});
        let event = NewEvent::new(new_event_id(now), "subscription.updated", Some(sub.user_id), &data);
        insert(txn, &[event], now).await
    }

    /// `checkout.completed`, for the checkout session `id`.
    pub async fn checkout_completed(txn: &impl ConnectionTrait, id: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
        let Some(session) = checkout_sessions::Entity::find_by_id(id.to_owned()).one(txn).await? else {
            return Ok(());
        };
        let data = json!({ "checkout_session": {
            "id": session.id,
            "price_id": session.price_id,
            "mode": session.mode,
        }});
        let event = NewEvent::new(new_event_id(now), "checkout.completed", Some(session.user_id), &data);
        insert(txn, &[event], now).await
    }
}
