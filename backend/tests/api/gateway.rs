//! The LLM gateway (#16): the model rate card, spends priced by tokens, and
//! `/gateway/v1/chat/completions` in front of a fake OpenAI-compatible upstream (`fake_llm`):
//! held at the worst case before anything is sent, charged the reported usage, released on
//! failure, and never below zero under concurrency.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::config::{Secret, Settings};

use crate::{
    both_backends,
    fake_llm::{CACHED_TOKENS, COMPLETION_TOKENS, FakeLlm, PROMPT_TOKENS, REPLY},
    helpers::{Backend, TestApp, TestUser, problem},
};

const UPSTREAM_KEY: &str = "sk-upstream-secret-for-tests";
/// The test model's prices, per million tokens.
const P_IN: u64 = 1000;
const P_CACHED: u64 = 500;
const P_OUT: u64 = 4000;
const MAX_OUT: u64 = 1000;

/// What the fake's usage costs: ceil((1000·1000 + 200·500 + 300·4000) / 1e6) = ceil(2.3) = 3.
fn reported_cost() -> i64 {
    let micro = (PROMPT_TOKENS - CACHED_TOKENS) * P_IN + CACHED_TOKENS * P_CACHED + COMPLETION_TOKENS * P_OUT;
    i64::try_from(micro.div_ceil(1_000_000)).unwrap()
}

/// The worst case of `messages()` on a model counted in bytes: 3 + 4 + "user" + "Say hello"
/// = 20 input tokens, and 1000 output: ceil((20·1000 + 1000·4000) / 1e6) = 5.
const WORST: i64 = 5;

fn messages() -> Value {
    json!([{ "role": "user", "content": "Say hello" }])
}

async fn gateway_app(backend: Backend, fake: &FakeLlm, timeout: Duration) -> Option<TestApp> {
    let base = fake.base.clone();
    TestApp::spawn_with(backend, move |s| point_at(s, base, timeout)).await
}

/// A server's gateway aimed at the fake upstream at `base`.
fn point_at(s: &mut Settings, base: String, timeout: Duration) {
    s.gateway_upstream_url = Some(base);
    s.gateway_upstream_key = Some(Secret::new(UPSTREAM_KEY.to_owned()));
    s.gateway_timeout = timeout;
    s.gateway_drain_timeout = Duration::from_secs(10);
}

/// Ten times the prices `create_model` sets.
fn tenfold_prices() -> Value {
    json!({
        "input_per_million": 10 * P_IN, "cached_input_per_million": 10 * P_CACHED, "output_per_million": 10 * P_OUT,
    })
}

