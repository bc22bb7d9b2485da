//! Rate limits: per wallet owner (all their API keys and sessions together), or per (server key,
//! customer), on the routes that move credits; per client IP on the sign-in routes. Each replica
//! keeps its own counters, so with N replicas behind a load balancer the effective limit is up to
//! N times the configured one.

use std::{num::NonZeroU32, sync::Arc};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::error::{ApiError, ErrorCode};

/// The limiters, shared by every worker.
#[derive(Clone)]
pub struct Limits {
    spend: Arc<DefaultKeyedRateLimiter<String>>,
    auth: Arc<DefaultKeyedRateLimiter<String>>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn too_many(what: &str, wait: std::time::Duration) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, format!("Too many {what}; retry shortly.")).retry_after(wait.as_secs().max(1))
}

impl Limits {
    /// `spend_per_second` (burst twice that) per caller; `auth_per_minute` per IP.
    pub fn new(spend_per_second: u32, auth_per_minute: u32) -> Self {
        let auth = Quota::per_minute(NonZeroU32::new(auth_per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            spend: Arc::new(RateLimiter::keyed(quota(spend_per_second, spend_per_second.saturating_mul(2)))),
            auth: Arc::new(RateLimiter::keyed(auth)),
        }
    }

    /// Counts one credit-moving request against `key`: a user's own wallet (all their API keys
    /// and sessions share one budget, so creating more keys buys no more requests), or a
    /// (server key, customer) pair.
    pub fn check_spend(&self, key: &str) -> Result<(), ApiError> {
        self.spend.check_key(&key.to_owned()).map_err(|not_until| {
            too_many(
                "requests that move credits",
                not_until.wait_time_from(governor::clock::DefaultClock::default().now()),
            )
        })
    }

    /// Counts one sign-in, sign-up or refresh from this client address.
    pub fn check_auth(&self, ip: &str) -> Result<(), ApiError> {
        self.auth.check_key(&ip.to_owned()).map_err(|not_until| {
            too_many(
                "sign-in attempts from this address",
                not_until.wait_time_from(governor::clock::DefaultClock::default().now()),
            )
        })
    }

    /// Forgets callers not seen lately, so the maps do not grow without end.
    pub fn shrink(&self) {
        self.spend.retain_recent();
        self.auth.retain_recent();
        self.spend.shrink_to_fit();
        self.auth.shrink_to_fit();
    }
}
