//! One `Settings` struct, read from the environment (and an optional `.env`) and checked once at
//! start: a wrong value stops the server with a message naming the variable. Secrets are never
//! printed: `Debug` redacts them.

use std::{env, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use rand::RngCore;

/// Where Tollgate runs: development generates what it lacks, production refuses to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// How payments are taken, chosen once at start: through Stripe, or in the sandbox, where local
/// pages stand in for Stripe and every purchase is free. Production never falls into the sandbox
/// by accident: without Stripe keys it must be asked for with `PAYMENTS=sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payments {
    Sandbox,
    Stripe,
}

/// SQLite's `synchronous` pragma: `FULL` (the default) makes every commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl SqliteSynchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
            Self::Extra => "EXTRA",
        }
    }
}

/// Argon2id cost. Defaults are OWASP's recommendation (19 MiB, 2 iterations, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every setting Tollgate reads. README lists each variable.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub bind: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub database_acquire_timeout: Duration,
    pub sqlite_synchronous: SqliteSynchronous,
    pub data_dir: PathBuf,
    pub jwt_secret: Secret,
    pub admin_api_key: Option<Secret>,
    pub site_url: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub password_hashing: PasswordHashing,
    /// Argon2 hashes run at once (each holds `memory_kib`); more sign-ins wait their turn.
    pub password_hash_concurrency: usize,
    /// How long a sign-in or sign-up waits for a hashing slot before answering 503.
    pub password_hash_queue_timeout: Duration,
    /// How long a just-rotated refresh token may be presented again (two tabs refreshing at
    /// once) and answered with the same successor instead of counting as a reuse.
    pub refresh_token_reuse_grace: Duration,
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    pub workers: usize,
    /// How long a client has to send a request's body once its head arrived (408 after).
    pub request_body_timeout: Duration,
    /// PostgreSQL: spend batches committed at once (SQLite has one writer, so one).
    pub spend_batch_runners: u32,
    pub expiry_interval: Duration,
    pub frontend_dir: PathBuf,
    pub migrate_on_start: bool,
    /// Where the billing portal sends the user back to.
    pub billing_portal_return_url: String,
    /// Sandbox or Stripe (`PAYMENTS`, else decided by whether a Stripe key is set).
    pub payments: Payments,
    /// Stripe's secret key; required with `Payments::Stripe`, refused with `Payments::Sandbox`.
    pub stripe_secret_key: Option<Secret>,
    /// The signing secret of the webhook endpoint (`whsec_…`).
    pub stripe_webhook_secret: Option<Secret>,
    /// Stripe's publishable key, handed to the SPA.
    pub stripe_publishable_key: Option<String>,
    /// Stripe's API base URL; tests point it at a local fake.
    pub stripe_api_base: Option<String>,
    /// Credit-moving requests per second per caller (API key or user); bursts of twice that.
    pub rate_limit_spend_per_second: u32,
    /// Sign-in, sign-up and refresh requests per minute per client IP.
    pub rate_limit_auth_per_minute: u32,
    /// Origins allowed to call the API from a browser (CORS); none when empty.
    pub cors_origins: Vec<String>,
    /// Origins besides `SITE_URL`'s where the product may send its customers back to after a
    /// checkout or the hosted pages (`ALLOWED_RETURN_ORIGINS`).
    pub allowed_return_origins: Vec<String>,
    /// The LLM gateway's upstream, an OpenAI-compatible API base (`…/v1`); the gateway answers
    /// 503 `gateway_not_configured` without it.
    pub gateway_upstream_url: Option<String>,
    /// The upstream's API key, sent as `Authorization: Bearer`; never logged or returned.
    pub gateway_upstream_key: Option<Secret>,
    /// How long one gateway call may take upstream, from sending to the last byte.
    pub gateway_timeout: Duration,
    /// How long a stream whose client left is still read, for the usage it reports.
    pub gateway_drain_timeout: Duration,
    /// The most worst-case calls one lease (a hold a wallet's concurrent gateway calls share)
    /// is placed for; 0: every call places a hold of its own.
    pub gateway_lease_calls: u32,
    /// How long one webhook delivery attempt may take, connecting included.
    pub webhook_timeout: Duration,
    /// The waits before each retry of a failed webhook delivery; once they are used up the
    /// delivery is `failed` (so at most one attempt more than there are waits).
    pub webhook_retry_schedule: Vec<Duration>,
    /// An endpoint whose deliveries have failed without a success for this long is disabled.
    pub webhook_disable_after: Duration,
    /// Production: whether webhook endpoints may be on loopback, private or link-local addresses.
    pub webhook_allow_private_urls: bool,
    /// How long events are kept before the background task deletes them.
    pub event_retention: chrono::Duration,
    /// How often an open event stream gets a `: heartbeat` comment (`STREAM_HEARTBEAT_SECONDS`),
    /// so proxies keep it open and a vanished client is noticed.
    pub stream_heartbeat: Duration,
    /// Events one stream may fall behind its client by before it is closed
    /// (`STREAM_BUFFER_EVENTS`); the client reconnects with `Last-Event-ID` and loses nothing.
    pub stream_buffer: usize,
}

