//! The OpenAPI document: the `ApiDoc` below plus every path collected from the same route table
//! the server is built from (`startup::api_routes`), so a route cannot exist undocumented.
//!
//! Error responses are generated, never written by hand: a route declares the codes its handler
//! answers (`errors!`), `complete_spec` adds those its shape implies, and each status's response
//! is a `Problem` whose `code` is an enum of exactly those codes, so that a generated client can
//! match on it.

use std::collections::BTreeMap;

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
        header::{Header, HeaderBuilder},
        path::Operation,
        response::Response,
        schema::{AllOfBuilder, ObjectBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::error::{ErrorCode, FieldError, Problem};

/// The parts of the spec that are not paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        description = "Credit-based billing for AI features: wallets, lots, holds, an idempotent double-entry ledger, and Stripe checkout.\n\nErrors are `application/problem+json` (RFC 9457, the `Problem` schema) with a stable `code` (`ErrorCode`); each operation lists, per status, exactly the codes it can answer. Writes that move credits take an `Idempotency-Key` header; a retried write's answer carries `Idempotent-Replayed: true`. Every response carries `X-Request-Id`; 429, 502 and 503 carry `Retry-After`. `HEAD` works wherever `GET` does.",
        license(name = "MIT")
    ),
    modifiers(&SecurityAddon),
    components(schemas(Problem, FieldError, ErrorCode, crate::webhooks::dto::SubscribedEventType)),
    tags(
        (name = "auth", description = "Accounts, sign-in, tokens"),
        (name = "api-keys", description = "Keys for third-party clients"),
        (name = "credits", description = "Balance, spending, grants, history, usage"),
        (name = "holds", description = "Reserve, capture, release"),
        (name = "features", description = "The rate card"),
        (name = "models", description = "The LLM gateway's rate card: models priced per million tokens"),
        (name = "events", description = "The event log: every change of credits or billing state, in order"),
        (name = "gateway", description = "The OpenAI-compatible LLM gateway, metered by tokens (base URL `/gateway/v1`)"),
        (name = "example", description = "The example AI feature"),
        (name = "billing", description = "Catalog, checkout, portal, subscription"),
        (name = "customers", description = "The product's backend acting on its customers, named by its own ids (server keys)"),
        (name = "webhooks", description = "Endpoints the product receives events at, signed as Standard Webhooks sign, and their deliveries"),
        (name = "server-keys", description = "Keys for the product's backend (admin)"),
        (name = "hosted", description = "Tollgate's hosted pages for one customer (a session cookie from a portal-session link)"),
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
            "server_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("server key (tg_sk_...)")
                    .description(Some("A server key from `POST /admin/server-keys`, for the customer routes."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "hosted_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::billing::portal::HOSTED_COOKIE,
                "The hosted pages' session, set by opening a `portal-session` link; sent only to `/api/v1/hosted`.",
            ))),
        );
        components
            .add_security_scheme("admin_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-key"))));
    }
}

/// The full spec, as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    crate::startup::spec()
}

/// Declares the problem codes a route answers itself, as a type for the route's
/// `#[utoipa::path(responses(...))]`: `errors!(SpendErrors: InsufficientCredits, OutstandingDebt);`
/// then `responses((status = 200, body = SpendResponse), SpendErrors)`. The codes that follow
/// from the route's shape (its credentials, body, parameters, rate limit) are added by
/// `complete_spec`, so they are not listed here.
macro_rules! errors {
    ($name:ident: $($code:ident),+ $(,)?) => {
        #[doc = concat!("The problem codes of one route: ", $("`", stringify!($code), "` ",)+)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::openapi::problem_responses(&[$($crate::error::ErrorCode::$code),+])
            }
        }
    };
}
pub(crate) use errors;

const PROBLEM_JSON: &str = "application/problem+json";

/// One response per status among `codes`, each a `Problem` whose `code` is one of that status's
/// codes.
pub fn problem_responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    by_status(codes).into_iter().map(|(status, codes)| (status, problem_response(&codes).into())).collect()
}

/// The codes grouped by their status, each group sorted (by the table's order) and without repeats.
fn by_status(codes: &[ErrorCode]) -> BTreeMap<String, Vec<ErrorCode>> {
    let mut groups: BTreeMap<String, Vec<ErrorCode>> = BTreeMap::new();
    for &code in codes {
        groups.entry(code.status().as_u16().to_string()).or_default().push(code);
    }
    for group in groups.values_mut() {
        group.sort();
        group.dedup();
    }
    groups
}

