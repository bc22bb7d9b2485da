use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use tollgate::{
    auth::service::hash_secret,
    config::PasswordHashing,
    entities::{refresh_tokens, users},
};
use tollgate_migrations::{Migrator, MigratorTrait};

use crate::{
    both, both_backends,
    helpers::{Backend, PASSWORD, TestApp, metric, problem},
};

both!(
    register_normalises_email_and_rejects_duplicates,
    register_reports_every_invalid_field,
    login_returns_tokens_that_open_me,
    wrong_password_and_unknown_email_look_the_same,
    refresh_works_from_the_cookie_and_logout_revokes,
    repeated_failures_are_throttled,
    bad_tokens_are_refused,
    admin_routes_need_admin,
    concurrent_wrong_guesses_check_at_most_the_limit,
    two_tabs_refreshing_at_once_get_the_same_token,
    reuse_after_the_grace_period_revokes_the_family,
    internationalised_domain_is_one_account,
    migration_rewrites_stored_internationalised_emails,
);

both_backends!(
    refresh_rotates_and_reuse_revokes_the_family,
    concurrent_sign_ins_never_hash_more_than_the_limit,
    sign_ins_waiting_too_long_for_a_hash_get_503,
);

async fn register_normalises_email_and_rejects_duplicates(app: TestApp) {
    let res = app.register("  Ada.Lovelace@Example.COM ", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "ada.lovelace@example.com");
    assert_eq!(body["role"], "user");
    assert!(body.get("password_hash").is_none());

    let again = app.register("ada.lovelace@example.com", "another password").await;
    problem(again, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("accounts WHERE kind = 'wallet'").await, 1, "one wallet per user");
}

async fn register_reports_every_invalid_field(app: TestApp) {
    let res = app.register("not-an-email", "short").await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password"]);

    let long = "x".repeat(129);
    let res = app.register("bob@example.com", &long).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // 128 characters (multi-byte ones count as one) is fine.
    let ok = "é".repeat(128);
    assert_eq!(app.register("bob@example.com", &ok).await.status(), StatusCode::CREATED);

    let res = app.post("/api/v1/auth/register", None, None, &json!({ "email": "c@example.com" })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.count("users").await, 1);
}

async fn login_returns_tokens_that_open_me(app: TestApp) {
    app.register("ada@example.com", PASSWORD).await;
    let res = app.login(" ADA@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("tollgate_refresh="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    for claim in ["sub", "exp", "iat", "iss", "aud", "jti", "role"] {
        assert!(claims.get(claim).is_some(), "missing claim {claim}");
    }
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 900);

    let me: Value = app.get("/api/v1/me", Some(token)).await.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["id"], body["user"]["id"]);
    // Only a hash of the refresh token is stored.
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 43, "256 bits, base64url");
    assert_eq!(app.count(&format!("refresh_tokens WHERE token_hash = '{refresh}'")).await, 0);
    assert_eq!(app.count("refresh_tokens").await, 1);
}

