//! What a newcomer trips on (issue #17), the API side: a balance series and usage by day from the
//! server, the whole history as CSV, `HEAD`, validation messages written for people, the seed's
//! paths and pages, the headers and problem members the spec declares, and plan changes in the
//! sandbox portal.

use chrono::{DateTime, Days, Duration, Utc};
use futures_util::future::join_all;
use reqwest::{Client, Method, Response, StatusCode, redirect::Policy};
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{ADMIN_KEY, TestApp, TestUser, problem},
};

both!(
    balance_history_has_a_point_for_every_day_and_hour,
    balance_history_refuses_bad_ranges_naming_the_field,
    customers_have_a_balance_history_too,
    usage_by_day_has_a_bucket_for_each_day_with_spending,
    ledger_csv_streams_the_whole_filtered_history,
    head_answers_wherever_get_does,
    validation_messages_name_the_field_in_words,
    a_seed_style_grant_is_told_what_user_id_takes,
    seed_api_paths_name_the_route_to_use,
    seed_pages_redirect_to_their_tollgate_pages,
    replays_and_errors_carry_the_headers_the_spec_declares,
    the_sandbox_portal_switches_plans_through_fulfilment,
);

/// Moves the clock to noon (UTC) of the next day, so that whole-day steps never cross midnight
/// however long the test takes.
fn to_next_noon(app: &TestApp) -> DateTime<Utc> {
    let now = app.clock.now();
    let noon = (now.date_naive() + Days::new(1)).and_hms_opt(12, 0, 0).unwrap().and_utc();
    app.clock.advance(noon - now);
    noon
}

/// A personal API key: unlike a session, it outlives the clock's jumps.
async fn api_key(app: &TestApp, user: &TestUser, scopes: &[&str]) -> String {
    let res =
        app.post("/api/v1/api-keys", Some(&user.token), None, &json!({ "name": "script", "scopes": scopes })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
}

async fn spend(app: &TestApp, key: &str, idempotency: &str, body: Value) {
    let res = app.post("/api/v1/credits/spend", Some(key), Some(idempotency), &body).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
}

async fn json_ok(res: Response) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// `(start, balance, entries)` of each point.
fn points(history: &Value) -> Vec<(String, i64, i64)> {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["start"].as_str().unwrap().to_owned(), p["balance"].as_i64().unwrap(), p["entries"].as_i64().unwrap())
        })
        .collect()
}

fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Days with no entries carry the balance over, the days before the first entry start from the
/// balance before the range, and the hourly series does the same by the hour.
async fn balance_history_has_a_point_for_every_day_and_hour(app: TestApp) {
    let user = app.user().await;
    let key = api_key(&app, &user, &["credits:read", "credits:spend"]).await;
    let d0 = to_next_noon(&app);
    app.grant(&user, 100).await;
    app.clock.advance(Duration::days(2));
    spend(&app, &key, "d2", json!({ "amount": 30 })).await;
    app.clock.advance(Duration::days(1));
    spend(&app, &key, "d3-a", json!({ "amount": 5 })).await;
    spend(&app, &key, "d3-b", json!({ "amount": 5 })).await;
    app.clock.advance(Duration::days(3));
    app.grant(&user, 50).await;
    app.clock.advance(Duration::hours(2));
    spend(&app, &key, "d6", json!({ "amount": 10 })).await;

    // The default: the last 30 days, today's point last, every day present.
    let history = json_ok(app.get("/api/v1/credits/balance-history", Some(&key)).await).await;
    assert_eq!(history["interval"], "day");
    assert_eq!(history["opening_balance"], 0);
    let series = points(&history);
    assert_eq!(series.len(), 30, "{history}");
    let d6 = d0 + Duration::days(6);
    assert_eq!(series[29].0, format!("{}T00:00:00Z", day(d6)));
    assert_eq!(at(&history["from"]), (d6 - Duration::days(29)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc());
    let balances: Vec<(i64, i64)> = series[22..].iter().map(|(_, balance, entries)| (*balance, *entries)).collect();
    assert_eq!(
        balances,
        [
            (0, 0),   // the day before the first grant
            (100, 1), // d0: granted
            (100, 0), // d1: nothing happened, carried over
            (70, 1),  // d2
            (60, 2),  // d3: the last of its two entries counts
            (60, 0),
            (60, 0),
            (100, 2), // d6: +50, then -10
        ]
    );
    assert!(series[..22].iter().all(|(_, balance, entries)| (*balance, *entries) == (0, 0)));

    // A range: the balance before it opens it; a date means its midnight.
    let path = format!("/api/v1/credits/balance-history?from={}&to={}", day(d0 + Duration::days(2)), day(d6));
    let history = json_ok(app.get(&path, Some(&key)).await).await;
    assert_eq!(history["opening_balance"], 100);
    let balances: Vec<i64> = points(&history).iter().map(|p| p.1).collect();
    assert_eq!(balances, [70, 60, 60, 60]);

    // By the hour: 10:00 to now (14:00 and a little), the grant at 12:00 and the spend at 14:00.
    let from = format!("{}T10:00:00Z", day(d6));
    let history =
        json_ok(app.get(&format!("/api/v1/credits/balance-history?interval=hour&from={from}"), Some(&key)).await).await;
    assert_eq!(history["interval"], "hour");
    assert_eq!(history["opening_balance"], 60);
    let series = points(&history);
    let hours: Vec<&str> = series.iter().map(|p| &p.0[11..13]).collect();
    assert_eq!(hours, ["10", "11", "12", "13", "14"], "{history}");
    assert_eq!(series.iter().map(|p| p.1).collect::<Vec<_>>(), [60, 60, 110, 110, 100]);
    // The default hourly range is the last 24 hours.
    let history = json_ok(app.get("/api/v1/credits/balance-history?interval=hour", Some(&key)).await).await;
    assert_eq!(points(&history).len(), 24);
    assert_eq!(points(&history).last().unwrap().1, 100);

    // The series ends where the balance is.
    assert_eq!(app.balance(&app.sign_in_again(&user).await).await["balance"], 100);
    // Someone else's series is theirs: empty.
    let other = app.user().await;
    let theirs = json_ok(app.get("/api/v1/credits/balance-history", Some(&other.token)).await).await;
    assert!(points(&theirs).iter().all(|p| p.1 == 0 && p.2 == 0));
    // A key without credits:read cannot read it.
    let spender = api_key(&app, &app.sign_in_again(&user).await, &["credits:spend"]).await;
    let refused = problem(
        app.get("/api/v1/credits/balance-history", Some(&spender)).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert_eq!(refused["required_scope"], "credits:read");
}

/// Every refusal is a 422 whose `errors` names `from`, `to` or `interval`.
async fn balance_history_refuses_bad_ranges_naming_the_field(app: TestApp) {
    let user = app.user().await;
    let now = app.clock.now();
    let iso = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases = [
        ("from=yesterday".to_owned(), "from"),
        ("to=2026-13-45".to_owned(), "to"),
        // `+` in a URL is a space: the classic way to break a date.
        ("from=2026-01-01T00:00:00+00:00".to_owned(), "from"),
        ("interval=week".to_owned(), "interval"),
        (format!("interval=hour&from={}", iso(now - Duration::days(8))), "interval"),
        (format!("from={}", iso(now - Duration::days(401))), "from"),
        (format!("from={}", iso(now + Duration::days(1))), "from"),
        (format!("from={}&to={}", iso(now - Duration::days(2)), iso(now - Duration::days(3))), "from"),
    ];
    for (query, field) in cases {
        let res = app.get(&format!("/api/v1/credits/balance-history?{query}"), Some(&user.token)).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{query}: {message}");
        assert_eq!(body["detail"], message, "{query}");
    }
    // Seven days by the hour is fine; 400 by the day too.
    for query in [
        format!("interval=hour&from={}", iso(now - Duration::days(7) + Duration::minutes(1))),
        format!("from={}", iso(now - Duration::days(399))),
    ] {
        json_ok(app.get(&format!("/api/v1/credits/balance-history?{query}"), Some(&user.token)).await).await;
    }
}

/// `GET /customers/{external_id}/balance-history` answers as the caller's own route does, with
/// the customer routes' scopes.
async fn customers_have_a_balance_history_too(app: TestApp) {
    let server_key = |scopes: Vec<&'static str>| {
        let app = &app;
        async move {
            let res =
                app.post_admin("/api/v1/admin/server-keys", None, &json!({ "name": "b", "scopes": scopes })).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
        }
    };
    let writer = server_key(vec!["customers:write", "credits:grant", "credits:spend"]).await;
    let res = app.client.put(app.url("/api/v1/customers/ada")).bearer_auth(&writer).json(&json!({})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::CREATED);
    let res = app
        .post("/api/v1/customers/ada/grant", Some(&writer), Some("g"), &json!({ "amount": 40, "reason": "x" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post("/api/v1/customers/ada/spend", Some(&writer), Some("s"), &json!({ "amount": 15 })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let reader = server_key(vec!["credits:read"]).await;
    let history = json_ok(app.get("/api/v1/customers/ada/balance-history", Some(&reader)).await).await;
    let series = points(&history);
    assert_eq!(series.len(), 30);
    let today = series.last().unwrap();
    assert_eq!((today.1, today.2), (25, 2), "{history}");
    let refused = problem(
        app.get("/api/v1/customers/ada/balance-history", Some(&writer)).await,
        StatusCode::FORBIDDEN,
        "missing_scope",
    )
    .await;
    assert_eq!(refused["required_scope"], "credits:read");
    problem(
        app.get("/api/v1/customers/nobody/balance-history", Some(&reader)).await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    )
    .await;
    let user = app.user().await;
    problem(
        app.get("/api/v1/customers/ada/balance-history", Some(&user.token)).await,
        StatusCode::FORBIDDEN,
        "server_key_required",
    )
    .await;
    let res = app.get("/api/v1/customers/ada/balance-history?interval=fortnight", Some(&reader)).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "interval");
}

/// `GET /usage?group_by=day` (the default) sums each day's spending, for a chart beside usage by
/// feature.
async fn usage_by_day_has_a_bucket_for_each_day_with_spending(app: TestApp) {
    let user = app.user().await;
    let key = api_key(&app, &user, &["credits:read", "credits:spend"]).await;
    let d0 = to_next_noon(&app);
    app.grant(&user, 100).await;
    spend(&app, &key, "a", json!({ "amount": 3 })).await;
    spend(&app, &key, "b", json!({ "feature": "example.summarize" })).await;
    app.clock.advance(Duration::days(2));
    spend(&app, &key, "c", json!({ "amount": 7 })).await;

    let expected = json!([
        { "key": day(d0), "credits": 8, "spends": 2 },
        { "key": day(d0 + Duration::days(2)), "credits": 7, "spends": 1 },
    ]);
    for path in ["/api/v1/usage?group_by=day", "/api/v1/usage"] {
        let usage = json_ok(app.get(path, Some(&key)).await).await;
        assert_eq!(usage["group_by"], "day");
        assert_eq!(usage["buckets"], expected, "{path}");
        assert_eq!(usage["total_credits"], 15);
    }
    // A range that holds only the first day.
    let to = format!("{}T00:00:00Z", day(d0 + Duration::days(1)));
    let usage = json_ok(app.get(&format!("/api/v1/usage?group_by=day&to={to}"), Some(&key)).await).await;
    assert_eq!(usage["buckets"], json!([expected[0]]));
}

/// Reads RFC 4180 CSV: quoted cells may hold commas, doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut cell) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "rows end with CRLF");
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(row.is_empty() && cell.is_empty(), "the last row ends with CRLF");
    rows
}

/// 254 entries (more than one page of the export, more than one page of the ledger) all arrive,
/// in a form a spreadsheet opens as it should.
async fn ledger_csv_streams_the_whole_filtered_history(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 1000).await;
    let description = |i: usize| match i % 6 {
        0 => format!("=HYPERLINK(\"http://evil.example\",\"{i}\")"),
        1 => format!("-{i} discount, \"quoted\""),
        2 => format!("line one\nline two {i}"),
        3 => format!("@SUM(A{i})"),
        4 => format!("+{i}"),
        _ => format!("call {i}"),
    };
    for chunk in (0..253).collect::<Vec<_>>().chunks(32) {
        join_all(chunk.iter().map(|&i| {
            let body = json!({ "amount": 1 + (i % 3), "description": description(i) });
            let (app, user) = (&app, &user);
            async move {
                let res = app.spend(user, &format!("csv-{i}"), body).await;
                assert_eq!(res.status(), StatusCode::OK);
            }
        }))
        .await;
    }
    let balance = app.balance(&user).await["balance"].as_i64().unwrap();

    let res = app.get("/api/v1/credits/ledger.csv", Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("text/csv; charset=utf-8"));
    assert_eq!(header("content-disposition").as_deref(), Some("attachment; filename=\"ledger.csv\""));
    assert_eq!(header("content-length"), None, "streamed, not built whole");
    let rows = parse_csv(&res.text().await.unwrap());
    assert_eq!(
        rows[0],
        [
            "created_at",
            "id",
            "kind",
            "amount",
            "balance_after",
            "feature",
            "quantity",
            "description",
            "hold_id",
            "lot_id",
            "metadata"
        ]
    );
    let entries = &rows[1..];
    assert_eq!(entries.len(), 254, "every entry arrives");
    let ids: std::collections::HashSet<&str> = entries.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(ids.len(), 254);
    // Newest first, as the ledger shows it; the newest balance is the wallet's.
    assert_eq!(entries[0][4].parse::<i64>().unwrap(), balance);
    let grant = entries.last().unwrap();
    assert_eq!((grant[2].as_str(), grant[3].as_str(), grant[4].as_str()), ("grant", "1000", "1000"));
    let mut total = 0;
    for row in entries {
        assert_eq!(row.len(), 11, "{row:?}");
        // ISO 8601 in UTC; whole numbers, negative ones as numbers.
        DateTime::parse_from_rfc3339(&row[0]).unwrap_or_else(|e| panic!("{}: {e}", row[0]));
        assert!(row[0].ends_with('Z'), "{}", row[0]);
        total += row[3].parse::<i64>().unwrap_or_else(|e| panic!("amount {:?}: {e}", row[3]));
        row[4].parse::<i64>().unwrap();
        if row[2] == "spend" {
            assert!(row[3].starts_with('-'), "an outgoing amount is a plain negative number");
            let text = &row[7];
            assert!(!text.starts_with(['=', '+', '-', '@']), "not neutralised: {text:?}");
            assert!(
                text.starts_with("'=HYPERLINK(\"http://evil.example\"")
                    || text.starts_with("'-")
                    || text.starts_with("line one\nline two")
                    || text.starts_with("'@SUM")
                    || text.starts_with("'+")
                    || text.starts_with("call "),
                "{text:?}"
            );
        }
    }
    assert_eq!(total, balance, "the amounts add up to the balance");
    assert!(entries.iter().any(|r| r[7].contains("discount, \"quoted\"")), "quotes and commas survive");

    // The ledger's filters apply; paging parameters do not cut the export short.
    let res = app.get("/api/v1/credits/ledger.csv?kind=grant&limit=1", Some(&user.token)).await;
    let rows = parse_csv(&res.text().await.unwrap());
    assert_eq!(rows.len(), 2);
    let future = app.get("/api/v1/credits/ledger.csv?from=2999-01-01T00:00:00Z", Some(&user.token)).await;
    assert_eq!(parse_csv(&future.text().await.unwrap()).len(), 1, "the header alone");
    let res = app.get("/api/v1/credits/ledger.csv?kind=gift", Some(&user.token)).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "kind");
    problem(app.get("/api/v1/credits/ledger.csv", None).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

async fn head(app: &TestApp, path: &str, token: Option<&str>) -> Response {
    let mut req = app.client.head(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// Uptime checkers send `HEAD`: it answers as `GET` does, without the body.
async fn head_answers_wherever_get_does(app: TestApp) {
    let user = app.user().await;
    for (path, token) in [
        ("/", None),
        ("/healthz", None),
        ("/readyz", None),
        ("/credits", None),
        ("/history", None),
        ("/api/v1/features", None),
        ("/api/v1/billing/catalog", None),
        ("/openapi.json", None),
        ("/api/v1/credits/balance", Some(user.token.as_str())),
        ("/api/v1/credits/ledger.csv", Some(user.token.as_str())),
    ] {
        let got = app.get(path, token).await;
        assert_eq!(got.status(), StatusCode::OK, "GET {path}");
        let got_type = got.headers().get("content-type").cloned();
        let got_body = got.bytes().await.unwrap();
        let res = head(&app, path, token).await;
        assert_eq!(res.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(res.headers().get("content-type").cloned(), got_type, "HEAD {path}");
        assert!(res.headers().contains_key("x-request-id"), "HEAD {path}");
        if let Some(length) = res.headers().get("content-length") {
            assert_eq!(length.to_str().unwrap(), got_body.len().to_string(), "HEAD {path}");
        }
        assert!(res.bytes().await.unwrap().is_empty(), "HEAD {path} has no body");
    }
    // HEAD is refused where GET is: without credentials, or where only POST goes.
    assert_eq!(head(&app, "/api/v1/credits/balance", None).await.status(), StatusCode::UNAUTHORIZED);
    let res = head(&app, "/api/v1/credits/spend", Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "POST");
    assert_eq!(head(&app, "/api/v1/nothing-here", None).await.status(), StatusCode::NOT_FOUND);
    let res = app.client.delete(app.url("/api/v1/features")).header("x-admin-key", ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.headers().get("allow").unwrap(), "GET, HEAD, POST");

    // A mail scanner's HEAD does not use up a single-use portal link.
    let link: Value =
        app.post("/api/v1/billing/portal-link", Some(&user.token), None, &json!(null)).await.json().await.unwrap();
    let path = link["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned();
    assert_eq!(head(&app, &path, None).await.status(), StatusCode::OK);
    let browser = Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
    let opened = browser.get(app.url(&path)).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER, "the link still opens for its owner");
}

/// A 422 names each failing field in `errors` with a sentence that starts with it; no parser
/// internals, no doubled words.
async fn validation_messages_name_the_field_in_words(app: TestApp) {
    let user = app.user().await;
    app.grant(&user, 100).await;
    let hold: Value = app
        .post("/api/v1/credits/holds", Some(&user.token), Some("h"), &json!({ "amount": 10 }))
        .await
        .json()
        .await
        .unwrap();
    let capture = format!("/api/v1/credits/holds/{}/capture", hold["hold"]["id"].as_str().unwrap());
    let before = app.ledger_counts().await;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("/api/v1/credits/spend", json!({ "amount": 1.5 }), "amount", "amount must be a whole number"),
        ("/api/v1/credits/spend", json!({ "amount": "ten" }), "amount", "amount must be a whole number"),
        ("/api/v1/credits/spend", json!({ "amount": null, "feature": 7 }), "feature", "feature must be a string"),
        (
            "/api/v1/credits/spend",
            json!({}),
            "amount",
            "amount is required, or send feature (and quantity) to be priced by the rate card",
        ),
        (
            "/api/v1/credits/spend",
            json!({ "amount": 5, "feature": "example.summarize" }),
            "amount",
            "amount and feature cannot both be given: send one or the other",
        ),
        (
            "/api/v1/credits/spend",
            json!({ "amount": 5, "quantity": 2 }),
            "quantity",
            "quantity goes with feature, not with amount",
        ),
        ("/api/v1/credits/spend", json!({ "amount": 0 }), "amount", "amount must be a positive whole number"),
        (
            "/api/v1/credits/spend",
            json!({ "amount": 5, "metadata": "x" }),
            "metadata",
            "metadata must be a JSON object",
        ),
        ("/api/v1/credits/spend", json!([5]), "body", "body must be an object"),
        (
            "/api/v1/credits/holds",
            json!({ "amount": 5, "ttl_seconds": "soon" }),
            "ttl_seconds",
            "ttl_seconds must be a whole number",
        ),
        (&capture, json!({}), "amount", "amount is required"),
        (&capture, json!({ "amount": -1 }), "amount", "amount must not be negative"),
        (
            "/api/v1/api-keys",
            json!({ "name": "x", "scopes": ["credits:read", 5] }),
            "scopes[1]",
            "scopes[1] must be a string",
        ),
    ];
    for (path, body, field, message) in cases {
        let res = app.post(path, Some(&user.token), Some(&format!("v-{field}-{body}")), &body).await;
        let problem = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let errors = problem["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}: {problem}");
        assert_eq!(
            (errors[0]["field"].as_str(), errors[0]["message"].as_str()),
            (Some(field), Some(message)),
            "{body}"
        );
        assert_eq!(problem["detail"], message, "{body}: the detail is the message, not `field: field …`");
        let text = problem.to_string();
        for internal in ["line 1", "column", "i64", "u64", "invalid type", "expected", "floating point"] {
            assert!(!text.contains(internal), "{body}: `{internal}` in {text}");
        }
    }
    // A grant's missing reason, with the admin key.
    let res = app.post_admin("/api/v1/credits/grant", Some("g-1"), &json!({ "user_id": user.id, "amount": 5 })).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "reason");
    assert_eq!(body["errors"][0]["message"], "reason is required");
    assert_eq!(app.ledger_counts().await, before, "no refused request wrote anything");

    // A query parameter of the wrong type stays a 400, and now names the parameter.
    for (query, field) in
        [("limit=abc", "limit"), ("from=2026-01-01T00:00:00+00:00", "from"), ("kind=spend&to=soon", "to")]
    {
        let res = app.get(&format!("/api/v1/credits/ledger?{query}"), Some(&user.token)).await;
        let body = problem(res, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
        assert_eq!(body["detail"], body["errors"][0]["message"]);
        assert!(body["detail"].as_str().unwrap().starts_with(field));
    }
    // Not JSON at all: a 400 that says where it stops being JSON.
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&user.token)
        .header("Idempotency-Key", "j")
        .header("content-type", "application/json")
        .body("{\"amount\": 5,")
        .send()
        .await
        .unwrap();
    let body = problem(res, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert!(body["detail"].as_str().unwrap().starts_with("The body is not valid JSON"), "{body}");
}

/// The seed's clients send `userId: "<their own id>"`: the answer names that field and says what
/// it takes.
async fn a_seed_style_grant_is_told_what_user_id_takes(app: TestApp) {
    let user = app.user().await;
    let before = app.ledger_counts().await;
    let seed = json!({ "userId": "test-user-id", "amount": 100, "reason": "test", "idempotencyKey": "test-123" });
    let res = app.post_admin("/api/v1/credits/grant", None, &seed).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "userId", "named as the client sent it: {body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("userId must be a Tollgate user id (a UUID"), "{message}");
    assert!(message.contains("`email`"), "{message}");
    assert!(!message.contains("UUID parsing failed"), "{message}");
    // The snake_case name is named as such, and a number is no id either.
    let res = app
        .post_admin("/api/v1/credits/grant", Some("g-2"), &json!({ "user_id": 42, "amount": 1, "reason": "x" }))
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "user_id");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Tollgate user id"));
    assert_eq!(app.ledger_counts().await, before, "nothing written");
    // With the user's Tollgate id or email, the seed's body works.
    for (i, who) in [json!({ "userId": user.id }), json!({ "email": user.email })].into_iter().enumerate() {
        let mut body = seed.clone();
        body.as_object_mut().unwrap().remove("userId");
        body.as_object_mut().unwrap().extend(who.as_object().unwrap().clone());
        body["idempotencyKey"] = json!(format!("seed-{i}"));
        assert_eq!(app.post_admin("/api/v1/credits/grant", None, &body).await.status(), StatusCode::OK);
    }
    assert_eq!(app.balance(&user).await["balance"], 200);
}

/// The seed's API paths answer 404 naming the `/api/v1` route; its webhook path still works.
async fn seed_api_paths_name_the_route_to_use(app: TestApp) {
    let user = app.user().await;
    for (method, path, instead) in [
        (Method::POST, "/api/credits/spend", "POST /api/v1/credits/spend"),
        (Method::POST, "/api/credits/grant", "POST /api/v1/credits/grant"),
        (Method::GET, "/api/credits/balance", "GET /api/v1/credits/balance"),
        (Method::POST, "/api/stripe/checkout", "POST /api/v1/billing/checkout-session"),
        (Method::POST, "/api/billing/checkout-session", "POST /api/v1/billing/checkout-session"),
        (Method::POST, "/api/billing/portal-link", "GET or POST /api/v1/billing/portal-link"),
        (Method::POST, "/api/billing/sync-prices", "POST /api/v1/billing/sync-prices"),
        (Method::POST, "/api/example/use-credits", "POST /api/v1/example/use-credits"),
        (Method::POST, "/api/auth/register", "POST /api/v1/auth/register"),
        (Method::POST, "/api/auth/callback/credentials", "POST /api/v1/auth/login"),
    ] {
        let res = app.client.request(method.clone(), app.url(path)).bearer_auth(&user.token).json(&json!({})).send();
        let body = problem(res.await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{instead}`")), "{method} {path}: {detail}");
    }
    let body =
        problem(app.get("/api/trpc/entitlements.getBalance", None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert!(body["detail"].as_str().unwrap().contains("GET /api/v1/credits/balance"), "{body}");
    let body = problem(app.get("/api/nothing", None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert!(body["detail"].as_str().unwrap().contains("/api/v1"), "{body}");
    // Nothing was spent or granted by any of it.
    assert_eq!(app.count("transfers").await, 0);
    // The seed's webhook path is a real route: an unsigned delivery is refused as unsigned.
    let res = app.client.post(app.url("/api/webhooks/stripe")).body("{}").send().await.unwrap();
    problem(res, StatusCode::BAD_REQUEST, "missing_signature").await;
}

/// Bookmarks and `BILLING_PORTAL_RETURN_URL=…/dashboard` from the seed land on Tollgate's pages.
async fn seed_pages_redirect_to_their_tollgate_pages(app: TestApp) {
    for (from, to) in [
        ("/dashboard", "/"),
        ("/dashboard/", "/"),
        ("/example-ai", "/example"),
        ("/auth/signin", "/sign-in"),
        ("/auth/signup", "/sign-up"),
        ("/dashboard?checkout=success&session_id=cs_1", "/?checkout=success&session_id=cs_1"),
        ("/auth/signin?callbackUrl=%2Fexample-ai", "/sign-in?callbackUrl=%2Fexample-ai"),
    ] {
        for res in [app.get(from, None).await, head(&app, from, None).await] {
            assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT, "{from}");
            assert_eq!(res.headers().get("location").unwrap(), to, "{from}");
        }
    }
    // Tollgate's own pages are served, not redirected.
    assert_eq!(app.get("/credits", None).await.status(), StatusCode::OK);
}

/// What the spec declares is what the server sends: `Idempotent-Replayed` on a replay,
/// `Retry-After` on a 429, `X-Request-Id` everywhere.
async fn replays_and_errors_carry_the_headers_the_spec_declares(app: TestApp) {
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let spend = &spec["paths"]["/api/v1/credits/spend"]["post"]["responses"];
    assert_eq!(spend["200"]["headers"]["Idempotent-Replayed"]["$ref"], "#/components/headers/Idempotent-Replayed");
    let user = app.user().await;
    app.grant(&user, 10).await;
    let first = app.spend(&user, "same", json!({ "amount": 1 })).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let again = app.spend(&user, "same", json!({ "amount": 1 })).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert!(again.headers().contains_key("x-request-id"));

    // Too many failed sign-ins: 429 with Retry-After, as declared.
    let login = &spec["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"];
    let declared = match login["$ref"].as_str() {
        Some(reference) => &spec["components"]["responses"][reference.rsplit('/').next().unwrap()],
        None => login,
    };
    assert!(declared["headers"].get("Retry-After").is_some(), "{declared}");
    let mut last = None;
    for _ in 0..6 {
        last = Some(app.login(&user.email, "wrong password!").await);
    }
    let res = last.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
}

/// The portal offers the catalog's other plans; switching starts the new plan's period and grants
/// its credits through the invoice fulfilment, once however often the button is pressed.
async fn the_sandbox_portal_switches_plans_through_fulfilment(app: TestApp) {
    let user = app.user().await;
    let session: Value = app
        .post(
            "/api/v1/billing/checkout-session",
            Some(&user.token),
            None,
            &json!({ "price_id": "sandbox_plan_monthly" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let pay = session["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned() + "/pay";
    assert_eq!(app.client.post(app.url(&pay)).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(app.balance(&user).await["balance"], 1000);

    let link: Value =
        app.post("/api/v1/billing/portal-link", Some(&user.token), None, &json!(null)).await.json().await.unwrap();
    let path = link["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:8080").to_owned();
    assert_eq!(app.get(&path, None).await.status(), StatusCode::SEE_OTHER);
    let page = app.get("/sandbox/portal", None).await.text().await.unwrap();
    assert!(page.contains("Switch to Yearly plan"), "{page}");
    assert!(!page.contains("Switch to Monthly plan"), "the current plan is not offered");
    assert!(!page.contains("Switch to Starter pack"), "packs are not plans");
    assert!(page.contains("Cancel at period end"));

    let switch = |plan: &'static str| app.client.post(app.url("/sandbox/portal")).form(&[("plan", plan)]).send();
    let before = app.clock.now();
    // Two clicks at once switch once.
    let clicks = join_all([switch("sandbox_plan_yearly"), switch("sandbox_plan_yearly")]).await;
    assert!(clicks.iter().all(|r| r.as_ref().unwrap().status() == StatusCode::SEE_OTHER));
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    let sub = &sub["subscription"];
    assert_eq!((sub["price_id"].as_str(), sub["interval"].as_str()), (Some("sandbox_plan_yearly"), Some("year")));
    assert_eq!(sub["status"], "active");
    let (start, end) = (at(&sub["current_period_start"]), at(&sub["current_period_end"]));
    assert!(start >= before && end - start >= Duration::days(365), "{sub}");
    assert_eq!(app.balance(&user).await["balance"], 16000, "the yearly plan's 15,000 credits, granted now");
    let ledger = json_ok(app.get("/api/v1/credits/ledger?kind=subscription", Some(&user.token)).await).await;
    let newest = &ledger["entries"][0];
    assert_eq!(
        (newest["amount"].as_i64(), newest["metadata"]["price_id"].as_str()),
        (Some(15000), Some("sandbox_plan_yearly"))
    );
    assert!(newest["metadata"]["invoice"].as_str().unwrap().starts_with("in_sandbox_"), "the invoice path: {newest}");
    // The monthly credits keep their own expiry; the yearly ones expire with the new period.
    let balance = app.balance(&user).await;
    let expiring: Vec<(i64, Value)> = balance["expiring_soon"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| (lot["remaining"].as_i64().unwrap(), lot["expires_at"].clone()))
        .collect();
    assert_eq!(expiring.len(), 2, "{balance}");
    assert_eq!(expiring[1], (15000, sub["current_period_end"].clone()));

    // Pressing it again changes nothing more.
    assert_eq!(switch("sandbox_plan_yearly").await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(app.balance(&user).await["balance"], 16000);
    assert_eq!(app.count("lots WHERE source = 'subscription'").await, 2);
    // A pack is not a plan; cancelling still works.
    let res = switch("sandbox_pack_100").await.unwrap();
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "plan");
    let res = app.client.post(app.url("/sandbox/portal")).form(&[("cancel", "true")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(sub["subscription"]["cancel_at_period_end"], true);
    // Switching back clears the cancellation: a new plan is a new commitment.
    assert_eq!(switch("sandbox_plan_monthly").await.unwrap().status(), StatusCode::SEE_OTHER);
    let sub: Value = app.get("/api/v1/billing/subscription", Some(&user.token)).await.json().await.unwrap();
    assert_eq!(
        (sub["subscription"]["price_id"].as_str(), sub["subscription"]["cancel_at_period_end"].as_bool()),
        (Some("sandbox_plan_monthly"), Some(false))
    );
    assert_eq!(app.balance(&user).await["balance"], 17000);
    app.assert_reconciled().await;
}

/// Every command the README shows can be copied as it is: its `sh` blocks hold plain ASCII (an
/// ellipsis in a key, a curly quote in a header, breaks the command that is pasted).
#[test]
fn the_readmes_commands_copy_as_they_are() {
    let readme = include_str!("../../../README.md");
    let mut in_sh = false;
    for (n, line) in readme.lines().enumerate() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            in_sh = !in_sh && matches!(fence.trim(), "sh" | "bash");
            continue;
        }
        if in_sh {
            assert!(line.is_ascii(), "README.md line {}: not plain ASCII: {line}", n + 1);
        }
    }
}
