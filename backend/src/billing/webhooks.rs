//! Stripe webhooks. The signature over the raw body is verified (with Stripe's 5-minute
//! tolerance) before anything is parsed; each verified event is stored by its id in an inbox and
//! applied in the same transaction as its effects, so a repeated delivery changes nothing and a
//! failed one leaves its error for the operator and answers 500 for Stripe to retry. A signed
//! event whose envelope cannot be read (not JSON, no id or type, too long to store) answers 400
//! `invalid_payload`; one whose object cannot be read is kept as failed and answers the same.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QuerySelect,
    sea_query::{Expr, OnConflict},
};
use stripe_shared::{CheckoutSession, CheckoutSessionMode, CheckoutSessionPaymentStatus};
use stripe_webhook::{EventObject, Webhook, WebhookError};
use uuid::Uuid;

use super::{
    service::{self, BillingError, Fulfilled},
    stripe::StripeGateway,
};
use crate::{
    clock::Clock,
    credits::{
        CreditsError,
        core::{NewLot, TakeBack, TransferDetails},
        grants, store,
    },
    db,
    domain::{
        Credits,
        billing::{CheckoutStatus, DisputeStatus, SubscriptionStatus},
        ledger::{LotSource, TransferKind, system},
    },
    entities::{disputes, payments, prices, stripe_customers, stripe_events, subscriptions},
};

/// Why a delivery was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookFailure {
    #[error("the Stripe-Signature header is missing")]
    MissingSignature,
    #[error("the signature does not match this endpoint's secret")]
    BadSignature,
    #[error("the signature is older than Stripe's tolerance")]
    StaleSignature,
    #[error("webhooks are not configured: set STRIPE_WEBHOOK_SECRET")]
    NotConfigured,
    /// Signed by Stripe, but not an event Tollgate can read: retrying cannot help.
    #[error("the event cannot be read: {0}")]
    InvalidPayload(String),
    /// Two events about one subscription carry the same second: only Stripe knows which is newer.
    #[error("subscription {0} has two events in the same second")]
    SubscriptionTie(String),
    #[error("the event could not be applied: {0}")]
    Apply(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<CreditsError> for WebhookFailure {
    fn from(err: CreditsError) -> Self {
        match err {
            CreditsError::Database(e) => Self::Database(e),
            CreditsError::WalletNotFound => Self::Apply("the paying user has no wallet".to_owned()),
            other => Self::Apply(other.to_string()),
        }
    }
}

impl From<BillingError> for WebhookFailure {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::Database(e) => Self::Database(e),
            other => Self::Apply(other.to_string()),
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Applied now.
    Processed,
    /// Stored and acknowledged: Tollgate does not act on this type.
    Ignored,
    /// Seen before: nothing changed.
    Duplicate,
}

impl Delivery {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Stripe's seconds as a time; one out of range (it never is) reads as now.
fn timestamp(seconds: i64, clock: &Clock) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap_or_else(|| clock.now())
}

/// The longest event id and type the inbox stores (its columns' sizes).
const MAX_EVENT_ID: usize = 255;
const MAX_EVENT_TYPE: usize = 128;

/// Reads the parts of an event's envelope the inbox keeps; what cannot be kept is refused.
fn read_envelope(payload: &str, clock: &Clock) -> Result<(String, String, DateTime<Utc>), WebhookFailure> {
    let envelope: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| WebhookFailure::InvalidPayload(format!("the body is not JSON: {e}")))?;
    let text = |field: &str, max: usize| -> Result<String, WebhookFailure> {
        let value = envelope[field].as_str().unwrap_or_default();
        if value.is_empty() {
            return Err(WebhookFailure::InvalidPayload(format!("the event has no `{field}`")));
        }
        if value.chars().count() > max || value.chars().any(char::is_control) {
            return Err(WebhookFailure::InvalidPayload(format!(
                "the event's `{field}` is not a Stripe {field} (at most {max} printable characters)"
            )));
        }
        Ok(value.to_owned())
    };
    let id = text("id", MAX_EVENT_ID)?;
    let event_type = text("type", MAX_EVENT_TYPE)?;
    Ok((id, event_type, timestamp(envelope["created"].as_i64().unwrap_or_default(), clock)))
}

