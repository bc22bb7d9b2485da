//! Prometheus metrics at `/metrics`: every request by route pattern and status with a latency
//! histogram (actix-web-prom), and the ledger's own counters. Counters are per process: each
//! replica is scraped on its own.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sea_orm::DatabaseConnection;

/// Tollgate's counters, registered in one registry with the HTTP metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Spends by outcome: `applied`, `replayed`, `refused`.
    pub spends: IntCounterVec,
    /// Credits moved, by movement (`granted`, `spent`, `expired`, `clawed_back`,
    /// `dispute_frozen`, `dispute_returned`, `written_off`). Read from the ledger's committed
    /// transfers at each scrape (`observe_ledger`), never counted by handlers: a replay, a
    /// rollback or a path a handler does not see cannot make it drift from the books.
    pub credits: IntCounterVec,
    /// Grants by outcome.
    pub grants: IntCounterVec,
    /// Hold actions (`place`, `capture`, `release`) by outcome.
    pub holds: IntCounterVec,
    /// LLM gateway calls by outcome: `charged`, `free` (nothing charged: a free model, or no output), `refused` (before the
    /// upstream), `upstream_error`, `upstream_unreachable`, `replayed`, and `ledger_error` (a
    /// capture or release that could not be written: its hold expires instead; alert on it).
    pub gateway_calls: IntCounterVec,
    /// How long an LLM call waits for its hold (queued and committed) before it is sent upstream.
    pub gateway_hold_seconds: Histogram,
    /// Stripe webhook deliveries by outcome: `processed`, `ignored`, `duplicate`, `failed`, `rejected`.
    pub webhook_events: IntCounterVec,
    /// Database pool connections by state: `idle`, `in_use`.
    pub db_pool: IntGaugeVec,
    /// Spends per batch (per transaction).
    pub spend_batch_size: Histogram,
    /// Ledger commands of every kind committed together, per batch.
    pub ledger_batch_size: Histogram,
    /// How long a ledger batch takes, from its first read to its commit.
    pub ledger_batch_seconds: Histogram,
    /// Spends a batch handed to the general path (a wallet with something to settle, a
    /// database error, a failed commit).
    pub spends_run_alone: IntCounter,
    /// Argon2 hashes running now (each holds `PASSWORD_HASH_MEMORY_KIB` of memory).
    pub password_hashes_in_flight: IntGauge,
    /// The most Argon2 hashes that ever ran at once: never above `PASSWORD_HASH_CONCURRENCY`.
    pub password_hashes_in_flight_peak: IntGauge,
    /// Sign-ins and sign-ups answered 503 after waiting the whole queue timeout for a hash.
    pub password_hash_queue_timeouts: IntCounter,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let metric = IntGauge::with_opts(Opts::new(name, help).namespace("tollgate"))?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(Opts::new(name, help).namespace("tollgate"), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> prometheus::Result<Histogram> {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).namespace("tollgate").buckets(buckets))?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state").namespace("tollgate"),
            &["state"],
        )?;
        registry.register(Box::new(db_pool.clone()))?;
        let sizes = || vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
        let seconds = || vec![0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256];
        let spend_batch_size =
            histogram(&registry, "spend_batch_size", "Spends committed together, per batch", sizes())?;
        let ledger_batch_size = histogram(
            &registry,
            "ledger_batch_size",
            "Ledger commands (spends, holds, grants, expiry) committed together, per batch",
            sizes(),
        )?;
        let ledger_batch_seconds = histogram(
            &registry,
            "ledger_batch_seconds",
            "Time a ledger batch takes, from its first read to its commit",
            seconds(),
        )?;
        let gateway_hold_seconds = histogram(
            &registry,
            "gateway_hold_seconds",
            "Time an LLM call waits for its hold (queued and committed) before it is sent upstream",
            seconds(),
        )?;
        let spends_run_alone = IntCounter::with_opts(
            Opts::new("spends_run_alone_total", "Ledger commands run alone after their batch failed as a whole")
                .namespace("tollgate"),
        )?;
        registry.register(Box::new(spends_run_alone.clone()))?;
        let password_hash_queue_timeouts = IntCounter::with_opts(
            Opts::new("password_hash_queue_timeouts_total", "Requests answered 503 while waiting to hash a password")
                .namespace("tollgate"),
        )?;
        registry.register(Box::new(password_hash_queue_timeouts.clone()))?;
        Ok(Self {
            spends: counter(&registry, "spends_total", "Spend requests by outcome", &["outcome"])?,
            credits: counter(&registry, "credits_total", "Credits moved, by movement", &["movement"])?,
            grants: counter(&registry, "grants_total", "Grant requests by outcome", &["outcome"])?,
            holds: counter(&registry, "holds_total", "Hold actions by outcome", &["action", "outcome"])?,
            gateway_calls: counter(&registry, "gateway_calls_total", "LLM gateway calls by outcome", &["outcome"])?,
            webhook_events: counter(
                &registry,
                "webhook_events_total",
                "Stripe webhook deliveries by outcome",
                &["outcome"],
            )?,
            db_pool,
            spend_batch_size,
            ledger_batch_size,
            ledger_batch_seconds,
            gateway_hold_seconds,
            spends_run_alone,
            password_hashes_in_flight: gauge(&registry, "password_hashes_in_flight", "Password hashes running now")?,
            password_hashes_in_flight_peak: gauge(
                &registry,
                "password_hashes_in_flight_peak",
                "The most password hashes that ran at once",
            )?,
            password_hash_queue_timeouts,
            registry,
        })
    }

    /// Counts one write by its outcome.
    pub fn outcome<T, E>(result: &Result<crate::credits::Outcome<T>, E>) -> &'static str {
        match result {
            Ok(crate::credits::Outcome::Fresh(_)) => "applied",
            Ok(crate::credits::Outcome::Replayed(_)) => "replayed",
            Err(_) => "refused",
        }
    }

    /// Brings the credit counters up to the ledger: the committed transfers' totals by kind,
    /// summed exactly (as reconcile sums them). Transfers are never updated or deleted, so each
    /// total only grows and the counter takes the difference. One aggregate over `transfers` per
    /// scrape. The totals are the whole ledger's: every replica reports the same figures.
    pub async fn observe_ledger(&self, db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        use crate::{credits::reconcile, domain::ledger::TransferKind};
        let by_kind = reconcile::totals_by_kind(db).await?;
        let mut totals: std::collections::BTreeMap<&'static str, i128> = std::collections::BTreeMap::new();
        for (kind, total) in by_kind {
            let movement = match TransferKind::parse(&kind) {
                Some(
                    TransferKind::Purchase | TransferKind::Subscription | TransferKind::Grant | TransferKind::Promotion,
                ) => "granted",
                Some(TransferKind::Spend) => "spent",
                Some(TransferKind::Expiry) => "expired",
                Some(TransferKind::Clawback) => "clawed_back",
                Some(TransferKind::DisputeFreeze) => "dispute_frozen",
                Some(TransferKind::DisputeRelease) => "dispute_returned",
                Some(TransferKind::WriteOff) => "written_off",
                None => continue,
            };
            *totals.entry(movement).or_default() += total;
        }
        for (movement, total) in totals {
            let counter = self.credits.with_label_values(&[movement]);
            let total = u64::try_from(total).unwrap_or(u64::MAX);
            if total > counter.get() {
                counter.inc_by(total - counter.get());
            }
        }
        Ok(())
    }

    /// Reads the pool's state into the gauges (called before each scrape interval).
    pub fn observe_pool(&self, db: &DatabaseConnection) {
        let (size, idle) = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
            _ => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
        };
        self.db_pool.with_label_values(&["idle"]).set(i64::from(idle));
        self.db_pool.with_label_values(&["in_use"]).set(i64::from(size.saturating_sub(idle)));
    }
}