/// A setting that is missing or wrong, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { variable, message: message.into() }
}

fn var(name: &'static str) -> Option<String> {
    env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_number<T>(name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    let value: T = raw.parse().map_err(|_| invalid(name, format!("`{raw}` is not a whole number")))?;
    if value < min || value > max {
        return Err(invalid(name, format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

fn parse_bool(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(invalid(name, format!("`{other}` is not true or false"))),
    }
}

/// The shortest JWT secret accepted: HS256 wants at least 256 bits.
pub const MIN_JWT_SECRET_LEN: usize = 32;
/// The shortest admin key accepted.
pub const MIN_ADMIN_KEY_LEN: usize = 16;

impl Settings {
    /// Reads `.env` (if present) and the environment, and checks every value.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();

        let environment = match var("TOLLGATE_ENV").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(invalid("TOLLGATE_ENV", format!("`{other}` is neither `development` nor `production`")));
            }
        };

        let bind_raw = var("BIND").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let bind: SocketAddr = bind_raw
            .parse()
            .map_err(|_| invalid("BIND", format!("`{bind_raw}` is not an address like 127.0.0.1:8080")))?;

        let data_dir = PathBuf::from(var("TOLLGATE_DATA_DIR").unwrap_or_else(|| "./data".to_owned()));

        let database_url = match var("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(invalid("DATABASE_URL", "must start with sqlite:, postgres:// or postgresql://"));
                }
                url
            }
            None => format!("sqlite://{}?mode=rwc", data_dir.join("tollgate.db").display()),
        };

        let sqlite_synchronous = match var("SQLITE_SYNCHRONOUS").map(|v| v.to_ascii_uppercase()).as_deref() {
            None | Some("FULL") => SqliteSynchronous::Full,
            Some("NORMAL") => SqliteSynchronous::Normal,
            Some("EXTRA") => SqliteSynchronous::Extra,
            Some("OFF") => SqliteSynchronous::Off,
            Some(other) => {
                return Err(invalid("SQLITE_SYNCHRONOUS", format!("`{other}` is not one of OFF, NORMAL, FULL, EXTRA")));
            }
        };

        let jwt_secret = match var("JWT_SECRET") {
            Some(secret) if secret.len() < MIN_JWT_SECRET_LEN => {
                return Err(invalid("JWT_SECRET", format!("must be at least {MIN_JWT_SECRET_LEN} characters")));
            }
            Some(secret) => Secret::new(secret),
            None if environment == Environment::Production => {
                return Err(invalid("JWT_SECRET", "is required when TOLLGATE_ENV=production"));
            }
            None => Secret::new(load_or_create_dev_secret(&data_dir)?),
        };

        let admin_api_key = match var("ADMIN_API_KEY") {
            Some(key) if key.len() < MIN_ADMIN_KEY_LEN => {
                return Err(invalid("ADMIN_API_KEY", format!("must be at least {MIN_ADMIN_KEY_LEN} characters")));
            }
            other => other.map(Secret::new),
        };

        let site_url = var("SITE_URL").unwrap_or_else(|| format!("http://{bind}"));
        if !(site_url.starts_with("http://") || site_url.starts_with("https://")) {
            return Err(invalid("SITE_URL", "must start with http:// or https://"));
        }
        let site_url = site_url.trim_end_matches('/').to_owned();

        let stripe_secret_key = var("STRIPE_SECRET_KEY");
        if let Some(key) = &stripe_secret_key
            && !(key.starts_with("sk_") || key.starts_with("rk_"))
        {
            return Err(invalid("STRIPE_SECRET_KEY", "must be a Stripe secret key (sk_… or rk_…)"));
        }
        let stripe_webhook_secret = var("STRIPE_WEBHOOK_SECRET");
        if stripe_webhook_secret.as_ref().is_some_and(|s| !s.starts_with("whsec_")) {
            return Err(invalid("STRIPE_WEBHOOK_SECRET", "must be a webhook signing secret (whsec_…)"));
        }
        let payments = match var("PAYMENTS").map(|v| v.to_ascii_lowercase()).as_deref() {
            None if stripe_secret_key.is_some() => Payments::Stripe,
            None if environment == Environment::Production => {
                return Err(invalid(
                    "PAYMENTS",
                    "TOLLGATE_ENV=production needs a payment mode: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET \
                     to take payments through Stripe, or PAYMENTS=sandbox to run the sandbox, where every purchase \
                     is free",
                ));
            }
            None | Some("sandbox") => {
                if stripe_secret_key.is_some() {
                    return Err(invalid(
                        "PAYMENTS",
                        "is `sandbox` but STRIPE_SECRET_KEY is set: unset one of them (the sandbox takes no payments)",
                    ));
                }
                Payments::Sandbox
            }
            Some("stripe") => {
                if stripe_secret_key.is_none() {
                    return Err(invalid("STRIPE_SECRET_KEY", "is required with PAYMENTS=stripe"));
                }
                Payments::Stripe
            }
            Some(other) => return Err(invalid("PAYMENTS", format!("`{other}` is neither `sandbox` nor `stripe`"))),
        };
        if payments == Payments::Stripe && stripe_webhook_secret.is_none() && environment == Environment::Production {
            return Err(invalid(
                "STRIPE_WEBHOOK_SECRET",
                "is required with STRIPE_SECRET_KEY in production: payments are credited by webhooks",
            ));
        }
        let stripe_api_base = var("STRIPE_API_BASE");
        if stripe_api_base.as_ref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(invalid("STRIPE_API_BASE", "must start with http:// or https://"));
        }
        let gateway_upstream_url = var("GATEWAY_UPSTREAM_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &gateway_upstream_url
            && !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return Err(invalid(
                "GATEWAY_UPSTREAM_URL",
                "must be an http:// or https:// URL, e.g. https://api.openai.com/v1",
            ));
        }
        let billing_portal_return_url =
            var("BILLING_PORTAL_RETURN_URL").unwrap_or_else(|| format!("{site_url}/credits"));
        if !(billing_portal_return_url.starts_with("http://") || billing_portal_return_url.starts_with("https://")) {
            return Err(invalid("BILLING_PORTAL_RETURN_URL", "must start with http:// or https://"));
        }

        let defaults = PasswordHashing::default();
        let password_hashing = PasswordHashing {
            memory_kib: parse_number("PASSWORD_HASH_MEMORY_KIB", defaults.memory_kib, 8, 1 << 21)?,
            iterations: parse_number("PASSWORD_HASH_ITERATIONS", defaults.iterations, 1, 64)?,
            parallelism: parse_number("PASSWORD_HASH_PARALLELISM", defaults.parallelism, 1, 16)?,
        };
        if password_hashing.memory_kib < 8 * password_hashing.parallelism {
            return Err(invalid("PASSWORD_HASH_MEMORY_KIB", "must be at least 8 times PASSWORD_HASH_PARALLELISM"));
        }

        let is_sqlite = database_url.starts_with("sqlite:");
        let default_workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // SQLite has one writer: one connection queues requests in order instead of leaving them
        // to SQLite's sleeping busy handler, whose sleeps set the tail latency under load.
        let database_max_connections =
            parse_number("DATABASE_MAX_CONNECTIONS", if is_sqlite { 1 } else { 16 }, 1, 1000)?;
        Ok(Self {
            environment,
            bind,
            database_url,
            database_max_connections,
            database_acquire_timeout: Duration::from_secs(parse_number("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 5, 1, 300)?),
            sqlite_synchronous,
            data_dir,
            jwt_secret,
            admin_api_key,
            site_url,
            access_token_ttl: Duration::from_secs(parse_number("ACCESS_TOKEN_TTL_SECONDS", 900, 30, 86_400)?),
            refresh_token_ttl: Duration::from_secs(parse_number("REFRESH_TOKEN_TTL_DAYS", 30u64, 1, 365)? * 86_400),
            password_hashing,
            password_hash_concurrency: parse_number("PASSWORD_HASH_CONCURRENCY", default_workers, 1, 256)?,
            password_hash_queue_timeout: Duration::from_secs(parse_number(
                "PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS",
                10,
                1,
                300,
            )?),
            refresh_token_reuse_grace: Duration::from_secs(parse_number(
                "REFRESH_TOKEN_REUSE_GRACE_SECONDS",
                10,
                0,
                300,
            )?),
            login_max_failures: parse_number("LOGIN_MAX_FAILURES", 5, 1, 1000)?,
            login_lockout: Duration::from_secs(parse_number("LOGIN_LOCKOUT_SECONDS", 900, 1, 86_400)?),
            workers: parse_number("WORKERS", default_workers, 1, 256)?,
            request_body_timeout: Duration::from_secs(parse_number("REQUEST_BODY_TIMEOUT_SECONDS", 15, 1, 300)?),
            // One per core, leaving half the pool to the other requests. More batches at once
            // only split the queue into smaller batches that wait on each other for the CPU.
            spend_batch_runners: parse_number(
                "SPEND_BATCH_RUNNERS",
                u32::try_from(default_workers).unwrap_or(2).min(database_max_connections / 2).max(1),
                1,
                64,
            )?,
            expiry_interval: Duration::from_secs(parse_number("EXPIRY_INTERVAL_SECONDS", 30, 1, 86_400)?),
            frontend_dir: PathBuf::from(var("FRONTEND_DIR").unwrap_or_else(|| "./frontend/dist".to_owned())),
            migrate_on_start: parse_bool("MIGRATE_ON_START", true)?,
            billing_portal_return_url,
            payments,
            stripe_secret_key: stripe_secret_key.map(Secret::new),
            stripe_webhook_secret: stripe_webhook_secret.map(Secret::new),
            stripe_publishable_key: var("STRIPE_PUBLISHABLE_KEY"),
            stripe_api_base,
            rate_limit_spend_per_second: parse_number("RATE_LIMIT_SPEND_PER_SECOND", 100, 1, 1_000_000)?,
            rate_limit_auth_per_minute: parse_number("RATE_LIMIT_AUTH_PER_MINUTE", 60, 1, 1_000_000)?,
            cors_origins: parse_origins("CORS_ORIGINS")?,
            allowed_return_origins: parse_origins("ALLOWED_RETURN_ORIGINS")?,
            gateway_upstream_url,
            gateway_upstream_key: var("GATEWAY_UPSTREAM_KEY").map(Secret::new),
            gateway_timeout: Duration::from_secs(parse_number("GATEWAY_TIMEOUT_SECONDS", 600, 1, 3600)?),
            gateway_drain_timeout: Duration::from_secs(parse_number("GATEWAY_DRAIN_SECONDS", 120, 1, 3600)?),
            gateway_lease_calls: parse_number("GATEWAY_LEASE_CALLS", 64, 0, 1024)?,
            webhook_timeout: Duration::from_secs(parse_number("WEBHOOK_TIMEOUT_SECONDS", 10, 1, 300)?),
            webhook_retry_schedule: parse_schedule("WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_RETRY_SCHEDULE)?,
            webhook_disable_after: Duration::from_secs(parse_number(
                "WEBHOOK_DISABLE_AFTER_SECONDS",
                5 * 86_400,
                1,
                365 * 86_400,
            )?),
            webhook_allow_private_urls: parse_bool("WEBHOOK_ALLOW_PRIVATE_URLS", false)?,
            event_retention: chrono::Duration::days(parse_number("EVENT_RETENTION_DAYS", 30, 1, 3650)?),
            stream_heartbeat: Duration::from_secs(parse_number("STREAM_HEARTBEAT_SECONDS", 15, 1, 3600)?),
            stream_buffer: parse_number("STREAM_BUFFER_EVENTS", 256, 1, 65_536)?,
        })
    }

    /// True when the database is an embedded SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// `sandbox` (checkout and the portal are local pages and no real payment is taken), or
    /// Stripe's `test` or `live` mode, told by the key.
    pub fn stripe_mode(&self) -> &'static str {
        match (self.payments, &self.stripe_secret_key) {
            (Payments::Sandbox, _) | (Payments::Stripe, None) => "sandbox",
            (Payments::Stripe, Some(key)) if key.expose().contains("_live_") => "live",
            (Payments::Stripe, Some(_)) => "test",
        }
    }

    /// Where a product may send its customers back to: `SITE_URL`'s origin and
    /// `ALLOWED_RETURN_ORIGINS`.
    pub fn allowed_return_origins(&self) -> Vec<String> {
        let site = url::Url::parse(&self.site_url).map(|u| u.origin().ascii_serialization()).ok();
        site.into_iter().chain(self.allowed_return_origins.iter().cloned()).collect()
    }

    /// Whether cookies should carry `Secure`: whenever the site is served over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.site_url.starts_with("https://")
    }
}

