//! The fan-out behind every open stream of a replica: ONE tail reads the events committed since
//! the last it read (`events::committed_after`, gap-safe) whenever it is woken, and hands each
//! to the streams of its customer. A replica with 1,000 open streams reads the outbox once per
//! wake-up, not 1,000 times.
//!
//! Woken by `LISTEN tollgate_events` on PostgreSQL (the outbox's trigger notifies at commit, from
//! any replica), by the in-process `events::Signal` on SQLite, and by a poll every second that
//! catches what no wake-up announced (a notification lost while the listener reconnected, a
//! SQLite write by another process, an event the gap-safe read held back behind a transaction
//! still running).
//!
//! Each stream has a bounded queue. A stream whose client reads slower than events come is
//! dropped from the hub when its queue is full, rather than buffered without bound: its
//! connection ends, and the client resumes with `Last-Event-ID` from the outbox.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use actix_web::web::Bytes;
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::events::{self, Event};

/// Events read from the outbox per query.
const PAGE: u64 = 500;
/// The poll that catches what no notification announced.
const POLL: Duration = Duration::from_secs(1);
/// The first re-read after the gap-safe read held events back; doubled up to `POLL`.
const HELD_BACK_RETRY: Duration = Duration::from_millis(10);

/// One event as a stream sends it, rendered once for all the streams that get it.
#[derive(Debug)]
pub struct Frame {
    pub seq: i64,
    pub customer: Option<Uuid>,
    pub bytes: Bytes,
}

impl Frame {
    /// `id:`, `event:` and `data:` lines and the blank line that ends a server-sent event. The
    /// data is the event's JSON on one line (serde_json escapes newlines inside strings).
    pub fn render(event: &Event) -> Self {
        let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
        let text = format!("id: {}\nevent: {}\ndata: {}\n\n", event.id, event.kind, json);
        Self { seq: event.seq, customer: event.customer.as_ref().map(|c| c.id), bytes: Bytes::from(text) }
    }
}

/// The replica's hub: cheap to clone, shared by the tail and every stream.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Mutex<Shared>,
    /// `Some(seq)` once the tail knows where the outbox ends: streams wait for it.
    ready: watch::Sender<Option<i64>>,
    /// True once the server shuts down: every stream ends.
    closing: watch::Sender<bool>,
    /// Wakes the tail.
    wake: Notify,
    /// Frames one stream may have queued.
    buffer: usize,
    open: IntGauge,
    lagged: IntCounter,
}

struct Shared {
    /// The last seq handed to the streams: a stream registered now gets every event after it.
    head: i64,
    next_id: u64,
    streams: HashMap<Uuid, Vec<Subscriber>>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Frame>>,
}

/// One stream's place in the hub: the frames of its customer after `from`, in seq order, until
/// the queue fills (then the sender is dropped and `rx` ends). Dropping it leaves the hub.
pub struct Subscription {
    /// Every event of the customer with a greater seq comes through `rx` (unless it lags).
    pub from: i64,
    pub rx: mpsc::Receiver<Arc<Frame>>,
    hub: Hub,
    customer: Uuid,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut shared = self.hub.lock();
        if let Some(list) = shared.streams.get_mut(&self.customer) {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                shared.streams.remove(&self.customer);
            }
        }
        drop(shared);
        self.hub.inner.open.dec();
    }
}

