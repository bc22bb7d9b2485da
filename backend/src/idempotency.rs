//! Idempotent writes. The first successful answer to a request is stored under the caller's
//! scope and key, in the same transaction as the request's effects; the same key with the same
//! request gets that answer again and writes nothing, the same key with a different request is
//! refused. Refusals (402, 409, 422) are not stored: nothing is written for them.

use actix_web::{HttpRequest, http::header::HeaderMap};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    domain::IdempotencyKey,
    entities::idempotency_keys,
    error::{ApiError, ErrorCode},
};

/// The header clients send.
pub const HEADER: &str = "idempotency-key";
/// The header set on an answer replayed from an earlier request.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A stored answer, replayed for a retry.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// What the lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// First time this key is seen in this scope.
    New,
    /// A retry of the same request.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
}

/// A key and the fingerprint of the request that came with it.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    pub scope: String,
    pub key: IdempotencyKey,
    pub fingerprint: String,
}

/// Reads and checks the `Idempotency-Key` header.
pub fn key_from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::field("Idempotency-Key", "invalid", "Idempotency-Key must be printable ASCII"))?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|m| ApiError::field("Idempotency-Key", "invalid", format!("Idempotency-Key {m}")))
}

/// Like `key_from_headers`, but the header is required.
pub fn require_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    key_from_headers(headers)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::IdempotencyKeyRequired,
            "This request moves credits: send an Idempotency-Key header (a UUID is a good choice).",
        )
    })
}

/// SHA-256 over the method, the path and the canonical JSON of the parsed body.
pub fn fingerprint(req: &HttpRequest, body: &impl Serialize) -> String {
    let canonical = serde_json::to_value(body).map(|v| v.to_string()).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(req.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// What a stored record (or its absence) means for this request. The record must be read after
/// taking the lock that serialises the caller's writes (the ledger's stores read it after locking
/// the batch's wallets); the ledger's core judges every key with this, and stores the answers.
pub fn judge(request: &IdempotentRequest, found: Option<&idempotency_keys::Model>) -> Lookup {
    match found {
        None => Lookup::New,
        Some(row) if row.fingerprint != request.fingerprint => Lookup::Mismatch,
        Some(row) => Lookup::Replay(StoredResponse {
            status: u16::try_from(row.status_code).unwrap_or(200),
            body: serde_json::from_str(&row.response).unwrap_or(serde_json::Value::Null),
        }),
    }
}

/// The error for a key reused with a different request.
pub fn reused_error() -> ApiError {
    ApiError::new(ErrorCode::IdempotencyKeyReused, "This Idempotency-Key was already used with a different request.")
}