/// Verifies and applies one delivery. `gateway` breaks ties between subscription events of the
/// same second by asking Stripe for the subscription as it is now. The signature's age is
/// judged by `clock`, as is every time the event's effects record.
pub async fn receive(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: Option<&StripeGateway>,
    secret: Option<&str>,
    signature: Option<&str>,
    payload: &str,
) -> Result<Delivery, WebhookFailure> {
    let secret = secret.ok_or(WebhookFailure::NotConfigured)?;
    let signature = signature.ok_or(WebhookFailure::MissingSignature)?;
    let now = clock.now().timestamp();
    let parsed = match Webhook::construct_event_with_timestamp(payload, signature, secret, now) {
        Ok(event) => Ok(event.data.object),
        Err(WebhookError::BadTimestamp(_)) => return Err(WebhookFailure::StaleSignature),
        Err(WebhookError::BadParse(e)) => Err(e),
        Err(_) => return Err(WebhookFailure::BadSignature),
    };
    // The signature is good: the payload is Stripe's. Its envelope is read as plain JSON so that
    // even an event async-stripe cannot parse is kept in the inbox.
    let (id, event_type, created) = read_envelope(payload, clock)?;
    let inbox = InboxEntry { id, event_type, created, payload: payload.to_owned() };
    process(db, clock, gateway, &inbox, parsed).await
}

/// Opens the event's transaction with its inbox row locked; `None` when it was applied before.
async fn open_inbox(
    db: &DatabaseConnection,
    clock: &Clock,
    inbox: &InboxEntry,
) -> Result<Option<DatabaseTransaction>, WebhookFailure> {
    let txn = db::begin_write(db).await?;
    stripe_events::Entity::insert(stripe_events::ActiveModel {
        id: Set(inbox.id.clone()),
        event_type: Set(inbox.event_type.clone()),
        created_at: Set(inbox.created),
        payload: Set(inbox.payload.clone()),
        received_at: Set(clock.now()),
        processed_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        status: Set("received".to_owned()),
    })
    .on_conflict(OnConflict::column(stripe_events::Column::Id).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    // Locks the row: a concurrent delivery of the same event waits here, then sees it done.
    let stored = stripe_events::Entity::find_by_id(inbox.id.clone())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| WebhookFailure::Apply("the inbox lost the event".to_owned()))?;
    if stored.processed_at.is_some() {
        txn.rollback().await?;
        return Ok(None);
    }
    Ok(Some(txn))
}

/// Applies a stored event once. A subscription event that ties with the stored state on its
/// second is applied as Stripe's current copy of the subscription, fetched outside any
/// transaction.
async fn process(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: Option<&StripeGateway>,
    inbox: &InboxEntry,
    parsed: Result<EventObject, String>,
) -> Result<Delivery, WebhookFailure> {
    let Some(txn) = open_inbox(db, clock, inbox).await? else { return Ok(Delivery::Duplicate) };
    let outcome = match parsed {
        Ok(object) => apply(&txn, clock, object, inbox.created, gateway.is_some()).await,
        Err(parse_error) if handled_type(&inbox.event_type) => Err(WebhookFailure::InvalidPayload(parse_error)),
        Err(_) => Ok(Delivery::Ignored),
    };
    let (Err(WebhookFailure::SubscriptionTie(subscription_id)), Some(gateway)) = (&outcome, gateway) else {
        return finish(db, clock, txn, inbox, outcome).await;
    };
    let subscription_id = subscription_id.clone();
    txn.rollback().await?;
    let current = gateway.retrieve_subscription(&subscription_id).await;
    let Some(txn) = open_inbox(db, clock, inbox).await? else { return Ok(Delivery::Duplicate) };
    let outcome = match current {
        Ok(current) => mirror_subscription(&txn, clock, &current, inbox.created, Source::Fetched).await,
        Err(e) => Err(WebhookFailure::Apply(format!("reading subscription {subscription_id} from Stripe: {e}"))),
    };
    finish(db, clock, txn, inbox, outcome).await
}

/// What the inbox keeps of an event, so a failure can be recorded after its rollback.
struct InboxEntry {
    id: String,
    event_type: String,
    created: DateTime<Utc>,
    payload: String,
}