/// A problem response answering one of `codes`: all of one status, sorted, without repeats.
fn problem_response(codes: &[ErrorCode]) -> Response {
    let description: String = match codes {
        [one] => format!("`{}`: {}", one.as_str(), one.meaning()),
        _ => codes.iter().map(|c| format!("- `{}`: {}\n", c.as_str(), c.meaning())).collect(),
    };
    let code = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.iter().map(|c| c.as_str())));
    let narrowed = ObjectBuilder::new().schema_type(Type::Object).property("code", code).required("code");
    let schema = AllOfBuilder::new().item(Ref::from_schema_name("Problem")).item(narrowed);
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(schema)).build())
        .build();
    if let Some(code) = codes.first() {
        add_headers(&mut response, &code.status().as_u16().to_string(), false);
    }
    response
}

/// The response headers clients use, declared once under `components/headers`.
const REQUEST_ID: &str = "X-Request-Id";
const RETRY_AFTER: &str = "Retry-After";
const REPLAYED: &str = "Idempotent-Replayed";

fn headers() -> [(&'static str, Header); 3] {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    [
        (
            REQUEST_ID,
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some(
                    "The request's id: the caller's own `X-Request-Id` when it sent a sane one (1 to 128 of \
                     `A-Z a-z 0-9 - _ . :`), else one made up. The same as `request_id` in a problem body; \
                     quote it to support.",
                ))
                .build(),
        ),
        (
            RETRY_AFTER,
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        ),
        (
            REPLAYED,
            HeaderBuilder::new()
                .schema(Some(string().enum_values(Some(["true"]))))
                .description(Some(
                    "`true` when this is the stored answer to an earlier request with the same \
                     `Idempotency-Key` (nothing was written this time); absent on a first answer.",
                ))
                .build(),
        ),
    ]
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// Statuses that come with `Retry-After`: rate limits and lockouts (429), Stripe out of reach
/// (502), the database or password hashing unavailable (503).
const RETRY_STATUSES: [&str; 3] = ["429", "502", "503"];

