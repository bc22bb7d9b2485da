//! HTTP handlers for registration, sign-in, refresh, sign-out and `/me`.

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    get, post, web,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Role,
    extractors::Authenticated,
    service::{self, AuthError, Session},
};
use crate::{
    domain::{Email, Password},
    entities::users,
    error::{ApiError, ErrorCode, FieldError},
    state::AppState,
};

/// The cookie that carries the refresh token for the SPA.
pub const REFRESH_COOKIE: &str = "tollgate_refresh";
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Trimmed and lower-cased before use.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// A display name, up to 200 characters.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token; when absent, the `tollgate_refresh` cookie is used.
    pub refresh_token: Option<String>,
}

/// A user as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for UserResponse {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            role: Role::parse(&user.role),
            created_at: user.created_at,
        }
    }
}

/// Tokens for a signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `/auth/refresh` for new tokens; single use. Also set as an httpOnly cookie.
    pub refresh_token: String,
    pub user: UserResponse,
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::EmailTaken => ApiError::new(ErrorCode::EmailTaken, err.to_string()),
            AuthError::InvalidCredentials => ApiError::new(ErrorCode::InvalidCredentials, err.to_string()),
            AuthError::TooManyAttempts { retry_after } => {
                ApiError::new(ErrorCode::TooManyAttempts, err.to_string()).retry_after(retry_after)
            }
            AuthError::InvalidRefreshToken => ApiError::new(ErrorCode::InvalidRefreshToken, err.to_string()),
            AuthError::RefreshTokenReused => ApiError::new(ErrorCode::RefreshTokenReused, err.to_string()),
            AuthError::UserNotFound => ApiError::new(ErrorCode::InvalidToken, "The user no longer exists."),
            AuthError::Busy { retry_after } => {
                ApiError::new(ErrorCode::PasswordHashingBusy, err.to_string()).retry_after(retry_after)
            }
            AuthError::Database(e) => e.into(),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}

fn refresh_cookie(state: &AppState, token: &str) -> Cookie<'static> {
    Cookie::build(REFRESH_COOKIE, token.to_owned())
        .path(REFRESH_COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies())
        .max_age(CookieDuration::seconds(state.settings.refresh_token_ttl.as_secs() as i64))
        .finish()
}

fn session_response(state: &AppState, session: Session) -> HttpResponse {
    let cookie = refresh_cookie(state, &session.refresh_token);
    HttpResponse::Ok().cookie(cookie).json(TokenResponse {
        access_token: session.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.jwt.ttl().as_secs(),
        refresh_token: session.refresh_token,
        user: session.user.into(),
    })
}

/// The connecting peer's address. Behind a proxy every client shares the proxy's address, so
/// the per-IP limit then applies to the proxy as a whole.
fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr().map(|addr| addr.ip().to_string()).unwrap_or_default()
}

fn presented_refresh_token(req: &HttpRequest, body: Option<web::Json<RefreshRequest>>) -> Option<String> {
    body.and_then(|b| b.into_inner().refresh_token)
        .filter(|t| !t.is_empty())
        .or_else(|| req.cookie(REFRESH_COOKIE).map(|c| c.value().to_owned()))
}

crate::openapi::errors!(RegisterUserErrors: EmailTaken, PasswordHashingBusy);

/// Create an account (and its wallet).
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account was created.", body = UserResponse),
        RegisterUserErrors,
    )
)]
#[post("/auth/register")]
pub async fn register_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_auth(&client_ip(&req))?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let email = Email::parse(&body.email)
        .map_err(|m| {
            errors.push(FieldError { field: "email".into(), code: "email".into(), message: format!("email {m}") })
        })
        .ok();
    let password = Password::parse(body.password)
        .map_err(|m| {
            errors.push(FieldError {
                field: "password".into(),
                code: "length".into(),
                message: format!("password {m}"),
            })
        })
        .ok();
    let name = body.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        errors.push(FieldError {
            field: "name".into(),
            code: "length".into(),
            message: "name must be at most 200 characters".into(),
        });
    }
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let user = service::register(&state, email, password, name).await?;
    Ok(HttpResponse::Created().json(UserResponse::from(user)))
}

crate::openapi::errors!(CreateSessionErrors: InvalidCredentials, TooManyAttempts, PasswordHashingBusy);

/// Sign in with email and password.
///
/// After 5 failed attempts for one email within 15 minutes, answers 429 with `Retry-After`.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the refresh token is also set as an httpOnly cookie.", body = TokenResponse),
        CreateSessionErrors,
    )
)]
#[post("/auth/login")]
pub async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_auth(&client_ip(&req))?;
    let body = body.into_inner();
    if body.password.len() > 4 * Password::MAX_CHARS {
        return Err(ApiError::new(ErrorCode::InvalidCredentials, AuthError::InvalidCredentials.to_string()));
    }
    let session = service::login(&state, &body.email, body.password).await?;
    Ok(session_response(&state, session))
}

crate::openapi::errors!(RefreshSessionErrors: InvalidRefreshToken, RefreshTokenReused);

/// Exchange a refresh token (body or cookie) for new tokens.
///
/// Each refresh token works once. Presenting one that was already used revokes every session
/// descended from the same sign-in, except within `REFRESH_TOKEN_REUSE_GRACE_SECONDS` (10 s) of
/// its first use: then the answer carries the same new refresh token as the first (two tabs
/// refreshing at once).
#[utoipa::path(
    tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Optional: without it the `tollgate_refresh` cookie is used."),
    responses(
        (status = 200, description = "New tokens.", body = TokenResponse),
        RefreshSessionErrors,
    )
)]
#[post("/auth/refresh")]
pub async fn refresh_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Option<web::Json<RefreshRequest>>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_auth(&client_ip(&req))?;
    let token = presented_refresh_token(&req, body).ok_or_else(|| ApiError::from(AuthError::InvalidRefreshToken))?;
    let session = service::refresh(&state, &token).await?;
    Ok(session_response(&state, session))
}

/// Sign out: revoke the refresh token's sessions and clear the cookie.
#[utoipa::path(
    tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Optional: without it the `tollgate_refresh` cookie is used."),
    responses((status = 204, description = "Signed out."))
)]
#[post("/auth/logout")]
pub async fn delete_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Option<web::Json<RefreshRequest>>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = presented_refresh_token(&req, body) {
        service::logout(&state, &token).await?;
    }
    let mut removal = refresh_cookie(&state, "");
    removal.make_removal();
    Ok(HttpResponse::NoContent().cookie(removal).finish())
}

/// The caller's account.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The signed-in user (or the owner of the API key).", body = UserResponse),
    ),
    security(("bearer" = []))
)]
#[get("/me")]
pub async fn get_me(state: web::Data<AppState>, caller: Authenticated) -> Result<web::Json<UserResponse>, ApiError> {
    let user = service::find_user(&state.db, caller.0.user_id).await?;
    Ok(web::Json(user.into()))
}