/// Records how applying went, in the event's transaction on success, or on its own after a
/// rollback on failure.
async fn finish(
    db: &DatabaseConnection,
    clock: &Clock,
    txn: DatabaseTransaction,
    inbox: &InboxEntry,
    outcome: Result<Delivery, WebhookFailure>,
) -> Result<Delivery, WebhookFailure> {
    let id = inbox.id.as_str();
    match outcome {
        Ok(delivery) => {
            let status = delivery.as_str();
            stripe_events::Entity::update_many()
                .col_expr(stripe_events::Column::Status, Expr::value(status))
                .col_expr(stripe_events::Column::ProcessedAt, Expr::value(clock.now()))
                .col_expr(stripe_events::Column::LastError, Expr::value(Option::<String>::None))
                .col_expr(
                    stripe_events::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(Expr::col(stripe_events::Column::Attempts), 1),
                )
                .filter(stripe_events::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Ok(delivery)
        }
        Err(failure) => {
            txn.rollback().await?;
            // The rollback took the inbox row with it: write it again, with the error.
            stripe_events::Entity::insert(stripe_events::ActiveModel {
                id: Set(id.to_owned()),
                event_type: Set(inbox.event_type.clone()),
                created_at: Set(inbox.created),
                payload: Set(inbox.payload.clone()),
                received_at: Set(clock.now()),
                processed_at: Set(None),
                attempts: Set(0),
                last_error: Set(None),
                status: Set("failed".to_owned()),
            })
            .on_conflict(OnConflict::column(stripe_events::Column::Id).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
            stripe_events::Entity::update_many()
                .col_expr(stripe_events::Column::Status, Expr::value("failed"))
                .col_expr(stripe_events::Column::LastError, Expr::value(failure.to_string()))
                .col_expr(
                    stripe_events::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(Expr::col(stripe_events::Column::Attempts), 1),
                )
                .filter(stripe_events::Column::Id.eq(id))
                .filter(stripe_events::Column::ProcessedAt.is_null())
                .exec(db)
                .await?;
            Err(failure)
        }
    }
}

fn handled_type(event_type: &str) -> bool {
    event_type.starts_with("checkout.session.")
        || event_type == "invoice.paid"
        || event_type.starts_with("customer.subscription.")
        || event_type == "charge.refunded"
        || event_type.starts_with("charge.dispute.")
        || event_type.starts_with("price.")
        || event_type.starts_with("product.")
}

/// Re-applies a stored event that failed (admin). Its signature was verified on receipt.
pub async fn retry(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: Option<&StripeGateway>,
    id: &str,
) -> Result<Delivery, WebhookFailure> {
    let stored = stripe_events::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| WebhookFailure::Apply(format!("no event {id}")))?;
    let parsed = Webhook::insecure(&stored.payload).map(|event| event.data.object).map_err(|e| e.to_string());
    let inbox = InboxEntry {
        id: stored.id,
        event_type: stored.event_type,
        created: stored.created_at,
        payload: stored.payload,
    };
    process(db, clock, gateway, &inbox, parsed).await
}

async fn apply(
    txn: &DatabaseTransaction,
    clock: &Clock,
    object: EventObject,
    created: DateTime<Utc>,
    can_fetch: bool,
) -> Result<Delivery, WebhookFailure> {
    let event = Source::Event { can_fetch };
    match object {
        EventObject::CheckoutSessionCompleted(session) | EventObject::CheckoutSessionAsyncPaymentSucceeded(session) => {
            checkout_paid(txn, clock, &session).await
        }
        EventObject::CheckoutSessionAsyncPaymentFailed(_) => Ok(Delivery::Processed),
        EventObject::InvoicePaid(invoice) => invoice_paid(txn, clock, &invoice).await,
        EventObject::CustomerSubscriptionCreated(sub) | EventObject::CustomerSubscriptionUpdated(sub) => {
            mirror_subscription(txn, clock, &sub, created, event).await
        }
        EventObject::CustomerSubscriptionDeleted(sub) => {
            mirror_subscription(txn, clock, &sub, created, Source::DeletedEvent { can_fetch }).await
        }
        EventObject::ChargeRefunded(charge) => charge_refunded(txn, clock, &charge).await,
        EventObject::ChargeDisputeCreated(dispute) => dispute_created(txn, clock, &dispute).await,
        EventObject::ChargeDisputeClosed(dispute) => dispute_closed(txn, clock, &dispute).await,
        EventObject::PriceCreated(price) | EventObject::PriceUpdated(price) => {
            service::upsert_stripe_price(txn, clock.now(), &price, None).await?;
            Ok(Delivery::Processed)
        }
        EventObject::PriceDeleted(price) => {
            service::deactivate_prices(txn, clock.now(), prices::Column::Id, price.id.as_str()).await?;
            Ok(Delivery::Processed)
        }
        EventObject::ProductCreated(product) | EventObject::ProductUpdated(product) => {
            service::update_stripe_product(txn, clock.now(), &product).await?;
            Ok(Delivery::Processed)
        }
        EventObject::ProductDeleted(product) => {
            service::deactivate_prices(txn, clock.now(), prices::Column::ProductId, product.id.as_str()).await?;
            Ok(Delivery::Processed)
        }
        _ => Ok(Delivery::Ignored),
    }
}

async fn user_for_customer(txn: &impl ConnectionTrait, customer: Option<&str>) -> Result<Option<Uuid>, DbErr> {
    let Some(customer) = customer else { return Ok(None) };
    Ok(stripe_customers::Entity::find()
        .filter(stripe_customers::Column::StripeCustomerId.eq(customer))
        .one(txn)
        .await?
        .map(|c| c.user_id))
}

async fn local_price(txn: &impl ConnectionTrait, price_id: &str) -> Result<prices::Model, WebhookFailure> {
    prices::Entity::find_by_id(price_id.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| WebhookFailure::Apply(format!("price {price_id} is not in the catalog: run sync-prices")))
}

async fn record_payment(
    txn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    payment_intent: Option<String>,
    user_id: Uuid,
    fulfilled: &Fulfilled,
    amount: i64,
    currency: &str,
) -> Result<(), DbErr> {
    let (Some(payment_intent), Fulfilled::Granted { lot_id, credits }) = (payment_intent, fulfilled) else {
        return Ok(());
    };
    payments::Entity::insert(payments::ActiveModel {
        id: Set(payment_intent),
        user_id: Set(user_id),
        lot_id: Set(*lot_id),
        credits: Set(*credits),
        amount: Set(amount),
        currency: Set(currency.to_owned()),
        clawed_back: Set(0),
        created_at: Set(now),
    })
    .on_conflict(OnConflict::column(payments::Column::Id).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

async fn checkout_paid(
    txn: &DatabaseTransaction,
    clock: &Clock,
    session: &CheckoutSession,
) -> Result<Delivery, WebhookFailure> {
    if session.payment_status != CheckoutSessionPaymentStatus::Paid {
        // Completed but not yet paid (a delayed method): async_payment_succeeded grants it.
        return Ok(Delivery::Processed);
    }
    let session_id = session.id.as_str();
    let metadata = session.metadata.clone().unwrap_or_default();
    let user_id = match session.client_reference_id.as_deref().or(metadata.get("user_id").map(String::as_str)) {
        Some(raw) => raw.parse::<Uuid>().ok(),
        None => user_for_customer(txn, session.customer.as_ref().map(|c| c.id().as_str())).await?,
    }
    .ok_or_else(|| WebhookFailure::Apply(format!("checkout session {session_id} names no Tollgate user")))?;
    checkout_sessions_complete(txn, clock.now(), session_id).await?;
    if session.mode != CheckoutSessionMode::Payment {
        // A plan's credits come with each paid invoice.
        return Ok(Delivery::Processed);
    }
    let price_id = metadata
        .get("price_id")
        .ok_or_else(|| WebhookFailure::Apply(format!("checkout session {session_id} carries no price_id")))?;
    let price = local_price(txn, price_id).await?;
    let fulfilled = service::fulfil_pack(txn, clock.now(), user_id, &price, session_id).await?;
    let payment_intent = session.payment_intent.as_ref().map(|p| p.id().to_string());
    let currency = session.currency.as_ref().map(|c| c.to_string()).unwrap_or_else(|| price.currency.clone());
    record_payment(
        txn,
        clock.now(),
        payment_intent,
        user_id,
        &fulfilled,
        session.amount_total.unwrap_or(price.unit_amount),
        &currency,
    )
    .await?;
    Ok(Delivery::Processed)
}

async fn checkout_sessions_complete(
    txn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    session_id: &str,
) -> Result<(), DbErr> {
    let completed = crate::entities::checkout_sessions::Entity::update_many()
        .col_expr(crate::entities::checkout_sessions::Column::Status, Expr::value(CheckoutStatus::Complete.as_str()))
        .col_expr(crate::entities::checkout_sessions::Column::CompletedAt, Expr::value(now))
        .filter(crate::entities::checkout_sessions::Column::Id.eq(session_id))
        .filter(crate::entities::checkout_sessions::Column::Status.ne(CheckoutStatus::Complete.as_str()))
        .exec(txn)
        .await?;
    // Completed now, not by an earlier event of the same checkout.
    if completed.rows_affected == 1 {
        crate::events::billing::checkout_completed(txn, session_id, now).await?;
    }
    Ok(())
}

async fn invoice_paid(
    txn: &DatabaseTransaction,
    clock: &Clock,
    invoice: &stripe_shared::Invoice,
) -> Result<Delivery, WebhookFailure> {
    let invoice_id = invoice.id.as_ref().map(|i| i.to_string()).unwrap_or_default();
    let subscription_details = invoice.parent.as_ref().and_then(|p| p.subscription_details.as_ref());
    let Some(line) = invoice.lines.data.iter().find_map(|line| {
        let price = line.pricing.as_ref()?.price_details.as_ref()?.price.id().to_string();
        Some((price, line.period.end))
    }) else {
        return Ok(Delivery::Ignored);
    };
    if subscription_details.is_none() && invoice.subscription.is_none() {
        // Not a subscription invoice: nothing to grant.
        return Ok(Delivery::Ignored);
    }
    let from_metadata = subscription_details
        .and_then(|d| d.metadata.as_ref())
        .and_then(|m| m.get("user_id"))
        .and_then(|raw| raw.parse::<Uuid>().ok());
    let user_id = match from_metadata {
        Some(id) => Some(id),
        None => user_for_customer(txn, invoice.customer.as_ref().map(|c| c.id().as_str())).await?,
    }
    .ok_or_else(|| WebhookFailure::Apply(format!("invoice {invoice_id} belongs to no Tollgate user")))?;
    let price = local_price(txn, &line.0).await?;
    let period_end = timestamp(line.1, clock);
    let fulfilled = service::fulfil_invoice(txn, clock.now(), user_id, &price, &invoice_id, period_end).await?;
    let payment_intent = invoice
        .payments
        .as_ref()
        .and_then(|p| p.data.iter().find_map(|pay| pay.payment.payment_intent.as_ref()))
        .map(|p| p.id().to_string());
    let currency = invoice.currency.to_string();
    record_payment(txn, clock.now(), payment_intent, user_id, &fulfilled, invoice.amount_paid, &currency).await?;
    Ok(Delivery::Processed)
}

/// Where a subscription's state comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A `customer.subscription.created` or `.updated` event; `can_fetch` when Stripe can be asked.
    Event { can_fetch: bool },
    /// A `customer.subscription.deleted` event.
    DeletedEvent { can_fetch: bool },
    /// Stripe's copy, read now: the newest state there is.
    Fetched,
}

async fn mirror_subscription(
    txn: &DatabaseTransaction,
    clock: &Clock,
    sub: &stripe_shared::Subscription,
    created: DateTime<Utc>,
    source: Source,
) -> Result<Delivery, WebhookFailure> {
    let id = sub.id.as_str().to_owned();
    let user_id = match sub.metadata.get("user_id").and_then(|raw| raw.parse::<Uuid>().ok()) {
        Some(id) => id,
        None => user_for_customer(txn, Some(sub.customer.id().as_str()))
            .await?
            .ok_or_else(|| WebhookFailure::Apply(format!("subscription {id} belongs to no Tollgate user")))?,
    };
    let item =
        sub.items.data.first().ok_or_else(|| WebhookFailure::Apply(format!("subscription {id} has no items")))?;
    let status = if matches!(source, Source::DeletedEvent { .. }) {
        SubscriptionStatus::Canceled
    } else {
        // A status Stripe added after this server was written is refused (and kept in the inbox
        // as failed), not stored under a name the rest of the server does not know.
        SubscriptionStatus::parse(sub.status.as_str()).ok_or_else(|| {
            WebhookFailure::Apply(format!("subscription {id} has the unknown status `{}`", sub.status.as_str()))
        })?
    };
    let existing = subscriptions::Entity::find_by_id(id.clone()).lock_exclusive().one(txn).await?;
    if let Some(stored) = &existing {
        if stored.source_updated_at > created {
            // An older event than what is stored: it must not overwrite newer state.
            return Ok(Delivery::Processed);
        }
        if stored.source_updated_at == created {
            // Stripe stamps events in whole seconds and sends them in any order (`created`
            // incomplete and `updated` active together): the second alone cannot say which is newer.
            match source {
                Source::Fetched => {}
                Source::Event { can_fetch: true } | Source::DeletedEvent { can_fetch: true } => {
                    return Err(WebhookFailure::SubscriptionTie(id));
                }
                // Without Stripe to ask: a subscription never goes back to `incomplete`, and a
                // canceled one never comes back.
                Source::Event { can_fetch: false } | Source::DeletedEvent { can_fetch: false } => {
                    let stored_status = SubscriptionStatus::parse(&stored.status);
                    let incomplete = Some(SubscriptionStatus::Incomplete);
                    if (status == SubscriptionStatus::Incomplete && stored_status != incomplete)
                        || stored_status == Some(SubscriptionStatus::Canceled)
                    {
                        return Ok(Delivery::Processed);
                    }
                }
            }
        }
    }
    let now = clock.now();
    let model = subscriptions::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user_id),
        price_id: Set(item.price.id.to_string()),
        status: Set(status.as_str().to_owned()),
        current_period_start: Set(timestamp(item.current_period_start, clock)),
        current_period_end: Set(timestamp(item.current_period_end, clock)),
        cancel_at_period_end: Set(sub.cancel_at_period_end),
        source_updated_at: Set(created),
        created_at: Set(existing.as_ref().map(|s| s.created_at).unwrap_or(now)),
        updated_at: Set(now),
    };
    if existing.is_some() {
        subscriptions::Entity::update(model).exec(txn).await?;
    } else {
        subscriptions::Entity::insert(model).exec_without_returning(txn).await?;
    }
    crate::events::billing::subscription_updated(txn, &id, now).await?;
    Ok(Delivery::Processed)
}

