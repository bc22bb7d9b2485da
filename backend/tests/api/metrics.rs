//! `/metrics` tells the ledger's truth (audit #14): after a mixed sequence of every way credits
//! move (grants, purchases, a plan, spends, the example feature, captures, replays, expiry),
//! each credit counter equals the ledger's own sum.

use std::collections::HashMap;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::{both, helpers::TestApp};

both!(credit_counters_equal_the_ledgers_sums);

async fn buy(app: &TestApp, token: &str, price: &str) {
    let res = app.post("/api/v1/billing/checkout-session", Some(token), None, &json!({ "price_id": price })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_owned();
    let res = app.client.post(app.url(&format!("/sandbox/checkout/{id}/pay"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

fn counter(text: &str, movement: &str) -> i64 {
    let prefix = format!("tollgate_credits_total{{movement=\"{movement}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

async fn credit_counters_equal_the_ledgers_sums(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    let soon = app.clock.now() + chrono::Duration::milliseconds(800);
    let res = app
        .post_admin(
            "/api/v1/credits/grant",
            Some("exp"),
            &json!({ "user_id": user.id, "amount": 7, "reason": "promo", "expires_at": soon }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    buy(&app, &user.token, "sandbox_pack_100").await;
    buy(&app, &user.token, "sandbox_plan_monthly").await;

    app.clock.advance(chrono::Duration::milliseconds(1200));
    // A spend, and its replay (counted once); the example feature; a capture and its replay.
    for _ in 0..2 {
        assert_eq!(app.spend(&user, "s1", json!({ "amount": 3 })).await.status(), StatusCode::OK);
    }
    let res =
        app.post("/api/v1/example/use-credits", Some(&user.token), Some("ex1"), &json!({ "text": "Count me." })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post("/api/v1/credits/holds", Some(&user.token), Some("h1"), &json!({ "amount": 10 })).await;
    let hold = res.json::<Value>().await.unwrap()["hold"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let res = app
            .post(&format!("/api/v1/credits/holds/{hold}/capture"), Some(&user.token), None, &json!({ "amount": 4 }))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    let text = app.get("/metrics", None).await.text().await.unwrap();
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT kind, CAST(SUM(amount) AS BIGINT) AS total FROM transfers GROUP BY kind",
        ))
        .await
        .unwrap();
    let ledger: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.try_get::<String>("", "kind").unwrap(), r.try_get::<i64>("", "total").unwrap()))
        .collect();
    let sum = |kinds: &[&str]| kinds.iter().map(|k| ledger.get(*k).copied().unwrap_or(0)).sum::<i64>();
    assert_eq!(sum(&["grant", "promotion", "purchase", "subscription"]), 100 + 7 + 100 + 1000, "{ledger:?}");
    assert_eq!(sum(&["spend"]), 3 + 5 + 4, "{ledger:?}");
    assert_eq!(sum(&["expiry"]), 7, "{ledger:?}");
    for (movement, kinds) in [
        ("granted", &["grant", "promotion", "purchase", "subscription"][..]),
        ("spent", &["spend"][..]),
        ("expired", &["expiry"][..]),
        ("clawed_back", &["clawback"][..]),
    ] {
        assert_eq!(counter(&text, movement), sum(kinds), "{movement}:\n{text}");
    }
    app.assert_reconciled().await;
}
