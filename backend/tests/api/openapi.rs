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
                    "/api/v1/example/estimate",
                    "/api/v1/billing/catalog",
                    "/api/v1/webhooks/stripe",
                    "/api/webhooks/stripe",
                ]
                .contains(&path.as_str());
            if !public || (path == "/api/v1/features" && method == "post") {
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