async fn payment_for(
    txn: &impl ConnectionTrait,
    payment_intent: Option<String>,
) -> Result<Option<payments::Model>, DbErr> {
    let Some(id) = payment_intent else { return Ok(None) };
    payments::Entity::find_by_id(id).lock_exclusive().one(txn).await
}

/// The lot a payment bought and the lots disputes of it gave back: the credits that are this
/// payment's, wherever they are now.
async fn payment_lots(txn: &impl ConnectionTrait, payment: &payments::Model) -> Result<Vec<Uuid>, DbErr> {
    let returned: Vec<String> = disputes::Entity::find()
        .filter(disputes::Column::PaymentId.eq(payment.id.clone()))
        .filter(disputes::Column::Status.is_in(DisputeStatus::RETURNED.map(DisputeStatus::as_str)))
        .all(txn)
        .await?
        .into_iter()
        .map(|d| returned_reference(&d.id))
        .collect();
    let mut ids = vec![payment.lot_id];
    ids.extend(store::lots_by_reference(txn, returned).await?);
    Ok(ids)
}

/// Takes back from the wallet that bought a payment what a refund or a dispute stands for
/// (`share` credits): never credits that already expired, nor what was taken back before; the
/// paid lot's unspent credits first, then the wallet's other lots; what cannot be found becomes
/// debt. Returns what was taken and the transfer that took it.
#[expect(clippy::too_many_arguments, reason = "the payment and the transfer's parts")]
async fn take_back(
    txn: &DatabaseTransaction,
    payment: &payments::Model,
    share: i64,
    cumulative: bool,
    kind: TransferKind,
    to: Uuid,
    description: String,
    now: DateTime<Utc>,
) -> Result<(i64, Option<Uuid>), WebhookFailure> {
    let take = TakeBack {
        paid_lot: payment.lot_id,
        payment_lots: payment_lots(txn, payment).await?,
        paid_credits: payment.credits,
        share,
        taken_before: payment.clawed_back,
        cumulative,
        to,
        kind,
        details: TransferDetails {
            description: Some(description),
            reference: Some(payment.id.clone()),
            ..Default::default()
        },
    };
    Ok(grants::take_back(txn, payment.user_id, take, now).await?)
}

