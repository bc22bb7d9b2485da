//! Billing portal links. A link is a single-purpose token of its own: random, stored hashed,
//! valid for a few minutes and for one opening. Opening it trades it for a portal session (a
//! cookie scoped to the portal's path, also stored hashed), so the URL that lands in browser
//! history and logs is spent by the time anyone could read it, and neither token works anywhere
//! but the portal. Minting a link needs a signed-in session.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    auth::service::{hash_secret, random_token},
    clock::Clock,
    entities::portal_tokens,
};

/// How long a link can wait before it is opened.
pub const LINK_TTL: Duration = Duration::minutes(5);
/// How long a portal session lasts once the link is opened.
pub const SESSION_TTL: Duration = Duration::minutes(30);
/// The cookie carrying the portal session.
pub const SESSION_COOKIE: &str = "tollgate_portal";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Link,
    Session,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Session => "session",
        }
    }
}

async fn mint(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    kind: Kind,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<String, DbErr> {
    let token = random_token();
    portal_tokens::Entity::insert(portal_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        token_hash: Set(hash_secret(&token)),
        user_id: Set(user_id),
        kind: Set(kind.as_str().to_owned()),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// A new portal link token for the user. Also forgets tokens that expired a day ago.
pub async fn mint_link(db: &DatabaseConnection, clock: &Clock, user_id: Uuid) -> Result<String, DbErr> {
    let now = clock.now();
    portal_tokens::Entity::delete_many()
        .filter(portal_tokens::Column::ExpiresAt.lt(now - Duration::days(1)))
        .exec(db)
        .await?;
    mint(db, user_id, Kind::Link, LINK_TTL, now).await
}

/// Spends a link token: the first opening within its lifetime gets a portal session token for
/// its user; any other gets `None`. The spend is one conditional update, so two openings racing
/// cannot both succeed.
pub async fn open_link(db: &DatabaseConnection, clock: &Clock, token: &str) -> Result<Option<(Uuid, String)>, DbErr> {
    let now = clock.now();
    let hash = hash_secret(token);
    let Some(link) = portal_tokens::Entity::find()
        .filter(portal_tokens::Column::TokenHash.eq(hash.clone()))
        .filter(portal_tokens::Column::Kind.eq(Kind::Link.as_str()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let spent = portal_tokens::Entity::update_many()
        .col_expr(portal_tokens::Column::UsedAt, Expr::value(now))
        .filter(portal_tokens::Column::Id.eq(link.id))
        .filter(portal_tokens::Column::UsedAt.is_null())
        .filter(portal_tokens::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if spent.rows_affected != 1 {
        return Ok(None);
    }
    let session = mint(db, link.user_id, Kind::Session, SESSION_TTL, now).await?;
    Ok(Some((link.user_id, session)))
}

/// The user a live portal session token belongs to.
pub async fn session_user(db: &DatabaseConnection, clock: &Clock, token: &str) -> Result<Option<Uuid>, DbErr> {
    Ok(portal_tokens::Entity::find()
        .filter(portal_tokens::Column::TokenHash.eq(hash_secret(token)))
        .filter(portal_tokens::Column::Kind.eq(Kind::Session.as_str()))
        .filter(portal_tokens::Column::ExpiresAt.gt(clock.now()))
        .one(db)
        .await?
        .map(|session| session.user_id))
}
