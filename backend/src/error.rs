//! `ApiError`, the only error type that knows HTTP. Every error response, including the ones
//! actix would write by itself (bad JSON, unknown route, wrong method, body too large), is an
//! RFC 9457 `application/problem+json` document with a stable machine-readable `code` and the
//! request id. A 5xx logs its whole cause chain and tells the client only a generic message.

use std::fmt;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub use self::code::ErrorCode;
use crate::request_id;

mod code;
mod human;

pub use self::human::ParamType;

/// An error: RFC 9457 problem details (`application/problem+json`) with Tollgate's stable `code`.
/// Match on `code` (each route lists the codes it answers), never on `title` or `detail`, which
/// are for people. Some codes add extension members, typed below: `errors` (each failing field),
/// `available`, `requested`, `debt`, `held`, `captured_amount`, `required_scope`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:tollgate:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient_credits`; each route's responses list
    /// the codes it can answer.
    pub code: ErrorCode,
    /// The request id, as in the `X-Request-Id` response header.
    pub request_id: String,
    /// `validation_failed` (and `invalid_query` when the parameter is known): each failing field,
    /// named as the request named it, with what it must be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// `insufficient_credits` and `outstanding_debt`: what the wallet can spend now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    /// `insufficient_credits`, and `validation_failed` for a capture over the hold: what was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    /// `outstanding_debt`: what the wallet owes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debt: Option<i64>,
    /// `hold_already_captured`: the amount the hold was captured for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_amount: Option<i64>,
    /// `validation_failed` for a capture over the hold: what the hold holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<i64>,
    /// `insufficient_credits` from the LLM gateway: the call's worst case, which it would hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// The LLM gateway's errors only: the same problem as OpenAI's error object
    /// (`{message, type, code, param}`), which the OpenAI SDKs read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// `insufficient_scope` and `missing_scope`: the scope the key lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<String>,
}

/// One failing field of a request (a body member, a query parameter or a header).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the request: `amount`, `metadata.tags[2]`, `limit`,
    /// `Idempotency-Key`; `body` for the body as a whole.
    pub field: String,
    /// A stable code for the rule it broke, e.g. `required`, `type`, `length`, `email`.
    pub code: String,
    /// What is wrong, as a sentence that names the field: `amount must be a whole number`.
    pub message: String,
}

/// An error on its way to becoming a problem+json response: a code (which brings its status
/// and title), what went wrong this time, and any extension members.
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    extensions: Map<String, Value>,
    retry_after: Option<u64>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), extensions: Map::new(), retry_after: None, source: None }
    }

    /// Adds an extension member (e.g. `available`, `requested`) to the body.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            self.extensions.insert(key.to_owned(), value);
        }
        self
    }

    /// Sets the `Retry-After` header, in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Keeps the cause, to be logged (never shown) when the status is a 5xx.
    pub fn caused_by(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Adds OpenAI's error object (`{message, type, code, param}`), for the gateway's clients.
    pub fn openai(self, kind: &str) -> Self {
        let param = self
            .extensions
            .get("errors")
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("field"))
            .cloned()
            .unwrap_or(Value::Null);
        let error = serde_json::json!({
            "message": self.detail,
            "type": kind,
            "code": self.code.as_str(),
            "param": param,
        });
        self.with("error", error)
    }

    /// 422 with the failing fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            // Messages name their field already ("amount must be a whole number").
            [one] if one.message.starts_with(&one.field) => one.message.clone(),
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        Self::new(ErrorCode::ValidationFailed, detail).with("errors", errors)
    }

    /// One failing field.
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), code: code.to_owned(), message: message.into() }])
    }

    /// A failure the client cannot fix; the cause is logged, not shown.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::new(
            ErrorCode::InternalError,
            "Something went wrong on our side. Quote the request id if you contact support.",
        )
        .caused_by(source)
    }

    /// The database cannot be reached right now.
    pub fn database_unavailable(source: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorCode::DatabaseUnavailable, "The database is unavailable. Retry shortly.")
            .retry_after(5)
            .caused_by(source)
    }

    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(format!("urn:tollgate:problem:{}", self.code)));
        body.insert("title".into(), Value::String(self.code.title().to_owned()));
        body.insert("status".into(), Value::from(self.code.status().as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        body.insert("code".into(), Value::String(self.code.as_str().to_owned()));
        body.insert("request_id".into(), Value::String(request_id::current().unwrap_or_default()));
        for (key, value) in &self.extensions {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code.status().as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.code.status();
        if status.is_server_error() {
            match &self.source {
                Some(source) => log::error!("{} {}: {source:#}", status.as_u16(), self.code),
                None => log::error!("{} {}: {}", status.as_u16(), self.code, self.detail),
            }
        }
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.body(self.body().to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_unavailable(&err) { Self::database_unavailable(err) } else { Self::internal(err) }
    }
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut fields: Vec<FieldError> = errors
            .field_errors()
            .into_iter()
            .flat_map(|(field, errs)| {
                errs.iter().map(move |e| FieldError {
                    field: field.to_string(),
                    code: e.code.to_string(),
                    message: e.message.as_ref().map(|m| m.to_string()).unwrap_or_else(|| e.code.to_string()),
                })
            })
            .collect();
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        Self::validation(fields)
    }
}

/// The error for a JSON body actix could not read, in problem+json. A body of the wrong shape is
/// a 422 naming the field (found in the body `crate::body` kept) and what it must be.
pub fn json_error(err: actix_web::error::JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    use actix_web::{HttpMessage, error::JsonPayloadError as E};
    let api = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "The request body is larger than this endpoint accepts.")
        }
        E::ContentType => ApiError::new(ErrorCode::UnsupportedMediaType, "Send the body as application/json."),
        E::Deserialize(e) if e.is_data() => {
            let body = req.extensions().get::<crate::body::RawBody>().map(|raw| raw.0.clone());
            ApiError::validation(vec![human::body_error(e, body.as_deref())])
        }
        E::Deserialize(e) => ApiError::new(ErrorCode::InvalidJson, human::syntax_error(e)),
        other => ApiError::new(ErrorCode::InvalidJson, format!("The body could not be read: {other}")),
    };
    api.into()
}

/// The error for a query string actix could not read: 400 `invalid_query`, naming the parameter
/// whose value its type (as the spec declares it) refuses.
pub fn query_error(err: actix_web::error::QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    let known = req.app_data::<actix_web::web::Data<crate::routes::KnownRoutes>>();
    let declared = known.map(|k| k.query_params(req.method(), req.path())).unwrap_or_default();
    let api = match human::query_error(req.query_string(), &declared) {
        Some(field) => ApiError::new(ErrorCode::InvalidQuery, field.message.clone()).with("errors", vec![field]),
        None => {
            let reason = match &err {
                actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
                other => other.to_string(),
            };
            ApiError::new(ErrorCode::InvalidQuery, format!("The query string cannot be read: {reason}."))
        }
    };
    api.into()
}

/// The error for a path segment actix could not read (e.g. an id that is not a UUID).
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::NotFound, format!("No such resource: {err}")).into()
}

/// Answers for routes that do not exist, and for known routes called with the wrong method.
pub async fn not_found(req: HttpRequest) -> ApiError {
    let method = crate::head::original_method(&req);
    ApiError::new(ErrorCode::NotFound, format!("No route for {method} {}.", req.path()))
}

/// 405 for a known path with a method it does not accept.
pub async fn method_not_allowed(req: HttpRequest) -> ApiError {
    let method = crate::head::original_method(&req);
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {}.", req.path()))
}
