//! The request body guard: no NUL character reaches a handler (audit #9), and a body that never
//! finishes is answered 408 and its connection closed (audit #13).

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    both, both_backends,
    helpers::{Backend, PASSWORD, TestApp, problem},
};

both!(nul_characters_are_refused_at_the_edge);
both_backends!(a_body_that_never_finishes_is_answered_408_and_closed, the_longest_key_works_on_every_keyed_route);

async fn refused_on(res: reqwest::Response, field: &str) {
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], field, "{body}");
    assert_eq!(body["errors"][0]["code"], "nul_character", "{body}");
}

async fn nul_characters_are_refused_at_the_edge(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let before = app.ledger_counts().await;
    let users = app.count("users").await;

    refused_on(app.register("ada\u{0}@example.com", PASSWORD).await, "email").await;
    let res = app.post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "k\u{0}", "scopes": [] })).await;
    refused_on(res, "name").await;
    refused_on(app.spend(&user, "s1", json!({ "feature": "example.summarize\u{0}" })).await, "feature").await;
    refused_on(
        app.spend(&user, "s2", json!({ "amount": 1, "metadata": { "note\u{0}": "x" } })).await,
        "metadata.note\\u0000",
    )
    .await;
    refused_on(
        app.spend(&user, "s3", json!({ "amount": 1, "metadata": { "tags": ["ok", "b\u{0}d"] } })).await,
        "metadata.tags[1]",
    )
    .await;
    refused_on(app.spend(&user, "s4", json!({ "amount": 1, "description": "\u{0}" })).await, "description").await;
    let res = app
        .post_admin(
            "/api/v1/credits/grant",
            Some("g1"),
            &json!({ "user_id": user.id, "amount": 5, "reason": "r\u{0}" }),
        )
        .await;
    refused_on(res, "reason").await;
    let res = app
        .post_admin(
            "/api/v1/credits/features",
            None,
            &json!({ "key": "x.y", "name": "N\u{0}", "unit": "call", "credits_per_unit": 1 }),
        )
        .await;
    refused_on(res, "name").await;
    refused_on(app.get("/api/v1/credits/ledger?cursor=a%00b", Some(&user.token)).await, "cursor").await;
    let res = app.client.get(app.url("/api/v1/credits/holds/a%00b")).bearer_auth(&user.token).send().await.unwrap();
    refused_on(res, "path").await;

    // A NUL spend among good ones in flight at once: the good ones are batched and succeed.
    let spends = (0..10).map(|i| {
        let body =
            if i % 2 == 0 { json!({ "amount": 1 }) } else { json!({ "amount": 1, "metadata": { "m": "\u{0}" } }) };
        let (app, user) = (&app, &user);
        async move { app.spend(user, &format!("mix-{i}"), body).await.status() }
    });
    let statuses = join_all(spends).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count(), 5, "{statuses:?}");

    // Nothing of the refused requests was written.
    let after = app.ledger_counts().await;
    assert_eq!(after[0], before[0] + 5, "only the five good spends wrote transfers");
    assert_eq!(after[1], before[1]);
    assert_eq!(app.count("users").await, users);
    assert_eq!(app.count("api_keys").await, 0);
    assert_eq!(app.count("features WHERE key = 'x.y'").await, 0);
    assert_eq!(app.balance(&user).await["balance"], 5);
    app.assert_reconciled().await;
}

/// A client that sends a head and part of a body, then nothing: 408, and the server closes the
/// connection instead of holding it forever. Others are served meanwhile.
async fn a_body_that_never_finishes_is_answered_408_and_closed(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.request_body_timeout = Duration::from_secs(1)).await else {
        return;
    };
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: tollgate\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    // Meanwhile the server answers others.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);

    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was held open past the body timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Audit #10: the longest `Idempotency-Key` accepted (255 characters) works on every keyed
/// route, on both databases, and a replay with it still replays.
async fn the_longest_key_works_on_every_keyed_route(backend: Backend) {
    let Some((app, stripe)) = crate::stripe::stripe_app(backend).await else { return };
    let key = |tag: char| std::iter::repeat_n(tag, 255).collect::<String>();
    let user = app.user().await;

    let res = app
        .post_admin(
            "/api/v1/credits/grant",
            Some(&key('g')),
            &json!({ "user_id": user.id, "amount": 50, "reason": "long key" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "grant");
    let replay = app
        .post_admin(
            "/api/v1/credits/grant",
            Some(&key('g')),
            &json!({ "user_id": user.id, "amount": 50, "reason": "long key" }),
        )
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    let res = app.spend(&user, &key('s'), json!({ "amount": 1 })).await;
    assert_eq!(res.status(), StatusCode::OK, "spend");
    let res = app
        .post(
            "/api/v1/example/use-credits",
            Some(&user.token),
            Some(&key('e')),
            &json!({ "text": "Long keys are keys too." }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "example: {:?}", res.text().await);

    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some(&key('h')), &json!({ "amount": 5 })).await;
    assert_eq!(res.status(), StatusCode::OK, "hold");
    let hold: serde_json::Value = res.json().await.unwrap();
    let id = hold["hold"]["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/credits/holds/{id}/capture"),
            Some(&user.token),
            Some(&key('c')),
            &json!({ "amount": 2 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "capture");
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some(&key('i')), &json!({ "amount": 5 })).await;
    let hold: serde_json::Value = res.json().await.unwrap();
    let id = hold["hold"]["id"].as_str().unwrap();
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), Some(&key('r')), &json!(null))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "release");

    crate::stripe::mount_prices(&stripe).await;
    crate::stripe::sync(&app).await;
    crate::stripe::mount_checkout(&stripe).await;
    let res = app
        .post(
            "/api/v1/billing/checkout-session",
            Some(&user.token),
            Some(&key('k')),
            &json!({ "price_id": crate::stripe::PACK }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "checkout: {:?}", res.text().await);
    let sent = stripe.received_requests().await.unwrap();
    let checkout = sent.iter().find(|r| r.url.path() == "/v1/checkout/sessions").unwrap();
    let stripe_key = checkout.headers.get("idempotency-key").unwrap().to_str().unwrap();
    assert!(stripe_key.len() <= 255, "Stripe refuses keys over 255 characters: {stripe_key}");
    assert_eq!(app.balance(&user).await["balance"], 50 - 1 - 5 - 2);
    app.assert_reconciled().await;
}