/// Operations whose 200 may be a replay (`credits::handlers::respond`).
const REPLAYABLE: [&str; 10] = [
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

/// Declares the headers a response of `status` carries.
fn add_headers(response: &mut Response, status: &str, replayable: bool) {
    response.headers.insert(REQUEST_ID.to_owned(), header_ref(REQUEST_ID));
    if RETRY_STATUSES.contains(&status) {
        response.headers.insert(RETRY_AFTER.to_owned(), header_ref(RETRY_AFTER));
    }
    if replayable && status == "200" {
        response.headers.insert(REPLAYED.to_owned(), header_ref(REPLAYED));
    }
}

/// The codes of a response `problem_response` built; `None` for any other response.
fn codes_of(response: &RefOr<Response>) -> Option<Vec<ErrorCode>> {
    let RefOr::T(response) = response else { return None };
    let content = serde_json::to_value(response.content.get(PROBLEM_JSON)?).ok()?;
    let values = content.pointer("/schema/allOf/1/properties/code/enum")?.as_array()?;
    values.iter().map(|v| v.as_str()?.parse().ok()).collect()
}

/// Sets of codes many routes answer with one status: each is one response under
/// `components/responses`, which those routes refer to. A set of one code is shared too, named
/// after its variant (`InternalError`, `RateLimited`, ...).
const SHARED: [(&str, &[ErrorCode]); 3] = [
    (
        "Unauthorized",
        &[ErrorCode::Unauthenticated, ErrorCode::InvalidToken, ErrorCode::TokenExpired, ErrorCode::InvalidApiKey],
    ),
    (
        "AdminUnauthorized",
        &[
            ErrorCode::Unauthenticated,
            ErrorCode::InvalidToken,
            ErrorCode::TokenExpired,
            ErrorCode::InvalidApiKey,
            ErrorCode::InvalidAdminKey,
        ],
    ),
    ("AdminForbidden", &[ErrorCode::AdminRequired, ErrorCode::AdminKeyDisabled]),
];

/// The name a set of codes is shared under, if it is.
fn shared_name(codes: &[ErrorCode]) -> Option<String> {
    if let [one] = codes {
        return Some(format!("{one:?}"));
    }
    SHARED.iter().find_map(|(name, set)| {
        let mut set = set.to_vec();
        set.sort();
        (set == codes).then(|| (*name).to_owned())
    })
}

/// Operations behind a rate limit (see `limits`).
const RATE_LIMITED: [&str; 14] = [
    "create_chat_completion",
    "register_user",
    "create_session",
    "refresh_session",
    "spend_credits",
    "create_hold",
    "capture_hold",
    "release_hold",
    "use_credits",
    "customer_spend",
    "customer_grant",
    "customer_create_hold",
    "customer_capture_hold",
    "customer_release_hold",
];

/// Probes answer without the database and with their own 503.
const PROBES: [&str; 2] = ["healthz", "readyz"];

/// The codes an operation answers because of its shape, whatever its handler does.
fn implied_codes(operation: &Operation) -> Vec<ErrorCode> {
    use ErrorCode::*;
    use utoipa::openapi::path::ParameterIn;
    let id = operation.operation_id.as_deref().unwrap_or_default();
    let mut codes = Vec::new();
    if !PROBES.contains(&id) {
        codes.extend([InternalError, DatabaseUnavailable]);
    }
    if let Some(body) = &operation.request_body {
        // The body guard (`crate::body`) answers these for any body: too slow, too large, or
        // carrying a NUL character.
        codes.extend([RequestTimeout, PayloadTooLarge, ValidationFailed]);
        // A required JSON body goes through actix's extractor (`error::json_error`); an
        // optional one is read as absent when it cannot be parsed, and raw text not at all.
        let (required, json) = match body {
            RefOr::T(body) => (
                matches!(body.required, Some(Required::True)),
                match body.content.get("application/json") {
                    Some(RefOr::T(content)) => matches!(content.schema, Some(RefOr::Ref(_))),
                    _ => false,
                },
            ),
            RefOr::Ref(_) => (true, true),
        };
        if required && json {
            codes.extend([InvalidJson, UnsupportedMediaType]);
        }
    }
    if RATE_LIMITED.contains(&id) {
        codes.push(RateLimited);
    }
    for parameter in operation.parameters.iter().flatten() {
        let RefOr::T(parameter) = parameter else { continue };
        match parameter.parameter_in {
            // A value of the wrong type, or (body guard) a NUL character.
            ParameterIn::Query => codes.extend([InvalidQuery, ValidationFailed]),
            ParameterIn::Path => {
                codes.push(ValidationFailed);
                // A path segment that does not parse as its type (`error::path_error`).
                let text = serde_json::to_value(&parameter.schema).unwrap_or_default();
                if text["format"] == "uuid" {
                    codes.push(NotFound);
                }
            }
            // `IdempotencyKey::parse` refuses a key that is not printable ASCII.
            ParameterIn::Header if parameter.name == "Idempotency-Key" => codes.push(ValidationFailed),
            _ => {}
        }
    }
    let security = serde_json::to_string(&operation.security).unwrap_or_default();
    if security.contains("\"bearer\"") {
        codes.extend([Unauthenticated, InvalidToken, TokenExpired, InvalidApiKey]);
        if !security.contains("\"server_key\"") {
            codes.push(ServerKeyNotAllowed);
        }
    }
    if security.contains("\"hosted_session\"") {
        codes.push(PortalSessionRequired);
    }
    if security.contains("\"server_key\"") {
        codes.extend([Unauthenticated, InvalidToken, InvalidApiKey, MissingScope, ServerKeyRequired]);
    }
    if security.contains("\"admin_key\"") {
        codes.extend([InvalidAdminKey, AdminRequired, AdminKeyDisabled]);
    }
    codes
}

/// Completes what handlers leave implicit, once for all of them: every response gets a
/// description (OpenAPI requires one); every operation's problem responses list, per status,
/// exactly the codes it can answer (those its handler declares with `errors!` and those its
/// shape implies, see `implied_codes`), the common ones as shared `components/responses`.
pub fn complete_spec(api: &mut utoipa::openapi::OpenApi) {
    let mut shared: BTreeMap<String, RefOr<Response>> = BTreeMap::new();
    for item in api.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            let mut codes = implied_codes(operation);
            let responses = &mut operation.responses.responses;
            responses.retain(|_, response| match codes_of(response) {
                Some(declared) => {
                    codes.extend(declared);
                    false
                }
                None => true,
            });
            let replayable = REPLAYABLE.contains(&operation.operation_id.as_deref().unwrap_or_default());
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response {
                    add_headers(response, status, replayable);
                }
                if let RefOr::T(response) = response
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
            for (status, group) in by_status(&codes) {
                let response = match shared_name(&group) {
                    Some(name) => {
                        shared.entry(name.clone()).or_insert_with(|| problem_response(&group).into());
                        Ref::from_response_name(name).into()
                    }
                    None => problem_response(&group).into(),
                };
                // A status the handler answers with its own body (a probe's 503) keeps it.
                responses.entry(status).or_insert(response);
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                let RefOr::T(parameter) = parameter else { continue };
                if parameter.name == "Idempotency-Key"
                    && let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
                {
                    // What `IdempotencyKey::parse` accepts: printable ASCII, no spaces.
                    schema.min_length = Some(1);
                    schema.max_length = Some(255);
                    schema.pattern = Some("^[!-~]+$".to_owned());
                }
            }
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    components.responses.extend(shared);
    components.headers.extend(headers().map(|(name, header)| (name.to_owned(), RefOr::T(header))));
}

/// The spec as YAML, as committed in `openapi.yaml` (`tollgate openapi > openapi.yaml`).
pub fn spec_yaml() -> anyhow::Result<String> {
    Ok(spec().to_yaml()?)
}