async fn create_model(app: &TestApp, id: &str, upstream: &str) {
    let res = app
        .post_admin(
            "/api/v1/models",
            None,
            &json!({
                "id": id, "upstream_model": upstream,
                "input_per_million": P_IN, "cached_input_per_million": P_CACHED, "output_per_million": P_OUT,
                "max_output_tokens": MAX_OUT,
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
}

/// `PATCH /api/v1/models/{id}` as the admin.
async fn patch_model(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.patch_admin(&format!("/api/v1/models/{id}"), body).await
}

/// A user with `credits` and an API key that may spend.
async fn spender(app: &TestApp, credits: i64) -> (TestUser, String) {
    let user = app.user().await;
    if credits > 0 {
        app.grant(&user, credits).await;
    }
    let res = app
        .post(
            "/api/v1/api-keys",
            Some(&user.token),
            None,
            &json!({ "name": "llm", "scopes": ["credits:spend", "credits:read"] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    (user, key)
}

async fn chat(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url("/gateway/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap()
}

/// The wallet's spends, newest first.
async fn spends(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let page: Value = app.get("/api/v1/credits/ledger?kind=spend", Some(&user.token)).await.json().await.unwrap();
    page["entries"].as_array().cloned().unwrap_or_default()
}

async fn figures(app: &TestApp, user: &TestUser) -> (i64, i64, i64) {
    let b = app.balance(user).await;
    (b["balance"].as_i64().unwrap(), b["available"].as_i64().unwrap(), b["held"].as_i64().unwrap())
}

/// Waits (at most 10 s) until the wallet's holds are all closed.
async fn settled(app: &TestApp, user: &TestUser) -> (i64, i64, i64) {
    for _ in 0..200 {
        let f = figures(app, user).await;
        if f.2 == 0 {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a hold stayed open: {:?}", figures(app, user).await);
}

async fn non_streamed_calls_are_charged_the_reported_usage(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    let (user, key) = spender(&app, 100).await;

    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages() })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-tollgate-charged"], reported_cost().to_string().as_str());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);

    // What Tollgate sent: the upstream's model name, its key, and an output bound.
    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["model"], "fake-echo");
    assert_eq!(sent[0].body["max_tokens"], MAX_OUT);
    assert_eq!(sent[0].body["messages"], messages());
    assert_eq!(sent[0].authorization.as_deref(), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));

    assert_eq!(settled(&app, &user).await, (100 - reported_cost(), 100 - reported_cost(), 0));
    let spends = spends(&app, &user).await;
    assert_eq!(spends.len(), 1);
    let spend = &spends[0];
    assert_eq!(spend["amount"], -reported_cost(), "the wallet's ledger shows a spend as negative");
    assert_eq!(spend["feature"], "llm.house-model");
    let llm = &spend["metadata"]["llm"];
    assert_eq!(llm["input_tokens"], PROMPT_TOKENS - CACHED_TOKENS);
    assert_eq!(llm["cached_input_tokens"], CACHED_TOKENS);
    assert_eq!(llm["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(llm["upstream_id"], "chatcmpl-fake-1");
    assert_eq!(llm["usage"], "reported");
    assert!(llm["request_id"].as_str().is_some_and(|id| !id.is_empty()));

    // Usage by model: credits and tokens.
    let usage: Value = app.get("/api/v1/usage?group_by=model", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(usage["buckets"][0]["key"], "house-model");
    assert_eq!(usage["buckets"][0]["credits"], reported_cost());
    assert_eq!(usage["buckets"][0]["input_tokens"], PROMPT_TOKENS - CACHED_TOKENS);
    assert_eq!(usage["buckets"][0]["cached_input_tokens"], CACHED_TOKENS);
    assert_eq!(usage["buckets"][0]["output_tokens"], COMPLETION_TOKENS);
    app.assert_reconciled().await;
}

async fn streamed_calls_pass_chunks_on_and_are_charged_once(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    let (user, key) = spender(&app, 100).await;

    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages(), "stream": true })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let mut content = String::new();
    let mut usage_chunks = 0;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if chunk["usage"].is_object() {
            usage_chunks += 1;
        }
        content.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
    }
    assert_eq!(content, REPLY);
    assert!(text.trim_end().ends_with("data: [DONE]"));
    // Tollgate asked for usage; the client did not, so the usage chunk was held back.
    assert_eq!(fake.requests()[0].body["stream_options"]["include_usage"], true);
    assert_eq!(usage_chunks, 0);
    assert_eq!(settled(&app, &user).await.0, 100 - reported_cost());

    // A client that asks for usage gets the chunk.
    let res = chat(
        &app,
        &key,
        json!({ "model": "house-model", "messages": messages(), "stream": true, "stream_options": {"include_usage": true} }),
    )
    .await;
    let text = res.text().await.unwrap();
    assert!(text.contains("\"prompt_tokens\":1200"), "{text}");
    assert_eq!(settled(&app, &user).await.0, 100 - 2 * reported_cost());
    assert_eq!(spends(&app, &user).await.len(), 2);
    app.assert_reconciled().await;
}

async fn a_wallet_short_of_the_worst_case_is_refused_before_the_upstream(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    let (user, key) = spender(&app, WORST - 1).await;
    let before = app.ledger_counts().await;

    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages() })).await;
    let body = problem(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    assert_eq!(body["price"], WORST);
    assert_eq!(body["available"], WORST - 1);
    // OpenAI's error object, which the SDKs read.
    assert_eq!(body["error"]["code"], "insufficient_credits");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert!(body["error"]["message"].as_str().unwrap().contains("not enough credits"));
    assert!(fake.requests().is_empty(), "nothing may reach the upstream");
    assert_eq!(app.ledger_counts().await, before);

    // A smaller max_tokens is a smaller worst case: 20·1000 + 100·4000 → 1 credit.
    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages(), "max_tokens": 100 })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fake.requests()[0].body["max_tokens"], 100);
    // The hold was 1, the usage costs 3: charged the hold, never more.
    let (balance, _, held) = settled(&app, &user).await;
    assert_eq!((balance, held), (WORST - 2, 0));
    assert_eq!(spends(&app, &user).await[0]["metadata"]["llm"]["capped_at_hold"], true);
    app.assert_reconciled().await;
}

