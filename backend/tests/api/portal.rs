//! The payment mode decides which routes exist, and the billing portal link is a single-use
//! token that opens the portal and nothing else (audit #1, #3).

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::{Client, StatusCode, redirect::Policy};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    both, both_backends,
    helpers::{ADMIN_KEY, Backend, PASSWORD, TestApp, pg_database, problem},
    stripe::{PACK, mount_checkout, mount_prices, stripe_app, sync},
};

both_backends!(sandbox_pages_do_not_exist_in_stripe_mode, no_credential_reaches_the_access_log);
both!(portal_links_are_single_use_and_open_only_the_portal);

fn browser() -> Client {
    Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

/// Audit #1: in Stripe mode a checkout session holds Stripe's real `cs_…` id; the sandbox's pay
/// page must not exist to "pay" it for free.
async fn sandbox_pages_do_not_exist_in_stripe_mode(backend: Backend) {
    let Some((app, stripe)) = stripe_app(backend).await else { return };
    mount_prices(&stripe).await;
    sync(&app).await;
    mount_checkout(&stripe).await;
    let user = app.user().await;
    let res = app.post("/api/v1/billing/checkout-session", Some(&user.token), None, &json!({ "price_id": PACK })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let session: Value = res.json().await.unwrap();
    let id = session["session_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cs_"), "{session}");

    let client = browser();
    for (method, path) in [
        ("POST", format!("/sandbox/checkout/{id}/pay")),
        ("GET", format!("/sandbox/checkout/{id}")),
        ("POST", format!("/sandbox/checkout/{id}/cancel")),
        ("GET", "/sandbox/portal".to_owned()),
        ("POST", "/sandbox/portal".to_owned()),
    ] {
        let req = if method == "GET" { client.get(app.url(&path)) } else { client.post(app.url(&path)) };
        let res = req.bearer_auth(&user.token).form(&[("cancel", "true")]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    // Nothing was credited and the session is still Stripe's to complete.
    assert_eq!(app.balance(&user).await["balance"], 0);
    assert_eq!(app.count("lots").await, 0);
    assert_eq!(app.count(&format!("checkout_sessions WHERE id = '{id}' AND status = 'open'")).await, 1);
}

/// Audit #3: the link is minted by a session only, is stored hashed, opens once, expires, and
/// is no credential for the API.
async fn portal_links_are_single_use_and_open_only_the_portal(app: TestApp) {
    let user = app.user().await;
    let res = app
        .post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "reader", "scopes": ["credits:read"] }))
        .await;
    let key = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    problem(
        app.post("/api/v1/billing/portal-link", Some(&key), None, &json!(null)).await,
        StatusCode::FORBIDDEN,
        "session_required",
    )
    .await;
    problem(app.get("/api/v1/billing/portal-link", Some(&key)).await, StatusCode::FORBIDDEN, "session_required").await;
    assert_eq!(app.count("portal_tokens").await, 0);

    let res = app.post("/api/v1/billing/portal-link", Some(&user.token), None, &json!(null)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let token =
        url.strip_prefix("http://127.0.0.1:8080/sandbox/portal?token=").expect("a sandbox portal link").to_owned();
    assert!(!token.contains('.'), "the link must not carry a JWT: {url}");
    // Not a credential anywhere in the API.
    problem(app.get("/api/v1/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    problem(app.get("/api/v1/credits/balance", Some(&token)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Stored hashed.
    assert_eq!(app.count("portal_tokens").await, 1);
    assert_eq!(app.count(&format!("portal_tokens WHERE token_hash = '{token}'")).await, 0);

    // Opening it trades it for a portal cookie and a URL without the token.
    let tab = browser();
    let res = tab.get(app.url(&format!("/sandbox/portal?token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/sandbox/portal");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/sandbox/portal"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let page = tab.get(app.url("/sandbox/portal")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Billing portal"));
    // The portal session is no API credential either.
    problem(app.get("/api/v1/me", Some(&session)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Single use: anyone opening the link again, or the portal without the cookie, is refused.
    let other = browser();
    let res = other.get(app.url(&format!("/sandbox/portal?token={token}"))).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    problem(other.get(app.url("/sandbox/portal")).send().await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    let res = other.post(app.url("/sandbox/portal")).form(&[("cancel", "true")]).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // A link not opened in time is refused.
    let res = app.get("/api/v1/billing/portal-link", Some(&user.token)).await;
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let late = url.split_once("token=").unwrap().1.to_owned();
    app.db
        .execute_unprepared("UPDATE portal_tokens SET expires_at = created_at WHERE used_at IS NULL AND kind = 'link'")
        .await
        .unwrap();
    let res = browser().get(app.url(&format!("/sandbox/portal?token={late}"))).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

/// Audit #3: the access log of the real binary never shows a token carried in a URL.
async fn no_credential_reaches_the_access_log(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("log.db").display()),
        Backend::Postgres => match pg_database().await {
            Some(url) => url,
            None => return,
        },
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &database_url)
        .env("TOLLGATE_DATA_DIR", dir.path())
        .env("JWT_SECRET", "log-test-jwt-secret-0123456789-abcdefgh")
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("FRONTEND_DIR", "/nonexistent")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = browser();
    let mut ready = false;
    for _ in 0..200 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "tollgate did not become ready");
    let email = "log-check@example.com";
    let credentials = json!({ "email": email, "password": PASSWORD });
    client.post(format!("{base}/api/v1/auth/register")).json(&credentials).send().await.unwrap();
    let session: Value =
        client.post(format!("{base}/api/v1/auth/login")).json(&credentials).send().await.unwrap().json().await.unwrap();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let link: Value = client
        .post(format!("{base}/api/v1/billing/portal-link"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = link["url"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    let res = client.get(format!("{base}/sandbox/portal?token={token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(client.get(format!("{base}/sandbox/portal")).send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("\"GET /sandbox/portal\" 303"), "the access log names the request:\n{log}");
    for secret in [token.as_str(), access.as_str(), PASSWORD] {
        assert!(!log.contains(secret), "a credential reached the log:\n{log}");
    }
}
