//! Registration, sign-in, refresh-token rotation and sign-out.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Role, password::HashError};
use crate::{
    db,
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
    #[error("too many sign-ins are being checked right now; retry in {retry_after} s")]
    Busy { retry_after: u64 },
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<HashError> for AuthError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy(waited) => AuthError::Busy { retry_after: waited.as_secs().max(1) },
            HashError::Failed(e) => AuthError::Internal(e),
        }
    }
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
    let now = state.clock.now();
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
    crate::customers::insert(&txn, crate::customers::for_user(user.id, &user.email, user.name.clone(), now), now)
        .await?;
    match txn.commit().await {
        Err(e) if db::is_unique_violation(&e) => Err(AuthError::EmailTaken),
        other => other.map(|_| user).map_err(Into::into),
    }
}

/// Signs in: throttled per email, same answer and about the same time for an unknown email as
/// for a wrong password.
///
/// The attempt is recorded before its password is checked (`record_attempt`), so however many
/// sign-ins for one email arrive at once, at most `LOGIN_MAX_FAILURES` passwords are checked in a
/// window; a failed attempt's record stays, a successful one clears the email's earlier ones.
pub async fn login(state: &AppState, email: &str, password: String) -> Result<Session, AuthError> {
    // The same key as registration; an address that does not parse can match no user, but its
    // failures are still counted.
    let email = Email::lookup_key(email);
    let now = state.clock.now();
    let attempt = record_attempt(state, &email, now).await?;

    let checked = check_password(state, &email, password).await;
    let user = match checked {
        Ok(Some(user)) => user,
        Ok(None) => return Err(AuthError::InvalidCredentials),
        Err(e) => {
            // No password was checked (no hashing slot, a database error): not a failure.
            if let Err(forget) = login_failures::Entity::delete_by_id(attempt).exec(&state.db).await {
                log::warn!("could not forget an unchecked sign-in attempt: {forget}");
            }
            return Err(e);
        }
    };

    login_failures::Entity::delete_many()
        .filter(login_failures::Column::Email.eq(&email))
        .filter(login_failures::Column::Id.lte(attempt))
        .exec(&state.db)
        .await?;
    let refresh_token = random_token();
    store_refresh_token(&state.db, state, user.id, Uuid::now_v7(), &refresh_token, now).await?;
    let access_token = state.jwt.issue(user.id, Role::parse(&user.role))?;
    Ok(Session { user, access_token, refresh_token })
}

/// The advisory-lock class (PostgreSQL) under which sign-in attempts for one email are counted.
const LOGIN_ATTEMPT_LOCK: i32 = 0x7467_6c61; // "tgla"

