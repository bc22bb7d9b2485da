//! Who is calling, stated in a handler's signature: `Authenticated` (any credential),
//! `Scoped<S>` (a session, or an API key holding scope `S`), `SessionUser` (a signed-in session
//! only) and `Admin` (the admin role, or the operator's `x-admin-key`).

use std::{future::Future, marker::PhantomData, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Role, Scope, jwt::TokenError, service::hash_secret};
use crate::{
    entities::api_keys,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A JWT access token from sign-in.
    Session,
    /// An API key, with the scopes it was given.
    ApiKey { id: Uuid, scopes: Vec<Scope> },
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

impl Principal {
    pub fn has_scope(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::Session => true,
            Credential::ApiKey { scopes, .. } => scopes.contains(&scope),
        }
    }

    /// The namespace a caller's idempotency keys live in: keys are scoped to the user.
    pub fn idempotency_scope(&self) -> String {
        format!("user:{}", self.user_id)
    }
}

/// API keys start with this, so a leaked one is recognisable (and scannable).
pub const API_KEY_PREFIX: &str = "tg_";

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state is missing")))
}

fn bearer(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidToken, "The Authorization header is not readable."))?;
    let mut parts = value.splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default().trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidToken, "Use `Authorization: Bearer <access token or API key>`."));
    }
    Ok(Some(token.to_owned()))
}

async fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = state(req)?;
    let Some(token) = bearer(req)? else {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Sign in, or send `Authorization: Bearer <access token or API key>`.",
        ));
    };
    if token.starts_with(API_KEY_PREFIX) {
        return authenticate_api_key(&state, &token).await;
    }
    match state.jwt.verify(&token) {
        Ok(claims) => Ok(Principal { user_id: claims.sub, role: claims.role, credential: Credential::Session }),
        Err(TokenError::Expired) => {
            Err(ApiError::new(ErrorCode::TokenExpired, "The access token has expired; refresh it."))
        }
        Err(TokenError::Invalid) => Err(ApiError::new(ErrorCode::InvalidToken, "The access token is not valid.")),
    }
}

async fn authenticate_api_key(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let key = api_keys::Entity::find()
        .filter(api_keys::Column::KeyHash.eq(hash_secret(token)))
        .filter(api_keys::Column::RevokedAt.is_null())
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "The API key is unknown or revoked."))?;
    let user = crate::entities::users::Entity::find_by_id(key.user_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "The API key is unknown or revoked."))?;

    let now = state.clock.now();
    let stale = key.last_used_at.is_none_or(|t| now - t > chrono::Duration::seconds(60));
    if stale {
        // Recorded at most once a minute and off the request path, so that keys do not add a
        // write to every spend.
        let db = state.db.clone();
        let id = key.id;
        tokio::spawn(async move {
            let _ = api_keys::Entity::update_many()
                .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
                .filter(api_keys::Column::Id.eq(id))
                .exec(&db)
                .await;
        });
    }
    let scopes = key.scopes.split(',').filter_map(Scope::parse).collect();
    Ok(Principal {
        user_id: user.id,
        role: Role::parse(&user.role),
        credential: Credential::ApiKey { id: key.id, scopes },
    })
}

type BoxedFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// Any valid credential: a session or an API key.
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = BoxedFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map(Authenticated) })
    }
}

/// A scope an API key must hold for the route (a marker type).
pub trait RequiredScope {
    const SCOPE: Scope;
}

/// Marker: `credits:read`.
pub struct CreditsRead;
impl RequiredScope for CreditsRead {
    const SCOPE: Scope = Scope::CreditsRead;
}

/// Marker: `credits:spend`.
pub struct CreditsSpend;
impl RequiredScope for CreditsSpend {
    const SCOPE: Scope = Scope::CreditsSpend;
}

/// A session, or an API key holding scope `S`.
pub struct Scoped<S: RequiredScope>(pub Principal, PhantomData<S>);

impl<S: RequiredScope + 'static> FromRequest for Scoped<S> {
    type Error = ApiError;
    type Future = BoxedFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = authenticate(&req).await?;
            if !principal.has_scope(S::SCOPE) {
                return Err(ApiError::new(
                    ErrorCode::InsufficientScope,
                    format!("This API key lacks the `{}` scope.", S::SCOPE.as_str()),
                )
                .with("required_scope", S::SCOPE.as_str()));
            }
            Ok(Scoped(principal, PhantomData))
        })
    }
}

/// A signed-in session (JWT) only: API keys cannot manage API keys.
pub struct SessionUser(pub Principal);

impl FromRequest for SessionUser {
    type Error = ApiError;
    type Future = BoxedFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = authenticate(&req).await?;
            match principal.credential {
                Credential::Session => Ok(SessionUser(principal)),
                Credential::ApiKey { .. } => Err(ApiError::new(
                    ErrorCode::SessionRequired,
                    "This action needs a signed-in session, not an API key.",
                )),
            }
        })
    }
}

/// Who performed an admin action.
#[derive(Debug, Clone)]
pub enum AdminActor {
    /// A signed-in user with the admin role.
    User(Uuid),
    /// The operator, through `x-admin-key`.
    OperatorKey,
}

impl AdminActor {
    /// The namespace of this actor's idempotency keys.
    pub fn idempotency_scope(&self) -> String {
        match self {
            AdminActor::User(id) => format!("admin:{id}"),
            AdminActor::OperatorKey => "admin-key".to_owned(),
        }
    }
}

/// The admin role (session) or the operator's `x-admin-key`, compared in constant time.
pub struct Admin(pub AdminActor);

/// The header carrying the operator's admin key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = BoxedFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            if let Some(presented) = req.headers().get(ADMIN_KEY_HEADER) {
                let Some(expected) = state.settings.admin_api_key.as_ref() else {
                    return Err(ApiError::new(
                        ErrorCode::AdminKeyDisabled,
                        "No ADMIN_API_KEY is configured on this server.",
                    ));
                };
                let matches: bool = presented.as_bytes().ct_eq(expected.expose().as_bytes()).into();
                return if matches {
                    Ok(Admin(AdminActor::OperatorKey))
                } else {
                    Err(ApiError::new(ErrorCode::InvalidAdminKey, "The admin key is wrong."))
                };
            }
            let principal = authenticate(&req).await?;
            match (principal.role, &principal.credential) {
                (Role::Admin, Credential::Session) => Ok(Admin(AdminActor::User(principal.user_id))),
                _ => Err(ApiError::new(ErrorCode::AdminRequired, "This action needs an administrator.")),
            }
        })
    }
}
