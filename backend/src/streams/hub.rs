//! The fan-out behind every open stream of a replica: ONE tail reads the events committed since
//! the last it read (`events::committed_after`, gap-safe) whenever it is woken, and hands each
//! to the streams of its customer. A replica with 1,000 open streams reads the outbox once per
//! wake-up, not 1,000 times. With no stream open it reads once a second, not at every commit:
//! under load that was a query per batch for nobody (see `tail` and `subscribe`).
//!
//! Woken by `LISTEN tollgate_events` on PostgreSQL (the outbox's trigger notifies at commit, from
//! any replica), by the in-process `events::Signal` on SQLite, and by a poll every second that
//! catches what no wake-up announced (a notification lost while the listener reconnected, a
//! SQLite write by another process). On PostgreSQL the tail also reads again, soon, the seqs it
//! passed over, until a late commit fills them or no transaction is left that could (`Hole`).
//!
//! Each stream has a bounded queue. A stream whose client reads slower than events come is
//! dropped from the hub when its queue is full, rather than buffered without bound: its
//! connection ends, and the client resumes with `Last-Event-ID` from the outbox.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::events::{Event, EventCustomer};

/// Events read from the outbox per query.
const PAGE: u64 = 500;
/// The poll that catches what no notification announced.
const POLL: Duration = Duration::from_secs(1);
/// The first look again at seqs passed over (see `Hole`); doubled up to `POLL`.
const HOLE_RETRY: Duration = Duration::from_millis(10);
/// A hole is given up no sooner than this, even when every transaction that could fill it ended.
const HOLE_MIN_AGE: Duration = Duration::from_secs(5);
/// A jump of the sequence wider than this is not tracked seq by seq.
const MAX_HOLES: i64 = 100_000;

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
        Self { seq: event.position.seq, customer: event.customer.as_ref().map(|c| c.id), bytes: Bytes::from(text) }
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
    /// Reads of the outbox by the tail.
    reads: IntCounter,
    /// Passes asked for by streams opening on an idle hub, and the last asked for that a
    /// finished pass began after (see `subscribe`).
    passes_asked: std::sync::atomic::AtomicU64,
    passes_done: watch::Sender<u64>,
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
        let reads = IntCounter::with_opts(
            Opts::new("streams_outbox_reads_total", "Reads of the outbox by the event streams' tail.")
                .namespace("tollgate"),
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(lagged.clone()))?;
        registry.register(Box::new(reads.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared { head: 0, next_id: 0, streams: HashMap::new() }),
                ready: watch::channel(None).0,
                closing: watch::channel(false).0,
                wake: Notify::new(),
                buffer: buffer.max(1),
                open,
                lagged,
                reads,
                passes_asked: std::sync::atomic::AtomicU64::new(0),
                passes_done: watch::channel(0).0,
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
        if self.lock().streams.is_empty() {
            // The tail of an idle hub passes once a second: its head may be that far behind, and
            // a stream starting from it would be sent changes made before it opened. It is
            // asked for a pass now, and the stream waits for one that began after the asking.
            let ticket = self.inner.passes_asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut done = self.inner.passes_done.subscribe();
            self.wake();
            tokio::time::timeout(wait, done.wait_for(|d| *d >= ticket)).await.ok()?.ok()?;
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

/// A seq the tail passed without an event to read: its transaction had not committed yet (it
/// may still), or rolled back (it never will). On PostgreSQL seqs are taken in one order and
/// committed in another, so a reader that only moved forward from the highest seq it read would
/// skip an event committed late with a lower seq. The tail reads such seqs again until their
/// event comes, or until every transaction that could have written one has ended.
#[derive(Clone)]
struct Hole {
    /// `pg_snapshot_xmax` of a snapshot taken after the hole was seen: every transaction that
    /// could fill it has an id below this. `None` until such a snapshot was taken.
    xmax: Option<i64>,
    seen: Instant,
}

/// The tail's position: every event up to `head` was handed out, except the holes'.
#[derive(Clone)]
struct Position {
    head: i64,
    holes: BTreeMap<i64, Hole>,
}

/// The one reader of the outbox: on each wake-up, every event committed after the head.
async fn tail(hub: Hub, db: DatabaseConnection) {
    let mut closing = hub.closing();
    let head = loop {
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
    let mut position = Position { head, holes: BTreeMap::new() };
    let mut retry: Option<Duration> = None;
    let mut next_idle_pass = Instant::now() + POLL;
    loop {
        // With no stream open nobody waits for the events: the tail keeps its place once per
        // poll rather than once per commit (a read per batch, under load), holes included. A
        // stream that opens wakes it with a stream registered, and the pass then hands it
        // everything after its `from`, however far behind the head was.
        let idle = || hub.lock().streams.is_empty();
        let wait =
            if idle() { next_idle_pass.saturating_duration_since(Instant::now()) } else { retry.unwrap_or(POLL) };
        tokio::select! {
            _ = hub.inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if hub.is_closing() {
            return;
        }
        let asked = hub.inner.passes_asked.load(std::sync::atomic::Ordering::SeqCst);
        if idle() && Instant::now() < next_idle_pass && asked <= *hub.inner.passes_done.borrow() {
            continue;
        }
        next_idle_pass = Instant::now() + POLL;
        let result = catch_up(&hub, &db, &mut position).await;
        hub.inner.passes_done.send_replace(asked);
        retry = match result {
            Ok(false) => None,
            // Holes to look at again soon.
            Ok(true) => Some(retry.map_or(HOLE_RETRY, |r| (r * 2).min(POLL))),
            Err(e) => {
                log::warn!("event streams: cannot read the outbox: {e}");
                Some(POLL)
            }
        };
    }
}

/// Publishes the events that filled holes, then every event after the head; true when holes
/// remain (PostgreSQL only: SQLite has one writer, so a seq passed over was rolled back).
///
/// With no stream open, nobody needs the events themselves: the pass reads only their seqs, to
/// keep the head and the holes. A stream that joins during such a pass could miss events of
/// it, so the pass is then read again, in full, from where it began.
async fn catch_up(hub: &Hub, db: &DatabaseConnection, position: &mut Position) -> Result<bool, DbErr> {
    let (idle, joined) = {
        let shared = hub.lock();
        (shared.streams.is_empty(), shared.next_id)
    };
    if idle {
        let before = position.clone();
        let holes = pass(hub, db, position, false).await?;
        let mut shared = hub.lock();
        if shared.next_id == joined {
            shared.head = shared.head.max(position.head);
            return Ok(holes);
        }
        drop(shared);
        *position = before;
    }
    pass(hub, db, position, true).await
}

/// The seqs a read found, and the events themselves when it read them in full.
async fn read(db: &DatabaseConnection, filter: Filter<'_>, full: bool) -> Result<(Vec<i64>, Vec<Event>), DbErr> {
    if full {
        let events = visible(db, filter, PAGE).await?;
        Ok((events.iter().map(|e| e.position.seq).collect(), events))
    } else {
        Ok((visible_seqs(db, filter, PAGE).await?, Vec::new()))
    }
}

/// One pass over the holes and the log after the head (see `catch_up`).
async fn pass(hub: &Hub, db: &DatabaseConnection, position: &mut Position, full: bool) -> Result<bool, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    if postgres && !position.holes.is_empty() {
        // Taken before the holes are read: a transaction that ended before it is seen by the read.
        let (xmin, xmax) = snapshot(db).await?;
        let seqs: Vec<i64> = position.holes.keys().copied().take(PAGE as usize).collect();
        hub.inner.reads.inc();
        let (filled, events) = read(db, Filter::Seqs(&seqs), full).await?;
        for seq in &filled {
            position.holes.remove(seq);
        }
        hub.publish(&events);
        position.holes.retain(|_, hole| !(hole.xmax.is_some_and(|x| xmin >= x) && hole.seen.elapsed() >= HOLE_MIN_AGE));
        for hole in position.holes.values_mut() {
            hole.xmax.get_or_insert(xmax);
        }
    }
    loop {
        hub.inner.reads.inc();
        let (seqs, events) = read(db, Filter::After { after: position.head, customer: None }, full).await?;
        if postgres {
            let mut next = position.head + 1;
            for &seq in &seqs {
                if seq - next <= MAX_HOLES {
                    for missing in next..seq {
                        position.holes.insert(missing, Hole { xmax: None, seen: Instant::now() });
                    }
                } else {
                    log::warn!("event streams: the outbox's seq jumped from {next} to {seq}");
                }
                next = seq + 1;
            }
        }
        if let Some(&last) = seqs.last() {
            position.head = last;
        }
        hub.publish(&events);
        if (seqs.len() as u64) < PAGE {
            break;
        }
    }
    Ok(!position.holes.is_empty())
}

/// PostgreSQL: the oldest transaction still running, and the next transaction id to be given.
async fn snapshot(db: &DatabaseConnection) -> Result<(i64, i64), DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS BIGINT) AS xmin, \
                    CAST(CAST(pg_snapshot_xmax(pg_current_snapshot()) AS text) AS BIGINT) AS xmax",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("snapshot".to_owned()))?;
    Ok((row.try_get("", "xmin")?, row.try_get("", "xmax")?))
}

/// Where the tail starts: after the newest event. An event committed later with a lower seq
/// was written by a transaction running now; streams open only after this, and the replay of
/// one that resumes reads the outbox itself.
async fn end_of_outbox(db: &DatabaseConnection) -> Result<i64, DbErr> {
    crate::events::last_seq(db).await
}

/// Which committed events to read.
pub enum Filter<'a> {
    /// After a seq, of one customer or all.
    After { after: i64, customer: Option<Uuid> },
    /// These seqs (holes).
    Seqs(&'a [i64]),
}

#[derive(Debug, FromQueryResult)]
struct EventRow {
    seq: i64,
    id: String,
    kind: String,
    customer_id: Option<Uuid>,
    data: serde_json::Value,
    created_at: DateTime<Utc>,
    external_id: Option<String>,
}

/// Committed events, in seq order, at most `limit`: every one this connection sees now.
///
/// Not `events::committed_after`: its PostgreSQL filter (transactions older than every one
/// still running) hands out an event with a higher seq while holding back one with a lower seq
/// whose transaction has a newer id, even for one wallet, and a reader moving forward by seq then
/// skips the held-back event. What is visible is safe for one wallet, whose writers hold its row
/// lock until they commit, so its events commit in seq order; across wallets the tail tracks the
/// seqs it passed over (`Hole`).
pub async fn visible(db: &impl ConnectionTrait, filter: Filter<'_>, limit: u64) -> Result<Vec<Event>, DbErr> {
    let backend = db.get_database_backend();
    let Some((condition, limit, values)) = condition(backend, filter, limit) else { return Ok(Vec::new()) };
    let sql = format!(
        "SELECT e.seq, e.id, e.type AS kind, e.customer_id, e.data, e.created_at, c.external_id \
         FROM events e LEFT JOIN customers c ON c.id = e.customer_id WHERE {condition} ORDER BY e.seq LIMIT {limit}"
    );
    let rows = EventRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|r| Event {
            id: r.id,
            kind: r.kind,
            created_at: r.created_at,
            customer: r.customer_id.map(|id| EventCustomer { id, external_id: r.external_id }),
            data: r.data,
            position: crate::events::Position { txid: 0, seq: r.seq },
        })
        .collect())
}