impl Hub {
    /// A hub whose streams may fall `buffer` events behind; its gauges go in `registry`.
    pub fn new(buffer: usize, registry: &Registry) -> anyhow::Result<Self> {
        let open = IntGauge::with_opts(Opts::new("streams_open", "Event streams open now.").namespace("tollgate"))?;
        let lagged = IntCounter::with_opts(
            Opts::new("streams_lagged_total", "Event streams closed because their client fell too far behind.")
                .namespace("tollgate"),
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(lagged.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared { head: 0, next_id: 0, streams: HashMap::new() }),
                ready: watch::channel(None).0,
                closing: watch::channel(false).0,
                wake: Notify::new(),
                buffer: buffer.max(1),
                open,
                lagged,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves the map consistent (each step is one insert,
        // retain or remove), so a poisoned lock is taken as it is.
        self.inner.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the hub for `customer`'s events; waits (up to `wait`) for the tail to have found
    /// the end of the outbox. `None` when it has not in time, or the server is shutting down.
    pub async fn subscribe(&self, customer: Uuid, wait: Duration) -> Option<Subscription> {
        let mut ready = self.inner.ready.subscribe();
        tokio::time::timeout(wait, ready.wait_for(Option::is_some)).await.ok()?.ok()?;
        if self.is_closing() {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.inner.buffer);
        let mut shared = self.lock();
        let id = shared.next_id;
        shared.next_id += 1;
        shared.streams.entry(customer).or_default().push(Subscriber { id, tx });
        let from = shared.head;
        drop(shared);
        self.inner.open.inc();
        Some(Subscription { from, rx, hub: self.clone(), customer, id })
    }

    /// Hands events (in seq order) to their customers' streams, and moves the head past them.
    /// A stream whose queue is full is dropped: it lags.
    pub fn publish(&self, events: &[Event]) {
        let frames: Vec<Arc<Frame>> = events.iter().map(|e| Arc::new(Frame::render(e))).collect();
        let mut lagged = 0;
        let mut shared = self.lock();
        for frame in frames {
            shared.head = shared.head.max(frame.seq);
            let Some(customer) = frame.customer else { continue };
            let Some(list) = shared.streams.get_mut(&customer) else { continue };
            list.retain(|s| match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lagged += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                shared.streams.remove(&customer);
            }
        }
        drop(shared);
        self.inner.lagged.inc_by(lagged);
    }

    /// Starts shutting down: every open stream ends, and no new one opens.
    pub fn close_all(&self) {
        self.inner.closing.send_replace(true);
        self.inner.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    /// Resolves when the server starts shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Wakes the tail: something may have been committed.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the tail and what wakes it, on the current runtime: a `LISTEN` connection on
    /// PostgreSQL, the in-process signal on SQLite. They end when the server shuts down.
    pub fn start(&self, db: DatabaseConnection, database_url: String, signal: watch::Receiver<u64>) {
        if db.get_database_backend() == DbBackend::Postgres {
            tokio::spawn(listen(self.clone(), database_url));
        } else {
            tokio::spawn(follow(self.clone(), signal));
        }
        tokio::spawn(tail(self.clone(), db));
    }
}

/// Resolves once the server shuts down.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// SQLite: every commit that wrote events bumps the signal.
async fn follow(hub: Hub, mut signal: watch::Receiver<u64>) {
    let mut closing = hub.closing();
    loop {
        tokio::select! {
            changed = signal.changed() => if changed.is_err() { return },
            _ = closed(&mut closing) => return,
        }
        hub.wake();
    }
}

/// PostgreSQL: a connection of its own (not one of the pool's) listening on the outbox's
/// channel, on whichever replica the event was committed. Reconnects by itself; after a lost
/// connection the tail reads anyway, since notifications sent meanwhile are gone.
async fn listen(hub: Hub, url: String) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut closing = hub.closing();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen("tollgate_events").await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            result = connected => match result {
                Ok(listener) => listener,
                Err(e) => {
                    log::warn!("event streams: cannot listen on PostgreSQL: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = closed(&mut closing) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
            _ = closed(&mut closing) => return,
        };
        backoff = Duration::from_millis(100);
        // Events committed before the LISTEN took effect were announced to nobody.
        hub.wake();
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(_) => hub.wake(),
                    Err(e) => {
                        log::warn!("event streams: the PostgreSQL listener failed: {e}; reconnecting");
                        hub.wake();
                        break;
                    }
                },
                _ = closed(&mut closing) => return,
            }
        }
    }
}

/// The one reader of the outbox: on each wake-up, every event committed after the head.
async fn tail(hub: Hub, db: DatabaseConnection) {
    let mut closing = hub.closing();
    let mut head = loop {
        match end_of_outbox(&db).await {
            Ok(seq) => break seq,
            Err(e) => {
                log::warn!("event streams: cannot read the outbox: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = closed(&mut closing) => return,
                }
            }
        }
    };
    hub.lock().head = head;
    hub.inner.ready.send_replace(Some(head));
    let mut retry: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = hub.inner.wake.notified() => {}
            _ = tokio::time::sleep(retry.unwrap_or(POLL)) => {}
        }
        if hub.is_closing() {
            return;
        }
        retry = match catch_up(&hub, &db, &mut head).await {
            Ok(false) => None,
            // Held back behind a transaction still running: look again soon.
            Ok(true) => Some(retry.map_or(HELD_BACK_RETRY, |r| (r * 2).min(POLL))),
            Err(e) => {
                log::warn!("event streams: cannot read the outbox: {e}");
                Some(POLL)
            }
        };
    }
}

