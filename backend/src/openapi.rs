//! The OpenAPI document: the `ApiDoc` below plus every path collected from the same route table
//! the server is built from (`startup::api_routes`), so a route cannot exist undocumented.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::error::{FieldError, Problem};

/// The parts of the spec that are not paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        description = "Credit-based billing for AI features: wallets, lots, holds, an idempotent double-entry ledger, and Stripe checkout.\n\nErrors are `application/problem+json` (RFC 9457) with a stable `code`. Writes that move credits take an `Idempotency-Key` header.",
        license(name = "MIT")
    ),
    modifiers(&SecurityAddon),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Accounts, sign-in, tokens"),
        (name = "api-keys", description = "Keys for third-party clients"),
        (name = "credits", description = "Balance, spending, grants, history, usage"),
        (name = "holds", description = "Reserve, capture, release"),
        (name = "features", description = "The rate card"),
        (name = "example", description = "The example AI feature"),
        (name = "billing", description = "Catalog, checkout, portal, subscription"),
        (name = "admin", description = "Operator tools"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or an API key (tg_...)")
                    .build(),
            ),
        );
        components
            .add_security_scheme("admin_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-key"))));
    }
}

/// The full spec, as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    crate::startup::spec()
}

/// Operations behind a rate limit (see `limits`).
const RATE_LIMITED: [&str; 8] = [
    "register_user",
    "create_session",
    "refresh_session",
    "spend_credits",
    "create_hold",
    "capture_hold",
    "release_hold",
    "use_credits",
];

/// Completes what handlers leave implicit, once for all of them: every response gets a
/// description (OpenAPI requires one), every secured operation documents 401 (no or bad
/// credentials), and every admin operation 403.
pub fn complete_spec(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    let reason = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
                        .and_then(|code| code.canonical_reason())
                        .unwrap_or("Response");
                    response.description = reason.to_owned();
                }
            }
            // A JSON body can be malformed, of the wrong type, or too large; actix answers those.
            if operation.request_body.is_some() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("400".to_owned())
                    .or_insert_with(|| problem("`invalid_json`: the body is not JSON").into());
                responses
                    .entry("413".to_owned())
                    .or_insert_with(|| problem("`payload_too_large`: the body exceeds 256 KiB").into());
                responses
                    .entry("415".to_owned())
                    .or_insert_with(|| problem("`unsupported_media_type`: send application/json").into());
                responses
                    .entry("422".to_owned())
                    .or_insert_with(|| problem("`validation_failed`: a field is missing or invalid").into());
            }
            if RATE_LIMITED.contains(&operation.operation_id.as_deref().unwrap_or_default()) {
                operation.responses.responses.entry("429".to_owned()).or_insert_with(|| {
                    problem("`rate_limited` (or `too_many_attempts` for sign-in): retry after `Retry-After` seconds")
                        .into()
                });
            }
            let has_query = operation.parameters.iter().flatten().any(|p| {
                matches!(p, utoipa::openapi::RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
            });
            if has_query {
                operation
                    .responses
                    .responses
                    .entry("400".to_owned())
                    .or_insert_with(|| problem("`invalid_query`: a query parameter has the wrong type").into());
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                let utoipa::openapi::RefOr::T(parameter) = parameter else { continue };
                if parameter.name == "Idempotency-Key"
                    && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(schema))) =
                        &mut parameter.schema
                {
                    // What `IdempotencyKey::parse` accepts: printable ASCII, no spaces.
                    schema.min_length = Some(1);
                    schema.max_length = Some(255);
                    schema.pattern = Some("^[!-~]+$".to_owned());
                    // A bad key is refused with 422 before anything else.
                    operation.responses.responses.entry("422".to_owned()).or_insert_with(|| {
                        problem("`validation_failed`: the Idempotency-Key is not printable ASCII").into()
                    });
                }
            }
            let Some(security) = &operation.security else {
                continue;
            };
            if security.is_empty() {
                continue;
            }
            let text = serde_json::to_string(security).unwrap_or_default();
            let responses = &mut operation.responses.responses;
            responses.entry("401".to_owned()).or_insert_with(|| {
                problem("`unauthenticated`, `invalid_token`, `token_expired`, `invalid_api_key` or `invalid_admin_key`")
                    .into()
            });
            if text.contains("admin_key") {
                responses
                    .entry("403".to_owned())
                    .or_insert_with(|| problem("`admin_required`: the caller is not an administrator").into());
            }
        }
    }
}

/// The spec as YAML, as committed in `openapi.yaml` (`tollgate openapi > openapi.yaml`).
pub fn spec_yaml() -> anyhow::Result<String> {
    Ok(spec().to_yaml()?)
}
