//! The gateway's rate card: models, priced in credits per million tokens. A price change applies
//! to calls that start after it: a call reads its model once, holds its worst case at those
//! prices and captures at the same prices.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{pricing::Prices, tokens::Tokenizer};
use crate::{
    clock::Clock,
    db,
    entities::models,
    error::{ApiError, ErrorCode, FieldError},
};

/// The longest output a model may be given.
pub const MAX_OUTPUT_TOKENS: i64 = 1_000_000;
/// The highest price per million tokens (a million credits per token).
pub const MAX_PRICE_PER_MILLION: i64 = 1_000_000_000_000;

/// A model on the rate card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelView {
    /// The name clients send as `model`.
    #[schema(example = "gpt-4o-mini")]
    pub id: String,
    /// The name sent to the upstream.
    #[schema(example = "gpt-4o-mini-2024-07-18")]
    pub upstream_model: String,
    /// Credits per million uncached input tokens.
    #[schema(example = 150)]
    pub input_per_million: i64,
    /// Credits per million input tokens served from the provider's prompt cache.
    #[schema(example = 75)]
    pub cached_input_per_million: i64,
    /// Credits per million output tokens.
    #[schema(example = 600)]
    pub output_per_million: i64,
    /// The most output tokens one call may ask for (and what a call that names no `max_tokens` is held for).
    #[schema(example = 16384)]
    pub max_output_tokens: i64,
    /// Whether clients may call it.
    pub active: bool,
    /// How input tokens are counted for the worst case: a tokenizer of the model's family, or
    /// `bytes` (one token per byte, an upper bound for any byte-level tokenizer) when unknown.
    pub tokenizer: Tokenizer,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<models::Model> for ModelView {
    fn from(m: models::Model) -> Self {
        Self {
            tokenizer: Tokenizer::for_model(&m.upstream_model),
            id: m.id,
            upstream_model: m.upstream_model,
            input_per_million: m.input_per_million,
            cached_input_per_million: m.cached_input_per_million,
            output_per_million: m.output_per_million,
            max_output_tokens: m.max_output_tokens,
            active: m.active,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// `POST /models` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateModelRequest {
    /// 1 to 64 of `A-Z a-z 0-9 . _ : / -`, e.g. `gpt-4o-mini` or `meta-llama/Llama-3.1-8B`.
    #[schema(example = "gpt-4o-mini")]
    pub id: String,
    /// The upstream's name for it; the id when omitted.
    pub upstream_model: Option<String>,
    #[schema(example = 150)]
    pub input_per_million: i64,
    /// The cached-input price; the input price when omitted.
    pub cached_input_per_million: Option<i64>,
    #[schema(example = 600)]
    pub output_per_million: i64,
    #[schema(example = 16384)]
    pub max_output_tokens: i64,
    /// True when omitted.
    pub active: Option<bool>,
}

/// `PATCH /models/{id}` (admin): what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateModelRequest {
    pub upstream_model: Option<String>,
    pub input_per_million: Option<i64>,
    pub cached_input_per_million: Option<i64>,
    pub output_per_million: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub active: Option<bool>,
}

impl models::Model {
    /// The prices, checked never negative (the database refuses negative ones too).
    pub fn prices(&self) -> Prices {
        let p = |v: i64| u64::try_from(v).unwrap_or(0);
        Prices {
            input: p(self.input_per_million),
            cached_input: p(self.cached_input_per_million),
            output: p(self.output_per_million),
        }
    }

    /// The feature its charges are recorded under.
    pub fn feature(&self) -> String {
        feature_of(&self.id)
    }

    /// The description of a call's hold and of its charge.
    pub fn call_description(&self) -> String {
        format!("LLM call: {}", self.id)
    }
}

/// `llm.<model>`: the feature an LLM call's spend carries.
pub fn feature_of(model: &str) -> String {
    format!("llm.{model}")
}

/// Whether `id` is a well-formed model id.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::ModelNotFound, format!("No model `{id}` on the rate card (see GET /api/v1/models)."))
        .with("model", id)
}

/// The model a call names, if it may be called now.
pub async fn find_active(db: &impl ConnectionTrait, id: &str) -> Result<models::Model, ApiError> {
    active(read(db, id).await?, id)
}

/// A model by id, active or not; `None` for an id no model could have.
async fn read(db: &impl ConnectionTrait, id: &str) -> Result<Option<models::Model>, DbErr> {
    if !valid_id(id) {
        return Ok(None);
    }
    models::Entity::find_by_id(id.to_owned()).one(db).await
}