/// The credits a share of a payment's money stands for, rounded down.
fn credits_for(payment: &payments::Model, money: i64) -> i64 {
    if payment.amount <= 0 {
        return payment.credits;
    }
    let share = i128::from(payment.credits) * i128::from(money.clamp(0, payment.amount)) / i128::from(payment.amount);
    i64::try_from(share).unwrap_or(payment.credits)
}

async fn charge_refunded(
    txn: &DatabaseTransaction,
    clock: &Clock,
    charge: &stripe_shared::Charge,
) -> Result<Delivery, WebhookFailure> {
    let Some(payment) = payment_for(txn, charge.payment_intent.as_ref().map(|p| p.id().to_string())).await? else {
        return Ok(Delivery::Ignored);
    };
    // `amount_refunded` is cumulative, so each refund event takes back only what is new.
    let share = credits_for(&payment, charge.amount_refunded);
    let description = format!("Refund of {}", charge.id);
    let (taken, _) =
        take_back(txn, &payment, share, true, TransferKind::Clawback, system::CLAWBACK, description, clock.now())
            .await?;
    if taken > 0 {
        adjust_clawed_back(txn, &payment.id, taken).await?;
    }
    Ok(Delivery::Processed)
}

async fn adjust_clawed_back(txn: &impl ConnectionTrait, payment_id: &str, by: i64) -> Result<(), DbErr> {
    payments::Entity::update_many()
        .col_expr(
            payments::Column::ClawedBack,
            sea_orm::sea_query::ExprTrait::add(Expr::col(payments::Column::ClawedBack), by),
        )
        .filter(payments::Column::Id.eq(payment_id))
        .exec(txn)
        .await?;
    Ok(())
}