/// Publishes every event after `head`; true when committed events remain that the gap-safe read
/// held back (PostgreSQL, behind a transaction still running).
async fn catch_up(hub: &Hub, db: &DatabaseConnection, head: &mut i64) -> Result<bool, DbErr> {
    loop {
        let events = events::committed_after(db, *head, None, PAGE).await?;
        if let Some(last) = events.last() {
            *head = last.seq;
        }
        hub.publish(&events);
        if (events.len() as u64) < PAGE {
            break;
        }
    }
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM events WHERE seq > $1) AS more",
            [(*head).into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<bool>("", "more")).transpose()?.unwrap_or(false))
}

/// Where the tail starts: after the last event a gap-safe reader can read now. Read by paging
/// from the newest events back is not possible through `committed_after`, so the newest seq is
/// taken, minus what is still held back: the first pass of `catch_up` reads those.
async fn end_of_outbox(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        // Committed events of transactions still running somewhere can precede this seq:
        // start before the oldest of them.
        DbBackend::Postgres => {
            "SELECT CAST(COALESCE(MIN(seq) - 1, (SELECT MAX(seq) FROM events), 0) AS BIGINT) AS head FROM events \
             WHERE txid >= CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS BIGINT)"
        }
        _ => "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS head FROM events",
    };
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "head")).transpose()?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventCustomer;

    fn event(seq: i64, customer: Uuid) -> Event {
        Event {
            id: format!("evt_{seq:026}"),
            kind: "credits.spent".to_owned(),
            created_at: chrono::Utc::now(),
            customer: Some(EventCustomer { id: customer, external_id: None }),
            data: serde_json::json!({}),
            seq,
        }
    }

    async fn ready_hub(buffer: usize) -> Hub {
        let hub = Hub::new(buffer, &Registry::new()).expect("hub");
        hub.inner.ready.send_replace(Some(0));
        hub
    }

    #[tokio::test]
    async fn each_stream_gets_its_customers_events_in_order() {
        let hub = ready_hub(16).await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sa = hub.subscribe(a, Duration::from_secs(1)).await.expect("a");
        let mut sb = hub.subscribe(b, Duration::from_secs(1)).await.expect("b");
        hub.publish(&[event(1, a), event(2, b), event(3, a)]);
        assert_eq!(sa.rx.recv().await.expect("1").seq, 1);
        assert_eq!(sa.rx.recv().await.expect("3").seq, 3);
        assert_eq!(sb.rx.recv().await.expect("2").seq, 2);
        assert!(sa.rx.try_recv().is_err() && sb.rx.try_recv().is_err());
        // A stream that joins now starts after what was published.
        assert_eq!(hub.subscribe(a, Duration::from_secs(1)).await.expect("late").from, 3);
    }

    #[tokio::test]
    async fn a_lagging_stream_is_dropped_and_ends_after_what_it_had() {
        let hub = ready_hub(2).await;
        let customer = Uuid::new_v4();
        let mut slow = hub.subscribe(customer, Duration::from_secs(1)).await.expect("slow");
        hub.publish(&[event(1, customer), event(2, customer), event(3, customer), event(4, customer)]);
        assert_eq!(slow.rx.recv().await.expect("1").seq, 1);
        assert_eq!(slow.rx.recv().await.expect("2").seq, 2);
        assert!(slow.rx.recv().await.is_none(), "closed, not buffered");
        assert_eq!(hub.inner.lagged.get(), 1);
        assert!(hub.lock().streams.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_stream_leaves_the_hub() {
        let hub = ready_hub(2).await;
        let customer = Uuid::new_v4();
        let sub = hub.subscribe(customer, Duration::from_secs(1)).await.expect("sub");
        assert_eq!(hub.inner.open.get(), 1);
        drop(sub);
        assert_eq!(hub.inner.open.get(), 0);
        assert!(hub.lock().streams.is_empty());
        hub.close_all();
        assert!(hub.subscribe(customer, Duration::from_secs(1)).await.is_none(), "closed to new streams");
    }
}