async fn wrong_password_and_unknown_email_look_the_same(app: TestApp) {
    app.register("ada@example.com", PASSWORD).await;
    let wrong =
        problem(app.login("ada@example.com", "wrong password").await, StatusCode::UNAUTHORIZED, "invalid_credentials")
            .await;
    let unknown =
        problem(app.login("nobody@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["title"], unknown["title"]);
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    // No grace period: any second use of a rotated token is a reuse.
    let Some(app) = TestApp::spawn_with(backend, |s| s.refresh_token_reuse_grace = Duration::ZERO).await else {
        return;
    };
    let user = app.user().await;
    let first = user.refresh_token.clone();
    let res = app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": first })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(app.get("/api/v1/me", rotated["access_token"].as_str()).await.status(), StatusCode::OK);

    // The first token again: someone replayed it. The whole family dies, the newest token too.
    let reuse = app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": first })).await;
    problem(reuse, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let after = app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": second })).await;
    problem(after, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;

    let unknown = app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": "nonsense" })).await;
    problem(unknown, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

async fn refresh_works_from_the_cookie_and_logout_revokes(app: TestApp) {
    app.register("ada@example.com", PASSWORD).await;
    // The client keeps the cookie from sign-in.
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), StatusCode::OK);
    let res = app.client.post(app.url("/api/v1/auth/refresh")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let token = body["refresh_token"].as_str().unwrap().to_owned();

    let out = app.client.post(app.url("/api/v1/auth/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared = out.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.contains("tollgate_refresh=;") || cleared.contains("Max-Age=0"), "{cleared}");

    let res = app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": token })).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let no_cookie = app.client.post(app.url("/api/v1/auth/refresh")).send().await.unwrap();
    problem(no_cookie, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

async fn repeated_failures_are_throttled(app: TestApp) {
    app.register("ada@example.com", PASSWORD).await;
    for _ in 0..5 {
        let res = app.login("ada@example.com", "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, with a time to wait.
    let res = app.login("ada@example.com", PASSWORD).await;
    let retry_after: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // Another email is not affected; an unknown one is throttled the same way.
    app.register("bob@example.com", PASSWORD).await;
    assert_eq!(app.login("bob@example.com", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..5 {
        app.login("ghost@example.com", "wrong password").await;
    }
    assert_eq!(app.login("ghost@example.com", "wrong password").await.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn bad_tokens_are_refused(app: TestApp) {
    problem(app.get("/api/v1/me", None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    problem(app.get("/api/v1/me", Some("not.a.jwt")).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let res = app.client.get(app.url("/api/v1/me")).header("authorization", "Basic abc").send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // A token signed with another secret.
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let claims = json!({ "sub": uuid::Uuid::new_v4(), "exp": 4_000_000_000u64, "iat": 0, "iss": "tollgate",
                         "aud": "tollgate-api", "jti": uuid::Uuid::new_v4(), "role": "admin" });
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret!!"),
    )
    .unwrap();
    problem(app.get("/api/v1/me", Some(&forged)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn admin_routes_need_admin(app: TestApp) {
    let user = app.user().await;
    let body = json!({ "user_id": user.id, "amount": 10, "reason": "test" });
    let anonymous = app.post("/api/v1/credits/grant", None, Some("k1"), &body).await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let plain = app.post("/api/v1/credits/grant", Some(&user.token), Some("k1"), &body).await;
    problem(plain, StatusCode::FORBIDDEN, "admin_required").await;
    let wrong_key = app
        .client
        .post(app.url("/api/v1/credits/grant"))
        .header("x-admin-key", "wrong-admin-key-0123456789")
        .header("Idempotency-Key", "k1")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(wrong_key, StatusCode::UNAUTHORIZED, "invalid_admin_key").await;
    assert_eq!(app.count("transfers").await, 0);

    // Promoted (as `tollgate users promote` does), then signed in again: an admin.
    let email = tollgate::domain::Email::parse(&user.email).unwrap();
    tollgate::auth::service::promote(&app.db, &app.clock, &email).await.unwrap();
    let token: Value = app.login(&user.email, PASSWORD).await.json().await.unwrap();
    let res = app.post("/api/v1/credits/grant", token["access_token"].as_str(), Some("k1"), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.balance(&user).await["balance"], 10);
}

async fn concurrent_sign_ins_never_hash_more_than_the_limit(backend: Backend) {
    // Hashes long enough (a few ms each) that unbounded ones would overlap.
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.password_hashing = PasswordHashing { memory_kib: 4096, iterations: 4, parallelism: 1 };
        s.password_hash_concurrency = 2;
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..16).map(|i| format!("user{i}@example.com")).collect();
    for email in &emails {
        assert_eq!(app.register(email, PASSWORD).await.status(), StatusCode::CREATED);
    }
    let statuses = join_all(emails.iter().map(|email| async { app.login(email, PASSWORD).await.status() })).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");

    let peak = metric(&app, "tollgate_password_hashes_in_flight_peak").await;
    assert!((1.0..=2.0).contains(&peak), "at most 2 hashes at once, saw {peak}");
    assert_eq!(metric(&app, "tollgate_password_hashes_in_flight").await, 0.0);
}

async fn sign_ins_waiting_too_long_for_a_hash_get_503(backend: Backend) {
    // One slot, hashes of tens of ms, and a queue that gives up after 20 ms.
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.password_hashing = PasswordHashing { memory_kib: 16 * 1024, iterations: 4, parallelism: 1 };
        s.password_hash_concurrency = 1;
        s.password_hash_queue_timeout = Duration::from_millis(20);
    })
    .await
    else {
        return;
    };
    let app = &app;
    let responses =
        join_all((0..8).map(|i| async move { app.login(&format!("nobody{i}@example.com"), PASSWORD).await })).await;
    let mut busy = 0;
    for res in responses {
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            problem(res, StatusCode::SERVICE_UNAVAILABLE, "password_hashing_busy").await;
            busy += 1;
        } else {
            problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
    }
    assert!(busy >= 1, "8 sign-ins through one slot in 20 ms: some must be turned away");
    assert_eq!(metric(app, "tollgate_password_hash_queue_timeouts_total").await, f64::from(busy));
    // A sign-in turned away checked no password: it is not counted as a failure.
    assert_eq!(app.count("login_failures").await, 8 - i64::from(busy));
}

async fn concurrent_wrong_guesses_check_at_most_the_limit(app: TestApp) {
    app.register("ada@example.com", PASSWORD).await;
    let statuses =
        join_all((0..30).map(|_| async { app.login("ada@example.com", "wrong password").await.status() })).await;
    let wrong = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(wrong, 5, "exactly LOGIN_MAX_FAILURES guesses are checked: {statuses:?}");
    assert_eq!(throttled, 25, "{statuses:?}");
    // The window is closed for the right password too.
    let res = app.login("ada@example.com", PASSWORD).await;
    assert!(res.headers().get("retry-after").is_some());
    problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

async fn refresh_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/api/v1/auth/refresh", None, None, &json!({ "refresh_token": token })).await
}

async fn two_tabs_refreshing_at_once_get_the_same_token(app: TestApp) {
    let user = app.user().await;
    let (a, b) = tokio::join!(refresh_with(&app, &user.refresh_token), refresh_with(&app, &user.refresh_token));
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    let next = a["refresh_token"].as_str().unwrap();
    assert_eq!(b["refresh_token"].as_str().unwrap(), next, "both tabs hold the same new refresh token");
    assert_ne!(next, user.refresh_token);
    for tab in [&a, &b] {
        assert_eq!(app.get("/api/v1/me", tab["access_token"].as_str()).await.status(), StatusCode::OK);
    }
    assert_eq!(app.count("refresh_tokens").await, 2, "one successor");
    assert_eq!(app.count("refresh_tokens WHERE revoked_at IS NOT NULL").await, 0, "the family lives");

    // The session carries on from the shared token.
    let res = refresh_with(&app, next).await;
    assert_eq!(res.status(), StatusCode::OK);
    let after: Value = res.json().await.unwrap();
    assert_eq!(refresh_with(&app, after["refresh_token"].as_str().unwrap()).await.status(), StatusCode::OK);
    // Only a hash of each token is stored.
    assert_eq!(app.count(&format!("refresh_tokens WHERE token_hash = '{next}'")).await, 0);
}

async fn reuse_after_the_grace_period_revokes_the_family(app: TestApp) {
    let user = app.user().await;
    let first = user.refresh_token.clone();
    let res = refresh_with(&app, &first).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    // Within the grace period the first token leads to the same successor.
    let again: Value = refresh_with(&app, &first).await.json().await.unwrap();
    assert_eq!(again["refresh_token"], second);

    // The rotation is now a minute old: the grace period (10 s) is over.
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RotatedAt, Expr::value(app.clock.now() - chrono::Duration::minutes(1)))
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(&first)))
        .exec(&app.db)
        .await
        .unwrap();
    problem(refresh_with(&app, &first).await, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    problem(refresh_with(&app, &second).await, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_eq!(app.count("refresh_tokens WHERE revoked_at IS NULL").await, 0, "the whole family is revoked");
}

async fn internationalised_domain_is_one_account(app: TestApp) {
    let res = app.register("ada@exämple.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();

    // The same mailbox spelled in ASCII gets exactly what a plain duplicate gets.
    let ascii =
        problem(app.register("ADA@xn--exmple-cua.com", PASSWORD).await, StatusCode::CONFLICT, "email_taken").await;
    let duplicate = problem(app.register("ada@exämple.com", PASSWORD).await, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(ascii["detail"], duplicate["detail"]);
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("accounts WHERE kind = 'wallet'").await, 1);
    assert_eq!(body["email"], "ada@xn--exmple-cua.com", "stored in its ASCII form");

    for email in ["ada@exämple.com", "ada@xn--exmple-cua.com", "Ada@EXÄMPLE.com"] {
        let res = app.login(email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK, "{email}");
        assert_eq!(res.json::<Value>().await.unwrap()["user"]["id"], body["id"]);
    }
}

/// Stores `email` on the account registered as `registered`, as the code before IDNA did.
async fn store_raw_email(app: &TestApp, registered: &str, email: &str) {
    users::Entity::update_many()
        .col_expr(users::Column::Email, Expr::value(email))
        .filter(users::Column::Email.eq(registered))
        .exec(&app.db)
        .await
        .unwrap();
}

async fn migration_rewrites_stored_internationalised_emails(app: TestApp) {
    // Accounts stored before emails were normalised: one with a Unicode domain, and a pair that
    // are one mailbox in two spellings.
    app.register("bob@example.net", PASSWORD).await;
    store_raw_email(&app, "bob@example.net", "bob@exämple.com").await;
    app.register("ada@xn--exmple-cua.com", PASSWORD).await;
    app.register("ada@example.net", PASSWORD).await;
    store_raw_email(&app, "ada@example.net", "ada@exämple.com").await;
    // Sign-in normalises, so the old row cannot be found.
    assert_eq!(app.login("bob@exämple.com", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);

    // Migrate again from the IDNA migration on.
    let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let position = names.iter().position(|n| n == "m20261202_000101_idna_emails").unwrap();
    Migrator::down(&app.db, Some((names.len() - position) as u32)).await.unwrap();
    Migrator::up(&app.db, None).await.unwrap();

    let res = app.login("bob@exämple.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["user"]["email"], "bob@xn--exmple-cua.com");
    // Two accounts for one mailbox are left for an operator: neither is renamed onto the other.
    assert_eq!(app.count("users WHERE email = 'ada@xn--exmple-cua.com'").await, 1);
    assert_eq!(app.count("users WHERE email = 'ada@exämple.com'").await, 1);
}
