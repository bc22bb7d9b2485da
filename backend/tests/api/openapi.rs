//! The committed `openapi.yaml` is what the code generates, and every route is documented.

#[test]
fn committed_spec_is_fresh() {
    let generated = tollgate::openapi::spec_yaml().expect("spec");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is stale. Regenerate it with:\n\n    cargo run -q -p tollgate -- openapi > openapi.yaml\n"
    );
}

#[test]
fn every_operation_documents_its_errors_and_security() {
    let spec = serde_json::to_value(tollgate::openapi::spec()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            let public = path.starts_with("/api/v1/auth/")
                || [
                    "/healthz",
                    "/readyz",
                    "/api/v1/features",
                    "/api/v1/models",
                    "/api/v1/example/estimate",
                    "/api/v1/billing/catalog",
                    "/api/v1/webhooks/stripe",
                    "/api/webhooks/stripe",
                ]
                .contains(&path.as_str());
            let admin_write = ["/api/v1/features", "/api/v1/models"].contains(&path.as_str()) && method == "post";
            if !public || admin_write {
                assert!(op.get("security").is_some(), "{method} {path} has no security");
                assert!(
                    op["responses"].get("401").is_some()
                        || op["responses"].get("403").is_some()
                        || op["responses"].get("404").is_some(),
                    "{method} {path} documents no auth error"
                );
            }
        }
    }
}

/// The response `status` of `method path`, following a `$ref` into `components/responses`.
fn response<'a>(spec: &'a serde_json::Value, path: &str, method: &str, status: &str) -> &'a serde_json::Value {
    let response = &spec["paths"][path][method]["responses"][status];
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/responses/").unwrap();
            &spec["components"]["responses"][name]
        }
        None => response,
    }
}

/// The codes a problem response can carry, as its schema enumerates them.
fn codes(response: &serde_json::Value) -> Vec<&str> {
    let schema = &response["content"]["application/problem+json"]["schema"];
    assert_eq!(schema["allOf"][0]["$ref"], "#/components/schemas/Problem", "{response}");
    let codes = schema["allOf"][1]["properties"]["code"]["enum"].as_array();
    codes.unwrap_or_else(|| panic!("no code enum in {response}")).iter().map(|c| c.as_str().unwrap()).collect()
}

#[test]
fn every_error_response_enumerates_its_codes_and_each_has_that_status() {
    use tollgate::error::ErrorCode;
    let spec = serde_json::to_value(tollgate::openapi::spec()).unwrap();
    let schemas = &spec["components"]["schemas"];
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(schemas["ErrorCode"]["enum"], serde_json::json!(all));
    assert_eq!(schemas["Problem"]["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode");
    let mut used = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let number: u16 = status.parse().unwrap();
                if number < 400 || (path == "/readyz" && number == 503) {
                    continue;
                }
                let listed = codes(response(&spec, path, method, status));
                assert!(!listed.is_empty(), "{method} {path} {status}");
                for code in listed {
                    let code: ErrorCode = code.parse().unwrap_or_else(|_| panic!("`{code}` is no ErrorCode"));
                    assert_eq!(code.status().as_u16(), number, "{method} {path} lists `{code}` under {status}");
                    used.insert(code);
                }
            }
        }
    }
    // Answered outside the API's routes: an unknown path, a known path with the wrong method,
    // and the sandbox's checkout and portal pages (`billing::sandbox`), which stand in for Stripe.
    let unrouted = [
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::CheckoutSessionNotFound,
        ErrorCode::CheckoutSessionClosed,
        ErrorCode::SubscriptionNotFound,
    ];
    let unused: Vec<_> = ErrorCode::ALL.iter().filter(|c| !used.contains(*c) && !unrouted.contains(c)).collect();
    assert!(unused.is_empty(), "codes no route lists: {unused:?}");
}

crate::both!(the_served_spec_lists_each_routes_codes);

