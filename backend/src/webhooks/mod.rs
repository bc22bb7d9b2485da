//! Webhooks to the product (#18): endpoints the product registers, and the dispatcher that sends
//! them every event they asked for, signed as Standard Webhooks sign, at least once.
//!
//! Every committed event in the outbox is fanned out into one delivery row per matching enabled
//! endpoint, in the transaction that advances the dispatcher's cursor, before anything is sent;
//! deliveries are then claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional update on
//! SQLite) for the length of one attempt, sent, and recorded with their outcome. A crash anywhere
//! leaves either an unclaimed delivery or a claim that lapses, so the event goes out after a
//! restart; no two replicas claim the same attempt.

pub mod dispatcher;
pub mod dto;
pub mod handlers;
pub mod outbox;
pub mod service;
pub mod signing;
pub mod urls;

use std::sync::Arc;

use crate::config::{Environment, Settings};

/// The dispatcher's handle in the application state: the HTTP client deliveries go out through,
/// and the bell that wakes the dispatcher (a redelivery, an endpoint enabled, an attempt done).
#[derive(Clone)]
pub struct Webhooks(Arc<Inner>);

struct Inner {
    client: reqwest::Client,
    wake: tokio::sync::Notify,
}

impl Webhooks {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.webhook_timeout)
            .connect_timeout(settings.webhook_timeout.min(std::time::Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Tollgate-Webhooks/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(30));
        if settings.environment == Environment::Production && !settings.webhook_allow_private_urls {
            builder = builder.dns_resolver(Arc::new(urls::GuardedResolver));
        }
        Ok(Self(Arc::new(Inner { client: builder.build()?, wake: tokio::sync::Notify::new() })))
    }

    /// Asks the dispatcher to look for work now rather than at its next poll.
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.0.client
    }

    pub(crate) async fn woken(&self) {
        self.0.wake.notified().await;
    }
}
