use std::sync::Arc;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{TestApp, TestUser, problem},
};

both!(
    capture_less_than_held_releases_the_rest,
    release_and_replays,
    holds_expire_by_themselves,
    concurrent_captures_of_one_hold_spend_once,
    holds_refuse_bad_input_without_writing,
    releasing_an_expired_hold_keeps_the_wallet_true,
);

async fn hold(app: &TestApp, user: &TestUser, key: &str, body: Value) -> Value {
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some(key), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn capture_less_than_held_releases_the_rest(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 50).await;
    let held = hold(&app, &user, "h1", json!({ "feature": "example.summarize", "quantity": 4 })).await;
    assert_eq!(held["hold"]["amount"], 20);
    assert_eq!(held["balance"], json!({ "balance": 50, "available": 30, "held": 20, "debt": 0 }));

    // Open holds count against spending.
    problem(
        app.spend(&user, "big", json!({ "amount": 31 })).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;

    let id = held["hold"]["id"].as_str().unwrap();
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 12 }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let captured: Value = res.json().await.unwrap();
    assert_eq!(captured["hold"]["status"], "captured");
    assert_eq!(captured["transfer"]["amount"], 12);
    assert_eq!(captured["transfer"]["feature"], "example.summarize");
    assert_eq!(captured["balance"], json!({ "balance": 38, "available": 38, "held": 0, "debt": 0 }));

    // Capturing again with the same amount answers the same; another amount is refused.
    let again: Value = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 12 }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["transfer"]["id"], captured["transfer"]["id"]);
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 13 }))
        .await;
    problem(res, StatusCode::CONFLICT, "hold_already_captured").await;
    let res = app.post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), None, &json!(null)).await;
    problem(res, StatusCode::CONFLICT, "hold_already_captured").await;
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 1);
    let view: Value = app.get(&format!("/api/v1/credits/holds/{id}"), Some(&user.token)).await.json().await.unwrap();
    assert_eq!(view["captured_amount"], 12);
    app.assert_reconciled().await;
}

async fn release_and_replays(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let first = hold(&app, &user, "h1", json!({ "amount": 8 })).await;
    // The same key again: the same hold, not a second one.
    let replay = app.post("/api/v1/credits/holds", Some(&user.token), Some("h1"), &json!({ "amount": 8 })).await;
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["hold"]["id"], first["hold"]["id"]);
    assert_eq!(app.count("holds").await, 1);
    problem(
        app.post("/api/v1/credits/holds", Some(&user.token), Some("h1"), &json!({ "amount": 9 })).await,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;

    let id = first["hold"]["id"].as_str().unwrap();
    for _ in 0..2 {
        let res = app.post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), None, &json!(null)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["hold"]["status"], "released");
        assert_eq!(body["balance"]["available"], 10);
    }
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 1 }))
        .await;
    problem(res, StatusCode::CONFLICT, "hold_not_open").await;

    // Someone else's hold does not exist for them.
    let other = app.user().await;
    problem(
        app.get(&format!("/api/v1/credits/holds/{id}"), Some(&other.token)).await,
        StatusCode::NOT_FOUND,
        "hold_not_found",
    )
    .await;
    app.assert_reconciled().await;
}

async fn holds_expire_by_themselves(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let held = hold(&app, &user, "h1", json!({ "amount": 9, "ttl_seconds": 1 })).await;
    let id = held["hold"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.balance(&user).await["available"], 1);
    app.clock.advance(chrono::Duration::milliseconds(1300));

    // Released by itself: before the job runs, reads already see it.
    let balance = app.balance(&user).await;
    assert_eq!((balance["available"].as_i64(), balance["held"].as_i64()), (Some(10), Some(0)));
    let view: Value = app.get(&format!("/api/v1/credits/holds/{id}"), Some(&user.token)).await.json().await.unwrap();
    assert_eq!(view["status"], "expired");
    let before = app.ledger_counts().await;
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 9 }))
        .await;
    problem(res, StatusCode::CONFLICT, "hold_expired").await;
    assert_eq!(app.ledger_counts().await, before);

    // A spend settles it; then the job has nothing left to do.
    assert_eq!(app.spend(&user, "s", json!({ "amount": 10 })).await.status(), StatusCode::OK);
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 0);
    app.assert_reconciled().await;

    // And the job releases one no request touched.
    app.grant(&user, 5).await;
    hold(&app, &user, "h2", json!({ "amount": 5, "ttl_seconds": 1 })).await;
    app.clock.advance(chrono::Duration::milliseconds(1300));
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 1);
    assert_eq!(app.count("holds WHERE status = 'expired'").await, 2);
    app.assert_reconciled().await;
}

