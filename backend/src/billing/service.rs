//! Billing rules: the catalog, checkout, subscriptions, and fulfilment. Fulfilment is the one
//! path by which paid credits enter a wallet, whether the payment was confirmed by Stripe's
//! webhook or by the sandbox checkout page; each grant is keyed by the object that paid for it
//! (the checkout session, the invoice), so no payment is ever credited twice.

use chrono::{DateTime, Duration, Months, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    dto::*,
    stripe::{CheckoutRequest, GatewayError, StripeGateway},
};
use crate::{
    clock::Clock,
    credits::{
        CreditsError,
        core::{NewLot, TransferDetails},
        grants,
    },
    db,
    domain::Credits,
    domain::billing::{CheckoutStatus, SubscriptionStatus},
    domain::ledger::{LotSource, TransferKind, system},
    entities::{checkout_sessions, customers, prices, stripe_customers, subscriptions},
};

/// What went wrong, in billing's words.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("no price `{0}` is on offer")]
    UnknownPrice(String),
    #[error("you already have an active subscription; change plans in the billing portal")]
    AlreadySubscribed,
    #[error("no such checkout session")]
    SessionNotFound,
    #[error("this checkout session is {0}")]
    SessionClosed(CheckoutStatus),
    #[error("no subscription to manage")]
    NoSubscription,
    #[error("the wallet does not exist")]
    WalletNotFound,
    #[error("no Stripe customer yet: buy a pack or a plan first")]
    NoCustomer,
    #[error("Stripe is unavailable: {0}")]
    Stripe(#[from] GatewayError),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// One price of the sandbox offer: id, name, kind, interval, cents, credits, display order.
type OfferedPrice = (&'static str, &'static str, &'static str, Option<&'static str>, i64, i64, i32);

/// The seed system's offer, which sandbox mode starts with.
const SANDBOX_OFFER: [OfferedPrice; 5] = [
    ("sandbox_pack_100", "Starter pack", "one_time", None, 500, 100, 1),
    ("sandbox_pack_500", "Pro pack", "one_time", None, 2000, 500, 2),
    ("sandbox_pack_2000", "Enterprise pack", "one_time", None, 7000, 2000, 3),
    ("sandbox_plan_monthly", "Monthly plan", "recurring", Some("month"), 1500, 1000, 4),
    ("sandbox_plan_yearly", "Yearly plan", "recurring", Some("year"), 15000, 15000, 5),
];

/// Puts the seed's offer in the catalog when it is empty (sandbox mode).
pub async fn seed_sandbox_catalog(db: &DatabaseConnection, clock: &Clock) -> Result<(), BillingError> {
    if prices::Entity::find().one(db).await?.is_some() {
        return Ok(());
    }
    let now = clock.now();
    for (id, name, kind, interval, amount, credits, order) in SANDBOX_OFFER {
        let description = match interval {
            Some(every) => format!("{credits} credits every {every}"),
            None => format!("{credits} credits, never expire"),
        };
        let model = prices::Model {
            id: id.to_owned(),
            product_id: id.replace("sandbox_", "sandbox_prod_"),
            product_name: name.to_owned(),
            product_description: Some(description),
            kind: kind.to_owned(),
            interval: interval.map(str::to_owned),
            unit_amount: amount,
            currency: "usd".to_owned(),
            credits,
            rollover: false,
            active: true,
            display_order: order,
            created_at: now,
            updated_at: now,
        };
        // Another replica may seed it at the same moment.
        db::tolerate_duplicate(
            prices::Entity::insert(prices::ActiveModel::from(model)).exec_without_returning(db).await,
        )?;
    }
    Ok(())
}

/// The offer: active prices that grant credits, in display order.
pub async fn catalog(
    db: &DatabaseConnection,
    mode: &str,
    publishable_key: Option<String>,
) -> Result<CatalogResponse, BillingError> {
    let rows = prices::Entity::find()
        .filter(prices::Column::Active.eq(true))
        .filter(prices::Column::Credits.gt(0))
        .order_by_asc(prices::Column::DisplayOrder)
        .order_by_asc(prices::Column::UnitAmount)
        .all(db)
        .await?;
    let (plans, packs): (Vec<_>, Vec<_>) =
        rows.into_iter().map(CatalogPrice::from).partition(|p| p.kind == "recurring");
    Ok(CatalogResponse { mode: mode.to_owned(), publishable_key, packs, plans })
}

async fn offered_price(db: &impl ConnectionTrait, price_id: &str) -> Result<prices::Model, BillingError> {
    prices::Entity::find_by_id(price_id.to_owned())
        .filter(prices::Column::Active.eq(true))
        .filter(prices::Column::Credits.gt(0))
        .one(db)
        .await?
        .ok_or_else(|| BillingError::UnknownPrice(price_id.to_owned()))
}

/// Statuses in which a subscription still entitles its owner.
fn live_statuses() -> [&'static str; 3] {
    SubscriptionStatus::LIVE.map(SubscriptionStatus::as_str)
}

async fn live_subscription(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<subscriptions::Model>, DbErr> {
    subscriptions::Entity::find()
        .filter(subscriptions::Column::UserId.eq(user_id))
        .filter(subscriptions::Column::Status.is_in(live_statuses()))
        .order_by_desc(subscriptions::Column::CurrentPeriodEnd)
        .one(db)
        .await
}

/// Where the browser goes after a checkout: the product's own pages (checked against the allowed
/// origins by the caller), or the SPA's credits page when not given.
#[derive(Debug, Clone, Default)]
pub struct ReturnUrls {
    pub success: Option<String>,
    pub cancel: Option<String>,
}

impl ReturnUrls {
    /// Where a paid session returns; Stripe's `{CHECKOUT_SESSION_ID}` placeholder is kept for
    /// Stripe to fill, and filled here for the sandbox.
    fn success(&self, site_url: &str) -> String {
        self.success
            .clone()
            .unwrap_or_else(|| format!("{site_url}/credits?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"))
    }

    fn cancel(&self, site_url: &str) -> String {
        self.cancel.clone().unwrap_or_else(|| format!("{site_url}/credits?checkout=cancelled"))
    }
}

/// Opens a sandbox checkout session: the sandbox page at the returned URL pays or cancels it.
pub async fn create_sandbox_checkout(
    db: &DatabaseConnection,
    clock: &Clock,
    site_url: &str,
    user_id: Uuid,
    price_id: &str,
    returns: &ReturnUrls,
) -> Result<CheckoutSessionResponse, BillingError> {
    let price = offered_price(db, price_id).await?;
    let mode = if price.kind == "recurring" { "subscription" } else { "payment" };
    if mode == "subscription" && live_subscription(db, user_id).await?.is_some() {
        return Err(BillingError::AlreadySubscribed);
    }
    let id = format!("cs_sandbox_{}", Uuid::now_v7().simple());
    let url = format!("{site_url}/sandbox/checkout/{id}");
    checkout_sessions::Entity::insert(checkout_sessions::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user_id),
        price_id: Set(price.id),
        mode: Set(mode.to_owned()),
        status: Set(CheckoutStatus::Open.as_str().to_owned()),
        url: Set(url.clone()),
        created_at: Set(clock.now()),
        completed_at: Set(None),
        success_url: Set(returns.success.clone()),
        cancel_url: Set(returns.cancel.clone()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(CheckoutSessionResponse { session_id: id, url })
}

/// A checkout session with its price, for the sandbox page.
pub async fn find_session(
    db: &DatabaseConnection,
    session_id: &str,
) -> Result<(checkout_sessions::Model, prices::Model), BillingError> {
    let session = checkout_sessions::Entity::find_by_id(session_id.to_owned())
        .one(db)
        .await?
        .ok_or(BillingError::SessionNotFound)?;
    let price = prices::Entity::find_by_id(session.price_id.clone())
        .one(db)
        .await?
        .ok_or_else(|| BillingError::UnknownPrice(session.price_id.clone()))?;
    Ok((session, price))
}

/// What fulfilment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfilled {
    /// Credits were granted now, as this lot.
    Granted { lot_id: Uuid, credits: i64 },
    /// This payment was credited before: nothing changed.
    AlreadyApplied,
}

/// Grants a paid lot to a user, keyed by `reference`, at `now`; a second call with the same
/// reference changes nothing. Runs inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn grant_paid_lot(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    user_id: Uuid,
    source: LotSource,
    credits: i64,
    expires_at: Option<DateTime<Utc>>,
    reference: String,
    description: String,
    metadata: serde_json::Value,
) -> Result<Fulfilled, BillingError> {
    let (kind, from) = match source {
        LotSource::Subscription => (TransferKind::Subscription, system::SUBSCRIPTIONS),
        _ => (TransferKind::Purchase, system::PURCHASES),
    };
    let amount = Credits::new(credits).map_err(|e| DbErr::Custom(e.to_string()))?;
    let lot = NewLot {
        source,
        kind,
        from,
        amount,
        priority: source.default_priority(),
        expires_at,
        reference: reference.clone(),
    };
    let details = TransferDetails {
        description: Some(description),
        metadata: Some(metadata),
        reference: Some(reference),
        ..Default::default()
    };
    match grants::credit_lot(txn, user_id, lot, details, now).await {
        Ok(Some(lot_id)) => Ok(Fulfilled::Granted { lot_id, credits }),
        Ok(None) => Ok(Fulfilled::AlreadyApplied),
        Err(CreditsError::WalletNotFound) => Err(BillingError::WalletNotFound),
        Err(CreditsError::Database(e)) => Err(e.into()),
        Err(e) => Err(DbErr::Custom(e.to_string()).into()),
    }
}

/// Grants a credit pack bought through a checkout session (keyed by the session) at `now`.
pub async fn fulfil_pack(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    user_id: Uuid,
    price: &prices::Model,
    session_id: &str,
) -> Result<Fulfilled, BillingError> {
    grant_paid_lot(
        txn,
        now,
        user_id,
        LotSource::Purchase,
        price.credits,
        None,
        format!("stripe:checkout_session:{session_id}"),
        format!("{} ({} credits)", price.product_name, price.credits),
        serde_json::json!({ "price_id": price.id, "checkout_session": session_id }),
    )
    .await
}

/// Grants a subscription period's credits (keyed by the invoice) at `now`, expiring at the
/// period's end unless the plan rolls over.
pub async fn fulfil_invoice(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    user_id: Uuid,
    price: &prices::Model,
    invoice_id: &str,
    period_end: DateTime<Utc>,
) -> Result<Fulfilled, BillingError> {
    grant_paid_lot(
        txn,
        now,
        user_id,
        LotSource::Subscription,
        price.credits,
        (!price.rollover).then_some(period_end),
        format!("stripe:invoice:{invoice_id}"),
        format!("{}: {} credits for the period", price.product_name, price.credits),
        serde_json::json!({ "price_id": price.id, "invoice": invoice_id }),
    )
    .await
}

fn period_end(start: DateTime<Utc>, interval: Option<&str>) -> DateTime<Utc> {
    let months = if interval == Some("year") { 12 } else { 1 };
    start.checked_add_months(Months::new(months)).unwrap_or(start + Duration::days(30 * i64::from(months)))
}

/// Pays a sandbox checkout session, through the same fulfilment as Stripe's webhooks. Paying a
/// session twice grants once. Returns where the browser goes next.
pub async fn pay_sandbox_session(
    db: &DatabaseConnection,
    clock: &Clock,
    site_url: &str,
    session_id: &str,
) -> Result<String, BillingError> {
    let (session, price) = find_session(db, session_id).await?;
    let returns = ReturnUrls { success: session.success_url.clone(), cancel: session.cancel_url.clone() };
    let success = returns.success(site_url).replace("{CHECKOUT_SESSION_ID}", session_id);
    match CheckoutStatus::parse(&session.status) {
        Some(CheckoutStatus::Complete) => return Ok(success),
        Some(CheckoutStatus::Open) => {}
        Some(closed @ CheckoutStatus::Expired) => return Err(BillingError::SessionClosed(closed)),
        None => {
            let message = format!("checkout session {session_id} has the unknown status {:?}", session.status);
            return Err(BillingError::Database(DbErr::Custom(message)));
        }
    }
    let txn = db::begin_write(db).await?;
    let now = clock.now();
    let closed = checkout_sessions::Entity::update_many()
        .col_expr(checkout_sessions::Column::Status, Expr::value(CheckoutStatus::Complete.as_str()))
        .col_expr(checkout_sessions::Column::CompletedAt, Expr::value(now))
        .filter(checkout_sessions::Column::Id.eq(session_id))
        .filter(checkout_sessions::Column::Status.eq(CheckoutStatus::Open.as_str()))
        .exec(&txn)
        .await?;
    if closed.rows_affected == 0 {
        // Paid by a concurrent click.
        return Ok(success);
    }
    if session.mode == "subscription" {
        if live_subscription(&txn, session.user_id).await?.is_some() {
            return Err(BillingError::AlreadySubscribed);
        }
        let end = period_end(now, price.interval.as_deref());
        let subscription_id = format!("sub_sandbox_{}", Uuid::now_v7().simple());
        subscriptions::Entity::insert(subscriptions::ActiveModel {
            id: Set(subscription_id.clone()),
            user_id: Set(session.user_id),
            price_id: Set(price.id.clone()),
            status: Set(SubscriptionStatus::Active.as_str().to_owned()),
            current_period_start: Set(now),
            current_period_end: Set(end),
            cancel_at_period_end: Set(false),
            source_updated_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        crate::events::billing::subscription_updated(&txn, &subscription_id, now).await?;
        let invoice = format!("in_sandbox_{}", Uuid::now_v7().simple());
        fulfil_invoice(&txn, now, session.user_id, &price, &invoice, end).await?;
    } else {
        fulfil_pack(&txn, now, session.user_id, &price, session_id).await?;
    }
    crate::events::billing::checkout_completed(&txn, session_id, now).await?;
    txn.commit().await?;
    Ok(success)
}

/// Cancels a sandbox checkout session. Returns where the browser goes next.
pub async fn cancel_sandbox_session(
    db: &DatabaseConnection,
    site_url: &str,
    session_id: &str,
) -> Result<String, BillingError> {
    let (session, _) = find_session(db, session_id).await?;
    checkout_sessions::Entity::update_many()
        .col_expr(checkout_sessions::Column::Status, Expr::value(CheckoutStatus::Expired.as_str()))
        .filter(checkout_sessions::Column::Id.eq(session_id))
        .filter(checkout_sessions::Column::Status.eq(CheckoutStatus::Open.as_str()))
        .exec(db)
        .await?;
    let returns = ReturnUrls { success: None, cancel: session.cancel_url };
    Ok(returns.cancel(site_url).replace("{CHECKOUT_SESSION_ID}", session_id))
}

/// The user's current subscription (the live one, else the latest).
pub async fn subscription(db: &DatabaseConnection, user_id: Uuid) -> Result<SubscriptionResponse, BillingError> {
    let current = match live_subscription(db, user_id).await? {
        Some(s) => Some(s),
        None => {
            subscriptions::Entity::find()
                .filter(subscriptions::Column::UserId.eq(user_id))
                .order_by_desc(subscriptions::Column::UpdatedAt)
                .one(db)
                .await?
        }
    };
    let Some(sub) = current else {
        return Ok(SubscriptionResponse { subscription: None });
    };
    let price = prices::Entity::find_by_id(sub.price_id.clone()).one(db).await?;
    Ok(SubscriptionResponse { subscription: Some(SubscriptionView::new(sub, price)?) })
}

/// Sets or clears cancellation at the period's end (the sandbox portal's one action).
pub async fn set_cancel_at_period_end(
    db: &DatabaseConnection,
    clock: &Clock,
    user_id: Uuid,
    cancel: bool,
) -> Result<SubscriptionResponse, BillingError> {
    let sub = live_subscription(db, user_id).await?.ok_or(BillingError::NoSubscription)?;
    let now = clock.now();
    let txn = db::begin_write(db).await?;
    subscriptions::Entity::update_many()
        .col_expr(subscriptions::Column::CancelAtPeriodEnd, Expr::value(cancel))
        .col_expr(subscriptions::Column::SourceUpdatedAt, Expr::value(now))
        .col_expr(subscriptions::Column::UpdatedAt, Expr::value(now))
        .filter(subscriptions::Column::Id.eq(sub.id.clone()))
        .exec(&txn)
        .await?;
    crate::events::billing::subscription_updated(&txn, &sub.id, now).await?;
    txn.commit().await?;
    subscription(db, user_id).await
}

/// What a sandbox plan change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanChange {
    /// The subscription moved to the plan; its first period's credits were granted as this lot.
    Changed(Fulfilled),
    /// The subscriber is on that plan already: nothing changed.
    Unchanged,
}

/// Moves a sandbox subscriber to another plan of the catalog (the sandbox portal's plan change),
/// as Stripe does for a portal plan change that is invoiced at once: the subscription takes the
/// new price and starts a new period now, and that period's invoice grants the new plan's
/// credits through the fulfilment the `invoice.paid` webhook runs (`fulfil_invoice`). Credits of
/// the old period keep their expiry. Asking for the current plan changes nothing, so a second
/// click grants nothing more; the subscription row is locked, so two clicks at once cannot both
/// change it.
pub async fn change_sandbox_plan(
    db: &DatabaseConnection,
    clock: &Clock,
    user_id: Uuid,
    price_id: &str,
) -> Result<PlanChange, BillingError> {
    let price = offered_price(db, price_id).await?;
    if price.kind != "recurring" {
        return Err(BillingError::UnknownPrice(price_id.to_owned()));
    }
    let txn = db::begin_write(db).await?;
    let sub = subscriptions::Entity::find()
        .filter(subscriptions::Column::UserId.eq(user_id))
        .filter(subscriptions::Column::Status.is_in(live_statuses()))
        .filter(subscriptions::Column::Id.starts_with("sub_sandbox_"))
        .order_by_desc(subscriptions::Column::CurrentPeriodEnd)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(BillingError::NoSubscription)?;
    if sub.price_id == price.id {
        return Ok(PlanChange::Unchanged);
    }
    let now = clock.now();
    let end = period_end(now, price.interval.as_deref());
    subscriptions::Entity::update_many()
        .col_expr(subscriptions::Column::PriceId, Expr::value(price.id.clone()))
        .col_expr(subscriptions::Column::CurrentPeriodStart, Expr::value(now))
        .col_expr(subscriptions::Column::CurrentPeriodEnd, Expr::value(end))
        .col_expr(subscriptions::Column::CancelAtPeriodEnd, Expr::value(false))
        .col_expr(subscriptions::Column::SourceUpdatedAt, Expr::value(now))
        .col_expr(subscriptions::Column::UpdatedAt, Expr::value(now))
        .filter(subscriptions::Column::Id.eq(sub.id.clone()))
        .exec(&txn)
        .await?;
    crate::events::billing::subscription_updated(&txn, &sub.id, now).await?;
    let invoice = format!("in_sandbox_{}", Uuid::now_v7().simple());
    let fulfilled = fulfil_invoice(&txn, now, user_id, &price, &invoice, end).await?;
    txn.commit().await?;
    Ok(PlanChange::Changed(fulfilled))
}

/// Starts a new period for every live sandbox subscription (`tollgate sandbox renew`): grants
/// the period's credits through the invoice path, or ends those set to cancel. The new period
/// starts when the old one ended, or now (by `clock`) if that is later.
pub async fn renew_sandbox_subscriptions(
    db: &DatabaseConnection,
    clock: &Clock,
) -> Result<(usize, usize), BillingError> {
    let live = subscriptions::Entity::find()
        .filter(subscriptions::Column::Status.is_in(live_statuses()))
        .filter(subscriptions::Column::Id.starts_with("sub_sandbox_"))
        .all(db)
        .await?;
    let (mut renewed, mut ended) = (0, 0);
    for sub in live {
        let now = clock.now();
        let txn = db::begin_write(db).await?;
        if sub.cancel_at_period_end {
            subscriptions::Entity::update_many()
                .col_expr(subscriptions::Column::Status, Expr::value(SubscriptionStatus::Canceled.as_str()))
                .col_expr(subscriptions::Column::SourceUpdatedAt, Expr::value(now))
                .col_expr(subscriptions::Column::UpdatedAt, Expr::value(now))
                .filter(subscriptions::Column::Id.eq(sub.id.clone()))
                .exec(&txn)
                .await?;
            crate::events::billing::subscription_updated(&txn, &sub.id, now).await?;
            txn.commit().await?;
            ended += 1;
            continue;
        }
        let price = prices::Entity::find_by_id(sub.price_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| BillingError::UnknownPrice(sub.price_id.clone()))?;
        let start = sub.current_period_end.max(now);
        let end = period_end(start, price.interval.as_deref());
        subscriptions::Entity::update_many()
            .col_expr(subscriptions::Column::CurrentPeriodStart, Expr::value(start))
            .col_expr(subscriptions::Column::CurrentPeriodEnd, Expr::value(end))
            .col_expr(subscriptions::Column::SourceUpdatedAt, Expr::value(now))
            .col_expr(subscriptions::Column::UpdatedAt, Expr::value(now))
            .filter(subscriptions::Column::Id.eq(sub.id.clone()))
            .exec(&txn)
            .await?;
        crate::events::billing::subscription_updated(&txn, &sub.id, now).await?;
        let invoice = format!("in_sandbox_{}", Uuid::now_v7().simple());
        fulfil_invoice(&txn, now, sub.user_id, &price, &invoice, end).await?;
        txn.commit().await?;
        renewed += 1;
    }
    Ok((renewed, ended))
}

/// The user's Stripe customer, created once (Stripe de-duplicates by the user-derived key, and a
/// racing second request finds the row the first one wrote).
pub async fn ensure_customer(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: &StripeGateway,
    user_id: Uuid,
) -> Result<String, BillingError> {
    if let Some(existing) = stripe_customers::Entity::find_by_id(user_id).one(db).await? {
        return Ok(existing.stripe_customer_id);
    }
    let owner = customers::Entity::find_by_id(user_id).one(db).await?.ok_or(BillingError::WalletNotFound)?;
    let customer = gateway.create_customer(user_id, owner.email.as_deref()).await?;
    let inserted = stripe_customers::Entity::insert(stripe_customers::ActiveModel {
        user_id: Set(user_id),
        stripe_customer_id: Set(customer.clone()),
        created_at: Set(clock.now()),
    })
    .exec_without_returning(db)
    .await;
    // A concurrent request for the same user got there first; Stripe returned the same customer.
    db::tolerate_duplicate(inserted)?;
    Ok(customer)
}

/// Opens a Stripe checkout session for a pack (`payment`) or a plan (`subscription`).
#[allow(clippy::too_many_arguments)]
pub async fn create_stripe_checkout(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: &StripeGateway,
    site_url: &str,
    user_id: Uuid,
    price_id: &str,
    idempotency_key: Option<&str>,
    returns: &ReturnUrls,
) -> Result<CheckoutSessionResponse, BillingError> {
    let price = offered_price(db, price_id).await?;
    let subscription = price.kind == "recurring";
    if subscription && live_subscription(db, user_id).await?.is_some() {
        return Err(BillingError::AlreadySubscribed);
    }
    let customer = ensure_customer(db, clock, gateway, user_id).await?;
    let key = match idempotency_key {
        // Stripe takes at most 255 characters, as does the caller's key: a key too long to
        // prefix is sent as its hash.
        Some(key) => match format!("tollgate-checkout-{user_id}-{key}") {
            whole if whole.len() <= 255 => whole,
            _ => format!("tollgate-checkout-{user_id}-sha256-{}", crate::auth::service::hash_secret(key)),
        },
        None => format!("tollgate-checkout-{}", Uuid::now_v7()),
    };
    let (id, url) = gateway
        .create_checkout_session(CheckoutRequest {
            customer: &customer,
            price_id: &price.id,
            subscription,
            user_id,
            success_url: returns.success(site_url),
            cancel_url: returns.cancel(site_url),
            idempotency_key: key,
        })
        .await?;
    let inserted = checkout_sessions::Entity::insert(checkout_sessions::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user_id),
        price_id: Set(price.id),
        mode: Set(if subscription { "subscription" } else { "payment" }.to_owned()),
        status: Set(CheckoutStatus::Open.as_str().to_owned()),
        url: Set(url.clone()),
        created_at: Set(clock.now()),
        completed_at: Set(None),
        success_url: Set(returns.success.clone()),
        cancel_url: Set(returns.cancel.clone()),
    })
    .exec_without_returning(db)
    .await;
    // The same idempotent request again: Stripe returned the same session.
    db::tolerate_duplicate(inserted)?;
    Ok(CheckoutSessionResponse { session_id: id, url })
}

