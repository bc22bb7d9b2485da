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
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-key"))),
        );
    }
}

/// The full spec, as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    crate::startup::spec()
}

/// The spec as YAML, as committed in `openapi.yaml` (`tollgate openapi > openapi.yaml`).
pub fn spec_yaml() -> anyhow::Result<String> {
    Ok(spec().to_yaml()?)
}
