use sea_orm::entity::prelude::*;

/// A model on the gateway's rate card, priced in credits per million tokens.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub upstream_model: String,
    pub input_per_million: i64,
    pub cached_input_per_million: i64,
    pub output_per_million: i64,
    pub max_output_tokens: i64,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
