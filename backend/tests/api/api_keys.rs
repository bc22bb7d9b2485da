use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{TestApp, problem},
};

both!(api_key_lifecycle, api_key_scopes_limit_what_it_may_do, api_key_input_is_checked);

async fn create_key(app: &TestApp, token: &str, scopes: Value) -> Value {
    let res = app.post("/api/v1/api-keys", Some(token), None, &json!({ "name": "backend", "scopes": scopes })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn api_key_lifecycle(app: TestApp) {
    let user = app.user().await;
    let key = create_key(&app, &user.token, json!(["credits:read", "credits:spend"])).await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tg_") && secret.len() > 40, "{secret}");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));

    // Listed without the secret; only its hash is stored.
    let list: Value = app.get("/api/v1/api-keys", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());
    assert_eq!(list[0]["scopes"], json!(["credits:read", "credits:spend"]));
    assert_eq!(app.count(&format!("api_keys WHERE key_hash = '{secret}'")).await, 0);

    // The key opens /me, and its use is recorded.
    let me = app.get("/api/v1/me", Some(&secret)).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["id"], user.id.to_string());
    for _ in 0..50 {
        let list: Value = app.get("/api/v1/api-keys", Some(&user.token)).await.json().await.unwrap();
        if list[0]["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let list: Value = app.get("/api/v1/api-keys", Some(&user.token)).await.json().await.unwrap();
    assert!(list[0]["last_used_at"].is_string(), "last use recorded: {list}");

    // Another user cannot revoke it.
    let other = app.user().await;
    let id = key["id"].as_str().unwrap();
    let res =
        app.client.delete(app.url(&format!("/api/v1/api-keys/{id}"))).bearer_auth(&other.token).send().await.unwrap();
    problem(res, StatusCode::NOT_FOUND, "api_key_not_found").await;

    let res =
        app.client.delete(app.url(&format!("/api/v1/api-keys/{id}"))).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(app.get("/api/v1/me", Some(&secret)).await, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let list: Value = app.get("/api/v1/api-keys", Some(&user.token)).await.json().await.unwrap();
    assert!(list.as_array().unwrap().is_empty());
}

async fn api_key_scopes_limit_what_it_may_do(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    let read_only = create_key(&app, &user.token, json!(["credits:read"])).await["secret"].as_str().unwrap().to_owned();
    let spender = create_key(&app, &user.token, json!(["credits:spend"])).await["secret"].as_str().unwrap().to_owned();

    assert_eq!(app.get("/api/v1/credits/balance", Some(&read_only)).await.status(), StatusCode::OK);
    let refused = app.post("/api/v1/credits/spend", Some(&read_only), Some("s1"), &json!({ "amount": 1 })).await;
    let body = problem(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(body["required_scope"], "credits:spend");
    assert_eq!(app.count("transfers WHERE kind = 'spend'").await, 0);

    let spent = app.post("/api/v1/credits/spend", Some(&spender), Some("s1"), &json!({ "amount": 1 })).await;
    assert_eq!(spent.status(), StatusCode::OK);
    problem(app.get("/api/v1/credits/balance", Some(&spender)).await, StatusCode::FORBIDDEN, "insufficient_scope")
        .await;

    // Keys cannot mint keys, nor reach admin routes.
    let res =
        app.post("/api/v1/api-keys", Some(&spender), None, &json!({ "name": "x", "scopes": ["credits:read"] })).await;
    problem(res, StatusCode::FORBIDDEN, "session_required").await;
    assert_eq!(app.balance(&user).await["balance"], 9);
}

async fn api_key_input_is_checked(app: TestApp) {
    let user = app.user().await;
    let res =
        app.post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "", "scopes": ["admin:all"] })).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let res = app.post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "ok", "scopes": [] })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    problem(app.get("/api/v1/api-keys", Some("tg_unknown")).await, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    assert_eq!(app.count("api_keys").await, 0);
}
