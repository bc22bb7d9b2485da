//! The webhook routes' wire types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::entities::{webhook_attempts, webhook_deliveries, webhook_endpoints};

/// An event type an endpoint subscribes to, or `*` for all of them (the schema of `events`'
/// items: `crate::events::EVENT_TYPES` and `*`).
pub struct SubscribedEventType;

impl utoipa::PartialSchema for SubscribedEventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(std::iter::once("*").chain(crate::events::EVENT_TYPES.iter().copied())))
            .description(Some("An event type, or `*` for every type."))
            .into()
    }
}

impl ToSchema for SubscribedEventType {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("SubscribedEventType")
    }
}

/// `POST /webhook-endpoints`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhookEndpointRequest {
    /// Where events are POSTed: an http(s) URL, at most 2048 characters. In production it may not
    /// resolve to a loopback, private or link-local address.
    #[schema(example = "https://api.example.com/tollgate/webhooks")]
    pub url: String,
    /// The event types to send (see `GET /api/v1/events`), or `["*"]` for every type.
    #[schema(value_type = Vec<SubscribedEventType>, example = json!(["credits.spent", "balance.low"]), min_items = 1)]
    pub events: Vec<String>,
    /// A note for people, at most 500 characters.
    pub description: Option<String>,
}

/// `PATCH /webhook-endpoints/{id}`: what is given changes; `description: null` clears it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateWebhookEndpointRequest {
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<SubscribedEventType>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `true` re-enables an endpoint (disabled by hand or after a run of failures): its pending
    /// deliveries are sent again; `false` pauses it.
    pub enabled: Option<bool>,
}

/// A member that may be absent (keep), `null` (clear) or a value.
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// A webhook endpoint (its secret is shown only when made or rotated).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// The event types sent to it, or `["*"]`.
    #[schema(value_type = Vec<SubscribedEventType>)]
    pub events: Vec<String>,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// When it was disabled after its deliveries failed for `WEBHOOK_DISABLE_AFTER_SECONDS`.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Since when its deliveries have failed without a success in between, if they do.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a rotation: until when the previous secret still signs beside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    pub fn of(m: webhook_endpoints::Model, now: DateTime<Utc>) -> Self {
        Self {
            events: serde_json::from_str(&m.event_types).unwrap_or_default(),
            previous_secret_expires_at: m.previous_secret_expires_at.filter(|at| *at > now),
            id: m.id,
            url: m.url,
            description: m.description,
            enabled: m.enabled,
            disabled_at: m.disabled_at,
            failing_since: m.failing_since,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A webhook endpoint with its signing secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The Standard Webhooks signing secret, `whsec_` and the base64 of 32 random bytes: give it
    /// to a `standardwebhooks` verifier. It is not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=")]
    pub secret: String,
}

/// Endpoints, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
}

/// `GET …/deliveries` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookAttemptQuery {
    /// Only the attempts at this event.
    pub event_id: Option<String>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet sent, or failed and waiting for its next attempt.
    Pending,
    /// An attempt was answered with a 2xx.
    Succeeded,
    /// Every attempt failed and no retry is left (redeliver to try again).
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Succeeded, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL.into_iter().find(|s| s.as_str() == value).unwrap_or(Self::Pending)
    }
}

/// One attempt at sending an event to an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    pub id: Uuid,
    /// The delivery it belongs to: one per endpoint and event, plus one per redelivery.
    pub delivery_id: Uuid,
    /// The event sent, also the `webhook-id` header.
    #[schema(example = "evt_01JEXAMPLE0000000000000000")]
    pub event_id: String,
    #[schema(example = "credits.spent")]
    pub event_type: String,
    /// 1 for the first attempt of the delivery.
    pub attempt: i32,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Whether the receiver answered 2xx.
    pub succeeded: bool,
    /// Why it failed: a status outside 2xx, a timeout, a refused connection.
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// Where the delivery stands now.
    pub delivery_status: DeliveryStatus,
}

impl WebhookAttempt {
    pub fn of(a: webhook_attempts::Model, delivery: Option<&webhook_deliveries::Model>) -> Self {
        Self {
            id: a.id,
            delivery_id: a.delivery_id,
            event_id: a.event_id,
            event_type: delivery.map(|d| d.event_type.clone()).unwrap_or_default(),
            attempt: a.attempt,
            status_code: a.status_code,
            succeeded: a.succeeded,
            error: a.error,
            attempted_at: a.attempted_at,
            duration_ms: a.duration_ms,
            delivery_status: delivery.map(|d| DeliveryStatus::parse(&d.status)).unwrap_or(DeliveryStatus::Pending),
        }
    }
}

/// A page of attempts, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttemptPage {
    pub data: Vec<WebhookAttempt>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A delivery just queued by a redelivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

impl From<webhook_deliveries::Model> for WebhookDelivery {
    fn from(d: webhook_deliveries::Model) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: DeliveryStatus::parse(&d.status),
            attempts: d.attempts,
            created_at: d.created_at,
        }
    }
}
