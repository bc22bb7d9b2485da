//! `HEAD` wherever `GET` works (uptime checkers and link checkers use it). A `HEAD` request is
//! routed as the `GET` it stands for; actix-http, which remembers that the request came as
//! `HEAD`, then sends the `GET` answer's status and headers (its `Content-Length` included)
//! without the body.
//!
//! The exception: a `GET` that spends a single-use link (`/hosted/open?token=…`,
//! `/sandbox/portal?token=…`). Mail scanners and chat unfurlers send `HEAD` to links they see;
//! that must not use up the link before its owner clicks it, so `HEAD` there answers 200 and
//! does nothing.

use actix_web::{
    Error, HttpMessage, HttpRequest, HttpResponse,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header},
    middleware::Next,
};

/// Paths whose `GET` with a `token` spends a single-use link.
const SINGLE_USE_LINKS: [&str; 2] = ["/hosted/open", "/sandbox/portal"];

/// Marks a request that came as `HEAD`.
#[derive(Debug, Clone, Copy)]
struct CameAsHead;

fn spends_a_link(req: &ServiceRequest) -> bool {
    SINGLE_USE_LINKS.contains(&req.path())
        && url::form_urlencoded::parse(req.query_string().as_bytes()).any(|(name, _)| name == "token")
}

/// The middleware: routes `HEAD` as `GET`.
pub async fn as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if req.method() == Method::HEAD {
        if spends_a_link(&req) {
            let response = HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish();
            return Ok(req.into_response(response).map_into_right_body());
        }
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(CameAsHead);
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// The method the client sent (`HEAD` for a request routed as `GET`), for messages.
pub fn original_method(req: &HttpRequest) -> Method {
    if req.extensions().contains::<CameAsHead>() { Method::HEAD } else { req.method().clone() }
}
