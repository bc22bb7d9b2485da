use sea_orm::entity::prelude::*;

/// A gateway call sent with an `Idempotency-Key`: the key's claim while it is in flight, then its
/// first answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gateway_calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub idempotency_scope: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub model: String,
    pub stream: bool,
    pub status: String,
    pub hold_id: Option<Uuid>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