/// The model a call may use: on the card and active.
fn active(model: Option<models::Model>, id: &str) -> Result<models::Model, ApiError> {
    match model {
        Some(model) if model.active => Ok(model),
        Some(_) => {
            Err(ApiError::new(ErrorCode::ModelNotFound, format!("Model `{id}` is not offered now.")).with("model", id))
        }
        None => Err(not_found(id)),
    }
}

/// The rate card as this process last read it, for the gateway's calls, so that a call need not
/// read the database for its model.
///
/// A price change applies to the calls that start after it, on every replica:
/// - **SQLite** (one process serves the file, and every change to the rate card goes through
///   [`RateCard::change`]): what was read is kept until a change. A change holds back the card's
///   readers while it is written and forgets what was read once it is committed.
/// - **PostgreSQL** (replicas each change the rate card on their own): what was read is kept for
///   [`RATE_CARD_LEASE`] from when its read began, and a change, once committed, answers only after
///   that lease has run out on every replica. A call that starts after the change's answer was
///   received therefore prices with a read made after its commit, whichever replica serves it; a
///   call that starts while the change is being answered is concurrent with it, and may take either
///   price. Each replica reads a model at most about once a lease while calls keep naming it.
#[derive(Clone)]
pub struct RateCard {
    known: Arc<tokio::sync::RwLock<Known>>,
    /// How long a read may be used (PostgreSQL), or `None`: until a change (SQLite).
    lease: Option<Duration>,
}

/// How long a PostgreSQL replica prices calls with a model it read, and how long a change of the
/// rate card waits, after its commit, before it answers.
pub const RATE_CARD_LEASE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Known {
    /// Each model with when its read began.
    models: HashMap<String, (models::Model, Instant)>,
    /// Bumped by each change: a read that began before one is not kept.
    changes: u64,
}

impl RateCard {
    /// The SQLite process's card (`true`: kept until a change), or a PostgreSQL replica's (kept for
    /// [`RATE_CARD_LEASE`]).
    pub fn new(single_process: bool) -> Self {
        Self { known: Arc::default(), lease: (!single_process).then_some(RATE_CARD_LEASE) }
    }

    /// The model a call asked for, if it is on the card and active.
    pub async fn find_active(&self, db: &DatabaseConnection, id: &str) -> Result<models::Model, ApiError> {
        let changes = {
            let known = self.known.read().await;
            if let Some((model, read_at)) = known.models.get(id)
                && self.lease.is_none_or(|lease| read_at.elapsed() < lease)
            {
                return active(Some(model.clone()), id);
            }
            known.changes
        };
        let began = Instant::now();
        let model = read(db, id).await?;
        // Unknown ids are not kept: names no model has cannot grow the card.
        if let Some(model) = &model {
            let mut known = self.known.write().await;
            if known.changes == changes {
                known.models.insert(id.to_owned(), (model.clone(), began));
            }
        }
        active(model, id)
    }

    /// Runs a change of an existing model: as [`RateCard::add`], and then on PostgreSQL a change
    /// that may have been written waits out the other replicas' leases before it answers.
    pub async fn change<T>(&self, write: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        let result = self.add(write).await;
        let refused = matches!(&result, Err(e) if e.code().status().is_client_error());
        if let (Some(lease), false) = (self.lease, refused) {
            tokio::time::sleep(lease).await;
        }
        result
    }

    /// Runs a write of the rate card: no call on this replica reads the card meanwhile, and what
    /// it kept is forgotten after, whether the write went through or not, and also when the request
    /// is dropped half way (its commit may have gone through). Enough by itself for a new model:
    /// no replica kept anything under its id (ids no model has are not kept, and models are never
    /// deleted), so the next call on any replica reads it.
    pub async fn add<T>(&self, write: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        let _forget = Forget(self.known.write().await);
        write.await
    }
}

/// Holds the card's readers back while it lives, and empties the card when dropped.
struct Forget<'a>(tokio::sync::RwLockWriteGuard<'a, Known>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.models.clear();
        self.0.changes += 1;
    }
}

/// The rate card: active models only, or all of them (admin).
pub async fn list(db: &DatabaseConnection, include_inactive: bool) -> Result<Vec<ModelView>, ApiError> {
    let mut select = models::Entity::find();
    if !include_inactive {
        select = select.filter(models::Column::Active.eq(true));
    }
    Ok(select.order_by_asc(models::Column::Id).all(db).await?.into_iter().map(Into::into).collect())
}