/// Standard Webhooks' suggested waits: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h.
pub const DEFAULT_WEBHOOK_RETRY_SCHEDULE: &str = "5,300,1800,7200,18000,36000";

/// Comma-separated seconds, each at most a day, at most 20 of them (an empty list: no retries).
fn parse_schedule(name: &'static str, default: &str) -> Result<Vec<Duration>, ConfigError> {
    let raw = env::var(name).ok().map(|v| v.trim().to_owned()).unwrap_or_else(|| default.to_owned());
    let waits = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<u64>() {
            Ok(n) if n <= 86_400 => Ok(Duration::from_secs(n)),
            _ => Err(invalid(name, format!("`{s}` is not a number of seconds from 0 to 86400"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if waits.len() > 20 {
        return Err(invalid(name, "at most 20 retries"));
    }
    Ok(waits)
}

fn parse_origins(name: &'static str) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = var(name) else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://")) && !origin.ends_with('/');
            if ok {
                Ok(origin.to_owned())
            } else {
                Err(invalid(name, format!("`{origin}` is not an origin like https://app.example.com")))
            }
        })
        .collect()
}

/// In development without `JWT_SECRET`, keep a generated secret in the data folder so sessions
/// survive restarts, and say so. The file is readable by its owner only (0600); a looser existing
/// file is tightened.
fn load_or_create_dev_secret(data_dir: &std::path::Path) -> Result<String, ConfigError> {
    use std::{
        io::Write,
        os::unix::fs::{OpenOptionsExt, PermissionsExt},
    };

    let path = data_dir.join("jwt-secret");
    let cannot =
        |what: &str, e: std::io::Error| invalid("TOLLGATE_DATA_DIR", format!("cannot {what} {}: {e}", path.display()));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= MIN_JWT_SECRET_LEN {
            let mode = std::fs::metadata(&path).map_err(|e| cannot("read", e))?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| cannot("restrict", e))?;
                log::warn!("{} was readable by others (mode {:o}); made it 0600", path.display(), mode & 0o777);
            }
            log::warn!("JWT_SECRET is not set: using the development secret kept in {}", path.display());
            return Ok(existing);
        }
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| invalid("TOLLGATE_DATA_DIR", format!("cannot create {}: {e}", data_dir.display())))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    // `mode` applies only to a new file; an existing (too short) one is restricted before it is
    // rewritten, so the secret is never readable by others.
    if path.exists() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| cannot("restrict", e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| cannot("write", e))?;
    file.write_all(secret.as_bytes()).map_err(|e| cannot("write", e))?;
    log::warn!(
        "JWT_SECRET is not set: generated a development secret and kept it in {} (set JWT_SECRET in production)",
        path.display()
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::load_or_create_dev_secret;

    /// The file's permission bits, in octal as `ls` shows them.
    fn mode(path: &std::path::Path) -> String {
        format!("{:o}", std::fs::metadata(path).unwrap().permissions().mode() & 0o777)
    }

    #[test]
    fn dev_secret_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let secret = load_or_create_dev_secret(&data_dir).unwrap();
        let path = data_dir.join("jwt-secret");
        assert_eq!(mode(&path), "600", "a new secret file is readable by its owner only");

        // A file left world-readable by an older version is tightened and still used.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_dev_secret(&data_dir).unwrap(), secret);
        assert_eq!(mode(&path), "600");

        // A too-short file is replaced by a new secret, still private.
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let replaced = load_or_create_dev_secret(&data_dir).unwrap();
        assert_ne!(replaced, secret);
        assert_eq!(mode(&path), "600");
    }
}
