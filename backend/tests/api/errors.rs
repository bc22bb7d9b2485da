use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{TestApp, problem},
};

both!(actix_errors_are_problem_details, request_ids_are_kept_or_made, health_probes_answer);

async fn actix_errors_are_problem_details(app: TestApp) {
    let user = app.user().await;
    let spend = app.url("/api/v1/credits/spend");

    let res = app
        .client
        .post(&spend)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "k")
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::BAD_REQUEST, "invalid_json").await;

    let res = app
        .client
        .post(&spend)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "k")
        .header("content-type", "text/plain")
        .body("amount=1")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    let huge = json!({ "amount": 1, "description": "x".repeat(300 * 1024) });
    let res = app
        .client
        .post(&spend)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "k")
        .json(&huge)
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    let res = app
        .client
        .post(&spend)
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "k")
        .json(&json!({ "amount": "ten" }))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    problem(app.get("/api/v1/no-such-route", None).await, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.client.delete(app.url("/api/v1/credits/spend")).send().await.unwrap();
    assert_eq!(res.headers().get("allow").unwrap(), "POST");
    problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let res =
        app.client.get(app.url("/api/v1/credits/holds/not-a-uuid")).bearer_auth(&user.token).send().await.unwrap();
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.get("/api/v1/credits/ledger?limit=abc", Some(&user.token)).await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_eq!(app.count("transfers").await, 0);
}

async fn request_ids_are_kept_or_made(app: TestApp) {
    let res = app.client.get(app.url("/api/v1/nope")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-abc-123");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-abc-123");

    // An unreasonable one is replaced.
    let res = app.client.get(app.url("/healthz")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    let id = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 32);
}

async fn health_probes_answer(app: TestApp) {
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let expected = match app.backend {
        crate::helpers::Backend::Sqlite => "sqlite",
        crate::helpers::Backend::Postgres => "postgres",
    };
    assert_eq!(ready["database"], expected);
    let docs = app.get("/docs/", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI is served");
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(spec["paths"]["/api/v1/credits/spend"]["post"].is_object());
}

both!(every_response_carries_security_headers);

async fn every_response_carries_security_headers(app: TestApp) {
    for path in ["/", "/api/v1/features", "/api/v1/nope", "/docs/"] {
        let res = app.get(path, None).await;
        let headers = res.headers();
        let csp = headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(headers.get("referrer-policy").unwrap(), "strict-origin-when-cross-origin");
    }
    // Without CORS_ORIGINS, no origin is granted cross-origin access.
    let res =
        app.client.get(app.url("/api/v1/features")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

both!(metrics_count_requests_and_ledger_activity);

async fn metrics_count_requests_and_ledger_activity(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 10).await;
    assert_eq!(app.spend(&user, "m1", json!({ "amount": 3 })).await.status(), StatusCode::OK);
    assert_eq!(app.spend(&user, "m1", json!({ "amount": 3 })).await.status(), StatusCode::OK);
    assert_eq!(app.spend(&user, "m2", json!({ "amount": 30 })).await.status(), StatusCode::PAYMENT_REQUIRED);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for line in [
        "tollgate_spends_total{outcome=\"applied\"} 1",
        "tollgate_spends_total{outcome=\"replayed\"} 1",
        "tollgate_spends_total{outcome=\"refused\"} 1",
        "tollgate_credits_total{movement=\"spent\"} 3",
        "tollgate_credits_total{movement=\"granted\"} 10",
        "tollgate_grants_total{outcome=\"applied\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.contains(
            "tollgate_http_requests_total{endpoint=\"/api/v1/credits/spend\",method=\"POST\",status=\"402\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("tollgate_http_requests_duration_seconds_bucket"));
    assert!(text.contains("tollgate_db_pool_connections"));
    // Three spends, each alone in its batch.
    assert!(text.contains("tollgate_spend_batch_size_count 3"), "{text}");
    assert!(text.contains("tollgate_spend_batch_size_bucket{le=\"1\"} 3"), "{text}");
    assert!(text.contains("tollgate_spends_run_alone_total 0"), "{text}");
}
