//! The application's one source of the current time.
//!
//! Everything that decides by the time (a lot's expiry, a hold's time to live, a batch's
//! timestamp, a subscription's period, a portal link's and a portal session's life, an access or
//! refresh token's life and reuse grace, a sign-in lockout, a Stripe signature's age) and every
//! time written beside such decisions asks the clock in the application state instead of reading
//! the system's. Production and the CLI run the system clock; tests run one they can move forward
//! instead of sleeping. A moved clock keeps ticking from where it was moved to, so times stay
//! strictly ordered as they are in production.
//!
//! Not on it: the rate limits (`governor` keeps its own monotonic clock), I/O timeouts (Tokio's)
//! and the log's timestamps (the system's).

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The current time, to the microsecond (what PostgreSQL stores, so an answer shows exactly what
/// the ledger will show); cheap to clone. The default is the system clock.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that reads the system's until moved forward with `advance`.
    pub fn adjustable() -> Self {
        Self(Some(Arc::new(AtomicI64::new(0))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now().trunc_subsecs(6);
        match &self.0 {
            None => now,
            Some(ahead) => now + Duration::microseconds(ahead.load(Ordering::SeqCst)),
        }
    }

    /// Moves an adjustable clock forward.
    ///
    /// # Panics
    /// On the system clock, which only time moves.
    pub fn advance(&self, by: Duration) {
        let Some(ahead) = &self.0 else { panic!("the system clock cannot be moved") };
        let micros = by.num_microseconds().expect("a step of less than 290,000 years");
        assert!(micros >= 0, "a clock only moves forward");
        ahead.fetch_add(micros, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(ahead) => write!(f, "Clock::adjustable(+{} µs)", ahead.load(Ordering::SeqCst)),
        }
    }
}
