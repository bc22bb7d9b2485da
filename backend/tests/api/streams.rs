//! The live stream (#18): `GET /credits/stream`, `GET /customers/{external_id}/stream` and
//! `GET /hosted/stream`, read as a client reads them, over HTTP; two replicas on one PostgreSQL;
//! shutdown.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    both, both_backends,
    helpers::{Backend, TestApp, TestUser, metric, problem},
};

both!(
    a_grant_a_spend_and_a_hold_reach_the_users_stream_in_order,
    a_customer_stream_sees_only_its_customer,
    last_event_id_replays_exactly_the_missed_events_then_goes_live,
    streams_take_the_credentials_their_twins_take,
    a_hosted_stream_sees_only_its_sessions_customer,
    a_hosted_stream_resumes_after_last_event_id,
    a_hosted_stream_needs_a_live_hosted_session,
    with_no_stream_open_the_outbox_is_not_read_per_commit,
);
both_backends!(a_quiet_stream_gets_heartbeats, shutdown_ends_open_streams_at_once);

mod two_replicas {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_spend_on_one_replica_reaches_a_stream_held_on_another().await;
    }
}

/// How long a test waits for something that should come at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    id: String,
    kind: String,
    data: Value,
}

/// A stream as a client reads it: blocks of lines ended by a blank line.
struct Sse {
    res: Response,
    buf: String,
}

/// Opens a stream (a client without the test client's overall timeout: streams stay open).
async fn open(url: String, bearer: &str, last_event_id: Option<&str>) -> Response {
    let mut req = reqwest::Client::new().get(url).bearer_auth(bearer);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

impl Sse {
    fn new(res: Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        Self { res, buf: String::new() }
    }

    async fn user(app: &TestApp, user: &TestUser, last_event_id: Option<&str>) -> Self {
        let mut sse = Self::new(open(app.url("/api/v1/credits/stream"), &user.token, last_event_id).await);
        assert_eq!(sse.block().await.as_deref(), Some("retry: 2000"));
        sse
    }

    /// The next block; `None` when the server ended the stream.
    async fn block(&mut self) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block = self.buf[..end].to_owned();
                self.buf.drain(..end + 2);
                return Some(block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.res.chunk()).await {
                Err(_) => panic!("nothing came on the stream in {PATIENCE:?}; so far: {:?}", self.buf),
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("the stream broke: {e}"),
            }
        }
    }

    /// The next event, past comments (heartbeats).
    async fn event(&mut self) -> SseEvent {
        loop {
            let block = self.block().await.expect("the stream ended before an event came");
            if block.starts_with(':') {
                continue;
            }
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in block.lines() {
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => kind = Some(value.to_owned()),
                    "data" => data = Some(serde_json::from_str::<Value>(value).unwrap()),
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            let event = SseEvent { id: id.unwrap(), kind: kind.unwrap(), data: data.unwrap() };
            // The event's JSON is the one `GET /events/{id}` and webhooks send.
            assert_eq!(event.data["id"], event.id.as_str());
            assert_eq!(event.data["type"], event.kind.as_str());
            assert!(event.id.starts_with("evt_"), "{}", event.id);
            return event;
        }
    }
}

