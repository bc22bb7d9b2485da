//! The dispatcher: one per replica, started with the server's background tasks. It fans new
//! events out into deliveries, and sends the deliveries that are due.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement, Value, sea_query::Expr,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{dto::DeliveryStatus, outbox, service, signing, urls};
use crate::{
    db,
    entities::{webhook_attempts, webhook_deliveries, webhook_endpoints},
    error::ApiError,
    events::{self, Event, Position},
    state::AppState,
};

/// How often the dispatcher looks for work when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// The shortest time between two fan-outs: under a spend load the signal rings after every batch,
/// and one fan-out (one transaction) then takes up the events of many batches.
const MIN_ROUND: Duration = Duration::from_millis(50);
/// The shortest time between two claims: every attempt that ends wakes the sender, and each claim
/// starts with a read.
const MIN_CLAIM_GAP: Duration = Duration::from_millis(5);
/// Events fanned out per transaction.
const FAN_OUT_BATCH: u64 = 500;
/// Attempts in flight at once, per replica.
const MAX_IN_FLIGHT: usize = 64;
/// A claim lasts the attempt's timeout and this much more; a replica that died mid-attempt
/// leaves its claim to lapse, and the delivery is sent again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest error text kept for an attempt.
const MAX_ERROR: usize = 500;
/// How often finished deliveries older than the events' retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Runs until the task is aborted: the fan-out and the sender, side by side in this one task,
/// so that `MIN_ROUND`, which gathers events into few fan-outs, does not also pace the sending
/// (one claim of at most `MAX_IN_FLIGHT` deliveries per round capped a backlog's drain at about
/// 1,000 deliveries/s).
pub async fn run(state: AppState) {
    tokio::join!(fan_out_rounds(&state), send_rounds(&state));
}

/// Fans new events out into deliveries when the events' signal rings (at most once per
/// `MIN_ROUND`) or `POLL` passes, and purges old deliveries now and then.
async fn fan_out_rounds(state: &AppState) {
    let mut signal = state.events.subscribe();
    let mut purged = tokio::time::Instant::now();
    loop {
        let round = tokio::time::Instant::now();
        if purged.elapsed() >= PURGE_EVERY {
            purged = tokio::time::Instant::now();
            match purge(state).await {
                Ok(0) => {}
                Ok(n) => log::info!("webhooks: deleted {n} finished deliveries older than the events' retention"),
                Err(e) => log::warn!("webhooks: purging old deliveries failed: {e}"),
            }
        }
        loop {
            match fan_out(state).await {
                Ok(n) if n as u64 == FAN_OUT_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    log::warn!("webhooks: fanning events out failed: {e}");
                    break;
                }
            }
        }
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(POLL).await;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
        tokio::time::sleep_until(round + MIN_ROUND).await;
    }
}

/// Claims and sends what is due when woken (deliveries queued, an attempt ended, a redelivery,
/// an endpoint enabled) or `POLL` passes.
async fn send_rounds(state: &AppState) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let round = tokio::time::Instant::now();
        if let Err(e) = send_due(state, &permits).await {
            log::warn!("webhooks: claiming deliveries failed: {e}");
        }
        tokio::select! {
            () = state.webhooks.woken() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        tokio::time::sleep_until(round + MIN_CLAIM_GAP).await;
        // Under a backlog every attempt that ends rings: let the slots they free gather, so that
        // one claim (a write) takes up many of them, but for no longer than `MIN_ROUND`.
        while permits.available_permits() < MAX_IN_FLIGHT / 2 && round.elapsed() < MIN_ROUND {
            tokio::select! {
                () = state.webhooks.woken() => {}
                () = tokio::time::sleep_until(round + MIN_ROUND) => {}
            }
        }
    }
}

/// Deletes the attempts, and the finished deliveries, older than `EVENT_RETENTION_DAYS` (their
/// events are gone by then); pending deliveries stay. Returns how many deliveries went.
async fn purge(state: &AppState) -> Result<u64, DbErr> {
    let horizon = state.clock.now() - state.settings.event_retention;
    let txn = db::begin_write(&state.db).await?;
    webhook_attempts::Entity::delete_many()
        .filter(webhook_attempts::Column::AttemptedAt.lt(horizon))
        .exec(&txn)
        .await?;
    let done = webhook_deliveries::Entity::delete_many()
        .filter(webhook_deliveries::Column::Status.ne(DeliveryStatus::Pending.as_str()))
        .filter(webhook_deliveries::Column::CreatedAt.lt(horizon))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(done.rows_affected)
}