async fn the_served_spec_lists_each_routes_codes(app: crate::helpers::TestApp) {
    use reqwest::StatusCode;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let spec: serde_json::Value = res.json().await.unwrap();
    let spend = "/api/v1/credits/spend";
    assert_eq!(codes(response(&spec, spend, "post", "402")), ["insufficient_credits", "outstanding_debt"]);
    assert_eq!(codes(response(&spec, spend, "post", "400")), ["invalid_json", "idempotency_key_required"]);
    assert_eq!(codes(response(&spec, spend, "post", "409")), ["idempotency_key_reused"]);
    assert_eq!(
        codes(response(&spec, "/api/v1/credits/holds/{id}/capture", "post", "409")),
        ["idempotency_key_reused", "hold_expired", "hold_not_open", "hold_already_captured", "hold_owned_by_gateway"]
    );
    assert_eq!(
        codes(response(&spec, "/api/v1/me", "get", "401")),
        ["unauthenticated", "invalid_token", "token_expired", "invalid_api_key"]
    );
    assert_eq!(
        codes(response(&spec, "/api/v1/credits/grant", "post", "403")),
        ["admin_required", "admin_key_disabled", "server_key_not_allowed"]
    );
    // What the server answers is among what the spec says it answers.
    let user = app.user().await;
    let refused = crate::helpers::problem(
        app.spend(&user, "k-1", serde_json::json!({ "amount": 5 })).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    let listed = codes(response(&spec, spend, "post", "402"));
    assert!(listed.contains(&refused["code"].as_str().unwrap()));
    // Its extension members are documented too.
    let documented = spec["components"]["schemas"]["Problem"]["properties"].as_object().unwrap();
    for member in refused.as_object().unwrap().keys() {
        assert!(documented.contains_key(member), "`{member}` is not in the Problem schema");
    }
    assert!(refused["available"].is_i64() && refused["requested"].is_i64(), "{refused}");
}

/// Issue #17: the headers clients need are declared where they are sent, and the problem body's
/// extension members are typed and described.
#[test]
fn the_spec_declares_the_headers_and_problem_members_clients_use() {
    let spec = serde_json::to_value(tollgate::openapi::spec()).unwrap();
    let declared = &spec["components"]["headers"];
    for name in ["X-Request-Id", "Retry-After", "Idempotent-Replayed"] {
        assert!(declared[name]["schema"].is_object() && declared[name]["description"].is_string(), "{name}");
    }
    assert_eq!(declared["Retry-After"]["schema"]["type"], "integer");
    let replayable = [
        "spend_credits",
        "grant_credits",
        "create_hold",
        "capture_hold",
        "release_hold",
        "customer_spend",
        "customer_grant",
        "customer_create_hold",
        "customer_capture_hold",
        "customer_release_hold",
    ];
    let mut seen = (0, 0, 0);
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            for (status, _) in operation["responses"].as_object().unwrap() {
                let headers = &response(&spec, path, method, status)["headers"];
                let named = |name: &str| headers[name]["$ref"] == format!("#/components/headers/{name}");
                assert!(named("X-Request-Id"), "{method} {path} {status}: no X-Request-Id");
                seen.0 += 1;
                let retry = ["429", "502", "503"].contains(&status.as_str());
                assert_eq!(named("Retry-After"), retry, "{method} {path} {status}: Retry-After");
                seen.1 += usize::from(retry);
                let replay = status == "200" && replayable.contains(&id);
                assert_eq!(named("Idempotent-Replayed"), replay, "{method} {path} {status}: Idempotent-Replayed");
                seen.2 += usize::from(replay);
            }
        }
    }
    assert!(seen.0 > 300 && seen.1 > 50, "{seen:?}");
    assert_eq!(seen.2, replayable.len(), "every credit-moving route declares its replays");

    let problem = &spec["components"]["schemas"]["Problem"];
    let description = problem["description"].as_str().unwrap();
    assert!(description.contains("RFC 9457") && description.contains("`code`"), "{description}");
    let members = problem["properties"].as_object().unwrap();
    for (member, kind) in [
        ("available", "integer"),
        ("requested", "integer"),
        ("debt", "integer"),
        ("held", "integer"),
        ("captured_amount", "integer"),
        ("required_scope", "string"),
        ("errors", "array"),
        ("request_id", "string"),
    ] {
        let schema = &members[member];
        let types = match &schema["type"] {
            serde_json::Value::Array(types) => types.clone(),
            one => vec![one.clone()],
        };
        assert!(types.contains(&serde_json::json!(kind)), "{member}: {schema}");
        assert!(schema["description"].as_str().is_some_and(|d| !d.is_empty()), "{member} is undescribed");
    }
    let field = &spec["components"]["schemas"]["FieldError"]["properties"];
    assert!(field["field"]["description"].as_str().unwrap().contains("metadata.tags[2]"));
}
