use std::sync::Arc;

use futures_util::future::join_all;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    both,
    helpers::{TestApp, problem},
};

both!(
    concurrent_spends_never_overdraw,
    concurrent_retries_with_one_key_spend_once,
    spend_prices_features_and_refuses_bad_input_without_writing,
    lots_are_spent_by_priority_then_expiry_then_age,
    expired_lots_are_never_spent_and_expiry_is_posted,
    both_spend_paths_answer_alike,
    grants_are_idempotent_and_accept_the_seed_shape,
    a_grant_by_email_finds_the_account_in_any_spelling_of_its_domain,
    ledger_pages_filters_and_usage,
    text_is_stored_exactly_as_sent,
    example_feature_holds_then_captures_and_refuses_early,
    rate_card_is_managed_by_admins,
    reconcile_catches_a_corrupted_wallet,
    random_operations_match_a_model,
);

async fn concurrent_spends_never_overdraw(app: TestApp) {
    let app = Arc::new(app);
    let user = app.user().await;
    app.grant(&user, 50).await;
    let results = join_all((0..200).map(|i| {
        let app = app.clone();
        let user = user.clone();
        async move { app.spend(&user, &format!("spend-{i}"), json!({ "amount": 1 })).await.status() }
    }))
    .await;
    let ok = results.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = results.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!((ok, refused), (50, 150), "every request is either spent or refused: {results:?}");
    let balance = app.balance(&user).await;
    assert_eq!(balance["balance"], 0);
    assert_eq!(balance["available"], 0);
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 50);
    app.assert_reconciled().await;
}

async fn concurrent_retries_with_one_key_spend_once(app: TestApp) {
    let app = Arc::new(app);
    let user = app.user().await;
    app.grant(&user, 100).await;
    let body = json!({ "amount": 7, "description": "one call" });
    let responses = join_all((0..50).map(|_| {
        let app = app.clone();
        let user = user.clone();
        let body = body.clone();
        async move {
            let res = app.spend(&user, "same-key", body).await;
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }
    }))
    .await;
    for (status, body) in &responses {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let first = &responses[0].1["transfer"]["id"];
    assert!(responses.iter().all(|(_, b)| &b["transfer"]["id"] == first), "all see one transfer");
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 1);
    assert_eq!(app.balance(&user).await["balance"], 93);

    // The same key with another request is refused and writes nothing.
    let before = app.ledger_counts().await;
    let res = app.spend(&user, "same-key", json!({ "amount": 8 })).await;
    problem(res, StatusCode::CONFLICT, "idempotency_key_reused").await;
    assert_eq!(app.ledger_counts().await, before);

    // Keys are scoped to the caller: another user may use the same key.
    let other = app.user().await;
    app.grant(&other, 10).await;
    assert_eq!(
        app.spend(&other, "same-key", json!({ "amount": 7, "description": "one call" })).await.status(),
        StatusCode::OK
    );
    app.assert_reconciled().await;
}

