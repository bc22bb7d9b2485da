//! Webhooks to the product (#18): real receivers over HTTP, every delivery verified with the
//! `standardwebhooks` crate (not Tollgate's code), on SQLite and PostgreSQL.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::{Client, StatusCode};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    both, both_backends,
    helpers::{ADMIN_KEY, Backend, PASSWORD, TestApp, TestUser, pg_database, problem, test_settings},
};

// ---------------------------------------------------------------------------------------------
// The receiver: a real HTTP server recording what it is sent, answering as the test says.
// ---------------------------------------------------------------------------------------------

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// What the receiver answered (0: it hung).
    pub answered: u16,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Verified with the `standardwebhooks` crate, as a product would.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).unwrap().verify(self.body.as_bytes(), &self.headers).is_ok()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer, in order; 200 once they are used up.
    script: Mutex<VecDeque<u16>>,
    /// Answer 500 to each webhook id's first request.
    fail_first: Mutex<Option<HashSet<String>>>,
    /// While set, requests hang until it is cleared.
    hang: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
    arrived: tokio::sync::Notify,
}

pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<ReceiverState>) -> HttpResponse {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in req.headers() {
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    let body = String::from_utf8(body.to_vec()).unwrap();
    let hung = state.hang.load(std::sync::atomic::Ordering::SeqCst);
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let status = if hung {
        0
    } else if let Some(seen) = state.fail_first.lock().unwrap().as_mut()
        && seen.insert(id)
    {
        500
    } else {
        state.script.lock().unwrap().pop_front().unwrap_or(200)
    };
    state.received.lock().unwrap().push(Received { headers, body, answered: status });
    state.arrived.notify_waiters();
    if hung {
        loop {
            let released = state.released.notified();
            if !state.hang.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        return HttpResponse::ServiceUnavailable().finish();
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("ok")
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let data = web::Data::from(state.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::post().to(receive)))
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self { url: format!("http://127.0.0.1:{port}/hooks"), state }
    }

    /// Answers these statuses first, then 200.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn fail_each_first_request(&self) {
        *self.state.fail_first.lock().unwrap() = Some(HashSet::new());
    }

    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            self.state.released.notify_waiters();
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (up to `secs`) until `done` holds of what was received.
    pub async fn wait_until(&self, secs: u64, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the receiver did not get what was expected within {secs} s; it got {received:#?}");
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), arrived).await;
        }
    }

    /// Waits until `n` requests came, then a little longer to see that no more come.
    pub async fn exactly(&self, n: usize) -> Vec<Received> {
        self.wait_until(90, |r| r.len() >= n).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let received = self.received();
        assert_eq!(received.len(), n, "{received:#?}");
        received
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn admin_send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).header("x-admin-key", ADMIN_KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Registers an endpoint for `events`; returns its id and secret.
async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let res = app.post_admin("/api/v1/webhook-endpoints", None, &json!({ "url": url, "events": events })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

/// A spend of `amount` through the API.
async fn spend(app: &TestApp, user: &TestUser, amount: i64) {
    let res = app.spend(user, &Uuid::new_v4().to_string(), json!({ "amount": amount })).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn attempts(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let res =
        admin_send(app, reqwest::Method::GET, &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page: Value = res.json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

/// A server key with `scopes`.
async fn server_key(app: &TestApp, scopes: &[&str]) -> String {
    let res = app.post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "backend", "scopes": scopes })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
}

fn of_type<'a>(received: &'a [Received], kind: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.json()["type"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests on the in-process server
// ---------------------------------------------------------------------------------------------

both!(
    a_spend_is_delivered_once_signed_as_standard_webhooks_sign,
    during_a_rotation_both_secrets_sign,
    endpoints_get_only_the_event_types_they_asked_for,
    redeliver_sends_the_event_again_as_a_new_delivery,
    endpoints_are_managed_by_admins_and_their_secret_is_shown_once,
    an_unreachable_endpoint_records_why_and_deleting_it_deletes_its_deliveries,
);

async fn a_spend_is_delivered_once_signed_as_standard_webhooks_sign(app: TestApp) {
    let receiver = Receiver::start().await;
    let user = app.user().await;
    app.grant(&user, 50).await;
    let (id, secret) = endpoint(&app, &receiver.url, &["credits.spent"]).await;
    spend(&app, &user, 7).await;

    let received = receiver.exactly(1).await;
    let delivery = &received[0];
    assert!(delivery.verifies_with(&secret), "the standardwebhooks crate verifies it: {delivery:#?}");
    assert!(!delivery.verifies_with(&tollgate::webhooks::signing::new_secret()), "and no other secret does");
    assert_eq!(delivery.headers["content-type"], "application/json");
    let event = delivery.json();
    assert_eq!(event["type"], "credits.spent");
    assert_eq!(event["id"].as_str().unwrap(), delivery.id(), "webhook-id is the event's id");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["customer"]["id"], user.id.to_string());
    let timestamp: i64 = delivery.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let signature = delivery.headers["webhook-signature"].to_str().unwrap();
    assert!(signature.starts_with("v1,") && !signature.contains(' '), "one secret, one signature: {signature}");

    let attempts = attempts(&app, &id).await;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["event_id"], event["id"]);
    assert_eq!(attempts[0]["event_type"], "credits.spent");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["succeeded"], true);
    assert_eq!(attempts[0]["delivery_status"], "succeeded");
    assert!(attempts[0]["error"].is_null() && attempts[0]["duration_ms"].as_i64().unwrap() >= 0);
}

async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(backend: Backend) {
    // Three immediate retries.
    let Some(app) = TestApp::spawn_with(backend, |s| s.webhook_retry_schedule = vec![Duration::ZERO; 3]).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(&[500, 503, 404]);
    let user = app.user().await;
    app.grant(&user, 50).await;
    let (id, secret) = endpoint(&app, &receiver.url, &["credits.spent"]).await;
    spend(&app, &user, 3).await;

    let received = receiver.exactly(4).await;
    let ids: HashSet<String> = received.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 1, "four attempts at one event");
    assert!(received.iter().all(|r| r.verifies_with(&secret)));
    assert_eq!(received.iter().map(|r| r.answered).collect::<Vec<_>>(), [500, 503, 404, 200]);

    let mut attempts = attempts(&app, &id).await;
    attempts.reverse();
    assert_eq!(attempts.len(), 4, "{attempts:#?}");
    for (n, (attempt, status)) in attempts.iter().zip([500, 503, 404, 200]).enumerate() {
        assert_eq!(attempt["attempt"], n + 1);
        assert_eq!(attempt["status_code"], status);
        assert_eq!(attempt["succeeded"], status == 200);
        assert_eq!(attempt["error"].is_null(), status == 200, "{attempt}");
        assert_eq!(attempt["delivery_status"], "succeeded");
    }
    // A success ends the endpoint's run of failures.
    let endpoint: Value = admin_send(&app, reqwest::Method::GET, &format!("/api/v1/webhook-endpoints/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(endpoint["failing_since"].is_null() && endpoint["enabled"] == true, "{endpoint}");
}

async fn during_a_rotation_both_secrets_sign(app: TestApp) {
    let receiver = Receiver::start().await;
    let user = app.user().await;
    app.grant(&user, 50).await;
    let (id, old) = endpoint(&app, &receiver.url, &["credits.spent"]).await;
    let res =
        admin_send(&app, reqwest::Method::POST, &format!("/api/v1/webhook-endpoints/{id}/rotate-secret"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"].as_str().unwrap().parse().unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "the old secret signs for 24 h: {until}");

    spend(&app, &user, 1).await;
    let received = receiver.exactly(1).await;
    let signature = received[0].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signature.split(' ').count(), 2, "both signatures: {signature}");
    assert!(received[0].verifies_with(&new), "a receiver holding the new secret verifies");
    assert!(received[0].verifies_with(&old), "a receiver holding only the old secret still verifies");

    // Neither secret is shown again.
    let shown = admin_send(&app, reqwest::Method::GET, &format!("/api/v1/webhook-endpoints/{id}"), None).await;
    let text = shown.text().await.unwrap();
    assert!(!text.contains(&new) && !text.contains(&old) && !text.contains("whsec_"), "{text}");
}

async fn endpoints_get_only_the_event_types_they_asked_for(app: TestApp) {
    let (granted, spent, all) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let user = app.user().await;
    endpoint(&app, &granted.url, &["credits.granted"]).await;
    endpoint(&app, &spent.url, &["credits.spent"]).await;
    let (_, all_secret) = endpoint(&app, &all.url, &["*"]).await;
    app.grant(&user, 20).await;
    spend(&app, &user, 2).await;
    spend(&app, &user, 3).await;

    let got = all
        .wait_until(90, |r| of_type(r, "credits.granted").len() == 1 && of_type(r, "credits.spent").len() == 2)
        .await;
    assert!(got.iter().all(|r| r.verifies_with(&all_secret)));
    let granted = granted.exactly(1).await;
    assert_eq!(granted[0].json()["type"], "credits.granted");
    let spent = spent.exactly(2).await;
    assert!(spent.iter().all(|r| r.json()["type"] == "credits.spent"));
    assert_ne!(spent[0].id(), spent[1].id());

    // Types are checked: unknown ones and an empty list are refused, and nothing is stored.
    let before = app.count("webhook_endpoints").await;
    for events in [json!(["credits.minted"]), json!([]), json!(["credits.spent", "nope"])] {
        let res = app.post_admin("/api/v1/webhook-endpoints", None, &json!({ "url": all.url, "events": events })).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "events", "{body}");
    }
    assert_eq!(app.count("webhook_endpoints").await, before);
    // `*` with others is all of them.
    let res = app
        .post_admin("/api/v1/webhook-endpoints", None, &json!({ "url": all.url, "events": ["credits.spent", "*"] }))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["events"], json!(["*"]));
}

async fn redeliver_sends_the_event_again_as_a_new_delivery(app: TestApp) {
    let receiver = Receiver::start().await;
    let user = app.user().await;
    app.grant(&user, 50).await;
    let (id, secret) = endpoint(&app, &receiver.url, &["credits.spent"]).await;
    spend(&app, &user, 4).await;
    let first = receiver.exactly(1).await;
    let event_id = first[0].id();

    let path = format!("/api/v1/webhook-endpoints/{id}/events/{event_id}/redeliver");
    let res = admin_send(&app, reqwest::Method::POST, &path, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let delivery: Value = res.json().await.unwrap();
    assert_eq!(delivery["event_id"], event_id.as_str());
    assert_eq!(delivery["status"], "pending");

    let received = receiver.exactly(2).await;
    assert_eq!(received[1].id(), event_id, "the same webhook-id, so receivers can tell it is the same event");
    assert_eq!(received[1].body, received[0].body);
    assert!(received[1].verifies_with(&secret));
    let attempts = attempts(&app, &id).await;
    assert_eq!(attempts.len(), 2);
    assert_ne!(attempts[0]["delivery_id"], attempts[1]["delivery_id"], "a new delivery");
    assert!(attempts.iter().all(|a| a["attempt"] == 1 && a["succeeded"] == true));

    // An event that is not in the outbox, and an endpoint that does not exist.
    let res = admin_send(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/webhook-endpoints/{id}/events/evt_nope/redeliver"),
        None,
    )
    .await;
    problem(res, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = admin_send(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/webhook-endpoints/{}/events/{event_id}/redeliver", Uuid::new_v4()),
        None,
    )
    .await;
    problem(res, StatusCode::NOT_FOUND, "webhook_endpoint_not_found").await;
    // A paused endpoint takes no redelivery.
    let res = admin_send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhook-endpoints/{id}"),
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    problem(
        admin_send(&app, reqwest::Method::POST, &path, None).await,
        StatusCode::CONFLICT,
        "webhook_endpoint_disabled",
    )
    .await;
}

async fn endpoints_are_managed_by_admins_and_their_secret_is_shown_once(app: TestApp) {
    let res = app
        .post_admin(
            "/api/v1/webhook-endpoints",
            None,
            &json!({ "url": "http://127.0.0.1:9/a", "events": ["credits.spent"], "description": "billing backend" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    assert!(key.len() >= 24, "whsec_ and at least 24 random bytes");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["description"], "billing backend");
    let id = created["id"].as_str().unwrap();

    let list: Value =
        admin_send(&app, reqwest::Method::GET, "/api/v1/webhook-endpoints", None).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none() && !list.to_string().contains(secret));

    let path = format!("/api/v1/webhook-endpoints/{id}");
    let patch = json!({ "url": "https://hooks.example.com/x", "events": ["*"], "description": null, "enabled": false });
    let res = admin_send(&app, reqwest::Method::PATCH, &path, Some(patch)).await;
    // In development any http(s) URL is taken, resolved or not.
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["url"], "https://hooks.example.com/x");
    assert_eq!(patched["events"], json!(["*"]));
    assert!(patched["description"].is_null() && patched["enabled"] == false, "{patched}");
    let res = admin_send(&app, reqwest::Method::PATCH, &path, Some(json!({ "url": "ftp://x/y" }))).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["code"], "url_scheme");

    // Administrators, and server keys with webhooks:write; no one else.
    let key = server_key(&app, &["webhooks:write"]).await;
    let body = json!({ "url": "http://127.0.0.1:9/b", "events": ["balance.low"] });
    let res = app.post("/api/v1/webhook-endpoints", Some(&key), None, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let listed: Value = app.get("/api/v1/webhook-endpoints", Some(&key)).await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let reader = server_key(&app, &["events:read", "credits:read"]).await;
    let res = app.post("/api/v1/webhook-endpoints", Some(&reader), None, &body).await;
    let refused = problem(res, StatusCode::FORBIDDEN, "missing_scope").await;
    assert_eq!(refused["required_scope"], "webhooks:write");
    let user = app.user().await;
    let res = app.post("/api/v1/webhook-endpoints", Some(&user.token), None, &body).await;
    problem(res, StatusCode::FORBIDDEN, "server_key_required").await;
    let res = app.client.get(app.url("/api/v1/webhook-endpoints")).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_eq!(app.count("webhook_endpoints").await, 2);

    let res = app.client.delete(app.url(&path)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(
        admin_send(&app, reqwest::Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "webhook_endpoint_not_found",
    )
    .await;
    problem(
        admin_send(&app, reqwest::Method::DELETE, &path, None).await,
        StatusCode::NOT_FOUND,
        "webhook_endpoint_not_found",
    )
    .await;
}

async fn an_unreachable_endpoint_records_why_and_deleting_it_deletes_its_deliveries(app: TestApp) {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let user = app.user().await;
    app.grant(&user, 10).await;
    let (id, _) = endpoint(&app, &format!("http://127.0.0.1:{port}/hook"), &["credits.spent"]).await;
    spend(&app, &user, 1).await;
    let mut seen = Vec::new();
    for _ in 0..600 {
        seen = attempts(&app, &id).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 1, "one attempt, the retry is 5 s away: {seen:#?}");
    assert!(seen[0]["status_code"].is_null() && seen[0]["succeeded"] == false);
    let error = seen[0]["error"].as_str().unwrap();
    assert!(error.contains("connect") || error.contains("refused"), "{error}");
    assert!(!error.contains(&port.to_string()), "the URL is left out of the error: {error}");
    assert_eq!(seen[0]["delivery_status"], "pending");

    let res = admin_send(&app, reqwest::Method::DELETE, &format!("/api/v1/webhook-endpoints/{id}"), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count("webhook_deliveries").await, 0);
    assert_eq!(app.count("webhook_attempts").await, 0);
}

both_backends!(
    a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt,
    an_endpoint_failing_long_enough_is_disabled_and_an_event_says_so,
    production_refuses_urls_that_reach_internal_addresses,
);

async fn an_endpoint_failing_long_enough_is_disabled_and_an_event_says_so(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.webhook_retry_schedule = vec![Duration::from_millis(500); 20];
        s.webhook_disable_after = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let broken = Receiver::start().await;
    broken.script(&[500; 100]);
    let watcher = Receiver::start().await;
    let user = app.user().await;
    app.grant(&user, 50).await;
    let (id, _) = endpoint(&app, &broken.url, &["credits.spent"]).await;
    let (_, watcher_secret) = endpoint(&app, &watcher.url, &["webhook_endpoint.disabled"]).await;
    spend(&app, &user, 1).await;

    let got = watcher.wait_until(90, |r| !r.is_empty()).await;
    let event = got[0].json();
    assert!(got[0].verifies_with(&watcher_secret));
    assert_eq!(event["type"], "webhook_endpoint.disabled");
    assert_eq!(event["data"]["endpoint"]["id"], id.as_str());
    assert_eq!(event["data"]["endpoint"]["url"], broken.url.as_str());

    let path = format!("/api/v1/webhook-endpoints/{id}");
    let endpoint: Value = admin_send(&app, reqwest::Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(endpoint["enabled"], false);
    assert!(endpoint["disabled_at"].is_string() && endpoint["failing_since"].is_string(), "{endpoint}");
    let failing_since: chrono::DateTime<chrono::Utc> = endpoint["failing_since"].as_str().unwrap().parse().unwrap();
    let disabled_at: chrono::DateTime<chrono::Utc> = endpoint["disabled_at"].as_str().unwrap().parse().unwrap();
    assert!(disabled_at - failing_since >= chrono::Duration::seconds(2), "disabled after 2 s of failures, not before");
    let attempts_then = broken.received().len();
    assert!(attempts_then >= 3, "{attempts_then}");
    // Disabled, it is sent nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(broken.received().len(), attempts_then);
    // Enabled again, it starts afresh: its pending delivery goes out.
    let res = admin_send(&app, reqwest::Method::PATCH, &path, Some(json!({ "enabled": true }))).await;
    let enabled: Value = res.json().await.unwrap();
    assert!(enabled["enabled"] == true && enabled["failing_since"].is_null() && enabled["disabled_at"].is_null());
    broken.wait_until(90, |r| r.len() > attempts_then).await;
}

async fn production_refuses_urls_that_reach_internal_addresses(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.environment = tollgate::config::Environment::Production).await
    else {
        return;
    };
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.0.0.7/hook",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let res = app.post_admin("/api/v1/webhook-endpoints", None, &json!({ "url": url, "events": ["*"] })).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
        assert_eq!(body["errors"][0]["code"], "url_not_allowed", "{url}: {body}");
    }
    for url in ["ftp://93.184.215.14/", "file:///etc/passwd", "not a url"] {
        let res = app.post_admin("/api/v1/webhook-endpoints", None, &json!({ "url": url, "events": ["*"] })).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    assert_eq!(app.count("webhook_endpoints").await, 0);
    // A public address is taken; changing it to an internal one is not.
    let (id, _) = endpoint(&app, "https://93.184.215.14/hook", &["*"]).await;
    let res = admin_send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhook-endpoints/{id}"),
        Some(json!({ "url": "http://127.0.0.1/x" })),
    )
    .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["code"], "url_not_allowed");

    // WEBHOOK_ALLOW_PRIVATE_URLS lets them through.
    let Some(allowed) = TestApp::spawn_with(backend, |s| {
        s.environment = tollgate::config::Environment::Production;
        s.webhook_allow_private_urls = true;
    })
    .await
    else {
        return;
    };
    endpoint(&allowed, "http://127.0.0.1:8080/hook", &["*"]).await;
}

// ---------------------------------------------------------------------------------------------
// Two dispatchers on one PostgreSQL database
// ---------------------------------------------------------------------------------------------

/// Two servers (each with its dispatcher) on one PostgreSQL database: every event reaches the
/// receiver, each attempt exactly once, though both replicas claim deliveries at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_dispatchers_never_send_one_attempt_twice() {
    let Some(url) = pg_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut settings = test_settings(url.clone(), dir.path().to_path_buf());
        settings.webhook_retry_schedule = vec![Duration::ZERO; 3];
        let app = tollgate::startup::Application::build(settings).await.unwrap();
        replicas.push(format!("http://127.0.0.1:{}", app.port()));
        tokio::spawn(app.run_until_stopped());
    }
    let receiver = Receiver::start().await;
    // Each event's first request fails, so each is claimed twice, by either replica.
    receiver.fail_each_first_request();
    let client = Client::new();
    let res = client
        .post(format!("{}/api/v1/webhook-endpoints", replicas[0]))
        .header("x-admin-key", ADMIN_KEY)
        .json(&json!({ "url": receiver.url, "events": ["*"] }))
        .send()
        .await
        .unwrap();
    let secret = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();

    let email = format!("two-{}@example.com", Uuid::new_v4().simple());
    let user: Value = client
        .post(format!("{}/api/v1/auth/register", replicas[0]))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spends = futures_util::future::join_all((0..40).map(|i| {
        let (client, base, user_id) = (client.clone(), replicas[i % 2].clone(), user["id"].clone());
        async move {
            let res = client
                .post(format!("{base}/api/v1/credits/grant"))
                .header("x-admin-key", ADMIN_KEY)
                .header("Idempotency-Key", format!("two-{i}"))
                .json(&json!({ "user_id": user_id, "amount": 1, "reason": "two" }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }));
    spends.await;

    receiver.wait_until(180, |r| r.iter().filter(|x| x.answered == 200).count() >= 40).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let received = receiver.received();
    let mut per_event: HashMap<String, Vec<u16>> = HashMap::new();
    for r in &received {
        assert!(r.verifies_with(&secret));
        per_event.entry(r.id()).or_default().push(r.answered);
    }
    assert_eq!(per_event.len(), 40, "one event per grant");
    for (id, answers) in &per_event {
        assert_eq!(answers, &[500, 200], "event {id}: one failed attempt, one retry, never a repeat");
    }
    let db = Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS attempts, COUNT(DISTINCT delivery_id) AS deliveries FROM webhook_attempts",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "attempts").unwrap(), 80);
    assert_eq!(row.try_get::<i64>("", "deliveries").unwrap(), 40);
}

// ---------------------------------------------------------------------------------------------
// kill -9 between commit and delivery, with the real binary
// ---------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_binary(database_url: &str, data_dir: &std::path::Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database_url)
        .env("TOLLGATE_DATA_DIR", data_dir)
        .env("JWT_SECRET", "webhooks-kill-jwt-secret-0123456789-abcdef")
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("FRONTEND_DIR", "/nonexistent")
        .env("WORKERS", "2")
        .env("WEBHOOK_TIMEOUT_SECONDS", "2")
        .env("WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tollgate");
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = Client::new();
    for _ in 0..300 {
        if client.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tollgate did not become ready");
}

/// The server is killed (SIGKILL) while its deliveries are in flight, and one event was committed
/// a moment before: after a restart on the same database every event is delivered.
async fn killed_between_commit_and_delivery_delivers_after_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("kill.db").display()),
        Backend::Postgres => match pg_database().await {
            Some(url) => url,
            None => return,
        },
    };
    let receiver = Receiver::start().await;
    receiver.hang(true);
    let mut server = start_binary(&url, dir.path()).await;
    let client = Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/webhook-endpoints", server.base))
        .header("x-admin-key", ADMIN_KEY)
        .json(&json!({ "url": receiver.url, "events": ["credits.granted", "credits.spent"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let email = format!("kill-{}@example.com", Uuid::new_v4().simple());
    let user: Value = client
        .post(format!("{}/api/v1/auth/register", server.base))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = client
        .post(format!("{}/api/v1/credits/grant", server.base))
        .header("x-admin-key", ADMIN_KEY)
        .header("Idempotency-Key", "kill-grant")
        .json(&json!({ "user_id": user["id"], "amount": 10, "reason": "kill" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The grant's delivery is in flight (the receiver holds it) ...
    receiver.wait_until(90, |r| !r.is_empty()).await;
    // ... and a spend commits right before the kill.
    let session: Value = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = client
        .post(format!("{}/api/v1/credits/spend", server.base))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .header("Idempotency-Key", "kill-spend")
        .json(&json!({ "amount": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    receiver.hang(false);
    let before_restart = receiver.received().len();

    let _restarted = start_binary(&url, dir.path()).await;
    let received = receiver
        .wait_until(90, |r| {
            of_type(r, "credits.granted").iter().any(|x| x.answered == 200)
                && of_type(r, "credits.spent").iter().any(|x| x.answered == 200)
        })
        .await;
    assert!(received.len() > before_restart);
    for r in received.iter().filter(|r| r.answered == 200) {
        assert!(r.verifies_with(&secret), "{r:#?}");
    }
}

both_backends!(killed_between_commit_and_delivery_delivers_after_restart);