async fn fifty_concurrent_calls_on_ten_worst_cases(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 10 * WORST).await;

    let calls = gated_calls(&app, &key, 50);
    // Every call that could be held has reached the upstream, which holds them all.
    fake.wait_for_requests(10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.open_gate();
    let mut ok = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap().status() {
            StatusCode::OK => ok += 1,
            StatusCode::PAYMENT_REQUIRED => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(fake.requests().len(), ok, "only the calls that were held reach the upstream");
    assert_eq!((ok, refused), (10, 40));
    let (balance, available, held) = settled(&app, &user).await;
    assert_eq!((balance, available, held), (10 * WORST - 10 * reported_cost(), 10 * WORST - 10 * reported_cost(), 0));
    assert!(balance >= 0);
    app.assert_reconciled().await;
}

/// Starts `n` concurrent non-streamed calls to the gated model (the fake holds them until the
/// test opens its gate).
fn gated_calls(app: &TestApp, key: &str, n: usize) -> Vec<tokio::task::JoinHandle<reqwest::Response>> {
    (0..n)
        .map(|_| {
            let (client, url, key) = (app.client.clone(), app.url("/gateway/v1/chat/completions"), key.to_owned());
            tokio::spawn(async move {
                let body = json!({ "model": "gated", "messages": messages() });
                client.post(url).bearer_auth(key).json(&body).send().await.unwrap()
            })
        })
        .collect()
}

/// Sends `n` concurrent calls to the gated model and lets them through once all reached the
/// upstream; returns each call's charge.
async fn overlapping_calls(app: &TestApp, fake: &FakeLlm, key: &str, n: usize) -> Vec<i64> {
    let calls = gated_calls(app, key, n);
    fake.wait_for_requests(n).await;
    fake.open_gate();
    let mut charged = Vec::new();
    for call in calls {
        let res = call.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        charged.push(res.headers()["x-tollgate-charged"].to_str().unwrap().parse::<i64>().unwrap());
    }
    charged
}

/// The wallet's holds, oldest first: amount, captured amount, status, id.
async fn wallet_holds(app: &TestApp, user: &TestUser) -> Vec<(i64, Option<i64>, String, uuid::Uuid)> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = "SELECT h.id, h.amount, h.captured_amount, h.status FROM holds h \
               JOIN accounts a ON a.id = h.account_id WHERE a.user_id = $1 ORDER BY h.created_at";
    let sql = if app.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        sql.replace("$1", "?")
    } else {
        sql.to_owned()
    };
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(app.db.get_database_backend(), sql, [user.id.into()]))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "amount").unwrap(),
                r.try_get::<Option<i64>>("", "captured_amount").unwrap(),
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<uuid::Uuid>("", "id").unwrap(),
            )
        })
        .collect()
}

