use std::sync::Arc;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{TestApp, TestUser, problem},
};

both!(
    sandbox_catalog_offers_the_seed_packs_and_plans,
    sandbox_pack_purchase_grants_once,
    sandbox_plan_subscribes_renews_and_cancels,
    checkout_refuses_bad_requests_without_writing,
);

async fn checkout(app: &TestApp, user: &TestUser, price: &str) -> Value {
    let res =
        app.post("/api/v1/billing/checkout-session", Some(&user.token), None, &json!({ "price_id": price })).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Follows the session's URL like a browser: the page, then its Pay button.
async fn pay(app: &TestApp, session: &Value) -> String {
    let url = session["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:8080/sandbox/checkout/cs_sandbox_"), "{url}");
    let path = url.trim_start_matches("http://127.0.0.1:8080");
    let page = app.get(path, None).await.text().await.unwrap();
    assert!(page.contains("Sandbox mode") && page.contains("No real payment"), "clearly labelled");
    let res = app.client.post(app.url(&format!("{path}/pay"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    res.headers().get("location").unwrap().to_str().unwrap().to_owned()
}

async fn sandbox_catalog_offers_the_seed_packs_and_plans(app: TestApp) {
    let catalog: Value = app.get("/api/v1/billing/catalog", None).await.json().await.unwrap();
    assert_eq!(catalog["mode"], "sandbox");
    let credits: Vec<i64> =
        catalog["packs"].as_array().unwrap().iter().map(|p| p["credits"].as_i64().unwrap()).collect();
    assert_eq!(credits, [100, 500, 2000]);
    let intervals: Vec<&str> =
        catalog["plans"].as_array().unwrap().iter().map(|p| p["interval"].as_str().unwrap()).collect();
    assert_eq!(intervals, ["month", "year"]);
    assert!(catalog["packs"][0]["unit_amount"].as_i64().unwrap() > 0);
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["stripe_mode"], "sandbox");
}

async fn sandbox_pack_purchase_grants_once(app: TestApp) {
    let app = Arc::new(app);
    let user = app.user().await;
    assert_eq!(app.balance(&user).await["balance"], 0);
    let session = checkout(&app, &user, "sandbox_pack_100").await;
    let next = pay(&app, &session).await;
    assert_eq!(
        next,
        format!(
            "http://127.0.0.1:8080/credits?checkout=success&session_id={}",
            session["session_id"].as_str().unwrap()
        )
    );
    assert_eq!(app.balance(&user).await["balance"], 100);

    // Paying again, even many times at once, grants nothing more.
    let path = session["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned();
    let statuses = join_all((0..10).map(|_| {
        let app = app.clone();
        let path = path.clone();
        async move { app.client.post(app.url(&format!("{path}/pay"))).send().await.unwrap().status() }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::SEE_OTHER));
    assert_eq!(app.balance(&user).await["balance"], 100);
    let ledger: Value = app.get("/api/v1/credits/ledger", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["entries"][0]["kind"], "purchase");
    assert_eq!(ledger["entries"][0]["amount"], 100);

    // A cancelled session grants nothing and cannot be paid afterwards.
    let second = checkout(&app, &user, "sandbox_pack_500").await;
    let path = second["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned();
    let res = app.client.post(app.url(&format!("{path}/cancel"))).send().await.unwrap();
    assert_eq!(res.headers().get("location").unwrap(), "http://127.0.0.1:8080/credits?checkout=cancelled");
    let res = app.client.post(app.url(&format!("{path}/pay"))).send().await.unwrap();
    problem(res, StatusCode::CONFLICT, "checkout_session_closed").await;
    assert_eq!(app.balance(&user).await["balance"], 100);
    app.assert_reconciled().await;
}

async fn sandbox_plan_subscribes_renews_and_cancels(app: TestApp) {
    let user = app.user().await;
    let none: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    assert!(none["subscription"].is_null());

    let session = checkout(&app, &user, "sandbox_plan_monthly").await;
    pay(&app, &session).await;
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    let sub = &sub["subscription"];
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["interval"], "month");
    assert_eq!(sub["cancel_at_period_end"], false);
    let balance = app.balance(&user).await;
    assert_eq!(balance["balance"], 1000);
    // The period's credits expire when the period ends.
    assert_eq!(balance["expiring_soon"][0]["remaining"], 1000);
    assert_eq!(balance["expiring_soon"][0]["expires_at"], sub["current_period_end"]);

    // A second plan while subscribed: change it in the portal instead.
    let res = app
        .post(
            "/api/v1/billing/checkout-session",
            Some(&user.token),
            None,
            &json!({ "price_id": "sandbox_plan_yearly" }),
        )
        .await;
    problem(res, StatusCode::CONFLICT, "already_subscribed").await;

    // Renewal grants the next period once, through the invoice path.
    let (renewed, ended) = tollgate::billing::service::renew_sandbox_subscriptions(&app.db, &app.clock).await.unwrap();
    assert_eq!((renewed, ended), (1, 0));
    assert_eq!(app.balance(&user).await["balance"], 2000);
    assert_eq!(app.count("lots WHERE source = 'subscription'").await, 2);

    // Cancel at period end through the portal; the next renewal ends it.
    let link: Value =
        app.post("/api/v1/billing/portal-link", Some(&user.token), None, &json!(null)).await.json().await.unwrap();
    let url = link["url"].as_str().unwrap();
    let path = url.trim_start_matches("http://127.0.0.1:8080");
    // The single-use link is traded for the portal's session cookie and a URL without it.
    assert_eq!(app.get(path, None).await.status(), StatusCode::SEE_OTHER);
    assert!(app.get("/sandbox/portal", None).await.text().await.unwrap().contains("Cancel at period end"));
    let res = app.client.post(app.url("/sandbox/portal")).form(&[("cancel", "true")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(sub["subscription"]["cancel_at_period_end"], true);
    let (renewed, ended) = tollgate::billing::service::renew_sandbox_subscriptions(&app.db, &app.clock).await.unwrap();
    assert_eq!((renewed, ended), (0, 1));
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(sub["subscription"]["status"], "canceled");
    assert_eq!(app.balance(&user).await["balance"], 2000);
    // The seed's GET form of the portal link works too.
    assert_eq!(app.get("/api/v1/billing/portal-link", Some(&user.token)).await.status(), StatusCode::OK);
    app.assert_reconciled().await;
}

async fn checkout_refuses_bad_requests_without_writing(app: TestApp) {
    let user = app.user().await;
    let before = app.count("checkout_sessions").await;
    let res = app
        .post("/api/v1/billing/checkout-session", Some(&user.token), None, &json!({ "price_id": "price_nope" }))
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["code"], "unknown_price");
    let res =
        app.post("/api/v1/billing/checkout-session", None, None, &json!({ "price_id": "sandbox_pack_100" })).await;
    problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_eq!(app.count("checkout_sessions").await, before);
    problem(app.get("/sandbox/checkout/cs_missing", None).await, StatusCode::NOT_FOUND, "checkout_session_not_found")
        .await;
    problem(app.get("/sandbox/portal?token=forged", None).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}
