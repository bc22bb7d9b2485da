//! Customers: whose wallets the product's backend acts on, named by the product's own ids.
//!
//! Every wallet belongs to a customer. A person who signs up in the SPA is one (the customer's
//! id is their user id, and they have no `external_id`); a product's backend creates the rest
//! with `PUT /customers/{external_id}` and a server key. Routes under
//! `/customers/{external_id}/` find the customer's wallet here and then run exactly what their
//! `/credits/*` twins run (`credits::handlers::wallet`).

pub mod handlers;
pub mod history;
pub mod hosted;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    clock::Clock,
    credits::{dto::WalletBalance, handlers::WalletRoute, store},
    db,
    domain::Email,
    entities::{accounts, customers},
    error::{ApiError, ErrorCode, FieldError},
};

/// The most characters an external id has.
pub const EXTERNAL_ID_MAX: usize = 255;
/// The most bytes a customer's metadata takes, as JSON.
pub const METADATA_MAX_BYTES: usize = 4096;

/// Checks an external id from a path: 1 to 255 printable characters.
pub fn parse_external_id(raw: &str) -> Result<String, ApiError> {
    let count = raw.chars().count();
    if count == 0 || count > EXTERNAL_ID_MAX {
        return Err(ApiError::field("external_id", "length", "external_id must be 1 to 255 characters"));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::field("external_id", "invalid", "external_id must be printable characters only"));
    }
    Ok(raw.to_owned())
}

fn not_found(external_id: &str) -> ApiError {
    ApiError::new(ErrorCode::CustomerNotFound, format!("No customer has the external id `{external_id}`."))
}

/// A customer and their wallet's figures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    /// Tollgate's id for the customer (a signed-up user's is their user id).
    pub id: Uuid,
    /// The product's own id for this customer; null for people who signed up in the SPA.
    #[schema(example = "user_8412")]
    pub external_id: Option<String>,
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    #[schema(example = "Ada Lovelace")]
    pub name: Option<String>,
    /// Any JSON object the product keeps with the customer (up to 4 KiB).
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The wallet's figures as last written (`GET …/balance` also counts expiries that are due).
    #[serde(flatten)]
    pub wallet: WalletBalance,
}

impl Customer {
    fn of(customer: customers::Model, wallet: Option<&accounts::Model>) -> Self {
        let wallet =
            wallet.map(WalletBalance::of).unwrap_or(WalletBalance { balance: 0, available: 0, held: 0, debt: 0 });
        Self {
            id: customer.id,
            external_id: customer.external_id,
            email: customer.email,
            name: customer.name,
            metadata: customer.metadata,
            created_at: customer.created_at,
            updated_at: customer.updated_at,
            wallet,
        }
    }
}

/// A field that may be absent (left as it is), null (cleared) or a value (set).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PUT /customers/{external_id}`: creates the customer, or updates the fields given. A field
/// left out keeps its value; `null` clears it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpsertCustomerRequest {
    /// An email address to show in the admin pages and send to Stripe.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "ada@example.com")]
    pub email: Option<Option<String>>,
    /// 1 to 200 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Ada Lovelace")]
    pub name: Option<Option<String>>,
    /// Any JSON object, up to 4 KiB.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub metadata: Option<Option<serde_json::Value>>,
}

/// The fields of an upsert, checked.
struct Fields {
    email: Option<Option<String>>,
    name: Option<Option<String>>,
    metadata: Option<Option<serde_json::Value>>,
}

