//! The outbox (#18): every change of credits writes its event in the same transaction, in
//! order, with the wallet's figures after it; refused and replayed requests write none.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestApp, TestUser, problem};

async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app
        .client
        .get(app.url(&format!("/api/v1/events{query}")))
        .header("x-admin-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page: Value = res.json().await.unwrap();
    page["data"].as_array().cloned().unwrap()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn hold(app: &TestApp, user: &TestUser, key: &str, amount: i64) -> String {
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some(key), &json!({ "amount": amount })).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["hold"]["id"].as_str().unwrap().to_owned()
}

async fn every_change_of_credits_is_one_event_in_order(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    assert_eq!(app.spend(&user, "s-1", json!({ "amount": 30 })).await.status(), StatusCode::OK);
    // A replay and a refusal write nothing.
    assert_eq!(app.spend(&user, "s-1", json!({ "amount": 30 })).await.status(), StatusCode::OK);
    problem(
        app.spend(&user, "s-2", json!({ "amount": 1000 })).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    let captured = hold(&app, &user, "h-1", 20).await;
    let res = app
        .post(&format!("/api/v1/credits/holds/{captured}/capture"), Some(&user.token), None, &json!({ "amount": 15 }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let released = hold(&app, &user, "h-2", 10).await;
    let res = app.post(&format!("/api/v1/credits/holds/{released}/release"), Some(&user.token), None, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);

    let all = events(&app, "").await;
    assert_eq!(
        types(&all),
        [
            "credits.granted",
            "credits.spent",
            "credits.hold.created",
            "credits.hold.captured",
            "credits.hold.created",
            "credits.hold.released"
        ]
    );
    // Each names the customer and carries the wallet's figures after it.
    for event in &all {
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["customer"]["id"], user.id.to_string());
        assert!(event["customer"]["external_id"].is_null());
    }
    assert_eq!(all[0]["data"]["amount"], 100);
    assert_eq!(all[0]["data"]["balance"]["balance"], 100);
    assert_eq!(all[1]["data"]["amount"], 30);
    assert_eq!(all[1]["data"]["balance"]["available"], 70);
    assert_eq!(all[2]["data"]["hold"]["amount"], 20);
    assert_eq!(all[2]["data"]["balance"]["available"], 50);
    assert_eq!(all[3]["data"]["hold"]["captured_amount"], 15);
    assert_eq!(all[3]["data"]["balance"]["balance"], 55);
    assert_eq!(all[5]["data"]["balance"], json!({ "balance": 55, "available": 55, "held": 0, "debt": 0 }));
    // Ids sort as the log does.
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    // Filters and paging.
    assert_eq!(types(&events(&app, "?type=credits.spent").await), ["credits.spent"]);
    let first = events(&app, "?limit=2").await;
    assert_eq!(first.len(), 2);
    let rest = events(&app, &format!("?after={}", first[1]["id"].as_str().unwrap())).await;
    assert_eq!(rest.len(), 4);
    let one: Value = app
        .client
        .get(app.url(&format!("/api/v1/events/{}", ids[1])))
        .header("x-admin-key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, all[1]);
    let missing =
        app.client.get(app.url("/api/v1/events/evt_nope")).header("x-admin-key", ADMIN_KEY).send().await.unwrap();
    problem(missing, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = app
        .client
        .get(app.url("/api/v1/events?type=credits.nope"))
        .header("x-admin-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // A person's session cannot read the log.
    problem(app.get("/api/v1/events", Some(&user.token)).await, StatusCode::FORBIDDEN, "server_key_required").await;
    app.assert_reconciled().await;
}

crate::both!(every_change_of_credits_is_one_event_in_order);