async fn spend(app: &TestApp, user: &TestUser, amount: i64) {
    let res = app.spend(user, &Uuid::new_v4().to_string(), json!({ "amount": amount })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
}

async fn a_grant_a_spend_and_a_hold_reach_the_users_stream_in_order(app: TestApp) {
    let user = app.user().await;
    let other = app.user().await;
    let mut sse = Sse::user(&app, &user, None).await;
    app.grant(&user, 100).await;
    app.grant(&other, 100).await;
    spend(&app, &user, 10).await;
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some("h1"), &json!({ "amount": 5 })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let granted = sse.event().await;
    assert_eq!(granted.kind, "credits.granted");
    assert_eq!(granted.data["customer"]["id"], user.id.to_string());
    assert_eq!(granted.data["data"]["balance"]["balance"], 100);
    let spent = sse.event().await;
    assert_eq!(spent.kind, "credits.spent");
    assert_eq!(spent.data["data"]["balance"]["balance"], 90);
    let held = sse.event().await;
    assert_eq!(held.kind, "credits.hold.created");
    assert_eq!(held.data["data"]["balance"]["available"], 85);
    assert!(granted.id < spent.id && spent.id < held.id, "ids sort as the events were made");
    // Nothing of the other user's came in between: the next event is this user's next change.
    spend(&app, &user, 1).await;
    let next = sse.event().await;
    assert_eq!((next.kind.as_str(), &next.data["customer"]["id"]), ("credits.spent", &json!(user.id.to_string())));
}

/// With no stream open, the streams' tail keeps its place in the outbox once a second, not once
/// per commit (it read the outbox after every batch, under load a query per batch for nobody);
/// a stream opened afterwards starts from the log's end, not from where the idle tail last was,
/// and still gets the next change at once.
async fn with_no_stream_open_the_outbox_is_not_read_per_commit(app: TestApp) {
    const READS: &str = "tollgate_streams_outbox_reads_total";
    let user = app.user().await;
    app.grant(&user, 1_000).await;
    let before = metric(&app, READS).await;
    let started = Instant::now();
    for _ in 0..60 {
        spend(&app, &user, 1).await;
    }
    let reads = metric(&app, READS).await - before;
    // A pass a second reads the log once, and on PostgreSQL its holes once more.
    let allowed = 2.0 * (started.elapsed().as_secs_f64().ceil() + 1.0);
    assert!(reads <= allowed, "{reads} reads of the outbox for 60 spends with no stream open (at most {allowed})");

    let mut sse = Sse::user(&app, &user, None).await;
    spend(&app, &user, 7).await;
    // The first event is the spend made after the stream opened, not one of the 60 before it.
    let spent = sse.event().await;
    assert_eq!((spent.kind.as_str(), &spent.data["data"]["amount"]), ("credits.spent", &json!(7)));
    assert_eq!(spent.data["data"]["balance"]["balance"], 1_000 - 60 - 7);
}

/// Creates a server key with `scopes`; returns its secret.
async fn server_key(app: &TestApp, scopes: &[&str]) -> String {
    let res = app.post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "backend", "scopes": scopes })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
}

async fn as_key(app: &TestApp, key: &str, path: &str, idempotency: &str, body: Value) -> Response {
    app.client
        .request(if body.is_null() { reqwest::Method::PUT } else { reqwest::Method::POST }, app.url(path))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency)
        .json(&if body.is_null() { json!({}) } else { body })
        .send()
        .await
        .unwrap()
}