/// A delivery of `event` to `endpoint`, due now.
pub fn new_delivery(
    endpoint: &webhook_endpoints::Model,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<webhook_deliveries::Model, ApiError> {
    Ok(webhook_deliveries::Model {
        id: Uuid::now_v7(),
        endpoint_id: endpoint.id,
        event_id: event.id.clone(),
        event_type: event.kind.clone(),
        payload: serde_json::to_string(event).map_err(ApiError::internal)?,
        status: DeliveryStatus::Pending.as_str().to_owned(),
        attempts: 0,
        next_attempt_at: Some(now),
        created_at: now,
        completed_at: None,
    })
}

fn sql(db: &impl ConnectionTrait, postgres: &str, sqlite: &str, values: Vec<Value>) -> Statement {
    let backend = db::backend(db);
    let text = if backend == DbBackend::Postgres { postgres } else { sqlite };
    Statement::from_sql_and_values(backend, text, values)
}

/// How `cursor` locks the cursor's row on PostgreSQL (SQLite's write transactions hold the whole
/// file already).
#[derive(Clone, Copy)]
enum Lock {
    None,
    /// Unless another replica holds it (then `cursor` is `None`: that replica is fanning out).
    SkipLocked,
    /// Waiting for whoever holds it.
    Wait,
}

/// The cursor: the position of the last event fanned out.
async fn cursor(db: &impl ConnectionTrait, lock: Lock) -> Result<Option<Position>, DbErr> {
    let plain = "SELECT last_txid, last_seq FROM webhook_dispatch WHERE id = 1";
    let postgres = match lock {
        Lock::None => plain,
        Lock::SkipLocked => "SELECT last_txid, last_seq FROM webhook_dispatch WHERE id = 1 FOR UPDATE SKIP LOCKED",
        Lock::Wait => "SELECT last_txid, last_seq FROM webhook_dispatch WHERE id = 1 FOR UPDATE",
    };
    let row = db.query_one_raw(sql(db, postgres, plain, vec![])).await?;
    row.map(|r| Ok(Position { txid: r.try_get("", "last_txid")?, seq: r.try_get("", "last_seq")? })).transpose()
}

/// Called in the transaction that enables an endpoint (`except`): when no other endpoint is
/// enabled, the dispatcher has not been reading the log, and its cursor moves to the log's end,
/// so the endpoint starts from the events committed after it (an endpoint hears of what
/// happened since it was made) instead of reading the whole log. The cursor's row is locked
/// first: a fan-out running now ends before.
pub async fn start_from_now(txn: &impl ConnectionTrait, except: Uuid) -> Result<(), DbErr> {
    let Some(now) = cursor(txn, Lock::Wait).await? else { return Ok(()) };
    let others = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::Enabled.eq(true))
        .filter(webhook_endpoints::Column::Id.ne(except))
        .one(txn)
        .await?;
    if others.is_some() {
        return Ok(());
    }
    let end = events::head(txn).await?;
    if end > now {
        txn.execute_raw(sql(
            txn,
            "UPDATE webhook_dispatch SET last_txid = $1, last_seq = $2 WHERE id = 1",
            "UPDATE webhook_dispatch SET last_txid = ?, last_seq = ? WHERE id = 1",
            vec![end.txid.into(), end.seq.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Writes one delivery per new event and matching enabled endpoint, and advances the cursor past
/// those events, in one transaction. Returns how many events it read.
async fn fan_out(state: &AppState) -> Result<usize, DbErr> {
    // With no endpoint to deliver to, the log is not read at all (under a spend load that was
    // a transaction after every batch); the first endpoint enabled moves the cursor to the
    // log's end (`start_from_now`).
    let enabled = webhook_endpoints::Entity::find().filter(webhook_endpoints::Column::Enabled.eq(true));
    if enabled.one(&state.db).await?.is_none() {
        return Ok(0);
    }
    let Some(after) = cursor(&state.db, Lock::None).await? else { return Ok(0) };
    if events::committed_after(&state.db, after, None, 1).await?.is_empty() {
        return Ok(0);
    }
    let txn = db::begin_write(&state.db).await?;
    let Some(after) = cursor(&txn, Lock::SkipLocked).await? else { return Ok(0) };
    let batch = events::committed_after(&txn, after, None, FAN_OUT_BATCH).await?;
    let Some(last) = batch.last().map(|e| e.position) else { return Ok(0) };
    let endpoints =
        webhook_endpoints::Entity::find().filter(webhook_endpoints::Column::Enabled.eq(true)).all(&txn).await?;
    let now = state.clock.now();
    let mut deliveries = Vec::new();
    for event in &batch {
        for endpoint in &endpoints {
            // An endpoint hears of what happened since it was made, not before.
            if event.created_at >= endpoint.created_at && service::wants(endpoint, &event.kind) {
                let delivery = new_delivery(endpoint, event, now).map_err(|e| DbErr::Custom(e.to_string()))?;
                deliveries.push(webhook_deliveries::ActiveModel::from(delivery));
            }
        }
    }
    let queued = deliveries.len();
    while !deliveries.is_empty() {
        let rest = deliveries.split_off(deliveries.len().min(200));
        webhook_deliveries::Entity::insert_many(std::mem::replace(&mut deliveries, rest))
            .exec_without_returning(&txn)
            .await?;
    }
    txn.execute_raw(sql(
        &txn,
        "UPDATE webhook_dispatch SET last_txid = $1, last_seq = $2 WHERE id = 1",
        "UPDATE webhook_dispatch SET last_txid = ?, last_seq = ? WHERE id = 1",
        vec![last.txid.into(), last.seq.into()],
    ))
    .await?;
    txn.commit().await?;
    if queued > 0 {
        state.webhooks.wake();
    }
    Ok(batch.len())
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
struct Claimed {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: String,
    payload: String,
    attempt: i32,
}

/// Claims up to `limit` due deliveries of enabled endpoints for one attempt each: their attempt
/// count goes up by one and they are not due again until the claim lapses. One statement; on
/// PostgreSQL the rows another replica is claiming are skipped.
async fn claim(state: &AppState, limit: usize) -> Result<Vec<Claimed>, DbErr> {
    let db = &state.db;
    let now = state.clock.now();
    let due = db
        .query_one_raw(sql(
            db,
            "SELECT 1 AS due FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
            "SELECT 1 AS due FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
            vec![now.into()],
        ))
        .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let lease = now + chrono::Duration::from_std(state.settings.webhook_timeout + LEASE_MARGIN).unwrap_or_default();
    let rows = db
        .query_all_raw(sql(
            db,
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= $2 AND e.enabled = $3 \
               ORDER BY d.next_attempt_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED) \
             RETURNING id, endpoint_id, event_id, payload, attempts",
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ? \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND e.enabled = ? \
               ORDER BY d.next_attempt_at LIMIT ?) \
             RETURNING id, endpoint_id, event_id, payload, attempts",
            vec![lease.into(), now.into(), true.into(), (limit as i64).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("", "id")?,
                endpoint_id: r.try_get("", "endpoint_id")?,
                event_id: r.try_get("", "event_id")?,
                payload: r.try_get("", "payload")?,
                attempt: r.try_get("", "attempts")?,
            })
        })
        .collect()
}

/// Claims what is due (as many as there are free slots) and sends each on a task of its own.
async fn send_due(state: &AppState, permits: &Arc<Semaphore>) -> Result<(), DbErr> {
    let free = permits.available_permits();
    if free == 0 {
        return Ok(());
    }
    for claimed in claim(state, free).await? {
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = attempt(&state, claimed).await {
                log::warn!("webhooks: recording an attempt failed: {e}");
            }
            state.webhooks.wake();
        });
    }
    Ok(())
}

/// What one attempt came to.
struct Outcome {
    status_code: Option<i32>,
    error: Option<String>,
    attempted_at: DateTime<Utc>,
    duration_ms: i64,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// An error with its causes, as one line, without the URL (which may carry credentials).
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {} s", timeout.as_secs());
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends one claimed delivery and records the outcome.
async fn attempt(state: &AppState, claimed: Claimed) -> Result<(), DbErr> {
    let Some(endpoint) = webhook_endpoints::Entity::find_by_id(claimed.endpoint_id).one(&state.db).await? else {
        return Ok(());
    };
    let attempted_at = state.clock.now();
    let started = std::time::Instant::now();
    let secrets = service::signing_secrets(&endpoint, attempted_at);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let timestamp = attempted_at.timestamp();
    let signature = signing::signature_header(&secrets, &claimed.event_id, timestamp, &claimed.payload);
    let (status_code, error) = if service::guard_on(state) && urls::literal_is_internal(&endpoint.url) {
        (None, Some("refused: the URL is an internal address".to_owned()))
    } else {
        let sent = state
            .webhooks
            .client()
            .post(&endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &claimed.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => (Some(i32::from(response.status().as_u16())), None),
            Ok(response) => {
                let status = response.status();
                (Some(i32::from(status.as_u16())), Some(format!("the endpoint answered {status}")))
            }
            Err(e) => (None, Some(describe(e, state.settings.webhook_timeout))),
        }
    };
    let outcome = Outcome {
        status_code,
        error: error.map(|e| e.chars().take(MAX_ERROR).collect()),
        attempted_at,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    record(state, &claimed, outcome).await
}

/// The wait before the retry after attempt `attempt` failed, give or take 10%; `None` once the
/// schedule is used up.
fn retry_wait(schedule: &[Duration], attempt: i32) -> Option<chrono::Duration> {
    let wait = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
    let jittered = wait.mul_f64(rand::random_range(0.9..=1.1));
    chrono::Duration::from_std(jittered).ok()
}

/// Records an attempt and what follows from it, in one transaction: the delivery succeeds, waits
/// for its next attempt or fails; the endpoint's failure run ends or goes on, and an endpoint
/// failing for `WEBHOOK_DISABLE_AFTER_SECONDS` is disabled, with a `webhook_endpoint.disabled`
/// event.
async fn record(state: &AppState, claimed: &Claimed, outcome: Outcome) -> Result<(), DbErr> {
    let now = state.clock.now();
    let succeeded = outcome.succeeded();
    let txn = db::begin_write(&state.db).await?;
    let inserted = webhook_attempts::Entity::insert(webhook_attempts::ActiveModel::from(webhook_attempts::Model {
        id: Uuid::now_v7(),
        delivery_id: claimed.id,
        endpoint_id: claimed.endpoint_id,
        event_id: claimed.event_id.clone(),
        attempt: claimed.attempt,
        status_code: outcome.status_code,
        error: outcome.error.clone(),
        succeeded,
        attempted_at: outcome.attempted_at,
        duration_ms: outcome.duration_ms,
    }))
    .exec_without_returning(&txn)
    .await;
    if let Err(e) = inserted {
        txn.rollback().await?;
        // The endpoint was deleted meanwhile, taking the delivery with it, or this attempt is
        // recorded already: nothing to add.
        let gone = webhook_deliveries::Entity::find_by_id(claimed.id).one(&state.db).await?.is_none();
        return if gone || db::is_unique_violation(&e) { Ok(()) } else { Err(e) };
    }
    let (status, next) = if succeeded {
        (DeliveryStatus::Succeeded, None)
    } else {
        match retry_wait(&state.settings.webhook_retry_schedule, claimed.attempt) {
            Some(wait) => (DeliveryStatus::Pending, Some(now + wait)),
            None => (DeliveryStatus::Failed, None),
        }
    };
    webhook_deliveries::Entity::update_many()
        .col_expr(webhook_deliveries::Column::Status, Expr::value(status.as_str()))
        .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(next))
        .col_expr(
            webhook_deliveries::Column::CompletedAt,
            Expr::value((status != DeliveryStatus::Pending).then_some(now)),
        )
        .filter(webhook_deliveries::Column::Id.eq(claimed.id))
        .filter(webhook_deliveries::Column::Attempts.eq(claimed.attempt))
        .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
        .exec(&txn)
        .await?;
    let mut disabled = false;
    if succeeded {
        webhook_endpoints::Entity::update_many()
            .col_expr(webhook_endpoints::Column::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_endpoints::Column::Id.eq(claimed.endpoint_id))
            .filter(webhook_endpoints::Column::FailingSince.is_not_null())
            .exec(&txn)
            .await?;
    } else {
        webhook_endpoints::Entity::update_many()
            .col_expr(webhook_endpoints::Column::FailingSince, Expr::value(Some(outcome.attempted_at)))
            .filter(webhook_endpoints::Column::Id.eq(claimed.endpoint_id))
            .filter(webhook_endpoints::Column::FailingSince.is_null())
            .exec(&txn)
            .await?;
        let disable_after = chrono::Duration::from_std(state.settings.webhook_disable_after).unwrap_or_default();
        let endpoint = webhook_endpoints::Entity::find_by_id(claimed.endpoint_id).one(&txn).await?;
        if let Some(endpoint) = endpoint
            && endpoint.enabled
            && endpoint.failing_since.is_some_and(|since| since <= now - disable_after)
        {
            let result = webhook_endpoints::Entity::update_many()
                .col_expr(webhook_endpoints::Column::Enabled, Expr::value(false))
                .col_expr(webhook_endpoints::Column::DisabledAt, Expr::value(Some(now)))
                .col_expr(webhook_endpoints::Column::UpdatedAt, Expr::value(now))
                .filter(webhook_endpoints::Column::Id.eq(endpoint.id))
                .filter(webhook_endpoints::Column::Enabled.eq(true))
                .exec(&txn)
                .await?;
            if result.rows_affected == 1 {
                outbox::record_disabled(&txn, &endpoint, now).await?;
                disabled = true;
                log::warn!(
                    "webhooks: endpoint {} ({}) disabled: its deliveries have failed since {:?}",
                    endpoint.id,
                    endpoint.url,
                    endpoint.failing_since
                );
            }
        }
    }
    txn.commit().await?;
    if disabled {
        state.events.bump();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_within_ten_percent_and_then_stop() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        for _ in 0..100 {
            let first = retry_wait(&schedule, 1).unwrap().num_milliseconds();
            assert!((4500..=5500).contains(&first), "{first}");
            let second = retry_wait(&schedule, 2).unwrap().num_milliseconds();
            assert!((270_000..=330_000).contains(&second), "{second}");
        }
        assert!(retry_wait(&schedule, 3).is_none());
        assert_eq!(retry_wait(&[Duration::ZERO], 1), Some(chrono::Duration::zero()));
    }
}
