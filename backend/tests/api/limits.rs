use reqwest::StatusCode;
use serde_json::json;

use crate::{
    both_backends,
    helpers::{Backend, PASSWORD, TestApp, problem},
};

both_backends!(spending_and_sign_in_are_rate_limited, cors_origins_are_honoured, more_api_keys_buy_no_more_requests);

async fn spending_and_sign_in_are_rate_limited(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.rate_limit_spend_per_second = 2;
        s.rate_limit_auth_per_minute = 6;
    })
    .await
    else {
        return;
    };
    let user = app.user().await; // one register and one login
    app.grant(&user, 100).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let res = app.spend(&user, &format!("burst-{i}"), json!({ "amount": 1 })).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().get("retry-after").is_some());
            problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            statuses.push(429);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 4, "a burst of twice the rate: {statuses:?}");
    assert_eq!(app.balance(&user).await["balance"], 96, "a refused request spends nothing");

    // Six sign-in routes a minute from one address: the seventh waits.
    for _ in 0..4 {
        assert_eq!(app.login(&user.email, PASSWORD).await.status(), StatusCode::OK);
    }
    let res = app.login(&user.email, PASSWORD).await;
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn cors_origins_are_honoured(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.cors_origins = vec!["https://app.example.com".to_owned()]).await
    else {
        return;
    };
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/credits/spend"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, idempotency-key, content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers().get("access-control-allow-origin").unwrap(), "https://app.example.com");
    assert_eq!(preflight.headers().get("access-control-allow-credentials").unwrap(), "true");
    let other =
        app.client.get(app.url("/api/v1/features")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// Audit: the spend limit is the wallet owner's, shared by all their keys and sessions; a user
/// who creates ten keys still gets one budget.
async fn more_api_keys_buy_no_more_requests(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.rate_limit_spend_per_second = 2).await else {
        return;
    };
    let user = app.user().await;
    app.grant(&user, 100).await;
    let mut keys = Vec::new();
    for i in 0..4 {
        let res = app
            .post(
                "/api/v1/api-keys",
                Some(&user.token),
                None,
                &json!({ "name": format!("k{i}"), "scopes": ["credits:spend"] }),
            )
            .await;
        keys.push(res.json::<serde_json::Value>().await.unwrap()["secret"].as_str().unwrap().to_owned());
    }
    let mut ok = 0;
    for i in 0..16 {
        // Round-robin over the keys and the session.
        let credential = if i % 5 == 4 { user.token.clone() } else { keys[i % 5].clone() };
        let res = app
            .post("/api/v1/credits/spend", Some(&credential), Some(&format!("rr-{i}")), &json!({ "amount": 1 }))
            .await;
        match res.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok <= 5, "one budget of a burst of 4 (plus at most one refill), not one per key: {ok} spends passed");
    assert_eq!(app.balance(&user).await["balance"], 100 - ok);
}
