use sea_orm::entity::prelude::*;

/// The outbox: one row per change of credits or billing state.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: String,
    #[sea_orm(column_name = "type")]
    pub kind: String,
    pub customer_id: Option<Uuid>,
    pub data: Json,
    pub created_at: DateTimeUtc,
    pub txid: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
