//! Registration, sign-in, refresh-token rotation and sign-out.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Role;
use crate::{
    credits, db,
    domain::{Email, Password},
    entities::{login_failures, refresh_tokens, users},
    state::AppState,
};

/// What can go wrong signing up or in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("too many failed sign-ins; retry in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("the refresh token is missing, unknown or expired")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; its sessions are revoked")]
    RefreshTokenReused,
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A signed-in session: the access token and the refresh token that renews it.
pub struct Session {
    pub user: users::Model,
    pub access_token: String,
    pub refresh_token: String,
}

/// SHA-256 of a high-entropy secret, hex encoded: how refresh tokens and API keys are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Creates a user and their wallet in one transaction.
pub async fn register(
    state: &AppState,
    email: Email,
    password: Password,
    name: Option<String>,
) -> Result<users::Model, AuthError> {
    let password_hash = state.passwords.hash(password.expose().to_owned()).await?;
    let now = Utc::now();
    let user = users::Model {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        name,
        password_hash,
        role: Role::User.as_str().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let txn = db::begin_write(&state.db).await?;
    let inserted = users::Entity::insert(users::ActiveModel::from(user.clone())).exec_without_returning(&txn).await;
    match inserted {
        Err(e) if db::is_unique_violation(&e) => return Err(AuthError::EmailTaken),
        other => {
            other?;
        }
    }
    credits::ledger::create_wallet(&txn, user.id, now).await?;
    match txn.commit().await {
        Err(e) if db::is_unique_violation(&e) => Err(AuthError::EmailTaken),
        other => other.map(|_| user).map_err(Into::into),
    }
}

/// Signs in: throttled per email, same answer and about the same time for an unknown email as
/// for a wrong password.
pub async fn login(state: &AppState, email: &str, password: String) -> Result<Session, AuthError> {
    let email = email.trim().to_lowercase();
    let settings = &state.settings;
    let now = Utc::now();
    let window_start = now - chrono::Duration::from_std(settings.login_lockout).unwrap_or_default();

    let recent = login_failures::Entity::find()
        .filter(login_failures::Column::Email.eq(&email))
        .filter(login_failures::Column::AttemptedAt.gt(window_start))
        .order_by_asc(login_failures::Column::AttemptedAt)
        .limit(u64::from(settings.login_max_failures))
        .all(&state.db)
        .await?;
    if recent.len() as u32 >= settings.login_max_failures {
        let oldest = recent.first().map(|f| f.attempted_at).unwrap_or(now);
        let unlock = oldest + chrono::Duration::from_std(settings.login_lockout).unwrap_or_default();
        let retry_after = (unlock - now).num_seconds().max(1) as u64;
        return Err(AuthError::TooManyAttempts { retry_after });
    }

    let user = users::Entity::find().filter(users::Column::Email.eq(&email)).one(&state.db).await?;
    let verified = state.passwords.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let Some(user) = user.filter(|_| verified) else {
        login_failures::Entity::insert(login_failures::ActiveModel {
            email: Set(email),
            attempted_at: Set(now),
            ..Default::default()
        })
        .exec_without_returning(&state.db)
        .await?;
        return Err(AuthError::InvalidCredentials);
    };

    login_failures::Entity::delete_many().filter(login_failures::Column::Email.eq(&email)).exec(&state.db).await?;
    let refresh_token = issue_refresh_token(&state.db, state, user.id, Uuid::now_v7(), now).await?;
    let access_token = state.jwt.issue(user.id, Role::parse(&user.role))?;
    Ok(Session { user, access_token, refresh_token })
}

async fn issue_refresh_token(
    db: &impl ConnectionTrait,
    state: &AppState,
    user_id: Uuid,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<String, AuthError> {
    let token = random_token();
    let ttl = chrono::Duration::from_std(state.settings.refresh_token_ttl).unwrap_or_default();
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(hash_secret(&token)),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        rotated_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

async fn revoke_family(db: &impl ConnectionTrait, family_id: Uuid, now: DateTime<Utc>) -> Result<(), AuthError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Rotates a refresh token. Presenting one that was already rotated (or revoked) revokes its
/// whole family: someone else may hold a copy.
pub async fn refresh(state: &AppState, token: &str) -> Result<Session, AuthError> {
    let now = Utc::now();
    let stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(token)))
        .one(&state.db)
        .await?
        .ok_or(AuthError::InvalidRefreshToken)?;

    if stored.rotated_at.is_some() || stored.revoked_at.is_some() {
        revoke_family(&state.db, stored.family_id, now).await?;
        return Err(AuthError::RefreshTokenReused);
    }
    if stored.expires_at <= now {
        return Err(AuthError::InvalidRefreshToken);
    }

    let txn = db::begin_write(&state.db).await?;
    let rotated = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RotatedAt, Expr::value(now))
        .filter(refresh_tokens::Column::Id.eq(stored.id))
        .filter(refresh_tokens::Column::RotatedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if rotated.rows_affected != 1 {
        // A concurrent refresh with the same token won the race: treat this one as a reuse.
        txn.rollback().await?;
        revoke_family(&state.db, stored.family_id, now).await?;
        return Err(AuthError::RefreshTokenReused);
    }
    let user = users::Entity::find_by_id(stored.user_id).one(&txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
    let refresh_token = issue_refresh_token(&txn, state, user.id, stored.family_id, now).await?;
    txn.commit().await?;
    let access_token = state.jwt.issue(user.id, Role::parse(&user.role))?;
    Ok(Session { user, access_token, refresh_token })
}

/// Signs out: revokes the refresh token's whole family. Unknown tokens are ignored.
pub async fn logout(state: &AppState, token: &str) -> Result<(), AuthError> {
    let stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(token)))
        .one(&state.db)
        .await?;
    if let Some(stored) = stored {
        revoke_family(&state.db, stored.family_id, Utc::now()).await?;
    }
    Ok(())
}

pub async fn find_user(db: &impl ConnectionTrait, user_id: Uuid) -> Result<users::Model, AuthError> {
    users::Entity::find_by_id(user_id).one(db).await?.ok_or(AuthError::UserNotFound)
}

/// Makes a user an admin (`tollgate users promote EMAIL`).
pub async fn promote(db: &sea_orm::DatabaseConnection, email: &Email) -> Result<users::Model, AuthError> {
    let user = users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(db)
        .await?
        .ok_or(AuthError::UserNotFound)?;
    let mut active: users::ActiveModel = user.into();
    active.role = Set(Role::Admin.as_str().to_owned());
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}
