//! What every handler can reach: the pool, the settings and the keys built from them.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{jwt::JwtKeys, password::PasswordHasher},
    billing::stripe::PaymentMode,
    clock::Clock,
    config::Settings,
    credits::Ledger,
    db::WalRestart,
    limits::Limits,
    metrics::Metrics,
};

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub passwords: PasswordHasher,
    /// Sandbox or Stripe, chosen once at start.
    pub payments: PaymentMode,
    pub limits: Limits,
    pub metrics: Metrics,
    /// The ledger's one writer: commands gathered into batches.
    pub ledger: Ledger,
    /// The one source of the current time.
    pub clock: Clock,
    /// SQLite: the checkpointer's request that the spend writer let the WAL start over.
    pub wal_restart: WalRestart,
    /// Which customer each external id names, as looked up so far.
    pub customer_ids: crate::customers::CustomerIds,
    /// Server keys as recently read.
    pub server_keys: crate::auth::server_keys::ServerKeyCache,
    pub api_keys: crate::auth::api_keys::ApiKeyCache,
    /// Rung after every commit that wrote events (the ledger's batches, billing).
    pub events: crate::events::Signal,
    /// The gateway's rate card as this process last read it (see `RateCard`).
    pub rate_card: crate::gateway::models::RateCard,
    /// The LLM gateway's upstream, when `GATEWAY_UPSTREAM_URL` names one.
    pub gateway: Option<Arc<crate::gateway::Upstream>>,
    /// The webhook dispatcher's HTTP client and wake-up bell.
    pub webhooks: crate::webhooks::Webhooks,
    /// The replica's fan-out of committed events to its open streams.
    pub streams: crate::streams::Hub,
}

impl AppState {
    /// Builds the state and starts the ledger's batch runners on the current Tokio runtime.
    pub fn new(db: DatabaseConnection, settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let jwt = JwtKeys::new(settings.jwt_secret.expose(), settings.access_token_ttl, clock.clone());
        let metrics = Metrics::new()?;
        let passwords = PasswordHasher::new(
            settings.password_hashing,
            settings.password_hash_concurrency,
            settings.password_hash_queue_timeout,
            &metrics,
        )?;
        let payments = PaymentMode::from_settings(&settings)?;
        let limits = Limits::new(settings.rate_limit_spend_per_second, settings.rate_limit_auth_per_minute);
        let wal_restart = WalRestart::default();
        let events = crate::events::Signal::default();
        let ledger = Ledger::start(
            db.clone(),
            clock.clone(),
            settings.spend_batch_runners,
            metrics.clone(),
            wal_restart.clone(),
            events.clone(),
        );
        let gateway = crate::gateway::Upstream::from_settings(&settings)?.map(Arc::new);
        let webhooks = crate::webhooks::Webhooks::new(&settings)?;
        let streams = crate::streams::Hub::new(settings.stream_buffer, &metrics.registry)?;
        let rate_card = crate::gateway::models::RateCard::new(settings.is_sqlite());
        Ok(Self {
            rate_card,
            events,
            webhooks,
            streams,
            gateway,
            db,
            settings: Arc::new(settings),
            jwt,
            passwords,
            payments,
            limits,
            metrics,
            ledger,
            clock,
            wal_restart,
            customer_ids: Default::default(),
            server_keys: Default::default(),
            api_keys: Default::default(),
        })
    }
}
