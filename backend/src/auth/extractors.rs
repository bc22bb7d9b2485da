//! Who is calling, stated in a handler's signature: `Authenticated` (any credential),
//! `Scoped<S>` (a session, or an API key holding scope `S`), `SessionUser` (a signed-in session
//! only), `Admin` (the admin role, or the operator's `x-admin-key`) and `ServerCaller<S>` (a
//! server key holding scope `S`, or an admin), for the routes that act on customers.
//!
//! The two kinds of key never cross: a server key is refused wherever the caller's own wallet is
//! meant (`server_key_not_allowed`), a personal key or session wherever a customer is named
//! (`server_key_required`).

use std::{future::Future, marker::PhantomData, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Role, Scope, api_keys::CachedApiKey, jwt::TokenError, service::hash_secret};
use crate::{
    entities::{api_keys, server_keys},
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
/// Server keys start with this.
pub const SERVER_KEY_PREFIX: &str = "tg_sk_";

/// The application state, from a request.
pub(crate) fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
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
    if token.starts_with(SERVER_KEY_PREFIX) && find_server_key(&state, &token).await?.is_some() {
        return Err(server_key_not_allowed());
    }
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
    let hash = hash_secret(token);
    let cached = match state.api_keys.get(&hash) {
        Some(cached) => cached,
        None => {
            let unknown = || ApiError::new(ErrorCode::InvalidApiKey, "The API key is unknown or revoked.");
            let (key, user) = api_keys::Entity::find()
                .filter(api_keys::Column::KeyHash.eq(hash.as_str()))
                .filter(api_keys::Column::RevokedAt.is_null())
                .find_also_related(crate::entities::users::Entity)
                .one(&state.db)
                .await?
                .ok_or_else(unknown)?;
            let user = user.ok_or_else(unknown)?;
            let cached = CachedApiKey { key, role: Role::parse(&user.role) };
            state.api_keys.remember(&cached);
            cached
        }
    };
    let id = cached.key.id;
    let touched = touch_later(state, cached.key.last_used_at, move |now| {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
            .filter(api_keys::Column::Id.eq(id))
    });
    if let Some(at) = touched {
        state.api_keys.used(&hash, at);
    }
    let scopes = Scope::parse_list(&cached.key.scopes);
    Ok(Principal { user_id: cached.key.user_id, role: cached.role, credential: Credential::ApiKey { id, scopes } })
}

fn server_key_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::ServerKeyNotAllowed,
        "A server key acts on customers: use /api/v1/customers/{external_id}/… instead.",
    )
}

/// A live server key by its secret, as read at most `ServerKeyCache::TTL` ago.
async fn find_server_key(state: &AppState, token: &str) -> Result<Option<server_keys::Model>, ApiError> {
    let hash = hash_secret(token);
    if let Some(key) = state.server_keys.get(&hash) {
        return Ok(Some(key));
    }
    let key = server_keys::Entity::find()
        .filter(server_keys::Column::KeyHash.eq(hash))
        .filter(server_keys::Column::RevokedAt.is_null())
        .one(&state.db)
        .await?;
    if let Some(key) = &key {
        state.server_keys.remember(key);
    }
    Ok(key)
}