/// Collects the failing fields of a model's figures.
fn check(model: &models::Model, errors: &mut Vec<FieldError>) {
    let mut fail = |field: &str, code: &str, message: String| {
        errors.push(FieldError { field: field.to_owned(), code: code.to_owned(), message })
    };
    let upstream = model.upstream_model.trim();
    if upstream.is_empty() || upstream.chars().count() > 200 || upstream.chars().any(char::is_control) {
        fail("upstream_model", "length", "upstream_model must be 1 to 200 printable characters".to_owned());
    }
    for (field, value) in [
        ("input_per_million", model.input_per_million),
        ("cached_input_per_million", model.cached_input_per_million),
        ("output_per_million", model.output_per_million),
    ] {
        if value < 0 {
            fail(field, "range", format!("{field} must not be negative (0 is allowed: a free model)"));
        } else if value > MAX_PRICE_PER_MILLION {
            fail(field, "range", format!("{field} must be at most {MAX_PRICE_PER_MILLION}"));
        }
    }
    if !(1..=MAX_OUTPUT_TOKENS).contains(&model.max_output_tokens) {
        fail("max_output_tokens", "range", format!("max_output_tokens must be between 1 and {MAX_OUTPUT_TOKENS}"));
    }
}

/// Adds a model (admin).
pub async fn create(
    db: &DatabaseConnection,
    clock: &Clock,
    request: CreateModelRequest,
) -> Result<ModelView, ApiError> {
    let mut errors = Vec::new();
    if !valid_id(&request.id) {
        errors.push(FieldError {
            field: "id".to_owned(),
            code: "format".to_owned(),
            message: "id must be 1 to 64 of A-Z, a-z, 0-9, `.`, `_`, `:`, `/`, `-`".to_owned(),
        });
    }
    let now = clock.now();
    let model = models::Model {
        upstream_model: request.upstream_model.as_deref().unwrap_or(&request.id).trim().to_owned(),
        id: request.id,
        input_per_million: request.input_per_million,
        cached_input_per_million: request.cached_input_per_million.unwrap_or(request.input_per_million),
        output_per_million: request.output_per_million,
        max_output_tokens: request.max_output_tokens,
        active: request.active.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    check(&model, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    match models::Entity::insert(models::ActiveModel::from(model.clone())).exec_without_returning(db).await {
        Err(e) if db::is_unique_violation(&e) => Err(ApiError::new(
            ErrorCode::ModelExists,
            format!("Model `{}` is on the rate card already; change it with PATCH.", model.id),
        )),
        other => other.map(|_| model.into()).map_err(Into::into),
    }
}

/// Changes a model's prices, upstream name, longest output or availability (admin).
pub async fn update(
    db: &DatabaseConnection,
    clock: &Clock,
    id: &str,
    request: UpdateModelRequest,
) -> Result<ModelView, ApiError> {
    let txn = db.begin().await?;
    let mut model = models::Entity::find_by_id(id.to_owned()).one(&txn).await?.ok_or_else(|| not_found(id))?;
    if let Some(upstream) = request.upstream_model {
        model.upstream_model = upstream.trim().to_owned();
    }
    model.input_per_million = request.input_per_million.unwrap_or(model.input_per_million);
    model.cached_input_per_million = request.cached_input_per_million.unwrap_or(model.cached_input_per_million);
    model.output_per_million = request.output_per_million.unwrap_or(model.output_per_million);
    model.max_output_tokens = request.max_output_tokens.unwrap_or(model.max_output_tokens);
    model.active = request.active.unwrap_or(model.active);
    let mut errors = Vec::new();
    check(&model, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    model.updated_at = clock.now();
    models::Entity::update(models::ActiveModel::from(model.clone()).reset_all()).exec(&txn).await?;
    txn.commit().await?;
    Ok(model.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock is paused: time passes only when every task waits, so what a route's answer
    /// waits for shows as the clock's advance, not as a measured delay.
    #[tokio::test(start_paused = true)]
    async fn on_postgresql_a_price_change_waits_out_the_lease_and_a_new_model_does_not() {
        let card = RateCard::new(false);
        let start = tokio::time::Instant::now();
        card.change(async { Ok::<_, ApiError>(()) }).await.expect("changed");
        assert_eq!(start.elapsed(), RATE_CARD_LEASE);

        let start = tokio::time::Instant::now();
        card.add(async { Ok::<_, ApiError>(()) }).await.expect("added");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
