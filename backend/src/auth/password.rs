//! Argon2id hashing on a blocking thread, and verification against a dummy hash for unknown
//! emails so that both failures take about the same time.
//!
//! Each hash holds `memory_kib` of memory for its whole run, so the number that run at once is
//! bounded (`PASSWORD_HASH_CONCURRENCY`, one per core by default): a request waits for a free
//! slot up to `PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS`, then is answered 503. Unbounded, a burst
//! of sign-ins holds that memory once per sign-in (figures in docs/performance.md).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Semaphore;

use crate::{config::PasswordHashing, metrics::Metrics};

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot stayed taken for the whole queue timeout.
    #[error("every password-hashing slot stayed busy for {0:?}")]
    Busy(Duration),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Hashes and verifies passwords with the configured cost, at most `concurrency` at once.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: String,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    meter: HashMeter,
}

impl PasswordHasher {
    pub fn new(
        cost: PasswordHashing,
        concurrency: usize,
        queue_timeout: Duration,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let dummy_hash = hash_with(&params, "tollgate-dummy-password-for-timing")?;
        Ok(Self {
            params,
            dummy_hash,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
            meter: HashMeter::new(metrics),
        })
    }

    /// Hashes a password to a PHC string, off the async workers.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || hash_with(&params, &password)).await?.map_err(HashError::Failed)
    }

    /// Verifies a password; with no stored hash, verifies against the dummy and returns false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let params = self.params.clone();
        let ok = self
            .run(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                argon.verify_password(password.as_bytes(), hash.as_str()).is_ok()
            })
            .await?;
        Ok(known && ok)
    }

    /// Waits (up to the queue timeout) for a hashing slot, then runs `work` on a blocking thread.
    /// The slot travels with the work: a request that goes away while its hash runs does not free
    /// the slot before the hash has finished with its memory.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let slot = match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(slot) => slot.map_err(|e| HashError::Failed(e.into()))?,
            Err(_) => {
                self.meter.timed_out.inc();
                return Err(HashError::Busy(self.queue_timeout));
            }
        };
        let meter = self.meter.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // Dropped before the slot: the count never shows more hashes than slots.
            let _running = meter.enter();
            work()
        })
        .await
        .map_err(|e| HashError::Failed(e.into()))?;
        Ok(result)
    }
}

/// Counts the hashes running now and the most that ever ran at once, for `/metrics`.
#[derive(Clone)]
struct HashMeter {
    /// (running now, most at once), updated together.
    counts: Arc<Mutex<(i64, i64)>>,
    in_flight: IntGauge,
    peak: IntGauge,
    timed_out: IntCounter,
}

impl HashMeter {
    fn new(metrics: &Metrics) -> Self {
        Self {
            counts: Arc::new(Mutex::new((0, 0))),
            in_flight: metrics.password_hashes_in_flight.clone(),
            peak: metrics.password_hashes_in_flight_peak.clone(),
            timed_out: metrics.password_hash_queue_timeouts.clone(),
        }
    }

    fn enter(&self) -> Running<'_> {
        self.update(1);
        Running(self)
    }

    fn update(&self, delta: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.0 += delta;
        counts.1 = counts.1.max(counts.0);
        self.in_flight.set(counts.0);
        self.peak.set(counts.1);
    }
}

/// One hash running; leaving the count when dropped.
struct Running<'a>(&'a HashMeter);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.update(-1);
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let hash = argon.hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}