/// A Stripe billing portal session for the user's customer.
pub async fn stripe_portal_link(
    db: &DatabaseConnection,
    gateway: &StripeGateway,
    user_id: Uuid,
    return_url: &str,
) -> Result<PortalLinkResponse, BillingError> {
    let customer = stripe_customers::Entity::find_by_id(user_id).one(db).await?.ok_or(BillingError::NoCustomer)?;
    let url = gateway.create_portal_session(&customer.stripe_customer_id, return_url).await?;
    Ok(PortalLinkResponse { url })
}

/// The credits a Stripe price grants: its own `credits` metadata, else its product's
/// `includedCredits` (as the seed read it).
fn credits_of(price: &stripe_shared::Price, product: Option<&stripe_shared::Product>) -> Option<i64> {
    let parse = |v: &String| v.trim().parse::<i64>().ok().filter(|c| (0..=Credits::MAX_PER_REQUEST).contains(c));
    price
        .metadata
        .get("credits")
        .and_then(parse)
        .or_else(|| product.and_then(|p| p.metadata.get("includedCredits")).and_then(parse))
}

/// Mirrors one Stripe price into the catalog at `now`. `product` overrides the (possibly
/// unexpanded) product on the price.
pub async fn upsert_stripe_price(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    price: &stripe_shared::Price,
    product: Option<&stripe_shared::Product>,
) -> Result<(), BillingError> {
    let product = product.or_else(|| price.product.as_object());
    let existing = prices::Entity::find_by_id(price.id.to_string()).one(db).await?;
    let credits = credits_of(price, product).or(existing.as_ref().map(|p| p.credits)).unwrap_or(0);
    let name = product
        .map(|p| p.name.clone())
        .or_else(|| existing.as_ref().map(|p| p.product_name.clone()))
        .unwrap_or_else(|| price.product.id().to_string());
    let description = product
        .and_then(|p| p.description.clone())
        .or_else(|| existing.as_ref().and_then(|p| p.product_description.clone()));
    let rollover = price.metadata.get("rollover").is_some_and(|v| v == "true")
        || product.is_some_and(|p| p.metadata.get("rollover").is_some_and(|v| v == "true"));
    let model = prices::ActiveModel {
        id: Set(price.id.to_string()),
        product_id: Set(price.product.id().to_string()),
        product_name: Set(name),
        product_description: Set(description),
        kind: Set(if price.recurring.is_some() { "recurring" } else { "one_time" }.to_owned()),
        interval: Set(price.recurring.as_ref().map(|r| r.interval.as_str().to_owned())),
        unit_amount: Set(price.unit_amount.unwrap_or(0)),
        currency: Set(price.currency.to_string()),
        credits: Set(credits),
        rollover: Set(rollover),
        active: Set(price.active && product.is_none_or(|p| p.active)),
        display_order: Set(existing.as_ref().map(|p| p.display_order).unwrap_or(0)),
        created_at: Set(existing.as_ref().map(|p| p.created_at).unwrap_or(now)),
        updated_at: Set(now),
    };
    if existing.is_some() {
        prices::Entity::update(model).exec(db).await?;
    } else {
        prices::Entity::insert(model).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Applies a product's new name, description and availability to its prices.
pub async fn update_stripe_product(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    product: &stripe_shared::Product,
) -> Result<(), BillingError> {
    let mut update = prices::Entity::update_many()
        .col_expr(prices::Column::ProductName, Expr::value(product.name.clone()))
        .col_expr(prices::Column::ProductDescription, Expr::value(product.description.clone()))
        .col_expr(prices::Column::UpdatedAt, Expr::value(now));
    if !product.active {
        update = update.col_expr(prices::Column::Active, Expr::value(false));
    }
    update.filter(prices::Column::ProductId.eq(product.id.as_str())).exec(db).await?;
    Ok(())
}

/// Takes prices off the offer (a deleted price, or every price of a deleted product).
pub async fn deactivate_prices(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    column: prices::Column,
    value: &str,
) -> Result<(), BillingError> {
    prices::Entity::update_many()
        .col_expr(prices::Column::Active, Expr::value(false))
        .col_expr(prices::Column::UpdatedAt, Expr::value(now))
        .filter(column.eq(value))
        .exec(db)
        .await?;
    Ok(())
}

/// Mirrors every active Stripe price (all pages) and deactivates what Stripe no longer offers.
/// Returns (prices mirrored, prices deactivated).
pub async fn sync_prices(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: &StripeGateway,
) -> Result<(usize, u64), BillingError> {
    let listed = gateway.list_active_prices().await?;
    let txn = db::begin_write(db).await?;
    let now = clock.now();
    for price in &listed {
        upsert_stripe_price(&txn, now, price, None).await?;
    }
    let ids: Vec<String> = listed.iter().map(|p| p.id.to_string()).collect();
    let gone = prices::Entity::update_many()
        .col_expr(prices::Column::Active, Expr::value(false))
        .col_expr(prices::Column::UpdatedAt, Expr::value(now))
        .filter(prices::Column::Active.eq(true))
        .filter(prices::Column::Id.is_not_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok((listed.len(), gone.rows_affected))
}

/// A page of the Stripe event inbox, newest first.
pub async fn list_events(
    db: &DatabaseConnection,
    status: Option<String>,
    cursor: Option<String>,
    limit: u64,
) -> Result<StripeEventPage, BillingError> {
    use crate::entities::stripe_events;
    use sea_orm::Condition;
    let mut select = stripe_events::Entity::find();
    if let Some(status) = status {
        select = select.filter(stripe_events::Column::Status.eq(status));
    }
    if let Some((at, id)) = cursor.as_deref().and_then(decode_event_cursor) {
        select =
            select.filter(Condition::any().add(stripe_events::Column::ReceivedAt.lt(at)).add(
                Condition::all().add(stripe_events::Column::ReceivedAt.eq(at)).add(stripe_events::Column::Id.lt(id)),
            ));
    }
    let mut rows = select
        .order_by_desc(stripe_events::Column::ReceivedAt)
        .order_by_desc(stripe_events::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|e| encode_event_cursor(e.received_at, &e.id))
    } else {
        None
    };
    let events = rows
        .into_iter()
        .map(|e| StripeEventView {
            id: e.id,
            event_type: e.event_type,
            created_at: e.created_at,
            received_at: e.received_at,
            processed_at: e.processed_at,
            attempts: e.attempts,
            last_error: e.last_error,
            status: e.status,
        })
        .collect();
    Ok(StripeEventPage { events, next_cursor })
}

/// Whether the inbox holds this event.
pub async fn event_exists(db: &DatabaseConnection, id: &str) -> Result<bool, BillingError> {
    Ok(crate::entities::stripe_events::Entity::find_by_id(id.to_owned()).one(db).await?.is_some())
}

fn encode_event_cursor(at: DateTime<Utc>, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.to_rfc3339()))
}

fn decode_event_cursor(cursor: &str) -> Option<(DateTime<Utc>, String)> {
    use base64::Engine;
    let raw = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc), id.to_owned()))
}
