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

/// The cookie carrying a hosted-pages session (a customer's, minted by the product's backend).
pub const HOSTED_COOKIE: &str = "tollgate_hosted";

/// The two uses of a token pair: the sandbox billing portal (a user's, minted with a session)
/// and Tollgate's hosted pages (a customer's, minted with a server key). A token of one never
/// opens the other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Link,
    Session,
    HostedLink,
    HostedSession,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Session => "session",
            Self::HostedLink => "hosted_link",
            Self::HostedSession => "hosted_session",
        }
    }
}

async fn mint(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    kind: Kind,
    ttl: Duration,
    now: DateTime<Utc>,
    return_url: Option<String>,
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
        return_url: Set(return_url),
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
    mint(db, user_id, Kind::Link, LINK_TTL, now, None).await
}

/// Spends a link token: the first opening within its lifetime gets a portal session token for
/// its user; any other gets `None`.
pub async fn open_link(db: &DatabaseConnection, clock: &Clock, token: &str) -> Result<Option<(Uuid, String)>, DbErr> {
    Ok(open(db, clock, token, Kind::Link, Kind::Session).await?.map(|(link, session)| (link.user_id, session)))
}

/// Spends a link token of `link` kind for a session token of `session` kind. The spend is one
/// conditional update, so two openings racing cannot both succeed.
async fn open(
    db: &DatabaseConnection,
    clock: &Clock,
    token: &str,
    link: Kind,
    session: Kind,
) -> Result<Option<(portal_tokens::Model, String)>, DbErr> {
    let now = clock.now();
    let hash = hash_secret(token);
    let Some(found) = portal_tokens::Entity::find()
        .filter(portal_tokens::Column::TokenHash.eq(hash.clone()))
        .filter(portal_tokens::Column::Kind.eq(link.as_str()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let spent = portal_tokens::Entity::update_many()
        .col_expr(portal_tokens::Column::UsedAt, Expr::value(now))
        .filter(portal_tokens::Column::Id.eq(found.id))
        .filter(portal_tokens::Column::UsedAt.is_null())
        .filter(portal_tokens::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if spent.rows_affected != 1 {
        return Ok(None);
    }
    let minted = mint(db, found.user_id, session, SESSION_TTL, now, found.return_url.clone()).await?;
    Ok(Some((found, minted)))
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

/// A link to the hosted pages for a customer (the product's backend mints it with a server key).
/// Also forgets tokens that expired a day ago. Returns the token and when it expires.
pub async fn mint_hosted_link(
    db: &DatabaseConnection,
    clock: &Clock,
    customer_id: Uuid,
    return_url: Option<String>,
) -> Result<(String, DateTime<Utc>), DbErr> {
    let now = clock.now();
    portal_tokens::Entity::delete_many()
        .filter(portal_tokens::Column::ExpiresAt.lt(now - Duration::days(1)))
        .exec(db)
        .await?;
    let token = mint(db, customer_id, Kind::HostedLink, LINK_TTL, now, return_url).await?;
    Ok((token, now + LINK_TTL))
}

/// Spends a hosted link: the first opening within its lifetime gets a hosted session token.
pub async fn open_hosted_link(db: &DatabaseConnection, clock: &Clock, token: &str) -> Result<Option<String>, DbErr> {
    Ok(open(db, clock, token, Kind::HostedLink, Kind::HostedSession).await?.map(|(_, session)| session))
}

/// A live hosted session: whose it is, where it returns to, and when it ends.
#[derive(Debug, Clone)]
pub struct HostedSession {
    pub customer_id: Uuid,
    pub return_url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// The hosted session a token opens, while it lasts.
pub async fn hosted_session(
    db: &DatabaseConnection,
    clock: &Clock,
    token: &str,
) -> Result<Option<HostedSession>, DbErr> {
    Ok(portal_tokens::Entity::find()
        .filter(portal_tokens::Column::TokenHash.eq(hash_secret(token)))
        .filter(portal_tokens::Column::Kind.eq(Kind::HostedSession.as_str()))
        .filter(portal_tokens::Column::ExpiresAt.gt(clock.now()))
        .one(db)
        .await?
        .map(|s| HostedSession { customer_id: s.user_id, return_url: s.return_url, expires_at: s.expires_at }))
}
