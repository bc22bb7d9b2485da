use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "lots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub source: String,
    pub amount: i64,
    pub remaining: i64,
    pub priority: i32,
    pub expires_at: Option<DateTimeUtc>,
    pub expired_at: Option<DateTimeUtc>,
    #[sea_orm(unique)]
    pub reference: String,
    pub transfer_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