async fn overlapping_calls_share_a_lease_and_each_is_charged_its_own_usage(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 1000).await;

    let charged = overlapping_calls(&app, &fake, &key, 24).await;
    assert_eq!(charged, vec![reported_cost(); 24]);
    let (balance, available, held) = settled(&app, &user).await;
    assert_eq!((balance, available, held), (1000 - 24 * reported_cost(), 1000 - 24 * reported_cost(), 0));

    // Far fewer holds than calls: the calls that overlapped shared leases, each placed for
    // several worst cases, and each released once its calls were done.
    let holds = wallet_holds(&app, &user).await;
    assert!(holds.len() <= 8, "24 overlapping calls placed {} holds: {holds:?}", holds.len());
    assert!(holds.iter().all(|h| h.2 != "open"), "{holds:?}");
    let drawn: i64 = holds.iter().filter(|h| h.2 == "released").filter_map(|h| h.1).sum();
    let captured: i64 = holds.iter().filter(|h| h.2 == "captured").filter_map(|h| h.1).sum();
    assert_eq!(drawn + captured, 24 * reported_cost(), "{holds:?}");
    assert!(drawn > 0, "{holds:?}");

    // Each call is a spend of its own, with its own tokens and request id.
    let spends = spends(&app, &user).await;
    assert_eq!(spends.len(), 24);
    let mut request_ids = std::collections::HashSet::new();
    for spend in &spends {
        assert_eq!(spend["amount"], -reported_cost());
        assert_eq!(spend["feature"], "llm.gated");
        assert_eq!(spend["metadata"]["llm"]["output_tokens"], COMPLETION_TOKENS);
        request_ids.insert(spend["metadata"]["llm"]["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(request_ids.len(), 24);
    app.assert_reconciled().await;

    // With GATEWAY_LEASE_CALLS=0 each call holds its own.
    let fake = FakeLlm::start().await;
    let base = fake.base.clone();
    let Some(app) = TestApp::spawn_with(backend, move |s| {
        s.gateway_upstream_url = Some(base);
        s.gateway_lease_calls = 0;
    })
    .await
    else {
        return;
    };
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 1000).await;
    assert_eq!(overlapping_calls(&app, &fake, &key, 6).await, vec![reported_cost(); 6]);
    settled(&app, &user).await;
    let holds = wallet_holds(&app, &user).await;
    assert_eq!(holds.len(), 6);
    assert!(holds.iter().all(|h| h.2 == "captured" && h.1 == Some(reported_cost())));
    app.assert_reconciled().await;
}

async fn callers_cannot_close_the_gateways_holds(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 100).await;
    // Two calls in flight: the first holds its own worst case, the second is on a lease.
    let calls = gated_calls(&app, &key, 2);
    fake.wait_for_requests(2).await;
    let open: Vec<uuid::Uuid> =
        wallet_holds(&app, &user).await.into_iter().filter(|h| h.2 == "open").map(|h| h.3).collect();
    assert_eq!(open.len(), 2, "a call's hold and a lease");
    // Closing one under a call in flight would leave the call uncharged: refused, to the
    // user's session and to their API key alike.
    for id in &open {
        for credential in [&user.token, &key] {
            let res = app
                .post(&format!("/api/v1/credits/holds/{id}/release"), Some(credential.as_str()), None, &json!(null))
                .await;
            problem(res, StatusCode::CONFLICT, "hold_owned_by_gateway").await;
            let res = app
                .post(
                    &format!("/api/v1/credits/holds/{id}/capture"),
                    Some(credential.as_str()),
                    None,
                    &json!({ "amount": 1 }),
                )
                .await;
            problem(res, StatusCode::CONFLICT, "hold_owned_by_gateway").await;
        }
    }
    fake.open_gate();
    for call in calls {
        assert_eq!(call.await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(settled(&app, &user).await.0, 100 - 2 * reported_cost());
    assert_eq!(spends(&app, &user).await.len(), 2);

    // Nobody can mark a hold of their own as the gateway's.
    let res = app
        .post(
            "/api/v1/credits/holds",
            Some(&user.token),
            Some("mine"),
            &json!({ "amount": 1, "metadata": { "llm": {} } }),
        )
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "metadata");
    app.assert_reconciled().await;
}

async fn upstream_failures_charge_nothing(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(1)).await else { return };
    create_model(&app, "broken", "fake-500").await;
    create_model(&app, "hanging", "fake-hang").await;
    let (user, key) = spender(&app, 100).await;

    // The upstream's own error passes through, status and body.
    let res = chat(&app, &key, json!({ "model": "broken", "messages": messages() })).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["message"], "the upstream exploded");
    let res = chat(&app, &key, json!({ "model": "broken", "messages": messages(), "stream": true })).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // No answer within GATEWAY_TIMEOUT_SECONDS.
    let res = chat(&app, &key, json!({ "model": "hanging", "messages": messages() })).await;
    let body = problem(res, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout").await;
    assert_eq!(body["error"]["type"], "api_error");
    let res = chat(&app, &key, json!({ "model": "hanging", "messages": messages(), "stream": true })).await;
    problem(res, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout").await;

    assert_eq!(settled(&app, &user).await, (100, 100, 0));
    assert!(spends(&app, &user).await.is_empty());
    assert_eq!(fake.requests().len(), 4);
    app.assert_reconciled().await;
}

async fn an_unreachable_upstream_charges_nothing(backend: Backend) {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(app) = TestApp::spawn_with(backend, move |s| {
        s.gateway_upstream_url = Some(format!("http://127.0.0.1:{closed}/v1"));
    })
    .await
    else {
        return;
    };
    create_model(&app, "house-model", "fake-echo").await;
    let (user, key) = spender(&app, 100).await;
    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages() })).await;
    problem(res, StatusCode::BAD_GATEWAY, "upstream_unavailable").await;
    assert_eq!(settled(&app, &user).await, (100, 100, 0));
    app.assert_reconciled().await;
}

