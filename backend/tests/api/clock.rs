//! The server decides by the application's clock (issue #14): each test moves the clock past a
//! time to live, without sleeping, and sees the server act on it. Each would fail were that
//! decision taken by the system's clock.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Client, Response, StatusCode, redirect::Policy};
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{PASSWORD, TestApp, TestUser, problem},
};

both!(
    portal_links_and_sessions_live_by_the_clock,
    a_sandbox_period_lives_by_the_clock,
    access_and_refresh_tokens_live_by_the_clock,
    a_sign_in_lockout_lifts_by_the_clock,
);

fn browser() -> Client {
    Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

async fn portal_link_token(app: &TestApp, user: &TestUser) -> String {
    let res = app.post("/api/v1/billing/portal-link", Some(&user.token), None, &json!(null)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    url.split_once("token=").unwrap().1.to_owned()
}

/// A link opens within 5 minutes, a portal session lasts 30, both by the clock.
async fn portal_links_and_sessions_live_by_the_clock(app: TestApp) {
    let user = app.user().await;
    let (first, second) = (portal_link_token(&app, &user).await, portal_link_token(&app, &user).await);

    // Four minutes on, a link still opens.
    app.clock.advance(Duration::minutes(4));
    let tab = browser();
    let res = tab.get(app.url(&format!("/sandbox/portal?token={first}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(tab.get(app.url("/sandbox/portal")).send().await.unwrap().status(), StatusCode::OK);

    // Six minutes on, a link is refused.
    app.clock.advance(Duration::minutes(2));
    let res = browser().get(app.url(&format!("/sandbox/portal?token={second}"))).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // The session opened at four minutes is good 29 minutes later, and gone 31 minutes later.
    app.clock.advance(Duration::minutes(27));
    assert_eq!(tab.get(app.url("/sandbox/portal")).send().await.unwrap().status(), StatusCode::OK);
    app.clock.advance(Duration::minutes(2));
    problem(tab.get(app.url("/sandbox/portal")).send().await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_token").await;
}

/// The caller's subscription period, as the API shows it.
async fn period(app: &TestApp, user: &TestUser) -> (DateTime<Utc>, DateTime<Utc>, Value) {
    let body: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    let sub = body["subscription"].clone();
    let at = |field: &str| DateTime::parse_from_rfc3339(sub[field].as_str().unwrap()).unwrap().with_timezone(&Utc);
    (at("current_period_start"), at("current_period_end"), sub["current_period_end"].clone())
}

/// A sandbox plan bought 20 days on starts its period then (by the clock), its credits expire
/// when the clock passes the period's end, and a late renewal starts the next period at once.
async fn a_sandbox_period_lives_by_the_clock(app: TestApp) {
    let user = app.user().await;
    app.clock.advance(Duration::days(20));
    // A session lives by the clock too: three weeks on, the user signs in again.
    let user = app.sign_in_again(&user).await;
    let bought = app.clock.now();
    let res = app
        .post(
            "/api/v1/billing/checkout-session",
            Some(&user.token),
            None,
            &json!({ "price_id": "sandbox_plan_monthly" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let session: Value = res.json().await.unwrap();
    let path = session["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned();
    let res = app.client.post(app.url(&format!("{path}/pay"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (start, end, _) = period(&app, &user).await;
    assert!(start >= bought, "the period starts when it is paid, by the clock: {start} < {bought}");
    assert!(end >= start + Duration::days(28), "a month: {start} to {end}");
    assert_eq!(app.balance(&user).await["balance"], 1000);

    // Twenty days into the period nothing is due.
    app.clock.advance(Duration::days(20));
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 0);
    let user = app.sign_in_again(&user).await;
    assert_eq!(app.balance(&user).await["balance"], 1000);

    // Past the period's end its credits expire.
    app.clock.advance(Duration::days(12));
    assert!(app.clock.now() > end);
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 1);
    let user = app.sign_in_again(&user).await;
    assert_eq!(app.balance(&user).await["balance"], 0);
    let expired: Value = app.get("/api/v1/credits/ledger?kind=expiry", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(expired["entries"][0]["amount"], -1000);

    // Renewed after the period ended: the next one starts now, and its credits expire with it.
    let renewing = app.clock.now();
    let renewed = tollgate::billing::service::renew_sandbox_subscriptions(&app.db, &app.clock).await.unwrap();
    assert_eq!(renewed, (1, 0));
    let (start, end, shown_end) = period(&app, &user).await;
    assert!(start >= renewing, "the renewed period starts when renewed: {start} < {renewing}");
    assert!(end >= start + Duration::days(28));
    let balance = app.balance(&user).await;
    assert_eq!(balance["balance"], 1000);
    assert_eq!(balance["expiring_soon"][0]["expires_at"], shown_end);
    app.assert_reconciled().await;
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": token })).await
}

/// Access tokens live 15 minutes (and 5 s of leeway), a rotated refresh token is taken again for
/// 10 s, and a refresh token lives 30 days: all by the clock.
async fn access_and_refresh_tokens_live_by_the_clock(app: TestApp) {
    let user = app.user().await;
    app.clock.advance(Duration::minutes(14));
    assert_eq!(app.get("/api/v1/me", Some(&user.token)).await.status(), StatusCode::OK);
    app.clock.advance(Duration::minutes(2));
    problem(app.get("/api/v1/me", Some(&user.token)).await, StatusCode::UNAUTHORIZED, "token_expired").await;

    // The refresh token renews the session.
    let res = refresh(&app, &user.refresh_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let renewed: Value = res.json().await.unwrap();
    let successor = renewed["refresh_token"].as_str().unwrap().to_owned();
    let access = renewed["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(access)).await.status(), StatusCode::OK);

    // Within the reuse grace the rotated token leads to the same successor; 11 s later its reuse
    // revokes the family.
    let again: Value = refresh(&app, &user.refresh_token).await.json().await.unwrap();
    assert_eq!(again["refresh_token"], successor.as_str());
    app.clock.advance(Duration::seconds(11));
    problem(refresh(&app, &user.refresh_token).await, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    problem(refresh(&app, &successor).await, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;

    // A refresh token is good for 30 days.
    let (early, late) = (app.sign_in_again(&user).await, app.sign_in_again(&user).await);
    app.clock.advance(Duration::days(29));
    assert_eq!(refresh(&app, &early.refresh_token).await.status(), StatusCode::OK);
    app.clock.advance(Duration::days(2));
    problem(refresh(&app, &late.refresh_token).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

/// Five failed sign-ins lock an email out for the lockout window (15 minutes), by the clock.
async fn a_sign_in_lockout_lifts_by_the_clock(app: TestApp) {
    let user = app.user().await;
    for _ in 0..5 {
        assert_eq!(app.login(&user.email, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    app.clock.advance(Duration::minutes(14));
    problem(app.login(&user.email, PASSWORD).await, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    app.clock.advance(Duration::minutes(2));
    assert_eq!(app.login(&user.email, PASSWORD).await.status(), StatusCode::OK);
}