fn dispute_payment_intent(dispute: &stripe_shared::Dispute) -> Option<String> {
    dispute
        .payment_intent
        .as_ref()
        .map(|p| p.id().to_string())
        .or_else(|| dispute.charge.as_object().and_then(|c| c.payment_intent.as_ref()).map(|p| p.id().to_string()))
}

/// The reference of the lot a dispute gives back as the paid lot's credits.
fn returned_reference(dispute_id: &str) -> String {
    format!("stripe:dispute:{dispute_id}:won")
}

async fn dispute_created(
    txn: &DatabaseTransaction,
    clock: &Clock,
    dispute: &stripe_shared::Dispute,
) -> Result<Delivery, WebhookFailure> {
    let id = dispute.id.as_str().to_owned();
    if disputes::Entity::find_by_id(id.clone()).one(txn).await?.is_some() {
        return Ok(Delivery::Processed);
    }
    let Some(payment) = payment_for(txn, dispute_payment_intent(dispute)).await? else {
        return Ok(Delivery::Ignored);
    };
    let now = clock.now();
    let share = credits_for(&payment, dispute.amount);
    let description = format!("Disputed payment {id}");
    let (credits, freeze_transfer_id) =
        take_back(txn, &payment, share, false, TransferKind::DisputeFreeze, system::DISPUTES, description, now).await?;
    if credits > 0 {
        // Frozen credits count as taken back, so a refund during the dispute does not take them twice.
        adjust_clawed_back(txn, &payment.id, credits).await?;
    }
    disputes::Entity::insert(disputes::ActiveModel {
        id: Set(id.clone()),
        payment_id: Set(payment.id.clone()),
        user_id: Set(payment.user_id),
        credits: Set(credits),
        status: Set(DisputeStatus::Open.as_str().to_owned()),
        created_at: Set(now),
        closed_at: Set(None),
        freeze_transfer_id: Set(freeze_transfer_id),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Delivery::Processed)
}

/// Gives a closed dispute's frozen credits back to the wallet, each to the kind of lot it was
/// taken from (source, priority, expiry): a period's credits still expire with the period. What
/// the freeze could not find in any lot (it became debt) comes back as the paid lot's credits,
/// first, so that it covers that debt.
async fn return_frozen(
    txn: &DatabaseTransaction,
    row: &disputes::Model,
    payment: Option<&payments::Model>,
    now: DateTime<Utc>,
) -> Result<(), WebhookFailure> {
    let id = row.id.as_str();
    let movements = match row.freeze_transfer_id {
        Some(transfer) => store::movements_of(txn, &[transfer]).await?,
        None => Vec::new(),
    };
    let paid_lot = payment.map(|p| p.lot_id);
    let from_other_lots: i64 = movements.iter().filter(|m| Some(m.lot_id) != paid_lot).map(|m| m.amount).sum();
    // The paid lot's share, and what became debt, first; then each other lot's share.
    let mut returns = vec![(paid_lot, row.credits - from_other_lots, returned_reference(id))];
    returns.extend(
        movements
            .iter()
            .filter(|m| Some(m.lot_id) != paid_lot)
            .map(|m| (Some(m.lot_id), m.amount, format!("{}:{}", returned_reference(id), m.lot_id))),
    );
    let mut lots = Vec::with_capacity(returns.len());
    for (lot_id, credits, reference) in returns {
        if credits <= 0 {
            continue;
        }
        let original = match lot_id {
            Some(lot_id) => store::lot(txn, lot_id).await?,
            None => None,
        };
        let source = original
            .as_ref()
            .map_or(LotSource::Purchase, |l| LotSource::parse(&l.source).unwrap_or(LotSource::Purchase));
        let lot = NewLot {
            source,
            kind: TransferKind::DisputeRelease,
            from: system::DISPUTES,
            amount: Credits::new(credits).map_err(|e| WebhookFailure::Apply(e.to_string()))?,
            priority: original.as_ref().map_or(source.default_priority(), |l| l.priority),
            expires_at: original.as_ref().and_then(|l| l.expires_at),
            reference,
        };
        let details = TransferDetails {
            description: Some(format!("Dispute {id} closed in the buyer's favour: credits returned")),
            reference: Some(id.to_owned()),
            ..Default::default()
        };
        lots.push((lot, details));
    }
    grants::credit_lots(txn, row.user_id, lots, now).await?;
    Ok(())
}

async fn dispute_closed(
    txn: &DatabaseTransaction,
    clock: &Clock,
    dispute: &stripe_shared::Dispute,
) -> Result<Delivery, WebhookFailure> {
    let id = dispute.id.as_str().to_owned();
    let Some(row) = disputes::Entity::find_by_id(id.clone()).lock_exclusive().one(txn).await? else {
        // A close without its creation: freeze first, then close.
        if dispute_created(txn, clock, dispute).await? == Delivery::Ignored {
            return Ok(Delivery::Ignored);
        }
        return Box::pin(dispute_closed(txn, clock, dispute)).await;
    };
    if row.status != DisputeStatus::Open.as_str() {
        return Ok(Delivery::Processed);
    }
    let status = match DisputeStatus::parse(dispute.status.as_str()) {
        Some(closing) if closing != DisputeStatus::Open => closing,
        // Not a closing status: the credits stay frozen until Stripe says how it ended.
        _ => return Ok(Delivery::Processed),
    };
    let lost = status == DisputeStatus::Lost;
    let now = clock.now();
    if row.credits > 0 {
        if lost {
            let amount = Credits::new(row.credits).map_err(|e| WebhookFailure::Apply(e.to_string()))?;
            let details = TransferDetails {
                description: Some(format!("Dispute {id} lost")),
                reference: Some(id.clone()),
                ..Default::default()
            };
            let (from, to) = (system::DISPUTES, system::CLAWBACK);
            grants::move_between_system_accounts(txn, from, to, amount, TransferKind::Clawback, details, now).await?;
        } else {
            let payment = payments::Entity::find_by_id(row.payment_id.clone()).lock_exclusive().one(txn).await?;
            return_frozen(txn, &row, payment.as_ref(), now).await?;
            adjust_clawed_back(txn, &row.payment_id, -row.credits).await?;
        }
    }
    disputes::Entity::update_many()
        .col_expr(disputes::Column::Status, Expr::value(status.as_str()))
        .col_expr(disputes::Column::ClosedAt, Expr::value(now))
        .filter(disputes::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(Delivery::Processed)
}