async fn a_client_gone_mid_stream_is_charged_once_for_the_reported_usage(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "slow", "fake-slow").await;
    let (user, key) = spender(&app, 100).await;

    let res = chat(&app, &key, json!({ "model": "slow", "messages": messages(), "stream": true })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    let mut seen = 0;
    while seen < 2 {
        let bytes = stream.next().await.unwrap().unwrap();
        seen += bytes.windows(6).filter(|w| w == b"data: ").count();
    }
    drop(stream);
    // The gateway reads the upstream to its end and charges what it reports.
    let (balance, _, _) = settled(&app, &user).await;
    assert_eq!(balance, 100 - reported_cost());
    assert_eq!(fake.streams_finished(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spends = spends(&app, &user).await;
    assert_eq!(spends.len(), 1, "charged once");
    assert_eq!(spends[0]["metadata"]["llm"]["usage"], "reported");
    app.assert_reconciled().await;
}

async fn without_reported_usage_the_streamed_tokens_are_counted(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "quiet", "fake-nousage").await;
    let (user, key) = spender(&app, 100).await;
    let res = chat(&app, &key, json!({ "model": "quiet", "messages": messages(), "stream": true })).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap();
    let (balance, _, _) = settled(&app, &user).await;
    // 20 input tokens (the bound) and the reply's bytes: ceil((20·1000 + len·4000) / 1e6).
    let counted = (20 * P_IN + u64::try_from(REPLY.len()).unwrap() * P_OUT).div_ceil(1_000_000);
    assert_eq!(100 - balance, i64::try_from(counted).unwrap());
    assert!(100 - balance <= WORST);
    let spend = &spends(&app, &user).await[0];
    assert_eq!(spend["metadata"]["llm"]["usage"], "counted");
    assert_eq!(spend["metadata"]["llm"]["output_tokens"], REPLY.len());
    app.assert_reconciled().await;
}

async fn a_call_keeps_the_price_it_started_with(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 1000).await;

    let call = {
        let (client, url, key) = (app.client.clone(), app.url("/gateway/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({ "model": "gated", "messages": messages() }))
                .send()
                .await
                .unwrap()
        })
    };
    fake.wait_for_requests(1).await;
    // Ten times the prices while the call is in flight.
    let res = patch_model(&app, "gated", &tenfold_prices()).await;
    assert_eq!(res.status(), StatusCode::OK);
    fake.open_gate();
    let res = call.await.unwrap();
    assert_eq!(res.headers()["x-tollgate-charged"], reported_cost().to_string().as_str());
    assert_eq!(settled(&app, &user).await.0, 1000 - reported_cost());

    // The next call pays the new prices: ceil(23) = 23.
    let res = chat(&app, &key, json!({ "model": "gated", "messages": messages() })).await;
    assert_eq!(res.headers()["x-tollgate-charged"], "23");

    // Taken off the card: the next call is refused before the upstream sees it.
    let res = patch_model(&app, "gated", &json!({ "active": false })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = fake.requests().len();
    let res = chat(&app, &key, json!({ "model": "gated", "messages": messages() })).await;
    problem(res, StatusCode::NOT_FOUND, "model_not_found").await;
    assert_eq!(fake.requests().len(), sent);
    app.assert_reconciled().await;
}

/// Each PostgreSQL replica keeps the models it read for a while; a price change made on one
/// replica still applies, on every replica, to the calls that start after its answer.
async fn a_price_change_on_one_replica_reaches_calls_on_another() {
    let fake = FakeLlm::start().await;
    let Some(a) = gateway_app(Backend::Postgres, &fake, Duration::from_secs(30)).await else { return };
    let base = fake.base.clone();
    let b = a.replica(move |s| point_at(s, base, Duration::from_secs(30))).await;
    create_model(&a, "gated", "fake-echo").await;
    let (user, key) = spender(&a, 1000).await;
    let on_b = |body: Value| {
        a.client.post(format!("{}/gateway/v1/chat/completions", b.address)).bearer_auth(&key).json(&body).send()
    };
    let body = json!({ "model": "gated", "messages": messages() });
    // B reads the model at its first prices.
    let res = on_b(body.clone()).await.unwrap();
    assert_eq!(res.headers()["x-tollgate-charged"], reported_cost().to_string().as_str());

    // Ten times the prices, changed on A: B's next call pays them, ceil(23) = 23.
    assert_eq!(patch_model(&a, "gated", &tenfold_prices()).await.status(), StatusCode::OK);
    let res = on_b(body.clone()).await.unwrap();
    assert_eq!(res.headers()["x-tollgate-charged"], "23");

    // Taken off the card on A: B refuses the next call before the upstream sees it.
    assert_eq!(patch_model(&a, "gated", &json!({ "active": false })).await.status(), StatusCode::OK);
    let sent = fake.requests().len();
    problem(on_b(body).await.unwrap(), StatusCode::NOT_FOUND, "model_not_found").await;
    assert_eq!(fake.requests().len(), sent);
    assert_eq!(settled(&a, &user).await.0, 1000 - reported_cost() - 23);
    a.assert_reconciled().await;
}

async fn idempotency_keys_answer_once_and_charge_once(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    create_model(&app, "gated", "fake-gated").await;
    let (user, key) = spender(&app, 100).await;
    let send = |body: Value, idempotency: &'static str| {
        app.client
            .post(app.url("/gateway/v1/chat/completions"))
            .bearer_auth(&key)
            .header("Idempotency-Key", idempotency)
            .json(&body)
            .send()
    };
    let body = json!({ "model": "house-model", "messages": messages() });
    let first = send(body.clone(), "call-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let again = send(body.clone(), "call-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(fake.requests().len(), 1, "a replay is not sent upstream");
    assert_eq!(settled(&app, &user).await.0, 100 - reported_cost());
    // The same key with another request.
    let other =
        send(json!({ "model": "house-model", "messages": [{"role": "user", "content": "else"}] }), "call-1").await;
    problem(other.unwrap(), StatusCode::CONFLICT, "idempotency_key_reused").await;

    // A streamed call whose key is in flight.
    let streamed = json!({ "model": "gated", "messages": messages(), "stream": true });
    let running = send(streamed.clone(), "stream-1");
    let running = tokio::spawn(async move { running.await.unwrap().text().await.unwrap() });
    fake.wait_for_requests(2).await;
    let twin = send(streamed.clone(), "stream-1").await.unwrap();
    problem(twin, StatusCode::CONFLICT, "idempotency_key_in_use").await;
    fake.open_gate();
    assert!(running.await.unwrap().contains("[DONE]"));
    // Finished: a stream is not replayed, and not charged again.
    settled(&app, &user).await;
    let after = send(streamed, "stream-1").await.unwrap();
    problem(after, StatusCode::CONFLICT, "idempotency_key_in_use").await;
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(settled(&app, &user).await.0, 100 - 2 * reported_cost());

    // A call refused for want of credits gives its key back.
    let (poor, poor_key) = spender(&app, 1).await;
    let refused = app
        .client
        .post(app.url("/gateway/v1/chat/completions"))
        .bearer_auth(&poor_key)
        .header("Idempotency-Key", "poor-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(refused, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    app.grant(&poor, 10).await;
    let retried = app
        .client
        .post(app.url("/gateway/v1/chat/completions"))
        .bearer_auth(&poor_key)
        .header("Idempotency-Key", "poor-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    app.assert_reconciled().await;
}

async fn bad_requests_reach_no_upstream(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    let (_user, key) = spender(&app, 100).await;
    let before = app.ledger_counts().await;

    let res = chat(&app, &key, json!({ "model": "nope", "messages": messages() })).await;
    let body = problem(res, StatusCode::NOT_FOUND, "model_not_found").await;
    assert_eq!(body["error"]["code"], "model_not_found");
    let res = chat(&app, &key, json!({ "model": "house-model" })).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["error"]["param"], "messages");
    let res =
        chat(&app, &key, json!({ "model": "house-model", "messages": messages(), "max_tokens": MAX_OUT + 1 })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages(), "n": 0 })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .client
        .post(app.url("/gateway/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::BAD_REQUEST, "invalid_json").await;
    // Over the body limit.
    let huge = "x".repeat(1_100_000);
    let res =
        chat(&app, &key, json!({ "model": "house-model", "messages": [{"role": "user", "content": huge}] })).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A key without credits:spend, and no key.
    let user = app.user().await;
    let read_only = app
        .post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "r", "scopes": ["credits:read"] }))
        .await
        .json::<Value>()
        .await
        .unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = chat(&app, &read_only, json!({ "model": "house-model", "messages": messages() })).await;
    problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let res = app.client.post(app.url("/gateway/v1/chat/completions")).json(&json!({})).send().await.unwrap();
    let body = problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_eq!(body["error"]["type"], "authentication_error");

    assert!(fake.requests().is_empty());
    assert_eq!(app.ledger_counts().await, before);
}

