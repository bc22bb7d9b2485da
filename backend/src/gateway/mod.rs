//! The LLM gateway: an OpenAI-compatible `/gateway/v1/chat/completions` that meters each call
//! by its tokens. A call is priced at its worst case (input counted by the model family's
//! tokenizer, output at its `max_tokens`), held, forwarded to the one upstream, captured at the
//! usage the upstream reports, and the rest released. Nothing is sent upstream before the hold
//! is placed; nothing is charged when the upstream fails before any output.

pub mod call;
pub mod calls;
pub mod handlers;
pub mod lease;
pub mod models;
pub mod pricing;
pub mod sse;
pub mod tokens;

use std::time::Duration;

use crate::config::{Secret, Settings};

/// The header a server key names its customer in.
pub const CUSTOMER_HEADER: &str = "x-tollgate-customer";

/// The upstream and how it is called.
pub struct Upstream {
    pub client: reqwest::Client,
    /// The chat completions URL: `GATEWAY_UPSTREAM_URL` + `/chat/completions`.
    pub completions_url: String,
    pub key: Option<Secret>,
    /// The longest a call may take upstream.
    pub timeout: Duration,
    /// How long a stream whose client left is read on.
    pub drain: Duration,
    /// The leases concurrent calls share.
    pub leases: std::sync::Arc<lease::Leases>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("completions_url", &self.completions_url).finish_non_exhaustive()
    }
}

impl Upstream {
    /// The upstream the settings name, if any.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(url) = &settings.gateway_upstream_url else {
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let (timeout, drain) = (settings.gateway_timeout, settings.gateway_drain_timeout);
        let leases = std::sync::Arc::new(lease::Leases::new(settings.gateway_lease_calls, call_ttl(timeout, drain)));
        let upstream = Self {
            client,
            completions_url: format!("{url}/chat/completions"),
            key: settings.gateway_upstream_key.clone(),
            timeout,
            drain,
            leases,
        };
        Ok(Some(upstream))
    }

    /// How long a call's hold lives: past the longest the call can take, so it is always
    /// captured or released by the call itself, and past that only if the server stopped.
    pub fn hold_ttl(&self) -> chrono::Duration {
        call_ttl(self.timeout, self.drain)
    }
}

fn call_ttl(timeout: Duration, drain: Duration) -> chrono::Duration {
    chrono::Duration::from_std(timeout + drain).unwrap_or(chrono::Duration::hours(2)) + chrono::Duration::seconds(60)
}
