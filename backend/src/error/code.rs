//! `ErrorCode`: every stable `code` a problem response can carry, each with its HTTP status,
//! its title and what it means, in one table. `ApiError` carries one; the OpenAPI spec lists
//! them as the `ErrorCode` string enum, and each route's responses narrow it to the codes that
//! route can answer (`crate::openapi::errors!`).
//!
//! A code, once published, never changes its string or its status: clients match on them.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:ident, $title:literal, $meaning:literal),)*) => {
        /// A stable, machine-readable problem code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ErrorCode {
            $(
                #[doc = $meaning]
                #[serde(rename = $code)]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in the table's order (by status).
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),*];

            /// The string clients see in `code` (and in `type`, `urn:tollgate:problem:<code>`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status every response with this code has.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)*
                }
            }

            /// The problem's `title`: the same for every response with this code (RFC 9457 §3.1.3).
            pub const fn title(self) -> &'static str {
                match self {
                    $(Self::$variant => $title,)*
                }
            }

            /// What the code means, for the spec and the README.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson = ("invalid_json", BAD_REQUEST, "Bad request", "The body is not JSON, or could not be read."),
    InvalidQuery = ("invalid_query", BAD_REQUEST, "Bad request", "A query parameter cannot be read as its type (e.g. `limit=abc`)."),
    IdempotencyKeyRequired = ("idempotency_key_required", BAD_REQUEST, "Bad request", "The request moves credits: send an `Idempotency-Key` header."),
    MissingSignature = ("missing_signature", BAD_REQUEST, "Bad request", "A webhook came without a `Stripe-Signature` header; nothing was stored."),
    InvalidSignature = ("invalid_signature", BAD_REQUEST, "Bad request", "A webhook's signature does not match the body; nothing was stored."),
    StaleSignature = ("stale_signature", BAD_REQUEST, "Bad request", "A webhook's signature is too old (a replay?); nothing was stored."),
    InvalidPayload = ("invalid_payload", BAD_REQUEST, "Bad request", "A signed webhook is not an event Tollgate can read (not JSON, no id or type, too long); kept in the inbox as failed when its id and type could be read."),
    Unauthenticated = ("unauthenticated", UNAUTHORIZED, "Unauthorized", "No credentials: sign in, or send `Authorization: Bearer <access token or API key>`."),
    InvalidToken = ("invalid_token", UNAUTHORIZED, "Unauthorized", "The bearer token (or portal link) is malformed, not valid, or its user no longer exists."),
    TokenExpired = ("token_expired", UNAUTHORIZED, "Unauthorized", "The access token has expired: refresh it."),
    InvalidApiKey = ("invalid_api_key", UNAUTHORIZED, "Unauthorized", "The API key is unknown or revoked."),
    InvalidAdminKey = ("invalid_admin_key", UNAUTHORIZED, "Unauthorized", "The `x-admin-key` header does not match the server's admin key."),
    InvalidCredentials = ("invalid_credentials", UNAUTHORIZED, "Unauthorized", "The email or the password is wrong."),
    InvalidRefreshToken = ("invalid_refresh_token", UNAUTHORIZED, "Unauthorized", "The refresh token is unknown, expired or revoked."),
    RefreshTokenReused = ("refresh_token_reused", UNAUTHORIZED, "Unauthorized", "A refresh token was used twice: the session is revoked."),
    PortalSessionRequired = ("portal_session_required", UNAUTHORIZED, "Unauthorized", "The hosted pages need a live session: open a new link from the product (`POST /customers/{external_id}/portal-session`)."),
    InsufficientCredits = ("insufficient_credits", PAYMENT_REQUIRED, "Insufficient credits", "Not enough credits; the body carries `available` and `requested`."),
    OutstandingDebt = ("outstanding_debt", PAYMENT_REQUIRED, "Outstanding debt", "The wallet owes credits from a refund or dispute (`debt`); they must be covered before spending."),
    InsufficientScope = ("insufficient_scope", FORBIDDEN, "Forbidden", "The API key lacks the scope the route needs (`required_scope`)."),
    SessionRequired = ("session_required", FORBIDDEN, "Forbidden", "The action needs a signed-in session, not an API key."),
    AdminRequired = ("admin_required", FORBIDDEN, "Forbidden", "The action needs an administrator."),
    AdminKeyDisabled = ("admin_key_disabled", FORBIDDEN, "Forbidden", "An `x-admin-key` was sent, but the server has no `ADMIN_API_KEY`."),
    MissingScope = ("missing_scope", FORBIDDEN, "Forbidden", "The server key lacks the scope the route needs (`required_scope`)."),
    ServerKeyRequired = ("server_key_required", FORBIDDEN, "Forbidden", "Customer routes take a server key or an administrator, never a personal API key or a user's session."),
    ServerKeyNotAllowed = ("server_key_not_allowed", FORBIDDEN, "Forbidden", "A server key acts on customers (`/customers/{external_id}/…`), never on a signed-in caller's own routes."),
    NotFound = ("not_found", NOT_FOUND, "Not found", "No such route, or a path parameter is malformed (e.g. not a UUID)."),
    ApiKeyNotFound = ("api_key_not_found", NOT_FOUND, "Not found", "No such API key of the caller's."),
    ServerKeyNotFound = ("server_key_not_found", NOT_FOUND, "Not found", "No such server key, or it was revoked."),
    CustomerNotFound = ("customer_not_found", NOT_FOUND, "Not found", "No customer has this external id (or Tollgate id)."),
    WalletNotFound = ("wallet_not_found", NOT_FOUND, "Not found", "The user has no wallet."),
    UserNotFound = ("user_not_found", NOT_FOUND, "Not found", "No such user."),
    HoldNotFound = ("hold_not_found", NOT_FOUND, "Not found", "No such hold of the caller's."),
    CheckoutSessionNotFound = ("checkout_session_not_found", NOT_FOUND, "Not found", "No such checkout session."),
    SubscriptionNotFound = ("subscription_not_found", NOT_FOUND, "Not found", "The user has no subscription."),
    NoCustomer = ("no_customer", NOT_FOUND, "Not found", "The user has never paid through Stripe, so there is no billing portal for them."),
    WebhooksNotConfigured = ("webhooks_not_configured", NOT_FOUND, "Not found", "`STRIPE_WEBHOOK_SECRET` is not set: the server takes no webhooks."),
    EventNotFound = ("event_not_found", NOT_FOUND, "Not found", "No such event: in the event log (`GET /events/{id}`, kept for `EVENT_RETENTION_DAYS`), or in the Stripe inbox on its admin routes."),
    ModelNotFound = ("model_not_found", NOT_FOUND, "Not found", "The gateway has no such model, or does not offer it now (see `GET /api/v1/models`); nothing was sent upstream."),
    WebhookEndpointNotFound = ("webhook_endpoint_not_found", NOT_FOUND, "Not found", "No such webhook endpoint."),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed", "The path exists, but not with this method (see `Allow`)."),
    RequestTimeout = ("request_timeout", REQUEST_TIMEOUT, "Request timeout", "The request body did not arrive in time; the connection is closed."),
    EmailTaken = ("email_taken", CONFLICT, "Conflict", "An account with this email exists."),
    IdempotencyKeyReused = ("idempotency_key_reused", CONFLICT, "Conflict", "The `Idempotency-Key` was already used with a different request."),
    FeatureExists = ("feature_exists", CONFLICT, "Conflict", "A feature with this key is on the rate card already."),
    ModelExists = ("model_exists", CONFLICT, "Conflict", "A model with this id is on the rate card already; change it with `PATCH /api/v1/models/{id}`."),
    IdempotencyKeyInUse = ("idempotency_key_in_use", CONFLICT, "Conflict", "A gateway call with this `Idempotency-Key` is in flight, or was a stream (streams are not replayed): wait, or send a new key."),
    HoldExpired = ("hold_expired", CONFLICT, "Conflict", "The hold expired; its credits were released."),
    HoldNotOpen = ("hold_not_open", CONFLICT, "Conflict", "The hold was released and can no longer be captured."),
    HoldAlreadyCaptured = ("hold_already_captured", CONFLICT, "Conflict", "The hold was captured already (`captured_amount`): it cannot be released, nor captured for another amount."),
    HoldOwnedByGateway = ("hold_owned_by_gateway", CONFLICT, "Conflict", "The hold is an LLM gateway call's (or a lease its calls share): the gateway captures or releases it itself, when the call ends."),
    AlreadySubscribed = ("already_subscribed", CONFLICT, "Conflict", "The user has a live subscription: change plans in the billing portal."),
    CheckoutSessionClosed = ("checkout_session_closed", CONFLICT, "Conflict", "The checkout session was completed or expired."),
    SandboxMode = ("sandbox_mode", CONFLICT, "Conflict", "The server runs in sandbox mode: there is no Stripe account to act on."),
    WebhookEndpointDisabled = ("webhook_endpoint_disabled", CONFLICT, "Conflict", "The webhook endpoint is disabled: enable it (`PATCH` with `enabled: true`) before redelivering to it."),
    PayloadTooLarge = ("payload_too_large", PAYLOAD_TOO_LARGE, "Payload too large", "The body is larger than the route accepts (256 KiB of JSON, 1 MiB for any body)."),
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type", "Send the body as `application/json`."),
    ValidationFailed = ("validation_failed", UNPROCESSABLE_ENTITY, "Validation failed", "A field is missing or invalid; `errors` names each field and the rule it broke."),
    RateLimited = ("rate_limited", TOO_MANY_REQUESTS, "Too many requests", "Too many requests: retry after `Retry-After` seconds."),
    TooManyAttempts = ("too_many_attempts", TOO_MANY_REQUESTS, "Too many requests", "Too many failed sign-ins for this account: retry after `Retry-After` seconds."),
    InternalError = ("internal_error", INTERNAL_SERVER_ERROR, "Internal server error", "Something failed on the server's side; quote the request id to support."),
    StripeUnavailable = ("stripe_unavailable", BAD_GATEWAY, "Bad gateway", "Stripe could not be reached or refused the request: retry after `Retry-After` seconds."),
    UpstreamUnavailable = ("upstream_unavailable", BAD_GATEWAY, "Bad gateway", "The gateway's LLM provider could not be reached; nothing was charged. Retry after `Retry-After` seconds."),
    GatewayNotConfigured = ("gateway_not_configured", SERVICE_UNAVAILABLE, "Service unavailable", "The LLM gateway has no upstream: the operator sets `GATEWAY_UPSTREAM_URL`."),
    DatabaseUnavailable = ("database_unavailable", SERVICE_UNAVAILABLE, "Service unavailable", "The database is unavailable: retry after `Retry-After` seconds."),
    PasswordHashingBusy = ("password_hashing_busy", SERVICE_UNAVAILABLE, "Service unavailable", "Too many sign-ins are being checked at once: retry after `Retry-After` seconds."),
    UpstreamTimeout = ("upstream_timeout", GATEWAY_TIMEOUT, "Gateway timeout", "The gateway's LLM provider did not answer within `GATEWAY_TIMEOUT_SECONDS`; nothing was charged."),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.iter().copied().find(|code| code.as_str() == s).ok_or(())
    }
}