async fn without_an_upstream_the_gateway_says_so(app: TestApp) {
    create_model(&app, "house-model", "fake-echo").await;
    let (_user, key) = spender(&app, 100).await;
    let res = chat(&app, &key, json!({ "model": "house-model", "messages": messages() })).await;
    let body = problem(res, StatusCode::SERVICE_UNAVAILABLE, "gateway_not_configured").await;
    assert!(body["detail"].as_str().unwrap().contains("GATEWAY_UPSTREAM_URL"));
    // The model list works without one.
    let list: Value =
        app.client.get(app.url("/gateway/v1/models")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "house-model");
    assert_eq!(list["data"][0]["object"], "model");
}

async fn a_server_key_charges_the_customer_it_names(backend: Backend) {
    let fake = FakeLlm::start().await;
    let Some(app) = gateway_app(backend, &fake, Duration::from_secs(30)).await else { return };
    create_model(&app, "house-model", "fake-echo").await;
    let res = app
        .post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "backend", "scopes": ["credits:spend", "credits:grant", "customers:write", "credits:read"] }))
        .await;
    let server_key = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let res = app
        .client
        .put(app.url("/api/v1/customers/org%2F42"))
        .bearer_auth(&server_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .client
        .post(app.url("/api/v1/customers/org%2F42/grant"))
        .bearer_auth(&server_key)
        .header("Idempotency-Key", "g-1")
        .json(&json!({ "amount": 50, "reason": "trial" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let call = |customer: Option<&'static str>| {
        let mut req = app.client.post(app.url("/gateway/v1/chat/completions")).bearer_auth(&server_key);
        if let Some(customer) = customer {
            req = req.header("X-Tollgate-Customer", customer);
        }
        req.json(&json!({ "model": "house-model", "messages": messages() })).send()
    };
    let res = call(Some("org/42")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The capture is written just after the answer: wait for the hold to close.
    let mut balance = Value::Null;
    for _ in 0..200 {
        balance = app
            .client
            .get(app.url("/api/v1/customers/org%2F42/balance"))
            .bearer_auth(&server_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if balance["held"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(balance["balance"], 50 - reported_cost());

    let body = problem(call(None).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "X-Tollgate-Customer");
    problem(call(Some("nobody")).await.unwrap(), StatusCode::NOT_FOUND, "customer_not_found").await;
    assert_eq!(fake.requests().len(), 1);
    app.assert_reconciled().await;
}

async fn the_rate_card_refuses_negative_prices(app: TestApp) {
    let app = &app;
    let create = |body: Value| async move { app.post_admin("/api/v1/models", None, &body).await };
    let base = json!({ "id": "m", "input_per_million": 1, "output_per_million": 2, "max_output_tokens": 10 });
    for (field, value) in [
        ("input_per_million", -1),
        ("cached_input_per_million", -5),
        ("output_per_million", -1),
        ("max_output_tokens", 0),
    ] {
        let mut body = base.clone();
        body[field] = json!(value);
        let problem_body = problem(create(body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem_body["errors"][0]["field"], field);
    }
    assert_eq!(app.count("models").await, 0);
    // Zero is a free model.
    let res =
        create(json!({ "id": "free", "input_per_million": 0, "output_per_million": 0, "max_output_tokens": 10 })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let model: Value = res.json().await.unwrap();
    assert_eq!(model["upstream_model"], "free");
    assert_eq!(model["cached_input_per_million"], 0);
    assert_eq!(model["tokenizer"], "bytes");
    problem(
        create(json!({ "id": "free", "input_per_million": 0, "output_per_million": 0, "max_output_tokens": 10 })).await,
        StatusCode::CONFLICT,
        "model_exists",
    )
    .await;
    let patch = patch_model(app, "free", &json!({ "output_per_million": -3 })).await;
    problem(patch, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let listed: Value = app.get("/api/v1/models", None).await.json().await.unwrap();
    assert_eq!(listed[0]["output_per_million"], 0);
    let patch = patch_model(app, "none", &json!({ "active": false })).await;
    problem(patch, StatusCode::NOT_FOUND, "model_not_found").await;
    // Inactive models leave the public list, not the admin's.
    let res = patch_model(app, "free", &json!({ "active": false })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let listed: Value = app.get("/api/v1/models", None).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let all: Value = app.get_admin("/api/v1/admin/models").await.json().await.unwrap();
    assert_eq!(all[0]["id"], "free");
}

async fn a_spend_may_be_priced_by_tokens(app: TestApp) {
    create_model(&app, "gpt-4o-mini", "gpt-4o-mini").await;
    let user = app.user().await;
    app.grant(&user, 100).await;
    let usage = json!({ "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 300 });
    let res = app.spend(&user, "t-1", json!({ "model": "gpt-4o-mini", "usage": usage, "metadata": {"job": 7} })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["transfer"]["amount"], reported_cost());
    assert_eq!(body["transfer"]["feature"], "llm.gpt-4o-mini");
    assert_eq!(body["transfer"]["quantity"], 1500);
    assert_eq!(body["transfer"]["metadata"]["job"], 7);
    assert_eq!(body["transfer"]["metadata"]["llm"]["output_tokens"], 300);
    // A preflight prices it the same way.
    let check: Value = app
        .post("/api/v1/credits/check", Some(&user.token), None, &json!({ "model": "gpt-4o-mini", "usage": usage }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["price"], reported_cost());

    let before = app.ledger_counts().await;
    for (body, field) in [
        (json!({ "model": "nope", "usage": usage }), "model"),
        (json!({ "model": "gpt-4o-mini" }), "usage"),
        (json!({ "usage": usage }), "model"),
        (json!({ "model": "gpt-4o-mini", "usage": usage, "amount": 5 }), "model"),
        (json!({ "model": "gpt-4o-mini", "usage": usage, "metadata": {"llm": 1} }), "metadata"),
        (json!({ "model": "gpt-4o-mini", "usage": { "input_tokens": -1, "output_tokens": 1 } }), "usage.input_tokens"),
    ] {
        let res = app.spend(&user, "t-bad", body.clone()).await;
        let problem_body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem_body["errors"][0]["field"], field, "{body}");
    }
    assert_eq!(app.ledger_counts().await, before);
}

both_backends!(
    non_streamed_calls_are_charged_the_reported_usage,
    streamed_calls_pass_chunks_on_and_are_charged_once,
    a_wallet_short_of_the_worst_case_is_refused_before_the_upstream,
    fifty_concurrent_calls_on_ten_worst_cases,
    overlapping_calls_share_a_lease_and_each_is_charged_its_own_usage,
    callers_cannot_close_the_gateways_holds,
    upstream_failures_charge_nothing,
    an_unreachable_upstream_charges_nothing,
    a_client_gone_mid_stream_is_charged_once_for_the_reported_usage,
    without_reported_usage_the_streamed_tokens_are_counted,
    a_call_keeps_the_price_it_started_with,
    idempotency_keys_answer_once_and_charge_once,
    bad_requests_reach_no_upstream,
    a_server_key_charges_the_customer_it_names,
);

mod two_replicas {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_price_change_on_one_replica_reaches_calls_on_another().await;
    }
}

crate::both!(
    without_an_upstream_the_gateway_says_so,
    the_rate_card_refuses_negative_prices,
    a_spend_may_be_priced_by_tokens
);
