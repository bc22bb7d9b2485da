//! A request id for every request: taken from `X-Request-Id` when the caller sent a sane one,
//! made otherwise. It is returned in the response header, written in every log line about the
//! request, and put in every problem details body.

use actix_web::{
    Error,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};

/// The header carrying the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| text.to_owned())
}

/// The middleware: runs the rest of the request inside the id's scope.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id =
        req.headers().get(&HEADER).and_then(acceptable).unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let header_value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(HEADER, header_value.clone());
    // Handlers' errors arrive here as responses, already rendered inside the id's scope.
    let mut response = REQUEST_ID.scope(id, next.call(req)).await?.map_into_boxed_body();
    response.headers_mut().insert(HEADER, header_value);
    Ok(response)
}
