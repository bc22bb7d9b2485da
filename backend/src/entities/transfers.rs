use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transfers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: Uuid,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    pub amount: i64,
    pub kind: String,
    pub debit_balance_after: Option<i64>,
    pub credit_balance_after: Option<i64>,
    pub description: Option<String>,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: Option<Json>,
    pub idempotency_key: Option<String>,
    pub request_fingerprint: Option<String>,
    pub hold_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
    pub reference: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