fn check_fields(body: UpsertCustomerRequest) -> Result<Fields, ApiError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, code: &str, message: &str| {
        errors.push(FieldError { field: field.into(), code: code.into(), message: message.into() })
    };
    let email = match body.email {
        Some(Some(raw)) => match Email::parse(&raw) {
            Ok(email) => Some(Some(email.as_str().to_owned())),
            Err(_) => {
                fail("email", "email", "email must be an email address, like ada@example.com");
                None
            }
        },
        other => other,
    };
    let name = match body.name {
        Some(Some(raw)) => {
            let name = raw.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                fail("name", "length", "name must be 1 to 200 characters");
            }
            Some(Some(name))
        }
        other => other,
    };
    if let Some(Some(metadata)) = &body.metadata {
        if !metadata.is_object() {
            fail("metadata", "type", "metadata must be a JSON object");
        } else if metadata.to_string().len() > METADATA_MAX_BYTES {
            fail("metadata", "length", "metadata must be at most 4 KiB as JSON");
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(Fields { email, name, metadata: body.metadata })
}

/// Creates the customer named `external_id` with its wallet, or updates its fields. Returns the
/// customer and whether it was created. Concurrent upserts of one id create one customer: the
/// loser of the insert race finds the winner's row and updates it.
pub async fn upsert(
    db: &DatabaseConnection,
    clock: &Clock,
    external_id: &str,
    body: UpsertCustomerRequest,
) -> Result<(Customer, bool), ApiError> {
    let fields = check_fields(body)?;
    for _ in 0..3 {
        let now = clock.now();
        let txn = db::begin_write(db).await?;
        let existing =
            customers::Entity::find().filter(customers::Column::ExternalId.eq(external_id)).one(&txn).await?;
        if let Some(found) = existing {
            let mut update = customers::Entity::update_many()
                .col_expr(customers::Column::UpdatedAt, Expr::value(now))
                .filter(customers::Column::Id.eq(found.id));
            if let Some(email) = &fields.email {
                update = update.col_expr(customers::Column::Email, Expr::value(email.clone()));
            }
            if let Some(name) = &fields.name {
                update = update.col_expr(customers::Column::Name, Expr::value(name.clone()));
            }
            if let Some(metadata) = &fields.metadata {
                update = update.col_expr(customers::Column::Metadata, Expr::value(metadata.clone()));
            }
            update.exec(&txn).await?;
            txn.commit().await?;
            return Ok((get_by_id(db, found.id).await?.ok_or_else(|| not_found(external_id))?, false));
        }
        let id = Uuid::now_v7();
        let row = customers::Model {
            id,
            external_id: Some(external_id.to_owned()),
            email: fields.email.clone().flatten(),
            name: fields.name.clone().flatten(),
            metadata: fields.metadata.clone().flatten(),
            created_at: now,
            updated_at: now,
        };
        let inserted = insert(&txn, row, now).await;
        match inserted {
            Err(e) if db::is_unique_violation(&e) => {
                txn.rollback().await?;
                continue;
            }
            other => other?,
        }
        match txn.commit().await {
            Err(e) if db::is_unique_violation(&e) => continue,
            other => other?,
        }
        return Ok((get_by_id(db, id).await?.ok_or_else(|| not_found(external_id))?, true));
    }
    Err(ApiError::internal(anyhow::anyhow!("customer {external_id} kept racing its own creation")))
}

/// Inserts a customer and creates its wallet, inside the caller's transaction. Registration
/// calls it with the new user's id.
pub async fn insert(db: &impl ConnectionTrait, row: customers::Model, now: DateTime<Utc>) -> Result<(), DbErr> {
    let id = row.id;
    customers::Entity::insert(customers::ActiveModel::from(row)).exec_without_returning(db).await?;
    store::create_wallet(db, id, now).await?;
    Ok(())
}

/// The customer row a signed-up user has.
pub fn for_user(id: Uuid, email: &str, name: Option<String>, now: DateTime<Utc>) -> customers::Model {
    customers::Model {
        id,
        external_id: None,
        email: Some(email.to_owned()),
        name,
        metadata: None,
        created_at: now,
        updated_at: now,
    }
}

/// A customer by the product's id, or 404 `customer_not_found`.
pub async fn find(db: &DatabaseConnection, external_id: &str) -> Result<customers::Model, ApiError> {
    let external_id = parse_external_id(external_id)?;
    customers::Entity::find()
        .filter(customers::Column::ExternalId.eq(external_id.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| not_found(&external_id))
}

/// A customer, with their wallet, by Tollgate's id.
pub async fn get_by_id(db: &DatabaseConnection, id: Uuid) -> Result<Option<Customer>, DbErr> {
    let Some(customer) = customers::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let wallet = store::find_wallet(db, id).await?;
    Ok(Some(Customer::of(customer, wallet.as_ref())))
}

/// Which customer each external id names, as looked up so far. An external id never changes
/// and a customer is never deleted, so an answer stays true: the routes that act on a customer's
/// wallet find it without a query after the first. Bounded: past 100,000 ids it starts over.
#[derive(Clone, Default)]
pub struct CustomerIds(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Uuid>>>);

impl CustomerIds {
    const MAX: usize = 100_000;

    fn get(&self, external_id: &str) -> Option<Uuid> {
        self.0.lock().ok()?.get(external_id).copied()
    }

    fn remember(&self, external_id: &str, id: Uuid) {
        if let Ok(mut ids) = self.0.lock() {
            if ids.len() >= Self::MAX {
                ids.clear();
            }
            ids.insert(external_id.to_owned(), id);
        }
    }
}

/// The wallet route of a customer named by the product's id, acting for `actor`.
pub async fn wallet_route(
    state: &crate::state::AppState,
    external_id: &str,
    actor: &crate::auth::extractors::CustomerActor,
) -> Result<WalletRoute, ApiError> {
    let id = match state.customer_ids.get(external_id) {
        Some(id) => id,
        None => {
            let customer = find(&state.db, external_id).await?;
            state.customer_ids.remember(external_id, customer.id);
            customer.id
        }
    };
    Ok(WalletRoute { owner: id, idempotency_scope: actor.idempotency_scope(id), limit_key: actor.limit_key(id) })
}

/// `GET /customers` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Only the customer with this email (compared without case).
    pub email: Option<String>,
    /// Customers whose external id or email starts with this (compared without case for email).
    pub q: Option<String>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// A page of customers, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerPage {
    pub data: Vec<Customer>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn like_prefix(raw: &str) -> String {
    let escaped = raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("{escaped}%")
}

/// Customers, newest first, paged by cursor (the last id of the page before).
pub async fn list(db: &DatabaseConnection, query: CustomerQuery) -> Result<CustomerPage, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "range", "limit must be between 1 and 100"));
    }
    let mut select = customers::Entity::find().order_by_desc(customers::Column::Id).limit(limit + 1);
    if let Some(cursor) = &query.cursor {
        let after = Uuid::parse_str(cursor)
            .map_err(|_| ApiError::field("cursor", "invalid", "cursor must be a next_cursor from a previous page"))?;
        select = select.filter(customers::Column::Id.lt(after));
    }
    if let Some(email) = &query.email {
        select =
            select.filter(Expr::expr(Func::lower(Expr::col(customers::Column::Email))).eq(email.trim().to_lowercase()));
    }
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_prefix(q);
        let lower = like_prefix(&q.to_lowercase());
        select = select.filter(
            Condition::any()
                .add(Expr::col(customers::Column::ExternalId).like(LikeExpr::new(pattern).escape('\\')))
                .add(
                    Expr::expr(Func::lower(Expr::col(customers::Column::Email)))
                        .like(LikeExpr::new(lower).escape('\\')),
                ),
        );
    }
    let mut rows = select.all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
    let wallets = accounts::Entity::find().filter(accounts::Column::UserId.is_in(ids)).all(db).await?;
    let next_cursor = more.then(|| rows.last().map(|c| c.id.to_string())).flatten();
    let data = rows
        .into_iter()
        .map(|c| {
            let wallet = wallets.iter().find(|w| w.user_id == Some(c.id));
            Customer::of(c, wallet)
        })
        .collect();
    Ok(CustomerPage { data, next_cursor })
}
