//! The request body guard, in front of every handler: a body must arrive within
//! `REQUEST_BODY_TIMEOUT_SECONDS` (else 408 and the connection is closed), must not exceed the
//! largest body any route accepts (else 413), and must not carry a NUL character anywhere: in a
//! JSON string or key, a form field, the query string or the path (else 422 naming the field).
//! PostgreSQL cannot store NUL in text, so refusing it here, before any handler, closes that
//! class of 500s (and of spend batches failing for one bad request) for every route at once.

use std::time::Duration;

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{ConnectionType, header},
    middleware::Next,
    web::{self, BytesMut},
};
use futures_util::StreamExt;
use serde_json::Value;

use crate::{
    error::{ApiError, ErrorCode, FieldError},
    state::AppState,
};

/// The body as it arrived, kept in the request's extensions so that `error::json_error` can name
/// the field a body of the wrong shape fails on (serde reports only a line and column).
#[derive(Debug, Clone)]
pub struct RawBody(pub actix_web::web::Bytes);

/// The largest body any route reads; each route's own limit (256 KiB for JSON) is lower or equal.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

fn nul_in_field(field: String) -> ApiError {
    ApiError::validation(vec![FieldError {
        message: format!("{field} must not contain the NUL character (\\u0000)"),
        field,
        code: "nul_character".to_owned(),
    }])
}

/// The path (`metadata.tags[2]`) of the first string or key holding a NUL, if any.
fn find_nul(value: &Value, path: &str) -> Option<String> {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "body".to_owned() } else { path.to_owned() }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| find_nul(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') { Some(join(&key.replace('\0', "\\u0000"))) } else { find_nul(item, &join(key)) }
        }),
        _ => None,
    }
}

/// A JSON body's NUL, told by its escape `\u0000` (a raw NUL is not valid JSON and the
/// extractor refuses it). The scan is cheap; only a body that has the escape is parsed.
fn json_nul(body: &[u8]) -> Option<String> {
    if !body.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    find_nul(&value, "")
}

/// A NUL in URL-encoded text: escaped (`%00`, which has no letters to case) or raw.
fn has_nul(text: &str) -> bool {
    text.contains("%00") || text.contains('\0')
}

/// `%00` in form or query text, named by its field.
fn urlencoded_nul(text: &str) -> Option<String> {
    if !has_nul(text) {
        return None;
    }
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if has_nul(key) || has_nul(value) {
            return Some(if has_nul(key) { "query".to_owned() } else { key.to_owned() });
        }
    }
    Some("query".to_owned())
}

fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    let response = error.error_response();
    req.into_response(response).map_into_right_body()
}

/// Refuses a request whose body was not read to its end, and closes the connection: what is left
/// of the body would otherwise be read as the next request.
fn refuse_and_close<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    let mut response = error.error_response();
    response.head_mut().set_connection_type(ConnectionType::Close);
    req.into_response(response).map_into_right_body()
}

/// The middleware; see the module's documentation.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if has_nul(req.path()) {
        return Ok(refuse(req, nul_in_field("path".to_owned())));
    }
    if let Some(field) = urlencoded_nul(req.query_string()) {
        return Ok(refuse(req, nul_in_field(field)));
    }
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.settings.request_body_timeout)
        .unwrap_or(Duration::from_secs(15));
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => {
                let detail = format!("The request body did not arrive within {} seconds.", timeout.as_secs());
                return Ok(refuse_and_close(req, ApiError::new(ErrorCode::RequestTimeout, detail)));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    let detail = "The request body is larger than this endpoint accepts.";
                    return Ok(refuse_and_close(req, ApiError::new(ErrorCode::PayloadTooLarge, detail)));
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
    let body = body.freeze();
    if !body.is_empty() {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let nul = if content_type.starts_with("application/x-www-form-urlencoded") {
            urlencoded_nul(&String::from_utf8_lossy(&body))
        } else {
            json_nul(&body)
        };
        if let Some(field) = nul {
            return Ok(refuse(req, nul_in_field(field)));
        }
    }
    req.extensions_mut().insert(RawBody(body.clone()));
    req.set_payload(actix_web::dev::Payload::from(body));
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_the_field_holding_a_nul() {
        let body = |v: Value| serde_json::to_vec(&v).unwrap();
        assert_eq!(json_nul(&body(json!({ "amount": 1, "feature": "a\u{0}b" }))), Some("feature".to_owned()));
        assert_eq!(json_nul(&body(json!({ "metadata": { "k\u{0}": 1 } }))), Some("metadata.k\\u0000".to_owned()));
        assert_eq!(
            json_nul(&body(json!({ "metadata": { "tags": ["x", "y\u{0}"] } }))),
            Some("metadata.tags[1]".to_owned())
        );
        // An escaped backslash followed by `u0000` is text, not NUL.
        assert_eq!(json_nul(br#"{"reason":"\\u0000"}"#), None);
        assert_eq!(json_nul(br#"{"amount":5}"#), None);
        assert_eq!(urlencoded_nul("kind=spend&cursor=a%00"), Some("cursor".to_owned()));
        assert_eq!(urlencoded_nul("kind=spend"), None);
        assert_eq!(urlencoded_nul("a%00b=1"), Some("query".to_owned()));
    }
}
