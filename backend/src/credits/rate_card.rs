//! The rate card: features and their price in credits per unit.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use super::{
    dto::*,
    error::{CreditsError, invalid},
    spend::parse_amount,
};
use crate::{clock::Clock, db, entities::features};

/// The public rate card: active features.
pub async fn list_features(db: &DatabaseConnection, include_inactive: bool) -> Result<Vec<FeatureView>, CreditsError> {
    let mut select = features::Entity::find();
    if !include_inactive {
        select = select.filter(features::Column::Active.eq(true));
    }
    Ok(select.order_by_asc(features::Column::Key).all(db).await?.into_iter().map(Into::into).collect())
}

fn check_feature_text(name: &str, unit: &str, description: &Option<String>) -> Result<(), CreditsError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "must be 1 to 100 characters"));
    }
    if unit.trim().is_empty() || unit.chars().count() > 64 {
        return Err(invalid("unit", "must be 1 to 64 characters"));
    }
    if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(invalid("description", "must be at most 500 characters"));
    }
    Ok(())
}

/// Adds a feature to the rate card (admin).
pub async fn create_feature(
    db: &DatabaseConnection,
    clock: &Clock,
    request: CreateFeatureRequest,
) -> Result<FeatureView, CreditsError> {
    let key_ok = (1..=64).contains(&request.key.len())
        && request.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !key_ok {
        return Err(invalid("key", "must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`"));
    }
    check_feature_text(&request.name, &request.unit, &request.description)?;
    let price = parse_amount("credits_per_unit", request.credits_per_unit, false)?;
    let now = clock.now();
    let model = features::Model {
        key: request.key.clone(),
        name: request.name.trim().to_owned(),
        description: request.description,
        unit: request.unit.trim().to_owned(),
        credits_per_unit: price.get(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    match features::Entity::insert(features::ActiveModel::from(model.clone())).exec_without_returning(db).await {
        Err(e) if db::is_unique_violation(&e) => Err(CreditsError::FeatureExists(request.key)),
        other => other.map(|_| model.into()).map_err(Into::into),
    }
}

/// Changes a feature's price, text or availability (admin).
pub async fn update_feature(
    db: &DatabaseConnection,
    clock: &Clock,
    key: &str,
    request: UpdateFeatureRequest,
) -> Result<FeatureView, CreditsError> {
    let txn = db.begin().await?;
    let mut feature = features::Entity::find_by_id(key.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| CreditsError::UnknownFeature(key.to_owned()))?;
    if let Some(name) = request.name {
        feature.name = name.trim().to_owned();
    }
    if let Some(unit) = request.unit {
        feature.unit = unit.trim().to_owned();
    }
    if request.description.is_some() {
        feature.description = request.description;
    }
    check_feature_text(&feature.name, &feature.unit, &feature.description)?;
    if let Some(price) = request.credits_per_unit {
        feature.credits_per_unit = parse_amount("credits_per_unit", price, false)?.get();
    }
    if let Some(active) = request.active {
        feature.active = active;
    }
    feature.updated_at = clock.now();
    features::Entity::update(features::ActiveModel::from(feature.clone()).reset_all()).exec(&txn).await?;
    txn.commit().await?;
    Ok(feature.into())
}