async fn spend_prices_features_and_refuses_bad_input_without_writing(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 20).await;
    let res = app
        .spend(&user, "f1", json!({ "feature": "example.summarize", "quantity": 3, "metadata": { "model": "x" } }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["transfer"]["amount"], 15, "5 credits per unit x 3");
    assert_eq!(body["transfer"]["feature"], "example.summarize");
    assert_eq!(body["transfer"]["metadata"]["model"], "x");
    assert_eq!(body["balance"]["balance"], 5);

    let before = app.ledger_counts().await;
    let cases = [
        (json!({ "amount": 6 }), StatusCode::PAYMENT_REQUIRED, "insufficient_credits"),
        (json!({ "amount": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": -3 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 1.5 }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 1, "feature": "example.summarize" }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "feature": "nope" }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (
            json!({ "feature": "example.summarize", "quantity": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (json!({ "amount": i64::MAX }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 1, "metadata": [1, 2] }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (json!({ "amount": 1, "description": "d".repeat(501) }), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let res = app.spend(&user, &format!("bad-{i}"), body.clone()).await;
        let problem = problem(res, status, code).await;
        if code == "insufficient_credits" {
            assert_eq!((problem["available"].as_i64(), problem["requested"].as_i64()), (Some(5), Some(6)));
        }
    }
    let res = app.post("/api/v1/credits/spend", Some(&user.token), None, &json!({ "amount": 1 })).await;
    problem(res, StatusCode::BAD_REQUEST, "idempotency_key_required").await;
    assert_eq!(app.ledger_counts().await, before, "refused requests wrote nothing");

    // A 402 is not remembered: after a top-up, the same key goes through.
    app.grant(&user, 10).await;
    assert_eq!(app.spend(&user, "bad-0", json!({ "amount": 6 })).await.status(), StatusCode::OK);
    app.assert_reconciled().await;
}

async fn grant_with(app: &TestApp, user_id: Uuid, body: Value) -> Value {
    let mut body = body;
    body["user_id"] = json!(user_id);
    body["reason"] = json!("test");
    let res = app.post_admin("/api/v1/credits/grant", Some(&Uuid::new_v4().to_string()), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn lots_are_spent_by_priority_then_expiry_then_age(app: TestApp) {
    let user = app.user().await;
    let soon = app.clock.now() + chrono::Duration::days(1);
    let later = app.clock.now() + chrono::Duration::days(9);
    let paid = grant_with(&app, user.id, json!({ "amount": 10, "priority": 100 })).await["lot_id"].clone();
    let old_free = grant_with(&app, user.id, json!({ "amount": 10, "priority": 20 })).await["lot_id"].clone();
    let late =
        grant_with(&app, user.id, json!({ "amount": 10, "priority": 20, "expires_at": later })).await["lot_id"].clone();
    let soonest =
        grant_with(&app, user.id, json!({ "amount": 10, "priority": 20, "expires_at": soon })).await["lot_id"].clone();
    let promo = grant_with(&app, user.id, json!({ "amount": 10, "source": "promotion" })).await["lot_id"].clone();

    // Promotion (priority 10) first; then priority 20 by soonest expiry, never-expiring last;
    // the paid lot (priority 100) last of all.
    let body: Value = app.spend(&user, "big", json!({ "amount": 45 })).await.json().await.unwrap();
    let taken: Vec<(Value, i64)> = body["transfer"]["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["lot_id"].clone(), m["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(taken, vec![(promo, 10), (soonest, 10), (late, 10), (old_free, 10), (paid.clone(), 5)]);
    let ledger: Value = app.get("/api/v1/credits/ledger?kind=spend", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(ledger["entries"][0]["lots"].as_array().unwrap().len(), 5, "history shows the lots touched");
    assert_eq!(app.balance(&user).await["balance"], 5);
    app.assert_reconciled().await;
}

async fn expired_lots_are_never_spent_and_expiry_is_posted(app: TestApp) {
    let user = app.user().await;
    let expires = app.clock.now() + chrono::Duration::milliseconds(1200);
    grant_with(&app, user.id, json!({ "amount": 30, "priority": 1, "expires_at": expires })).await;
    grant_with(&app, user.id, json!({ "amount": 5 })).await;
    let balance = app.balance(&user).await;
    assert_eq!(balance["balance"], 35);
    assert_eq!(balance["expiring_soon"][0]["remaining"], 30);
    app.clock.advance(chrono::Duration::milliseconds(1500));

    // Before the expiry job has run, the expired lot is already gone from what can be spent.
    assert_eq!(app.balance(&user).await["available"], 5);
    let res = app.spend(&user, "after-expiry", json!({ "amount": 6 })).await;
    problem(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    assert_eq!(app.count("transfers WHERE kind = 'expiry'").await, 0, "the refusal wrote nothing");

    let settled = tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap();
    assert_eq!(settled, 1);
    assert_eq!(app.count("transfers WHERE kind = 'expiry'").await, 1);
    let ledger: Value = app.get("/api/v1/credits/ledger?kind=expiry", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(ledger["entries"][0]["amount"], -30);
    assert_eq!(ledger["entries"][0]["balance_after"], 5);
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 0, "posted once");
    assert_eq!(app.spend(&user, "ok", json!({ "amount": 5 })).await.status(), StatusCode::OK);
    app.assert_reconciled().await;
}

/// A spend with nothing to settle and one that must post an expiry first: their answers, and the
/// replays stored for them, have one shape.
async fn both_spend_paths_answer_alike(app: TestApp) {
    let user = app.user().await;
    let expires = app.clock.now() + chrono::Duration::milliseconds(1000);
    grant_with(&app, user.id, json!({ "amount": 30, "priority": 1, "expires_at": expires })).await;
    grant_with(&app, user.id, json!({ "amount": 20 })).await;
    let body = json!({ "amount": 3, "description": "same", "metadata": { "n": 1 } });
    let fast: Value = app.spend(&user, "fast", body.clone()).await.json().await.unwrap();
    assert_eq!(fast["transfer"]["lots"][0]["amount"], 3, "taken from the expiring lot first");
    assert_eq!(fast["balance"]["balance"], 47);
    app.clock.advance(chrono::Duration::milliseconds(1300));

    let settled: Value = app.spend(&user, "settled", body.clone()).await.json().await.unwrap();
    assert_eq!(settled["balance"]["balance"], 17, "27 expired before this spend took 3");
    assert_eq!(settled["transfer"]["lots"].as_array().unwrap().len(), 1);
    assert_eq!(shape(&fast), shape(&settled), "fast: {fast}\nsettled: {settled}");
    for (key, first) in [("fast", &fast), ("settled", &settled)] {
        let again = app.spend(&user, key, body.clone()).await;
        assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
        assert_eq!(&again.json::<Value>().await.unwrap(), first, "{key} replays its first answer");
    }
    assert_eq!(app.count("transfers WHERE kind = 'expiry'").await, 1);
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 2);
    app.assert_reconciled().await;
}

/// A JSON value's structure: keys and value types, arrays by their first element.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
    }
}

async fn grants_are_idempotent_and_accept_the_seed_shape(app: TestApp) {
    let user = app.user().await;
    // The seed's curl: camelCase, key in the body.
    let seed = json!({ "userId": user.id, "amount": 100, "reason": "test", "idempotencyKey": "test-123" });
    let first = app.post_admin("/api/v1/credits/grant", None, &seed).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let again = app.post_admin("/api/v1/credits/grant", None, &seed).await;
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.balance(&user).await["balance"], 100);

    let before = app.ledger_counts().await;
    let other = json!({ "userId": user.id, "amount": 50, "reason": "test", "idempotencyKey": "test-123" });
    problem(
        app.post_admin("/api/v1/credits/grant", None, &other).await,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;
    let by_email = json!({ "email": user.email.to_uppercase(), "amount": 5, "reason": "by email" });
    assert_eq!(app.post_admin("/api/v1/credits/grant", Some("e1"), &by_email).await.status(), StatusCode::OK);
    let after_email = app.ledger_counts().await;
    assert_eq!(after_email[0], before[0] + 1);
    for (body, status, code) in [
        (json!({ "email": "nobody@example.com", "amount": 5, "reason": "x" }), StatusCode::NOT_FOUND, "user_not_found"),
        (
            json!({ "user_id": user.id, "amount": 0, "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "user_id": user.id, "amount": 5, "reason": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "user_id": user.id, "amount": 5, "reason": "x", "expires_at": "2001-01-01T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "user_id": user.id, "email": user.email, "amount": 5, "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        problem(app.post_admin("/api/v1/credits/grant", Some(&Uuid::new_v4().to_string()), &body).await, status, code)
            .await;
    }
    problem(
        app.post_admin("/api/v1/credits/grant", None, &json!({ "user_id": user.id, "amount": 5, "reason": "x" })).await,
        StatusCode::BAD_REQUEST,
        "idempotency_key_required",
    )
    .await;
    assert_eq!(app.ledger_counts().await, after_email, "refused grants wrote nothing");
    app.assert_reconciled().await;
}

async fn ledger_pages_filters_and_usage(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    for i in 0..5 {
        app.spend(&user, &format!("s{i}"), json!({ "amount": i + 1, "description": format!("call {i}") })).await;
    }
    app.spend(&user, "f", json!({ "feature": "example.summarize" })).await;

    let page: Value = app.get("/api/v1/credits/ledger?limit=4", Some(&user.token)).await.json().await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["amount"], -5, "newest first");
    assert_eq!(entries[0]["balance_after"], 100 - 15 - 5);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/api/v1/credits/ledger?limit=4&cursor={cursor}"), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let rest = rest["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 3, "2 spends and the grant");
    assert_eq!(rest[2]["kind"], "grant");
    assert_eq!(rest[2]["amount"], 100);
    assert_eq!(rest[2]["balance_after"], 100);

    let grants: Value = app.get("/api/v1/credits/ledger?kind=grant", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(grants["entries"].as_array().unwrap().len(), 1);
    assert!(grants["next_cursor"].is_null());
    let future: Value =
        app.get("/api/v1/credits/ledger?from=2999-01-01T00:00:00Z", Some(&user.token)).await.json().await.unwrap();
    assert!(future["entries"].as_array().unwrap().is_empty());
    problem(
        app.get("/api/v1/credits/ledger?kind=bogus", Some(&user.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem(
        app.get("/api/v1/credits/ledger?cursor=zzz", Some(&user.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let by_feature: Value = app.get("/api/v1/usage?group_by=feature", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(by_feature["total_credits"], 20);
    assert_eq!(
        by_feature["buckets"],
        json!([
            { "key": "example.summarize", "credits": 5, "spends": 1 },
            { "key": "unpriced", "credits": 15, "spends": 5 },
        ])
    );
    let by_day: Value = app.get("/api/v1/usage", Some(&user.token)).await.json().await.unwrap();
    let today = app.clock.now().format("%Y-%m-%d").to_string();
    assert_eq!(by_day["buckets"], json!([{ "key": today, "credits": 20, "spends": 6 }]));
    problem(
        app.get("/api/v1/usage?group_by=hour", Some(&user.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // Another user sees none of it.
    let other = app.user().await;
    let theirs: Value = app.get("/api/v1/credits/ledger", Some(&other.token)).await.json().await.unwrap();
    assert!(theirs["entries"].as_array().unwrap().is_empty());
}

async fn example_feature_holds_then_captures_and_refuses_early(app: TestApp) {
    let user = app.user().await;
    let text = "Tollgate meters AI features with credits. Each call spends credits from a wallet. \
                The weather was pleasant. Wallets hold credits bought in packs. "
        .repeat(10);
    assert!(text.len() > 1000 && text.len() < 2000);

    let estimate: Value =
        app.post("/api/v1/example/estimate", None, None, &json!({ "text": text })).await.json().await.unwrap();
    assert_eq!(estimate["units"], 2);
    assert_eq!(estimate["estimated_cost"], 10);

    // Too few credits: 402 before any work, nothing written.
    app.grant(&user, 7).await;
    let before = app.ledger_counts().await;
    let res = app.post("/api/v1/example/use-credits", Some(&user.token), None, &json!({ "text": text })).await;
    let body = problem(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    assert_eq!(body["requested"], 10);
    assert_eq!(app.ledger_counts().await, before);

    app.grant(&user, 20).await;
    let res = app.post("/api/v1/example/use-credits", Some(&user.token), Some("run-1"), &json!({ "text": text })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(!body["summary"].as_str().unwrap().is_empty());
    assert!(body["sentences_kept"].as_u64().unwrap() < body["sentences_total"].as_u64().unwrap());
    assert_eq!(body["estimated_cost"], 10);
    // The trailing space is not analysed, so the actual cost may be lower than the estimate.
    let cost = body["cost"].as_i64().unwrap();
    assert!(cost == 10 || cost == 5, "{cost}");
    assert_eq!(body["balance"]["balance"], 27 - cost);
    assert_eq!(body["balance"]["held"], 0);

    // Retried with the same key: the same hold, charged once.
    let again: Value = app
        .post("/api/v1/example/use-credits", Some(&user.token), Some("run-1"), &json!({ "text": text }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["hold_id"], body["hold_id"]);
    assert_eq!(app.balance(&user).await["balance"], 27 - cost);
    problem(
        app.post("/api/v1/example/use-credits", Some(&user.token), None, &json!({ "text": "x".repeat(20_001) })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    app.assert_reconciled().await;
}

async fn rate_card_is_managed_by_admins(app: TestApp) {
    let features: Value = app.get("/api/v1/features", None).await.json().await.unwrap();
    assert_eq!(features[0]["key"], "example.summarize");
    assert_eq!(features[0]["credits_per_unit"], 5);

    let user = app.user().await;
    let body = json!({ "key": "chat.completion", "name": "Chat", "unit": "call", "credits_per_unit": 3 });
    problem(
        app.post("/api/v1/features", Some(&user.token), None, &body).await,
        StatusCode::FORBIDDEN,
        "admin_required",
    )
    .await;
    assert_eq!(app.post_admin("/api/v1/features", None, &body).await.status(), StatusCode::CREATED);
    problem(app.post_admin("/api/v1/features", None, &body).await, StatusCode::CONFLICT, "feature_exists").await;
    let free = json!({ "key": "free.thing", "name": "Free", "unit": "call", "credits_per_unit": 0 });
    problem(
        app.post_admin("/api/v1/features", None, &free).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let bad = json!({ "key": "Bad Key", "name": "x", "unit": "call", "credits_per_unit": 1 });
    problem(
        app.post_admin("/api/v1/features", None, &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    app.grant(&user, 100).await;
    let spent: Value =
        app.spend(&user, "c1", json!({ "feature": "chat.completion", "quantity": 2 })).await.json().await.unwrap();
    assert_eq!(spent["transfer"]["amount"], 6);

    let feature = "/api/v1/features/chat.completion";
    assert_eq!(app.patch_admin(feature, &json!({ "credits_per_unit": 4 })).await.status(), StatusCode::OK);
    let spent: Value = app.spend(&user, "c2", json!({ "feature": "chat.completion" })).await.json().await.unwrap();
    assert_eq!(spent["transfer"]["amount"], 4, "the new price applies");
    assert_eq!(app.patch_admin(feature, &json!({ "active": false })).await.status(), StatusCode::OK);
    let res = app.spend(&user, "c3", json!({ "feature": "chat.completion" })).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["code"], "feature_inactive");
    let listed: Value = app.get("/api/v1/features", None).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "inactive features are not offered");
}

async fn reconcile_catches_a_corrupted_wallet(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    app.spend(&user, "s", json!({ "amount": 3 })).await;
    let report: Value = app
        .client
        .get(app.url("/api/v1/admin/reconcile"))
        .header("x-admin-key", crate::helpers::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 4);

    // Someone edits a balance by hand: reconcile names the wallet.
    use sea_orm::ConnectionTrait;
    app.db.execute_unprepared("UPDATE accounts SET balance = balance + 1000 WHERE kind = 'wallet'").await.unwrap();
    let report = tollgate::credits::reconcile::reconcile(&app.db, &app.clock).await.unwrap();
    assert!(!report.ok);
    let wallets = report.checks.iter().find(|c| c.name == "wallet_balances").unwrap();
    assert_eq!(wallets.violation_count, 2, "against transfers and against lots");
    assert!(report.to_text().contains("VIOLATIONS"));

    // A hold whose spends do not add up to what it records as captured (a capture applied
    // twice, or a lease's draws lost) is named.
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some("h"), &json!({ "amount": 4 })).await;
    let id = res.json::<Value>().await.unwrap()["hold"]["id"].as_str().unwrap().to_owned();
    let res = app
        .post(&format!("/api/v1/credits/holds/{id}/capture"), Some(&user.token), None, &json!({ "amount": 2 }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let once = |report: &tollgate::credits::reconcile::ReconcileReport| {
        report.checks.iter().find(|c| c.name == "applied_once").unwrap().violations.clone()
    };
    assert!(once(&tollgate::credits::reconcile::reconcile(&app.db, &app.clock).await.unwrap()).is_empty());
    app.db.execute_unprepared("UPDATE holds SET captured_amount = 1 WHERE status = 'captured'").await.unwrap();
    let violations = once(&tollgate::credits::reconcile::reconcile(&app.db, &app.clock).await.unwrap());
    assert_eq!(
        violations,
        vec![format!("hold {id} (captured): the spends naming it took 2 credits in 1, but it records 1 captured")]
    );

    if app.backend == crate::helpers::Backend::Postgres {
        // PostgreSQL has no foreign key from transfers to accounts: reconcile is what notices.
        let ghost = "00000000-0000-4000-8000-00000000dead";
        app.db
            .execute_unprepared(&format!(
                "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, created_at) \
                 VALUES (gen_random_uuid(), '{}', '{ghost}', 5, 'grant', now())",
                tollgate::domain::ledger::system::GRANTS
            ))
            .await
            .unwrap();
        let report = tollgate::credits::reconcile::reconcile(&app.db, &app.clock).await.unwrap();
        let transfers = report.checks.iter().find(|c| c.name == "transfers_balance").unwrap();
        assert_eq!(transfers.violation_count, 1, "{:?}", transfers.violations);
        assert!(transfers.violations[0].contains(ghost), "{:?}", transfers.violations);
    }
}

/// A simple model of one wallet: what it should hold after each operation.
#[derive(Debug, Default)]
struct Model {
    balance: i64,
    held: i64,
    holds: Vec<(String, i64)>,
}

async fn random_operations_match_a_model(app: TestApp) {
    let user = app.user().await;
    for seed in [7_u64, 42, 1337] {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model { balance: app.balance(&user).await["balance"].as_i64().unwrap(), ..Default::default() };
        model.held = 0;
        let mut last_spend: Option<(String, i64)> = None;
        for step in 0..60 {
            let key = format!("{seed}-{step}");
            match rng.random_range(0..6) {
                0 => {
                    let amount = rng.random_range(1..40);
                    app.grant(&user, amount).await;
                    model.balance += amount;
                }
                1 | 2 => {
                    let amount = rng.random_range(1..30);
                    let res = app.spend(&user, &key, json!({ "amount": amount })).await;
                    if model.balance - model.held >= amount {
                        assert_eq!(res.status(), StatusCode::OK, "seed {seed} step {step}");
                        model.balance -= amount;
                        last_spend = Some((key, amount));
                    } else {
                        assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED, "seed {seed} step {step}");
                    }
                }
                3 => {
                    let amount = rng.random_range(1..20);
                    let res = app
                        .post("/api/v1/credits/holds", Some(&user.token), Some(&key), &json!({ "amount": amount }))
                        .await;
                    if model.balance - model.held >= amount {
                        assert_eq!(res.status(), StatusCode::OK, "seed {seed} step {step}");
                        let body: Value = res.json().await.unwrap();
                        model.held += amount;
                        model.holds.push((body["hold"]["id"].as_str().unwrap().to_owned(), amount));
                    } else {
                        assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED, "seed {seed} step {step}");
                    }
                }
                4 if !model.holds.is_empty() => {
                    let (id, amount) = model.holds.remove(rng.random_range(0..model.holds.len()));
                    if rng.random_bool(0.5) {
                        let capture = rng.random_range(0..=amount);
                        let res = app
                            .post(
                                &format!("/api/v1/credits/holds/{id}/capture"),
                                Some(&user.token),
                                None,
                                &json!({ "amount": capture }),
                            )
                            .await;
                        assert_eq!(res.status(), StatusCode::OK, "seed {seed} step {step}");
                        model.balance -= capture;
                    } else {
                        let res = app
                            .post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), None, &json!(null))
                            .await;
                        assert_eq!(res.status(), StatusCode::OK, "seed {seed} step {step}");
                    }
                    model.held -= amount;
                }
                _ => {
                    if let Some((key, amount)) = &last_spend {
                        let res = app.spend(&user, key, json!({ "amount": amount })).await;
                        assert_eq!(res.status(), StatusCode::OK, "a retry replays");
                        assert_eq!(res.headers().get("idempotent-replayed").unwrap(), "true");
                    }
                }
            }
            let balance = app.balance(&user).await;
            assert_eq!(balance["balance"], model.balance, "seed {seed} step {step}");
            assert_eq!(balance["held"], model.held, "seed {seed} step {step}");
            assert_eq!(balance["available"], model.balance - model.held, "seed {seed} step {step}");
        }
        for (id, _) in model.holds.drain(..) {
            app.post(&format!("/api/v1/credits/holds/{id}/release"), Some(&user.token), None, &json!(null)).await;
        }
        app.assert_reconciled().await;
    }
}

async fn text_is_stored_exactly_as_sent(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let description = "O'Brien's \"call\" -- '); DROP TABLE transfers; -- ünïcödé ✓\nsecond line";
    let metadata = json!({ "quote": "it's", "nested": { "sql": "x'); --" }, "n": 1 });
    let key = "key'with\"quotes";
    let res = app.spend(&user, key, json!({ "amount": 2, "description": description, "metadata": metadata })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let ledger: Value = app.get("/api/v1/credits/ledger?kind=spend", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(ledger["entries"][0]["description"], description);
    assert_eq!(ledger["entries"][0]["metadata"], metadata);
    // The stored answer replays exactly too.
    let first: Value = res.json().await.unwrap();
    let again = app.spend(&user, key, json!({ "amount": 2, "description": description, "metadata": metadata })).await;
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let res = app.spend(&user, "nul", json!({ "amount": 1, "description": "a\0b" })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 1);
    app.assert_reconciled().await;
}

/// Audit follow-up: an account's address is stored with its domain in IDNA form; a grant by email
/// (the API and `tollgate grant`) looks it up the way sign-in does, so the Unicode spelling of the
/// domain finds it too.
async fn a_grant_by_email_finds_the_account_in_any_spelling_of_its_domain(app: TestApp) {
    let res = app.register("Ada@Exämple.com", crate::helpers::PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    for (key, spelling) in [("g1", "ada@exämple.com"), ("g2", "  ADA@EXÄMPLE.COM "), ("g3", "ada@xn--exmple-cua.com")]
    {
        let body = json!({ "email": spelling, "amount": 5, "reason": "by email" });
        let res = app.post_admin("/api/v1/credits/grant", Some(key), &body).await;
        assert_eq!(res.status(), StatusCode::OK, "{spelling}");
    }
    let login: Value = app.login("ada@exämple.com", crate::helpers::PASSWORD).await.json().await.unwrap();
    let token = login["access_token"].as_str().unwrap();
    let balance: Value = app.get("/api/v1/credits/balance", Some(token)).await.json().await.unwrap();
    assert_eq!(balance["balance"], 15);
}