/// Records when a key was last used: at most once a minute and off the request path, so that
/// keys do not add a write to every spend. Returns when it recorded it, if it did.
fn touch_later<E: EntityTrait>(
    state: &AppState,
    last_used: Option<chrono::DateTime<chrono::Utc>>,
    update: impl FnOnce(chrono::DateTime<chrono::Utc>) -> sea_orm::UpdateMany<E> + Send + 'static,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let now = state.clock.now();
    if last_used.is_some_and(|t| now - t <= chrono::Duration::seconds(60)) {
        return None;
    }
    let db = state.db.clone();
    tokio::spawn(async move {
        let _ = update(now).exec(&db).await;
    });
    Some(now)
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

/// Marker: `credits:grant`.
pub struct CreditsGrant;
impl RequiredScope for CreditsGrant {
    const SCOPE: Scope = Scope::CreditsGrant;
}

/// Marker: `customers:write`.
pub struct CustomersWrite;
impl RequiredScope for CustomersWrite {
    const SCOPE: Scope = Scope::CustomersWrite;
}

/// Marker: `customers:read`.
pub struct CustomersRead;
impl RequiredScope for CustomersRead {
    const SCOPE: Scope = Scope::CustomersRead;
}

/// Marker: `billing:write`.
pub struct BillingWrite;
impl RequiredScope for BillingWrite {
    const SCOPE: Scope = Scope::BillingWrite;
}

/// Marker: `events:read` (server keys).
pub struct EventsRead;
impl RequiredScope for EventsRead {
    const SCOPE: Scope = Scope::EventsRead;
}

/// Marker: `webhooks:write` (server keys).
pub struct WebhooksWrite;
impl RequiredScope for WebhooksWrite {
    const SCOPE: Scope = Scope::WebhooksWrite;
}

/// Who acts on customers: the product's backend with a server key, or an administrator.
#[derive(Debug, Clone)]
pub enum CustomerActor {
    ServerKey { id: Uuid },
    Admin(AdminActor),
}

impl CustomerActor {
    /// The namespace of this actor's idempotency keys for one customer: a key sent for one
    /// customer never answers for another.
    pub fn idempotency_scope(&self, customer_id: Uuid) -> String {
        match self {
            CustomerActor::ServerKey { id } => format!("server:{id}:customer:{customer_id}"),
            CustomerActor::Admin(admin) => format!("{}:customer:{customer_id}", admin.idempotency_scope()),
        }
    }

    /// Whom the rate limit counts: the pair (key, customer), so one busy end user cannot starve
    /// the product's other customers.
    pub fn limit_key(&self, customer_id: Uuid) -> String {
        match self {
            CustomerActor::ServerKey { id } => format!("server:{id}:customer:{customer_id}"),
            CustomerActor::Admin(_) => format!("admin:customer:{customer_id}"),
        }
    }
}

/// A server key holding scope `S`, or an administrator (session or `x-admin-key`).
pub struct ServerCaller<S: RequiredScope>(pub CustomerActor, PhantomData<S>);

fn server_key_required() -> ApiError {
    ApiError::new(
        ErrorCode::ServerKeyRequired,
        "Customer routes take a server key (`Authorization: Bearer tg_sk_…`) or an administrator; \
         personal API keys and sign-in sessions act on their own wallet under /api/v1/credits.",
    )
}

impl<S: RequiredScope + 'static> FromRequest for ServerCaller<S> {
    type Error = ApiError;
    type Future = BoxedFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let admin_key = req.headers().contains_key(ADMIN_KEY_HEADER);
        let admin = admin_key.then(|| Admin::from_request(&req, payload));
        Box::pin(async move {
            if let Some(admin) = admin {
                return Ok(ServerCaller(CustomerActor::Admin(admin.await?.0), PhantomData));
            }
            let state = state(&req)?;
            let Some(token) = bearer(&req)? else {
                return Err(ApiError::new(ErrorCode::Unauthenticated, "Send `Authorization: Bearer <server key>`."));
            };
            if token.starts_with(SERVER_KEY_PREFIX)
                && let Some(key) = find_server_key(&state, &token).await?
            {
                let id = key.id;
                let touched = touch_later(&state, key.last_used_at, move |now| {
                    server_keys::Entity::update_many()
                        .col_expr(server_keys::Column::LastUsedAt, Expr::value(now))
                        .filter(server_keys::Column::Id.eq(id))
                });
                if let Some(at) = touched {
                    state.server_keys.used(&key.key_hash, at);
                }
                if !Scope::parse_list(&key.scopes).contains(&S::SCOPE) {
                    return Err(ApiError::new(
                        ErrorCode::MissingScope,
                        format!("This server key lacks the `{}` scope.", S::SCOPE.as_str()),
                    )
                    .with("required_scope", S::SCOPE.as_str()));
                }
                return Ok(ServerCaller(CustomerActor::ServerKey { id }, PhantomData));
            }
            let principal = authenticate(&req).await?;
            match (principal.role, &principal.credential) {
                (Role::Admin, Credential::Session) => {
                    Ok(ServerCaller(CustomerActor::Admin(AdminActor::User(principal.user_id)), PhantomData))
                }
                _ => Err(server_key_required()),
            }
        })
    }
}