/// The seqs `visible` would read, without the events.
async fn visible_seqs(db: &impl ConnectionTrait, filter: Filter<'_>, limit: u64) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    let Some((condition, limit, values)) = condition(backend, filter, limit) else { return Ok(Vec::new()) };
    let sql = format!("SELECT e.seq FROM events e WHERE {condition} ORDER BY e.seq LIMIT {limit}");
    let rows = db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    rows.iter().map(|r| r.try_get::<i64>("", "seq")).collect()
}

/// A read's `WHERE` condition, its `LIMIT` placeholder and their values; `None` when it can
/// match nothing.
fn condition(backend: DbBackend, filter: Filter<'_>, limit: u64) -> Option<(String, String, Vec<sea_orm::Value>)> {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut param = |value: sea_orm::Value| {
        values.push(value);
        match backend {
            DbBackend::Postgres => format!("${}", values.len()),
            _ => format!("?{}", values.len()),
        }
    };
    let condition = match filter {
        Filter::After { after, customer: None } => format!("e.seq > {}", param(after.into())),
        Filter::After { after, customer: Some(customer) } if backend == DbBackend::Sqlite => {
            // `?1` the customer, `?2` after, `?3` the limit (pushed below).
            param(customer.into());
            param(after.into());
            format!("e.seq IN ({})", crate::events::SQLITE_CUSTOMER_SEQS)
        }
        Filter::After { after, customer: Some(customer) } => {
            let customer = param(customer.into());
            format!("e.customer_id = {customer} AND e.seq > {}", param(after.into()))
        }
        Filter::Seqs([]) => return None,
        Filter::Seqs(seqs) => {
            let list: Vec<String> = seqs.iter().map(|s| param((*s).into())).collect();
            format!("e.seq IN ({})", list.join(", "))
        }
    };
    let limit = param(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Some((condition, limit, values))
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
            position: crate::events::Position { txid: 0, seq },
        }
    }

    /// A hub whose tail, reading nothing, answers every pass asked for.
    async fn ready_hub(buffer: usize) -> Hub {
        let hub = Hub::new(buffer, &Registry::new()).expect("hub");
        hub.inner.ready.send_replace(Some(0));
        let tail = hub.clone();
        tokio::spawn(async move {
            loop {
                tail.inner.wake.notified().await;
                let asked = tail.inner.passes_asked.load(std::sync::atomic::Ordering::SeqCst);
                tail.inner.passes_done.send_replace(asked);
            }
        });
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