async fn a_customer_stream_sees_only_its_customer(app: TestApp) {
    let key = server_key(&app, &["customers:write", "credits:read", "credits:spend", "credits:grant"]).await;
    for id in ["org_a", "org_b"] {
        assert_eq!(as_key(&app, &key, &format!("/api/v1/customers/{id}"), "put", Value::Null).await.status(), 201);
    }
    let mut sse = Sse::new(open(app.url("/api/v1/customers/org_a/stream"), &key, None).await);
    assert_eq!(sse.block().await.as_deref(), Some("retry: 2000"));
    for id in ["org_b", "org_a"] {
        let res =
            as_key(&app, &key, &format!("/api/v1/customers/{id}/grant"), "g", json!({ "amount": 50, "reason": "t" }))
                .await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = as_key(&app, &key, &format!("/api/v1/customers/{id}/spend"), "s", json!({ "amount": 7 })).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let granted = sse.event().await;
    assert_eq!(granted.kind, "credits.granted");
    assert_eq!(granted.data["customer"]["external_id"], "org_a");
    let spent = sse.event().await;
    assert_eq!(spent.kind, "credits.spent");
    assert_eq!(spent.data["customer"]["external_id"], "org_a");
    assert_eq!(spent.data["data"]["balance"]["balance"], 43);
}

async fn last_event_id_replays_exactly_the_missed_events_then_goes_live(app: TestApp) {
    let user = app.user().await;
    let mut sse = Sse::user(&app, &user, None).await;
    app.grant(&user, 100).await;
    spend(&app, &user, 1).await;
    assert_eq!(sse.event().await.kind, "credits.granted");
    let seen = sse.event().await;
    assert_eq!(seen.kind, "credits.spent");
    drop(sse);

    // Missed while disconnected.
    for amount in [2, 3, 4] {
        spend(&app, &user, amount).await;
    }
    let mut sse = Sse::user(&app, &user, Some(&seen.id)).await;
    let mut balances = Vec::new();
    for _ in 0..3 {
        let event = sse.event().await;
        assert_eq!(event.kind, "credits.spent");
        balances.push(event.data["data"]["balance"]["balance"].as_i64().unwrap());
    }
    assert_eq!(balances, [97, 94, 90]);
    // Then live, with nothing repeated in between.
    spend(&app, &user, 5).await;
    assert_eq!(sse.event().await.data["data"]["balance"]["balance"], 85);

    // An id that names no event of this wallet is refused before the stream opens.
    for unknown in ["evt_00000000000000000000000000", "nonsense", &seen.id] {
        let who = if unknown == seen.id { app.user().await } else { user.clone() };
        let res = open(app.url("/api/v1/credits/stream"), &who.token, Some(unknown)).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "Last-Event-ID");
    }
    // An empty one is no id at all (a first connection).
    let res = open(app.url("/api/v1/credits/stream"), &user.token, Some("")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn streams_take_the_credentials_their_twins_take(app: TestApp) {
    let user = app.user().await;
    let create = |scopes: Value| {
        let app = &app;
        let token = user.token.clone();
        async move {
            let res = app.post("/api/v1/api-keys", Some(&token), None, &json!({ "name": "k", "scopes": scopes })).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
        }
    };
    let spend_only = create(json!(["credits:spend"])).await;
    let read = create(json!(["credits:read"])).await;
    let own = app.url("/api/v1/credits/stream");
    problem(open(own.clone(), &spend_only, None).await, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(open(own.clone(), &read, None).await.status(), StatusCode::OK);
    let res = reqwest::Client::new().get(&own).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let server = server_key(&app, &["customers:write", "credits:read"]).await;
    let unscoped = server_key(&app, &["customers:write"]).await;
    problem(open(own.clone(), &server, None).await, StatusCode::FORBIDDEN, "server_key_not_allowed").await;
    assert_eq!(as_key(&app, &server, "/api/v1/customers/org_s", "put", Value::Null).await.status(), 201);
    let theirs = app.url("/api/v1/customers/org_s/stream");
    assert_eq!(open(theirs.clone(), &server, None).await.status(), StatusCode::OK);
    problem(open(theirs.clone(), &unscoped, None).await, StatusCode::FORBIDDEN, "missing_scope").await;
    problem(open(theirs.clone(), &read, None).await, StatusCode::FORBIDDEN, "server_key_required").await;
    problem(open(theirs, &user.token, None).await, StatusCode::FORBIDDEN, "server_key_required").await;
    let nobody = app.url("/api/v1/customers/org_nobody/stream");
    problem(open(nobody, &server, None).await, StatusCode::NOT_FOUND, "customer_not_found").await;
}

/// Opens the hosted pages as a customer's browser does: a portal-session link minted with a server
/// key, opened once; returns the hosted session cookie (`name=value`).
async fn hosted_session(app: &TestApp, key: &str, external_id: &str) -> String {
    let path = format!("/api/v1/customers/{external_id}/portal-session");
    let res = as_key(app, key, &path, "p", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let link = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let token = link.split_once("?token=").expect("a hosted link").1.to_owned();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = browser.get(app.url(&format!("/hosted/open?token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/hosted");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// Opens `GET /hosted/stream` with a hosted session cookie (`name=value`), if any.
async fn open_hosted(app: &TestApp, cookie: Option<&str>, last_event_id: Option<&str>) -> Response {
    let mut req = reqwest::Client::new().get(app.url("/api/v1/hosted/stream"));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

impl Sse {
    async fn hosted(app: &TestApp, cookie: &str, last_event_id: Option<&str>) -> Self {
        let mut sse = Self::new(open_hosted(app, Some(cookie), last_event_id).await);
        assert_eq!(sse.block().await.as_deref(), Some("retry: 2000"));
        sse
    }
}

/// A server key for the hosted tests, and customers `ids` it created.
async fn hosted_customers(app: &TestApp, ids: &[&str]) -> String {
    let key =
        server_key(app, &["customers:write", "credits:read", "credits:spend", "credits:grant", "billing:write"]).await;
    for id in ids {
        assert_eq!(as_key(app, &key, &format!("/api/v1/customers/{id}"), "put", Value::Null).await.status(), 201);
    }
    key
}

/// A server-key spend of `amount` from customer `id`.
async fn customer_spend(app: &TestApp, key: &str, id: &str, amount: i64) {
    let path = format!("/api/v1/customers/{id}/spend");
    let res = as_key(app, key, &path, &Uuid::new_v4().to_string(), json!({ "amount": amount })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
}

async fn customer_grant(app: &TestApp, key: &str, id: &str, amount: i64) {
    let path = format!("/api/v1/customers/{id}/grant");
    let res = as_key(app, key, &path, &Uuid::new_v4().to_string(), json!({ "amount": amount, "reason": "t" })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
}

async fn a_hosted_stream_sees_only_its_sessions_customer(app: TestApp) {
    let key = hosted_customers(&app, &["org_h", "org_other"]).await;
    let cookie = hosted_session(&app, &key, "org_h").await;
    let mut sse = Sse::hosted(&app, &cookie, None).await;
    // The other customer's changes come first: none of them may reach this stream.
    customer_grant(&app, &key, "org_other", 50).await;
    customer_spend(&app, &key, "org_other", 5).await;
    customer_grant(&app, &key, "org_h", 30).await;
    customer_spend(&app, &key, "org_h", 7).await;

    let granted = sse.event().await;
    assert_eq!(granted.kind, "credits.granted");
    assert_eq!(granted.data["customer"]["external_id"], "org_h");
    let spent = sse.event().await;
    assert_eq!(spent.kind, "credits.spent");
    assert_eq!(spent.data["customer"]["external_id"], "org_h");
    assert_eq!(spent.data["data"]["balance"]["balance"], 23);
    // Another session, of the other customer, gets the other customer's events only.
    let theirs = hosted_session(&app, &key, "org_other").await;
    let mut other = Sse::hosted(&app, &theirs, None).await;
    customer_spend(&app, &key, "org_h", 1).await;
    customer_spend(&app, &key, "org_other", 2).await;
    let next = other.event().await;
    assert_eq!((next.kind.as_str(), &next.data["customer"]["external_id"]), ("credits.spent", &json!("org_other")));
    assert_eq!(next.data["data"]["balance"]["balance"], 43);
    assert_eq!(sse.event().await.data["data"]["balance"]["balance"], 22);
}

async fn a_hosted_stream_resumes_after_last_event_id(app: TestApp) {
    let key = hosted_customers(&app, &["org_r", "org_q"]).await;
    let cookie = hosted_session(&app, &key, "org_r").await;
    let mut sse = Sse::hosted(&app, &cookie, None).await;
    customer_grant(&app, &key, "org_r", 100).await;
    customer_spend(&app, &key, "org_r", 1).await;
    assert_eq!(sse.event().await.kind, "credits.granted");
    let seen = sse.event().await;
    assert_eq!(seen.kind, "credits.spent");
    drop(sse);

    // Missed while disconnected (with another customer's changes in between).
    for amount in [2, 3, 4] {
        customer_spend(&app, &key, "org_r", amount).await;
        customer_grant(&app, &key, "org_q", amount).await;
    }
    let mut sse = Sse::hosted(&app, &cookie, Some(&seen.id)).await;
    let mut balances = Vec::new();
    for _ in 0..3 {
        let event = sse.event().await;
        assert_eq!((event.kind.as_str(), &event.data["customer"]["external_id"]), ("credits.spent", &json!("org_r")));
        balances.push(event.data["data"]["balance"]["balance"].as_i64().unwrap());
    }
    assert_eq!(balances, [97, 94, 90]);
    // Then live, with nothing repeated in between.
    customer_spend(&app, &key, "org_r", 5).await;
    assert_eq!(sse.event().await.data["data"]["balance"]["balance"], 85);

    // An id of another customer's event, or of none, is refused before the stream opens.
    let mut theirs = Sse::hosted(&app, &hosted_session(&app, &key, "org_q").await, None).await;
    customer_grant(&app, &key, "org_q", 1).await;
    let their_event = theirs.event().await;
    for unknown in [their_event.id.as_str(), "evt_00000000000000000000000000", "nonsense"] {
        let res = open_hosted(&app, Some(&cookie), Some(unknown)).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "Last-Event-ID");
    }
}

async fn a_hosted_stream_needs_a_live_hosted_session(app: TestApp) {
    let key = hosted_customers(&app, &["org_s"]).await;
    let user = app.user().await;
    // No cookie, a cookie that names no session, and a bearer credential: the hosted pages' 401.
    problem(open_hosted(&app, None, None).await, StatusCode::UNAUTHORIZED, "portal_session_required").await;
    let forged = open_hosted(&app, Some("tollgate_hosted=not-a-session"), None).await;
    problem(forged, StatusCode::UNAUTHORIZED, "portal_session_required").await;
    for bearer in [&user.token, &key] {
        let res =
            reqwest::Client::new().get(app.url("/api/v1/hosted/stream")).bearer_auth(bearer).send().await.unwrap();
        problem(res, StatusCode::UNAUTHORIZED, "portal_session_required").await;
    }

    let cookie = hosted_session(&app, &key, "org_s").await;
    assert!(cookie.starts_with("tollgate_hosted="), "{cookie}");
    Sse::hosted(&app, &cookie, None).await;
    // The hosted session's cookie is not a credential for the other streams.
    let res = reqwest::Client::new().get(app.url("/api/v1/customers/org_s/stream")).header("cookie", &cookie);
    problem(res.send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // Sessions last 30 minutes; an ended one opens no stream.
    app.clock.advance(chrono::Duration::minutes(31));
    problem(open_hosted(&app, Some(&cookie), None).await, StatusCode::UNAUTHORIZED, "portal_session_required").await;
}

async fn a_quiet_stream_gets_heartbeats(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.stream_heartbeat = Duration::from_secs(1)).await else {
        return;
    };
    let user = app.user().await;
    let mut sse = Sse::user(&app, &user, None).await;
    let started = Instant::now();
    assert_eq!(sse.block().await.as_deref(), Some(": heartbeat"));
    assert_eq!(sse.block().await.as_deref(), Some(": heartbeat"));
    assert!(started.elapsed() >= Duration::from_millis(1900), "one a second, not more often");
}

async fn shutdown_ends_open_streams_at_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let user = app.user().await;
    let replica = app.replica(|_| {}).await;
    let url = format!("{}/api/v1/credits/stream", replica.address);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = Sse::new(open(url.clone(), &user.token, None).await);
        assert_eq!(sse.block().await.as_deref(), Some("retry: 2000"));
        streams.push(sse);
    }
    let started = Instant::now();
    replica.shutdown.start();
    for sse in &mut streams {
        assert_eq!(sse.block().await, None, "the stream ends cleanly");
    }
    // The graceful shutdown did not wait out its 30 seconds for the streams.
    tokio::time::timeout(PATIENCE, replica.stopped).await.expect("stopped in time").unwrap().unwrap();
    assert!(started.elapsed() < PATIENCE);
    // The first replica still serves.
    Sse::user(&app, &user, None).await;
}

async fn a_spend_on_one_replica_reaches_a_stream_held_on_another() {
    let Some(a) = TestApp::spawn(Backend::Postgres).await else { return };
    let b = a.replica(|_| {}).await;
    let user = a.user().await;
    let mut sse = Sse::new(open(format!("{}/api/v1/credits/stream", b.address), &user.token, None).await);
    assert_eq!(sse.block().await.as_deref(), Some("retry: 2000"));
    a.grant(&user, 1_000).await;
    assert_eq!(sse.event().await.kind, "credits.granted");
    let mut balance = 1_000;
    for amount in 1..=5 {
        spend(&a, &user, amount).await;
        balance -= amount;
        let committed = Instant::now();
        let event = sse.event().await;
        let took = committed.elapsed();
        assert_eq!(event.kind, "credits.spent");
        assert_eq!(event.data["data"]["balance"]["balance"], balance);
        // The promise: within a second (by LISTEN/NOTIFY; the fallback poll is 1 s).
        assert!(took < Duration::from_secs(1), "spend {amount} took {took:?} to reach the other replica");
    }
    b.shutdown.start();
}

mod late_commit_with_a_lower_seq {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::an_event_committed_late_with_a_lower_seq_still_reaches_its_stream().await;
    }
}

/// Gap safety on PostgreSQL: transaction A takes its id first, B takes a lower `seq` than A's
/// event, A commits, B commits later. B's event must still reach its stream: a reader that moved
/// past A's seq must not skip it.
async fn an_event_committed_late_with_a_lower_seq_still_reaches_its_stream() {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let (x, y) = (app.user().await, app.user().await);
    let mut stream_x = Sse::user(&app, &x, None).await;
    let mut stream_y = Sse::user(&app, &y, None).await;
    let insert = |customer: Uuid, tag: &str| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO events (id, type, customer_id, data, created_at) VALUES ($1, 'credits.granted', $2, $3, now())",
            [
                format!("evt_LATE{}", &Uuid::now_v7().simple().to_string().to_uppercase()[..22]).into(),
                customer.into(),
                json!({ "tag": tag }).into(),
            ],
        )
    };
    let conn_a = Database::connect(&app.database_url).await.unwrap();
    let conn_b = Database::connect(&app.database_url).await.unwrap();
    let a = conn_a.begin().await.unwrap();
    a.execute_raw(Statement::from_string(DbBackend::Postgres, "SELECT pg_current_xact_id()")).await.unwrap();
    let b = conn_b.begin().await.unwrap();
    b.execute_raw(Statement::from_string(DbBackend::Postgres, "SELECT pg_current_xact_id()")).await.unwrap();
    b.execute_raw(insert(x.id, "b")).await.unwrap(); // the lower seq
    a.execute_raw(insert(y.id, "a")).await.unwrap();
    a.commit().await.unwrap();
    // Y's event (A's) goes out while B is still open.
    let event = stream_y.event().await;
    assert_eq!(event.data["data"]["tag"], "a");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.commit().await.unwrap();
    let event = stream_x.event().await;
    assert_eq!(event.data["data"]["tag"], "b", "the late event with the lower seq reached its stream");
}
