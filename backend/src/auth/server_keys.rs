//! Server keys: the product's backend acting on its customers. Created and revoked by an
//! administrator, shown once, stored as a hash, scoped; found in constant time by their hash as
//! personal API keys are.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    NewSecret, Scope,
    extractors::{Admin, SERVER_KEY_PREFIX},
};
use crate::{
    entities::server_keys,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// Server keys as recently read (see `KeyCache`).
pub type ServerKeyCache = super::key_cache::KeyCache<server_keys::Model>;

impl super::key_cache::CachedKey for server_keys::Model {
    fn id(&self) -> Uuid {
        self.id
    }
    fn hash(&self) -> &str {
        &self.key_hash
    }
    fn set_last_used(&mut self, at: DateTime<Utc>) {
        self.last_used_at = Some(at);
    }
}

/// How many characters of a key are kept in clear to recognise it.
const DISPLAY_PREFIX_LEN: usize = 14;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateServerKeyRequest {
    /// What the key is for, 1 to 100 characters.
    #[schema(example = "production backend")]
    pub name: String,
    /// One or more of `customers:write`, `customers:read`, `credits:read`, `credits:spend`,
    /// `credits:grant`, `billing:write`.
    #[schema(value_type = Vec<Scope>, example = json!(["customers:write", "credits:read", "credits:spend"]))]
    pub scopes: Vec<String>,
}

/// A server key as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerKeyResponse {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it.
    #[schema(example = "tg_sk_Xk3vQ9aB")]
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A server key just created: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedServerKeyResponse {
    #[serde(flatten)]
    pub key: ServerKeyResponse,
    /// The secret (`tg_sk_…`). Store it now: it is not shown again.
    pub secret: String,
}

impl From<server_keys::Model> for ServerKeyResponse {
    fn from(key: server_keys::Model) -> Self {
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

crate::openapi::errors!(CreateServerKeyErrors: AdminRequired);

/// Create a server key (admin); the secret is in the response and nowhere else.
#[utoipa::path(
    tag = "server-keys",
    request_body = CreateServerKeyRequest,
    responses(
        (status = 201, description = "The key, with its secret shown once.", body = CreatedServerKeyResponse),
        CreateServerKeyErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[post("/admin/server-keys")]
pub async fn create_server_key(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<CreateServerKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (name, scopes) = super::parse_key_request(&body.name, &body.scopes, &Scope::SERVER)?;
    let NewSecret { secret, prefix, hash } = NewSecret::mint(SERVER_KEY_PREFIX, None, DISPLAY_PREFIX_LEN);
    let model = server_keys::Model {
        id: Uuid::now_v7(),
        name,
        prefix,
        key_hash: hash,
        scopes: Scope::join(&scopes),
        created_at: state.clock.now(),
        last_used_at: None,
        revoked_at: None,
    };
    server_keys::Entity::insert(server_keys::ActiveModel::from(model.clone()))
        .exec_without_returning(&state.db)
        .await?;
    Ok(HttpResponse::Created().json(CreatedServerKeyResponse { key: model.into(), secret }))
}

crate::openapi::errors!(ListServerKeysErrors: AdminRequired);

/// The server keys that are not revoked, newest first (admin).
#[utoipa::path(
    tag = "server-keys",
    responses(
        (status = 200, description = "The keys (never their secrets).", body = Vec<ServerKeyResponse>),
        ListServerKeysErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[get("/admin/server-keys")]
pub async fn list_server_keys(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<web::Json<Vec<ServerKeyResponse>>, ApiError> {
    let keys = server_keys::Entity::find()
        .filter(server_keys::Column::RevokedAt.is_null())
        .order_by_desc(server_keys::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(web::Json(keys.into_iter().map(Into::into).collect()))
}

crate::openapi::errors!(RevokeServerKeyErrors: AdminRequired, ServerKeyNotFound);

/// Revoke a server key (admin): it stops working at once.
#[utoipa::path(
    tag = "server-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked."),
        RevokeServerKeyErrors,
    ),
    security(("bearer" = []), ("admin_key" = []))
)]
#[delete("/admin/server-keys/{id}")]
pub async fn revoke_server_key(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let revoked = server_keys::Entity::update_many()
        .col_expr(server_keys::Column::RevokedAt, Expr::value(state.clock.now()))
        .filter(server_keys::Column::Id.eq(id))
        .filter(server_keys::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    if revoked.rows_affected == 0 {
        return Err(ApiError::new(ErrorCode::ServerKeyNotFound, "No such server key, or it was revoked."));
    }
    state.server_keys.forget(id);
    Ok(HttpResponse::NoContent().finish())
}
