//! Gateway calls sent with an `Idempotency-Key`. The key is claimed (a row, unique per caller
//! and key) before anything is held or sent; a second call with it while the first is in flight
//! is refused, and after a non-streamed one completed it gets the first answer. A call that
//! charged nothing (refused, or the upstream failed) gives its key back. A claim whose call never
//! finished (the server stopped) lapses when its hold would have expired, and may be taken again.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use crate::{
    db,
    entities::gateway_calls,
    error::{ApiError, ErrorCode},
    idempotency::{self, IdempotentRequest},
};

const IN_FLIGHT: &str = "in_flight";
const COMPLETED: &str = "completed";

/// What a claimed key lets the call do.
#[derive(Debug)]
pub enum Claim {
    /// Go ahead; the call's row.
    Fresh(Uuid),
    /// The first answer, to be sent again.
    Replay { status: u16, body: String },
}

/// What the call is, for its row.
pub struct NewCall<'a> {
    pub customer_id: Uuid,
    pub request: &'a IdempotentRequest,
    pub model: &'a str,
    pub stream: bool,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn in_use(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::IdempotencyKeyInUse, detail.to_owned())
}

/// Claims the call's key.
pub async fn claim(db: &impl ConnectionTrait, call: NewCall<'_>) -> Result<Claim, ApiError> {
    let id = Uuid::now_v7();
    let row = gateway_calls::Model {
        id,
        customer_id: call.customer_id,
        idempotency_scope: call.request.scope.clone(),
        idempotency_key: call.request.key.as_str().to_owned(),
        fingerprint: call.request.fingerprint.clone(),
        model: call.model.to_owned(),
        stream: call.stream,
        status: IN_FLIGHT.to_owned(),
        hold_id: None,
        response_status: None,
        response_body: None,
        expires_at: call.expires_at,
        created_at: call.now,
        completed_at: None,
    };
    match gateway_calls::Entity::insert(gateway_calls::ActiveModel::from(row)).exec_without_returning(db).await {
        Ok(_) => return Ok(Claim::Fresh(id)),
        Err(e) if db::is_unique_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let Some(first) = gateway_calls::Entity::find()
        .filter(gateway_calls::Column::IdempotencyScope.eq(&call.request.scope))
        .filter(gateway_calls::Column::IdempotencyKey.eq(call.request.key.as_str()))
        .one(db)
        .await?
    else {
        // Given back between our insert and this read: the caller may simply retry.
        return Err(in_use("A call with this Idempotency-Key has just finished without a charge; retry it."));
    };
    if first.fingerprint != call.request.fingerprint {
        return Err(idempotency::reused_error());
    }
    if first.status == COMPLETED {
        return match (first.stream || call.stream, first.response_status, first.response_body) {
            (false, Some(status), Some(body)) => {
                Ok(Claim::Replay { status: u16::try_from(status).unwrap_or(200), body })
            }
            _ => Err(in_use(
                "A streamed call with this Idempotency-Key has completed and was charged; streams are not replayed. \
                 Send a new key for a new call.",
            )),
        };
    }
    if first.expires_at > call.now {
        return Err(in_use("A call with this Idempotency-Key is in flight; wait for its answer before retrying."));
    }
    // The first call never finished: take its claim over, unless another retry just did.
    let taken = gateway_calls::Entity::update_many()
        .col_expr(gateway_calls::Column::CreatedAt, Expr::value(call.now))
        .col_expr(gateway_calls::Column::ExpiresAt, Expr::value(call.expires_at))
        .col_expr(gateway_calls::Column::HoldId, Expr::value(Option::<Uuid>::None))
        .filter(gateway_calls::Column::Id.eq(first.id))
        .filter(gateway_calls::Column::Status.eq(IN_FLIGHT))
        .filter(gateway_calls::Column::ExpiresAt.eq(first.expires_at))
        .exec(db)
        .await?;
    if taken.rows_affected == 1 {
        Ok(Claim::Fresh(first.id))
    } else {
        Err(in_use("A call with this Idempotency-Key is in flight; wait for its answer before retrying."))
    }
}

/// Records the hold the call placed.
pub async fn held(db: &impl ConnectionTrait, id: Uuid, hold_id: Uuid) -> Result<(), sea_orm::DbErr> {
    gateway_calls::Entity::update_many()
        .col_expr(gateway_calls::Column::HoldId, Expr::value(hold_id))
        .filter(gateway_calls::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Records the answer of a call that was charged.
pub async fn complete(
    db: &impl ConnectionTrait,
    id: Uuid,
    status: u16,
    body: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    gateway_calls::Entity::update_many()
        .col_expr(gateway_calls::Column::Status, Expr::value(COMPLETED))
        .col_expr(gateway_calls::Column::ResponseStatus, Expr::value(i32::from(status)))
        .col_expr(gateway_calls::Column::ResponseBody, Expr::value(body))
        .col_expr(gateway_calls::Column::CompletedAt, Expr::value(now))
        .filter(gateway_calls::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Gives the key back: the call charged nothing.
pub async fn forget(db: &impl ConnectionTrait, id: Uuid) -> Result<(), sea_orm::DbErr> {
    gateway_calls::Entity::delete_many().filter(gateway_calls::Column::Id.eq(id)).exec(db).await.map(|_| ())
}