impl PartialSchema for ErrorCode {
    /// A string enum of every code; its description is the table, so that the spec explains each.
    fn schema() -> RefOr<Schema> {
        let table: String = Self::ALL
            .iter()
            .map(|code| format!("- `{}` ({}): {}\n", code.as_str(), code.status().as_u16(), code.meaning()))
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.iter().map(|code| code.as_str())))
            .description(Some(format!(
                "A stable, machine-readable problem code. Each code always comes with the same HTTP status.\n\n{table}"
            )))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_distinct_and_serialises_as_its_string() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "`{code}` appears twice");
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "`{code}` is not snake_case");
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn every_code_has_an_error_status_a_title_and_a_meaning() {
        for &code in ErrorCode::ALL {
            let status = code.status();
            assert!(status.is_client_error() || status.is_server_error(), "`{code}` answers {status}");
            assert!(!code.title().is_empty() && !code.meaning().is_empty(), "`{code}` is undocumented");
        }
        // The table is ordered by status, as the README lists it.
        let statuses: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.status().as_u16()).collect();
        assert!(statuses.is_sorted(), "{statuses:?}");
    }

    #[test]
    fn the_readme_lists_every_code_with_its_status_and_meaning() {
        let readme = include_str!("../../../README.md");
        for &code in ErrorCode::ALL {
            let row = format!("| {} | `{}` | {} |", code.status().as_u16(), code.as_str(), code.meaning());
            assert!(readme.contains(&row), "README.md's error table lacks:\n{row}");
        }
    }

    #[test]
    fn published_codes_keep_their_strings_and_statuses() {
        // Clients match on these: changing one is a breaking change, not a refactor.
        for (code, string, status) in [
            (ErrorCode::InvalidJson, "invalid_json", 400),
            (ErrorCode::InsufficientCredits, "insufficient_credits", 402),
            (ErrorCode::OutstandingDebt, "outstanding_debt", 402),
            (ErrorCode::InsufficientScope, "insufficient_scope", 403),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::IdempotencyKeyReused, "idempotency_key_reused", 409),
            (ErrorCode::ValidationFailed, "validation_failed", 422),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::InternalError, "internal_error", 500),
            (ErrorCode::DatabaseUnavailable, "database_unavailable", 503),
        ] {
            assert_eq!((code.as_str(), code.status().as_u16()), (string, status));
        }
    }
}