async fn concurrent_captures_of_one_hold_spend_once(app: TestApp) {
    let app = Arc::new(app);
    let user = app.user().await;
    app.grant(&user, 100).await;
    let held = hold(&app, &user, "h", json!({ "amount": 40 })).await;
    let id = held["hold"]["id"].as_str().unwrap().to_owned();
    let results = join_all((0..20).map(|i| {
        let app = app.clone();
        let user = user.clone();
        let id = id.clone();
        // Half ask for 30, half for 25: exactly one amount wins.
        let amount = if i % 2 == 0 { 30 } else { 25 };
        async move {
            let res = app
                .post(
                    &format!("/api/v1/credits/holds/{id}/capture"),
                    Some(&user.token),
                    None,
                    &json!({ "amount": amount }),
                )
                .await;
            (amount, res.status())
        }
    }))
    .await;
    let winners: Vec<i64> = results.iter().filter(|(_, s)| *s == StatusCode::OK).map(|(a, _)| *a).collect();
    assert!(!winners.is_empty());
    assert!(winners.iter().all(|a| *a == winners[0]), "only one amount captured: {results:?}");
    assert!(results.iter().all(|(a, s)| *s == StatusCode::OK || (*s == StatusCode::CONFLICT && *a != winners[0])));
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 1);
    assert_eq!(app.balance(&user).await["balance"], 100 - winners[0]);
    app.assert_reconciled().await;
}

async fn holds_refuse_bad_input_without_writing(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let held = hold(&app, &user, "h", json!({ "amount": 5 })).await;
    let id = held["hold"]["id"].as_str().unwrap();
    let before = app.ledger_counts().await;
    for (body, status, code) in [
        (json!({ "amount": 6 }), StatusCode::PAYMENT_REQUIRED, "insufficient_credits"),
        (json!({ "amount": 1, "ttl_seconds": 3601 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 1, "ttl_seconds": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    ] {
        let key = uuid::Uuid::new_v4().to_string();
        problem(app.post("/api/v1/credits/holds", Some(&user.token), Some(&key), &body).await, status, code).await;
    }
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 6 }))
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["code"], "capture_exceeds_hold");
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": -1 }))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let missing = uuid::Uuid::new_v4();
    let res = app
        .post(&format!("/api/v1/credits/holds/{missing}/capture"), Some(&user.token), None, &json!({ "amount": 1 }))
        .await;
    problem(res, StatusCode::NOT_FOUND, "hold_not_found").await;
    assert_eq!(app.ledger_counts().await, before);
}

/// Audit #4: a release that arrives after the hold's time to live settles the wallet (the hold
/// expires, and a lot that expired meanwhile is posted) and must write those figures back.
async fn releasing_an_expired_hold_keeps_the_wallet_true(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let soon = app.clock.now() + chrono::Duration::milliseconds(1500);
    let res = app
        .post_admin(
            "/api/v1/credits/grant",
            Some("expiring-lot"),
            &json!({ "user_id": user.id, "amount": 5, "reason": "short promo", "expires_at": soon }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let held = hold(&app, &user, "h1", json!({ "amount": 3, "ttl_seconds": 1 })).await;
    assert_eq!(held["balance"], json!({ "balance": 15, "available": 12, "held": 3, "debt": 0 }));
    let id = held["hold"]["id"].as_str().unwrap().to_owned();
    app.clock.advance(chrono::Duration::milliseconds(2000));

    // The work ran long: the client releases after the TTL.
    let res = app.post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), None, &json!(null)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let released: Value = res.json().await.unwrap();
    assert_eq!(released["hold"]["status"], "expired");
    assert_eq!(released["balance"], json!({ "balance": 10, "available": 10, "held": 0, "debt": 0 }));
    // What the wallet says afterwards, read fresh: nothing stuck, nothing expired counted.
    let after = app.balance(&user).await;
    assert_eq!((&after["balance"], &after["available"], &after["held"]), (&json!(10), &json!(10), &json!(0)));
    app.assert_reconciled().await;
    // And the whole balance can be spent.
    let res = app.spend(&user, "all", json!({ "amount": 10 })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.balance(&user).await["balance"], 0);
    app.assert_reconciled().await;
}
