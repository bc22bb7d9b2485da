use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: String,
    #[sea_orm(unique)]
    pub code: Option<String>,
    #[sea_orm(unique)]
    pub user_id: Option<Uuid>,
    pub balance: i64,
    pub held: i64,
    pub debt: i64,
    /// Low-balance alert thresholds, a JSON array of credit amounts (wallets only).
    pub low_balance_thresholds: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
