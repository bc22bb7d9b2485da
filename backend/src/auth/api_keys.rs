//! API keys for third-party clients: shown once, stored as a hash, scoped, revocable.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    NewSecret, Scope,
    extractors::{API_KEY_PREFIX, SessionUser},
};
use crate::{
    entities::api_keys,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// How many characters of a key are kept in clear to recognise it.
const DISPLAY_PREFIX_LEN: usize = 11;

/// A personal API key as recently read, with its owner's role (see `KeyCache`).
#[derive(Clone)]
pub struct CachedApiKey {
    pub key: api_keys::Model,
    pub role: super::Role,
}

impl super::key_cache::CachedKey for CachedApiKey {
    fn id(&self) -> Uuid {
        self.key.id
    }
    fn hash(&self) -> &str {
        &self.key.key_hash
    }
    fn set_last_used(&mut self, at: chrono::DateTime<chrono::Utc>) {
        self.key.last_used_at = Some(at);
    }
}

pub type ApiKeyCache = super::key_cache::KeyCache<CachedApiKey>;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    /// What the key is for, 1 to 100 characters.
    #[schema(example = "summarizer backend")]
    pub name: String,
    /// At least one of `credits:read`, `credits:spend`.
    #[schema(example = json!(["credits:read", "credits:spend"]))]
    pub scopes: Vec<String>,
}

/// An API key as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it.
    #[schema(example = "tg_Xk3vQ9aB")]
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// The secret. Store it now: it is not shown again.
    pub secret: String,
}

impl From<api_keys::Model> for ApiKeyResponse {
    fn from(key: api_keys::Model) -> Self {
        Self {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            scopes: Scope::parse_list(&key.scopes),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
        }
    }
}

crate::openapi::errors!(CreateApiKeyErrors: SessionRequired);

/// Create an API key; the secret is in the response and nowhere else.
#[utoipa::path(
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The key, with its secret shown once.", body = CreatedApiKeyResponse),
        CreateApiKeyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/api-keys")]
pub async fn create_api_key(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (name, scopes) = super::parse_key_request(&body.name, &body.scopes, &Scope::PERSONAL)?;
    // A personal key never looks like a server key.
    let NewSecret { secret, prefix, hash } = NewSecret::mint(API_KEY_PREFIX, Some("sk_"), DISPLAY_PREFIX_LEN);
    let model = api_keys::Model {
        id: Uuid::now_v7(),
        user_id: caller.0.user_id,
        name,
        prefix,
        key_hash: hash,
        scopes: Scope::join(&scopes),
        created_at: state.clock.now(),
        last_used_at: None,
        revoked_at: None,
    };
    api_keys::Entity::insert(api_keys::ActiveModel::from(model.clone())).exec_without_returning(&state.db).await?;
    Ok(HttpResponse::Created().json(CreatedApiKeyResponse { key: model.into(), secret }))
}

crate::openapi::errors!(ListApiKeysErrors: SessionRequired);

/// The caller's keys that are not revoked, newest first.
#[utoipa::path(
    tag = "api-keys",
    responses(
        (status = 200, description = "The keys (never their secrets).", body = Vec<ApiKeyResponse>),
        ListApiKeysErrors,
    ),
    security(("bearer" = []))
)]
#[get("/api-keys")]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<web::Json<Vec<ApiKeyResponse>>, ApiError> {
    let keys = api_keys::Entity::find()
        .filter(api_keys::Column::UserId.eq(caller.0.user_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .order_by_desc(api_keys::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(web::Json(keys.into_iter().map(Into::into).collect()))
}

crate::openapi::errors!(RevokeApiKeyErrors: SessionRequired, ApiKeyNotFound);

/// Revoke a key: it stops working at once.
#[utoipa::path(
    tag = "api-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked."),
        RevokeApiKeyErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/api-keys/{id}")]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    caller: SessionUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let revoked = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(state.clock.now()))
        .filter(api_keys::Column::Id.eq(id))
        .filter(api_keys::Column::UserId.eq(caller.0.user_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    if revoked.rows_affected == 0 {
        return Err(ApiError::new(ErrorCode::ApiKeyNotFound, "No such API key."));
    }
    state.api_keys.forget(id);
    Ok(HttpResponse::NoContent().finish())
}
