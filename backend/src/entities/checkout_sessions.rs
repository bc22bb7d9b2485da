use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkout_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: Uuid,
    pub price_id: String,
    pub mode: String,
    pub status: String,
    pub url: String,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
