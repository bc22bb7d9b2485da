//! The outbox (#18): every change of credits writes its event in the same transaction, in
//! order, with the wallet's figures after it; refused and replayed requests write none.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, problem};

async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app.get_admin(&format!("/api/v1/events{query}")).await;
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
    let one: Value = app.get_admin(&format!("/api/v1/events/{}", ids[1])).await.json().await.unwrap();
    assert_eq!(one, all[1]);
    let missing = app.get_admin("/api/v1/events/evt_nope").await;
    problem(missing, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = app.get_admin("/api/v1/events?type=credits.nope").await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // A person's session cannot read the log.
    problem(app.get("/api/v1/events", Some(&user.token)).await, StatusCode::FORBIDDEN, "server_key_required").await;
    app.assert_reconciled().await;
}

async fn time_posts_expiry_events(app: TestApp) {
    let user = app.user().await;
    let expires = app.clock.now() + chrono::Duration::milliseconds(1200);
    let res = app
        .post_admin(
            "/api/v1/credits/grant",
            Some("g-exp"),
            &json!({ "user_id": user.id, "amount": 30, "reason": "trial", "expires_at": expires }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.grant(&user, 5).await;
    let body = json!({ "amount": 3, "ttl_seconds": 1 });
    assert_eq!(
        app.post("/api/v1/credits/holds", Some(&user.token), Some("h-exp"), &body).await.status(),
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::milliseconds(1500));
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 1);
    assert_eq!(tollgate::credits::expiry::expire_due(&app.ledger).await.unwrap(), 0);
    let all = events(&app, "").await;
    let kinds = types(&all);
    assert_eq!(&kinds[..3], ["credits.granted", "credits.granted", "credits.hold.created"]);
    let mut settled = kinds[3..].to_vec();
    settled.sort();
    assert_eq!(settled, ["credits.expired", "credits.hold.expired"], "each once");
    let expired = all.iter().find(|e| e["type"] == "credits.expired").unwrap();
    assert_eq!(expired["data"]["amount"], 30);
    assert_eq!(expired["data"]["balance"]["balance"], 5);
    app.assert_reconciled().await;
}

async fn checkout_and_plan_changes_are_events(app: TestApp) {
    let user = app.user().await;
    for (price, key) in [("sandbox_pack_100", "pack"), ("sandbox_plan_monthly", "plan")] {
        let res =
            app.post("/api/v1/billing/checkout-session", Some(&user.token), None, &json!({ "price_id": price })).await;
        assert_eq!(res.status(), StatusCode::OK, "{key}");
        let session: Value = res.json().await.unwrap();
        let id = session["session_id"].as_str().unwrap().to_owned();
        let res = app.client.post(app.url(&format!("/sandbox/checkout/{id}/pay"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        // Paying twice completes nothing more.
        app.client.post(app.url(&format!("/sandbox/checkout/{id}/pay"))).send().await.unwrap();
    }
    // A renewal: the subscription's new period, then its credits.
    let (renewed, _) = tollgate::billing::service::renew_sandbox_subscriptions(&app.db, &app.clock).await.unwrap();
    assert_eq!(renewed, 1);
    let all = events(&app, "").await;
    let kinds = types(&all);
    assert_eq!(
        kinds,
        [
            "credits.granted",
            "checkout.completed",
            "subscription.updated",
            "credits.granted",
            "checkout.completed",
            "subscription.updated",
            "credits.granted",
        ],
    );
    assert_eq!(all[1]["data"]["checkout_session"]["price_id"], "sandbox_pack_100");
    assert_eq!(all[2]["data"]["subscription"]["status"], "active");
    assert_eq!(all[2]["customer"]["id"], user.id.to_string());
    assert_eq!(all[3]["data"]["kind"], "subscription");
}

async fn one_low_balance_event_per_crossing_whatever_runs_at_once(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    let res = app
        .client
        .put(app.url("/api/v1/credits/alerts"))
        .bearer_auth(&user.token)
        .json(&json!({ "thresholds": [50, 10] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let alerts: Value = res.json().await.unwrap();
    assert_eq!(alerts, json!({ "thresholds": [50, 10], "available": 100, "below": [] }));
    let bad = app
        .client
        .put(app.url("/api/v1/credits/alerts"))
        .bearer_auth(&user.token)
        .json(&json!({ "thresholds": [1, 2, 3, 4, 5, 6] }))
        .send()
        .await
        .unwrap();
    problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let bad = app
        .client
        .put(app.url("/api/v1/credits/alerts"))
        .bearer_auth(&user.token)
        .json(&json!({ "thresholds": [-1] }))
        .send()
        .await
        .unwrap();
    problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // 20 spends of 3 at once: available falls from 100 to 40, across 50 once.
    let spends = (0..20).map(|i| {
        let (client, url, token) = (app.client.clone(), app.url("/api/v1/credits/spend"), user.token.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", format!("c-{i}"))
                .json(&json!({ "amount": 3 }))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for spend in spends.collect::<Vec<_>>() {
        assert_eq!(spend.await.unwrap(), StatusCode::OK);
    }
    let low = events(&app, "?type=balance.low").await;
    assert_eq!(low.len(), 1, "one crossing, one event");
    assert_eq!(low[0]["data"]["threshold"], 50);
    assert!(low[0]["data"]["available"].as_i64().unwrap() <= 50);
    let alerts: Value = app.get("/api/v1/credits/alerts", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(alerts["below"], json!([50]));
    // Further spends below the threshold do not fire it again; crossing the next one does.
    assert_eq!(app.spend(&user, "d-1", json!({ "amount": 1 })).await.status(), StatusCode::OK);
    assert_eq!(events(&app, "?type=balance.low").await.len(), 1);
    assert_eq!(app.spend(&user, "d-2", json!({ "amount": 30 })).await.status(), StatusCode::OK);
    let low = events(&app, "?type=balance.low").await;
    assert_eq!(low.len(), 2);
    assert_eq!(low[1]["data"]["threshold"], 10);
    // Rising above re-arms; falling again fires again.
    app.grant(&user, 100).await;
    assert_eq!(app.spend(&user, "d-3", json!({ "amount": 60 })).await.status(), StatusCode::OK);
    let low = events(&app, "?type=balance.low").await;
    assert_eq!(low.len(), 3);
    assert_eq!(low[2]["data"]["threshold"], 50);
    // A hold that takes available below counts too; refused requests never fire.
    problem(
        app.spend(&user, "d-4", json!({ "amount": 10_000 })).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(events(&app, "?type=balance.low").await.len(), 3);
    app.assert_reconciled().await;
}

async fn a_customers_alerts_and_events_name_it(app: TestApp) {
    let res = app.post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "b", "scopes": ["customers:write", "credits:read", "credits:spend", "credits:grant", "events:read"] })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let put =
        app.client.put(app.url("/api/v1/customers/acme")).bearer_auth(&key).json(&json!({})).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let res = app
        .client
        .put(app.url("/api/v1/customers/acme/alerts"))
        .bearer_auth(&key)
        .json(&json!({ "thresholds": [5] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let grant = app
        .client
        .post(app.url("/api/v1/customers/acme/grant"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "g")
        .json(&json!({ "amount": 10, "reason": "r" }))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::OK);
    let spend = app
        .client
        .post(app.url("/api/v1/customers/acme/spend"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "s")
        .json(&json!({ "amount": 6 }))
        .send()
        .await
        .unwrap();
    assert_eq!(spend.status(), StatusCode::OK);
    let page: Value = app
        .client
        .get(app.url("/api/v1/events?customer=acme"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["credits.granted", "credits.spent", "balance.low"]);
    assert_eq!(page["data"][2]["customer"]["external_id"], "acme");
    // Without events:read.
    let res =
        app.post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "c", "scopes": ["credits:read"] })).await;
    let weak = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let res = app.client.get(app.url("/api/v1/events")).bearer_auth(&weak).send().await.unwrap();
    problem(res, StatusCode::FORBIDDEN, "missing_scope").await;
}

async fn a_rolled_back_batch_records_no_event(app: TestApp) {
    use tollgate::credits::core::{Command, Op, TransferDetails};
    let user = app.user().await;
    app.grant(&user, 10).await;
    let before = app.count("events").await;
    // A command on a wallet that does not exist fails the batch as a whole? No: it is refused
    // alone. A batch whose write fails (a lot reference taken twice in one batch) rolls back.
    let spend = Command {
        user_id: user.id,
        key: None,
        op: Op::Spend { amount: tollgate::domain::Credits::new(1).unwrap(), details: TransferDetails::default() },
    };
    let missing = Command { user_id: uuid::Uuid::now_v7(), key: None, op: Op::Settle };
    let verdicts = app.ledger.apply_together(vec![spend.clone(), missing]).await;
    assert!(verdicts[0].is_ok() && verdicts[1].is_err());
    assert_eq!(app.count("events").await, before + 1, "the spend's event only");
    // Writing through a transaction that is rolled back leaves no event.
    let txn = tollgate::db::begin_write(&app.db).await.unwrap();
    tollgate::credits::writer::apply_in(&txn, &[spend], app.clock.now()).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(app.count("events").await, before + 1);
    app.assert_reconciled().await;
}

/// A reader never skips an event whose transaction commits after a later one's: on PostgreSQL
/// the log waits for the earlier transaction; on SQLite there is one writer.
async fn a_reader_never_skips_a_late_commit(app: TestApp) {
    use tollgate::{
        credits::core::{Command, Op, TransferDetails},
        events::{Position, committed_after},
    };
    let first = app.user().await;
    let second = app.user().await;
    app.grant(&first, 10).await;
    app.grant(&second, 10).await;
    let start = tollgate::events::head(&app.db).await.unwrap();
    let spend = |user: &TestUser| Command {
        user_id: user.id,
        key: None,
        op: Op::Spend { amount: tollgate::domain::Credits::new(1).unwrap(), details: TransferDetails::default() },
    };
    // The first transaction writes its event and stays open.
    let slow = tollgate::db::begin_write(&app.db).await.unwrap();
    tollgate::credits::writer::apply_in(&slow, &[spend(&first)], app.clock.now()).await.unwrap();
    if app.backend == crate::helpers::Backend::Postgres {
        // The second commits meanwhile (SQLite's one writer would wait for the first instead).
        let verdicts = app.ledger.apply_together(vec![spend(&second)]).await;
        assert!(verdicts[0].is_ok());
        let seen = committed_after(&app.db, start, None, 100).await.unwrap();
        assert!(seen.is_empty(), "nothing past the open transaction: {seen:?}");
    }
    slow.commit().await.unwrap();
    let seen = committed_after(&app.db, start, None, 100).await.unwrap();
    let owners: Vec<_> = seen.iter().map(|e| e.customer.as_ref().unwrap().id).collect();
    if app.backend == crate::helpers::Backend::Postgres {
        assert_eq!(owners, [first.id, second.id], "in commit-safe order, none skipped");
    } else {
        assert_eq!(owners, [first.id]);
    }
    let last: Position = seen.last().unwrap().position;
    assert!(committed_after(&app.db, last, None, 100).await.unwrap().is_empty());
}

/// The background task's purge (by id, whose first bits are the time the event was made)
/// deletes what is older than `EVENT_RETENTION_DAYS` and nothing newer, to the millisecond.
async fn events_past_the_retention_are_purged_and_no_others(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    assert_eq!(app.spend(&user, "old-1", json!({ "amount": 1 })).await.status(), StatusCode::OK);
    let old = events(&app, "").await;
    assert!(old.len() >= 2, "{old:?}");
    app.clock.advance(chrono::Duration::days(30));
    let user = app.sign_in_again(&user).await;
    assert_eq!(app.spend(&user, "new-1", json!({ "amount": 2 })).await.status(), StatusCode::OK);
    app.clock.advance(chrono::Duration::milliseconds(5));
    let retention = chrono::Duration::days(30);
    // Kept: the spend made 30 days before the horizon's millisecond, and later.
    let purged = tollgate::events::purge(&app.db, app.clock.now() - retention).await.unwrap();
    assert_eq!(purged as usize, old.len());
    let left = events(&app, "").await;
    assert_eq!(types(&left), ["credits.spent"], "{left:?}");
    assert_eq!(left[0]["data"]["amount"], 2);
    let id = old[0]["id"].as_str().unwrap();
    let res = app.get_admin(&format!("/api/v1/events/{id}")).await;
    problem(res, StatusCode::NOT_FOUND, "event_not_found").await;
    // Past the newest event's own time plus the retention, nothing is left.
    app.clock.advance(retention);
    assert_eq!(tollgate::events::purge(&app.db, app.clock.now() - retention).await.unwrap(), 1);
    assert!(events(&app, "").await.is_empty());
    if app.backend == crate::helpers::Backend::Sqlite {
        // The customers' copies of the purged events go with them.
        tollgate::events::index_customers(&app.db).await.unwrap();
        assert_eq!(tollgate::events::purge(&app.db, app.clock.now()).await.unwrap(), 0);
        app.grant(&user, 1).await;
        tollgate::events::index_customers(&app.db).await.unwrap();
        app.clock.advance(chrono::Duration::milliseconds(5));
        assert_eq!(tollgate::events::purge(&app.db, app.clock.now()).await.unwrap(), 1);
        assert_eq!(app.count("customer_events").await, 0);
    }
}

/// A customer's events are read whole, in order, whether or not the background task has copied
/// them into `customer_events` yet (SQLite; PostgreSQL's log has an index on the customer), and
/// a page ends where its limit says, on either side of where the copy got.
async fn a_customers_events_are_read_whole_before_and_after_they_are_indexed(app: TestApp) {
    use tollgate::events::{Position, committed_after, index_customers};
    let user = app.user().await;
    let other = app.user().await;
    app.grant(&user, 100).await;
    app.grant(&other, 100).await;
    for (who, key, amount) in [(&user, "a-1", 1), (&other, "b-1", 1)] {
        assert_eq!(app.spend(who, key, json!({ "amount": amount })).await.status(), StatusCode::OK);
    }
    index_customers(&app.db).await.unwrap();
    for (who, key, amount) in [(&user, "a-2", 2), (&other, "b-2", 2), (&user, "a-3", 3)] {
        assert_eq!(app.spend(who, key, json!({ "amount": amount })).await.status(), StatusCode::OK);
    }
    let amounts = |events: &[tollgate::events::Event]| -> Vec<i64> {
        assert!(events.iter().all(|e| e.customer.as_ref().unwrap().id == user.id), "{events:?}");
        events.iter().map(|e| e.data["amount"].as_i64().unwrap()).collect()
    };
    let read = |after: Position, limit: u64| committed_after(&app.db, after, Some(user.id), limit);
    for indexed in [false, true] {
        let all = read(Position::default(), 100).await.unwrap();
        assert_eq!(amounts(&all), [100, 1, 2, 3], "indexed: {indexed}");
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(amounts(&read(Position::default(), 2).await.unwrap()), [100, 1]);
        assert_eq!(amounts(&read(all[0].position, 2).await.unwrap()), [1, 2]);
        assert_eq!(amounts(&read(all[1].position, 100).await.unwrap()), [2, 3]);
        assert!(read(all[3].position, 100).await.unwrap().is_empty());
        index_customers(&app.db).await.unwrap();
    }
}

crate::both!(
    a_reader_never_skips_a_late_commit,
    every_change_of_credits_is_one_event_in_order,
    time_posts_expiry_events,
    checkout_and_plan_changes_are_events,
    one_low_balance_event_per_crossing_whatever_runs_at_once,
    a_customers_alerts_and_events_name_it,
    a_rolled_back_batch_records_no_event,
    events_past_the_retention_are_purged_and_no_others,
    a_customers_events_are_read_whole_before_and_after_they_are_indexed,
);