/// Counts the email's attempts in the window and, if it is under the limit, records this one, as
/// one step that no concurrent sign-in can interleave with, on any replica: SQLite's write
/// transaction (`BEGIN IMMEDIATE`) excludes every other writer, PostgreSQL's transaction-scoped
/// advisory lock on the email excludes every other counter of that email. The record is
/// committed before the password is checked, so an attempt still being checked counts too.
/// Returns the record's id.
async fn record_attempt(state: &AppState, email: &str, now: DateTime<Utc>) -> Result<i64, AuthError> {
    let settings = &state.settings;
    let lockout = chrono::Duration::from_std(settings.login_lockout).unwrap_or_default();
    let txn = db::begin_write(&state.db).await?;
    if db::backend(&txn) == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            [LOGIN_ATTEMPT_LOCK.into(), email.into()],
        ))
        .await?;
    }
    let recent = login_failures::Entity::find()
        .filter(login_failures::Column::Email.eq(email))
        .filter(login_failures::Column::AttemptedAt.gt(now - lockout))
        .order_by_asc(login_failures::Column::AttemptedAt)
        .limit(u64::from(settings.login_max_failures))
        .all(&txn)
        .await?;
    if recent.len() as u32 >= settings.login_max_failures {
        txn.rollback().await?;
        let oldest = recent.first().map(|f| f.attempted_at).unwrap_or(now);
        let retry_after = (oldest + lockout - now).num_seconds().max(1) as u64;
        return Err(AuthError::TooManyAttempts { retry_after });
    }
    let inserted = login_failures::Entity::insert(login_failures::ActiveModel {
        email: Set(email.to_owned()),
        attempted_at: Set(now),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(inserted.last_insert_id)
}

/// The user, if the email is known and the password matches.
async fn check_password(state: &AppState, email: &str, password: String) -> Result<Option<users::Model>, AuthError> {
    let user = users::Entity::find().filter(users::Column::Email.eq(email)).one(&state.db).await?;
    let verified = state.passwords.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    Ok(user.filter(|_| verified))
}

/// The refresh token that replaces `token` when it is rotated: an HMAC of it under the JWT
/// secret. Derived, not drawn, so that a second refresh racing with the first (two tabs) can be
/// answered with the same successor without the database ever holding a token in the clear.
fn successor_token(state: &AppState, token: &str) -> Result<String, AuthError> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(state.settings.jwt_secret.expose().as_bytes())
        .map_err(|e| anyhow::anyhow!("refresh token key: {e}"))?;
    mac.update(b"tollgate refresh token successor v1\0");
    mac.update(token.as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Stores the hash of a new refresh token of `family_id`.
async fn store_refresh_token(
    db: &impl ConnectionTrait,
    state: &AppState,
    user_id: Uuid,
    family_id: Uuid,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let ttl = chrono::Duration::from_std(state.settings.refresh_token_ttl).unwrap_or_default();
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(hash_secret(token)),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        rotated_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
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
/// whole family: someone else may hold a copy. The one exception is a token rotated less than
/// `REFRESH_TOKEN_REUSE_GRACE_SECONDS` ago whose family is alive: two tabs refreshing at once
/// both get the same successor.
pub async fn refresh(state: &AppState, token: &str) -> Result<Session, AuthError> {
    let now = state.clock.now();
    let mut stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(token)))
        .one(&state.db)
        .await?
        .ok_or(AuthError::InvalidRefreshToken)?;

    if stored.rotated_at.is_none() && stored.revoked_at.is_none() {
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
        if rotated.rows_affected == 1 {
            let user =
                users::Entity::find_by_id(stored.user_id).one(&txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
            let refresh_token = successor_token(state, token)?;
            store_refresh_token(&txn, state, user.id, stored.family_id, &refresh_token, now).await?;
            txn.commit().await?;
            let access_token = state.jwt.issue(user.id, Role::parse(&user.role))?;
            return Ok(Session { user, access_token, refresh_token });
        }
        // A concurrent refresh with the same token rotated it first (and has committed its
        // successor: the row stayed locked until it did). See what it left.
        txn.rollback().await?;
        stored = refresh_tokens::Entity::find_by_id(stored.id)
            .one(&state.db)
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
    }

    let grace = chrono::Duration::from_std(state.settings.refresh_token_reuse_grace).unwrap_or_default();
    if stored.revoked_at.is_none()
        && let Some(rotated_at) = stored.rotated_at
        && now < rotated_at + grace
        && let Some(session) = reissue_successor(state, token, now).await?
    {
        return Ok(session);
    }
    revoke_family(&state.db, stored.family_id, now).await?;
    Err(AuthError::RefreshTokenReused)
}

/// The session a just-rotated token already led to, if its successor is still alive.
async fn reissue_successor(state: &AppState, token: &str, now: DateTime<Utc>) -> Result<Option<Session>, AuthError> {
    let refresh_token = successor_token(state, token)?;
    let successor = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(&refresh_token)))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        .one(&state.db)
        .await?;
    let Some(successor) = successor else { return Ok(None) };
    let user =
        users::Entity::find_by_id(successor.user_id).one(&state.db).await?.ok_or(AuthError::InvalidRefreshToken)?;
    let access_token = state.jwt.issue(user.id, Role::parse(&user.role))?;
    Ok(Some(Session { user, access_token, refresh_token }))
}

/// Signs out: revokes the refresh token's whole family. Unknown tokens are ignored.
pub async fn logout(state: &AppState, token: &str) -> Result<(), AuthError> {
    let stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash_secret(token)))
        .one(&state.db)
        .await?;
    if let Some(stored) = stored {
        revoke_family(&state.db, stored.family_id, state.clock.now()).await?;
    }
    Ok(())
}

pub async fn find_user(db: &impl ConnectionTrait, user_id: Uuid) -> Result<users::Model, AuthError> {
    users::Entity::find_by_id(user_id).one(db).await?.ok_or(AuthError::UserNotFound)
}

/// Makes a user an admin (`tollgate users promote EMAIL`).
pub async fn promote(
    db: &sea_orm::DatabaseConnection,
    clock: &crate::clock::Clock,
    email: &Email,
) -> Result<users::Model, AuthError> {
    let user = users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(db)
        .await?
        .ok_or(AuthError::UserNotFound)?;
    let mut active: users::ActiveModel = user.into();
    active.role = Set(Role::Admin.as_str().to_owned());
    active.updated_at = Set(clock.now());
    Ok(active.update(db).await?)
}
