//! Builds the application once, for `main`, the spec generator and the tests: the route table,
//! the middleware, the error handlers, and the background tasks.

use std::{net::TcpListener, time::Duration};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::Server,
    http::{Method, header},
    middleware::{Logger, from_fn},
    web,
};
use sea_orm::DatabaseConnection;
use utoipa::OpenApi;
use utoipa_actix_web::{AppExt, scope, service_config::ServiceConfig};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth, billing, clock::Clock, config::Settings, credits, customers, db, error, example, gateway, health,
    openapi::ApiDoc, request_id, spa, state::AppState, webhooks,
};

/// Every route under `/api/v1`, registered with its documentation.
pub fn api_routes(cfg: &mut ServiceConfig) {
    cfg.service(auth::handlers::register_user)
        .service(auth::handlers::create_session)
        .service(auth::handlers::refresh_session)
        .service(auth::handlers::delete_session)
        .service(auth::handlers::get_me)
        .service(auth::api_keys::create_api_key)
        .service(auth::api_keys::list_api_keys)
        .service(auth::api_keys::revoke_api_key)
        .service(auth::server_keys::create_server_key)
        .service(auth::server_keys::list_server_keys)
        .service(auth::server_keys::revoke_server_key)
        .service(customers::handlers::list_customers)
        .service(customers::handlers::upsert_customer)
        .service(customers::handlers::get_customer)
        .service(customers::handlers::customer_balance)
        .service(customers::handlers::customer_spend)
        .service(customers::handlers::customer_check)
        .service(customers::handlers::customer_grant)
        .service(customers::handlers::customer_create_hold)
        .service(customers::handlers::customer_get_hold)
        .service(customers::handlers::customer_capture_hold)
        .service(customers::handlers::customer_release_hold)
        .service(customers::handlers::customer_ledger)
        .service(customers::handlers::customer_usage)
        .service(customers::history::customer_balance_history)
        .service(customers::handlers::customer_checkout_session)
        .service(customers::handlers::customer_portal_session)
        .service(customers::handlers::admin_get_customer)
        .service(customers::handlers::admin_customer_ledger)
        .service(customers::hosted::session)
        .service(customers::hosted::balance)
        .service(customers::hosted::ledger)
        .service(customers::hosted::usage)
        .service(customers::hosted::subscription)
        .service(customers::hosted::checkout)
        .service(credits::handlers::get_balance)
        .service(credits::handlers::spend_credits)
        .service(credits::handlers::check_credits)
        .service(credits::handlers::grant_credits)
        .service(credits::handlers::create_hold)
        .service(credits::handlers::get_hold)
        .service(credits::handlers::capture_hold)
        .service(credits::handlers::release_hold)
        .service(credits::handlers::list_ledger_entries)
        .service(credits::handlers::export_ledger_csv)
        .service(credits::handlers::get_balance_history)
        .service(credits::handlers::get_usage)
        .service(credits::handlers::list_features)
        .service(credits::handlers::create_feature)
        .service(credits::handlers::update_feature)
        .service(credits::handlers::reconcile_ledger)
        .service(crate::events::alerts::get_own_alerts)
        .service(crate::events::alerts::set_own_alerts)
        .service(crate::events::alerts::get_customer_alerts)
        .service(crate::events::alerts::set_customer_alerts)
        .service(crate::events::handlers::list_events)
        .service(crate::events::handlers::get_event)
        .service(gateway::handlers::list_models)
        .service(gateway::handlers::admin_list_models)
        .service(gateway::handlers::create_model)
        .service(gateway::handlers::update_model)
        .service(example::handlers::estimate_summary)
        .service(example::handlers::use_credits)
        .service(billing::handlers::get_catalog)
        .service(billing::handlers::create_checkout_session)
        .service(billing::handlers::create_portal_link)
        .service(billing::handlers::get_portal_link)
        .service(billing::handlers::get_subscription)
        .service(billing::handlers::sync_prices)
        .service(billing::handlers::stripe_webhook)
        .service(billing::handlers::list_stripe_events)
        .service(billing::handlers::retry_stripe_event)
        .service(webhooks::handlers::create_webhook_endpoint)
        .service(webhooks::handlers::list_webhook_endpoints)
        .service(webhooks::handlers::get_webhook_endpoint)
        .service(webhooks::handlers::update_webhook_endpoint)
        .service(webhooks::handlers::delete_webhook_endpoint)
        .service(webhooks::handlers::rotate_webhook_secret)
        .service(webhooks::handlers::list_webhook_deliveries)
        .service(webhooks::handlers::redeliver_webhook_event)
        .service(crate::streams::handlers::stream_credits)
        .service(crate::streams::handlers::stream_customer)
        .service(crate::streams::handlers::stream_hosted);
}

/// Routes outside `/api/v1`, also documented.
fn root_routes(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz).service(health::readyz).service(billing::handlers::stripe_webhook_legacy);
}

/// The OpenAI-compatible gateway, under `/gateway/v1`.
fn gateway_routes(cfg: &mut ServiceConfig) {
    cfg.service(gateway::handlers::chat_completions).service(gateway::handlers::list_gateway_models);
}

/// The spec, collected from the route table.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(root_routes)
        .service(scope("/gateway/v1").configure(gateway_routes))
        .service(scope("/api/v1").configure(api_routes))
        .split_for_parts();
    let mut api = api;
    crate::openapi::complete_spec(&mut api);
    api
}

async fn fallback(
    req: HttpRequest,
    state: web::Data<AppState>,
    known: web::Data<crate::routes::KnownRoutes>,
) -> HttpResponse {
    use actix_web::ResponseError;
    if let Some(methods) = known.allowed(req.path()) {
        let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        let mut response = error::method_not_allowed(req).await.error_response();
        if let Ok(value) = header::HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        return response;
    }
    // A client of the Next.js seed: name the route to use instead.
    if let Some(detail) = crate::seed::api_hint(&known, req.path()) {
        return error::ApiError::new(error::ErrorCode::NotFound, detail).error_response();
    }
    // The sandbox's pages exist only in sandbox mode; in Stripe mode their paths are unknown,
    // not the SPA.
    let api_path = req.path().starts_with("/api/")
        || req.path() == "/api"
        || req.path().starts_with("/sandbox/")
        || req.path() == "/sandbox";
    if req.method() == Method::GET && !api_path {
        if let Some(page) = spa::moved_page(&req) {
            return page;
        }
        return spa::serve(req, state).await;
    }
    error::not_found(req).await.error_response()
}

/// A running (not yet awaited) server and what it needs.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    shutdown: Shutdown,
}

/// Starts the server's graceful shutdown, as SIGTERM does: open event streams end at once, then
/// in-flight requests finish. The tests stop their servers with it.
#[derive(Clone)]
pub struct Shutdown(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Shutdown {
    fn new() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::channel(false).0))
    }

    pub fn start(&self) {
        self.0.send_replace(true);
    }

    async fn requested(&self) {
        let _ = self.0.subscribe().wait_for(|started| *started).await;
    }
}

/// Waits for SIGTERM (graceful: in-flight requests finish) or SIGINT/SIGQUIT (not graceful), as
/// actix-web's own handling does; true when the shutdown is graceful.
async fn stop_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit())) {
            (Ok(mut term), Ok(mut int), Ok(mut quit)) => tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM received; starting graceful shutdown"); true }
                _ = int.recv() => { log::info!("SIGINT received; shutting down"); false }
                _ = quit.recv() => { log::info!("SIGQUIT received; shutting down"); false }
            },
            _ => {
                log::warn!("cannot listen for signals; stop the server by killing it");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        false
    }
}

impl Application {
    /// Connects, migrates (unless disabled), binds and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// Builds with a clock of the caller's (the tests move theirs forward instead of sleeping).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let db = db::connect(&settings).await?;
        if settings.is_sqlite() && !db::sqlite_plans_are_stable(&db).await? {
            log::warn!(
                "this build's SQLite lacks SQLITE_ENABLE_QPSG (the repository's .cargo/config.toml sets it): every \
                 query with a bound LIMIT is compiled again each time it runs, which slows SQLite down"
            );
        }
        if settings.migrate_on_start {
            db::migrate(&db, &settings).await?;
        }
        if settings.payments == crate::config::Payments::Sandbox {
            billing::service::seed_sandbox_catalog(&db, &clock).await?;
        }
        Self::build_with_db(settings, db, clock).await
    }

    /// Builds the server over an existing pool (the tests share theirs).
    pub async fn build_with_db(settings: Settings, db: DatabaseConnection, clock: Clock) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind)?;
        let port = listener.local_addr()?.port();
        let workers = settings.workers;
        let state = AppState::new(db, settings, clock)?;
        let server = run(listener, state.clone(), workers)?;
        Ok(Self { port, server, state, shutdown: Shutdown::new() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What starts this server's shutdown from within the process.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM (in-flight requests finish), SIGINT or `Shutdown::start`, with the
    /// background tasks and the event streams' hub. Shutting down ends the open event streams
    /// first: they would otherwise hold the graceful shutdown for its whole 30 seconds.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let background = tokio::spawn(background_tasks(self.state.clone()));
        let dispatcher = tokio::spawn(webhooks::dispatcher::run(self.state.clone()));
        let checkpoints =
            tokio::spawn(crate::db::checkpoint_sqlite((*self.state.settings).clone(), self.state.wal_restart.clone()));
        let customer_index = tokio::spawn(index_customers(self.state.clone()));
        self.state.streams.start(
            self.state.db.clone(),
            self.state.settings.database_url.clone(),
            self.state.events.subscribe(),
        );
        let handle = self.server.handle();
        let hub = self.state.streams.clone();
        let shutdown = self.shutdown.clone();
        let stopper = tokio::spawn(async move {
            let graceful = tokio::select! {
                graceful = stop_signal() => graceful,
                () = shutdown.requested() => true,
            };
            hub.close_all();
            handle.stop(graceful).await;
        });
        let result = self.server.await;
        self.state.streams.close_all();
        if let Some(gateway) = &self.state.gateway {
            gateway.leases.release_unused(&self.state.ledger).await;
        }
        stopper.abort();
        background.abort();
        dispatcher.abort();
        checkpoints.abort();
        customer_index.abort();
        result
    }
}

/// SQLite: copies new events' customers into `customer_events` every second (see
/// `events::index_customers`); ends at once on PostgreSQL.
async fn index_customers(state: AppState) {
    if !state.settings.is_sqlite() {
        return;
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // A backlog (a long stop, a burst) is copied a batch at a time, each its own transaction.
        loop {
            match crate::events::index_customers(&state.db).await {
                Ok(n) if n >= crate::events::INDEX_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    log::warn!("events: indexing customers: {e}");
                    break;
                }
            }
        }
    }
}

/// Posts due expiries and releases overdue holds, every `EXPIRY_INTERVAL_SECONDS`.
async fn background_tasks(state: AppState) {
    let mut ticker = tokio::time::interval(state.settings.expiry_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match credits::expiry::expire_due(&state.ledger).await {
            Ok(0) => {}
            Ok(n) => log::info!("expiry: settled {n} wallets"),
            Err(e) => log::warn!("expiry: {e}"),
        }
        let horizon = state.clock.now() - state.settings.event_retention;
        match crate::events::purge(&state.db, horizon).await {
            Ok(0) => {}
            Ok(n) => log::info!("events: purged {n} older than the retention"),
            Err(e) => log::warn!("events: purge: {e}"),
        }
        state.limits.shrink();
    }
}

/// Reads the database pool into its gauges just before `/metrics` is answered.
async fn observe_pool_on_scrape(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.path() == "/metrics"
        && let Some(state) = req.app_data::<web::Data<AppState>>()
    {
        state.metrics.observe_pool(&state.db);
        if let Err(e) = state.metrics.observe_ledger(&state.db).await {
            log::warn!("metrics: cannot read the ledger's totals: {e}");
        }
    }
    next.call(req).await
}

/// The SPA's policy: its own scripts only, inline styles (uPlot and Swagger UI set them), no
/// framing, and forms that post only back here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

/// Headers every response carries, unless a handler set its own.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "strict-origin-when-cross-origin"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// With `CORS_ORIGINS`, those origins may call the API with credentials. Without it the
/// middleware is not installed: the browser's same-origin policy keeps cross-origin calls out,
/// while the SPA's own requests (which carry `Origin` too) pass.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default();
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors.allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .allowed_header("idempotency-key")
        .allowed_header("x-request-id")
        .expose_headers(["x-request-id", "idempotent-replayed", "retry-after"])
        .supports_credentials()
        .max_age(600)
}

/// The access log: method and path only. The query string is left out because links carry
/// single-use tokens there (portal links, checkout return pages); no credential reaches a log.
fn access_log() -> Logger {
    Logger::new("%a \"%{request_line}xi\" %s %b %Dms rid=%{x-request-id}i")
        .custom_request_replace("request_line", |req| format!("{} {}", req.method(), req.path()))
}

fn run(listener: TcpListener, state: AppState, workers: usize) -> anyhow::Result<Server> {
    let api = spec();
    let known = web::Data::new(crate::routes::KnownRoutes::from_spec(&api));
    // The spec is served as the bytes it serialises to, made once: a copy of the document per
    // worker (and one more for the docs page) cost each of them megabytes.
    let spec_json = web::Bytes::from(serde_json::to_vec(&api)?);
    drop(api);
    let origins = state.settings.cors_origins.clone();
    let prometheus = actix_web_prom::PrometheusMetricsBuilder::new("tollgate")
        .endpoint("/metrics")
        .registry(state.metrics.registry.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let sandbox = state.payments.is_sandbox();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(known.clone())
            .app_data(web::JsonConfig::default().limit(256 * 1024).error_handler(error::json_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .into_utoipa_app()
            .configure(root_routes)
            .service(scope("/gateway/v1").configure(gateway_routes))
            .service(scope("/api/v1").configure(api_routes))
            .into_app();
        let app = app.service(customers::hosted::open);
        app.configure(|cfg| {
            if sandbox {
                billing::sandbox::routes(cfg);
            }
        })
        .service(SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .route(
            "/openapi.json",
            web::get().to({
                let spec_json = spec_json.clone();
                move || {
                    let body = spec_json.clone();
                    async move { HttpResponse::Ok().content_type("application/json").body(body) }
                }
            }),
        )
        .route(
            "/docs",
            web::get().to(|| async { HttpResponse::Found().insert_header((header::LOCATION, "/docs/")).finish() }),
        )
        .default_service(web::to(fallback))
        .wrap(from_fn(crate::head::as_get))
        .wrap(from_fn(crate::body::guard))
        .wrap(security_headers())
        .wrap(actix_web::middleware::Condition::new(!origins.is_empty(), cors(&origins)))
        .wrap(prometheus.clone())
        .wrap(from_fn(observe_pool_on_scrape))
        .wrap(access_log())
        .wrap(from_fn(request_id::middleware))
    })
    .workers(workers)
    // `Application::run_until_stopped` listens for the signals, to end the event streams first.
    .disable_signals()
    .shutdown_timeout(30)
    .keep_alive(Duration::from_secs(75))
    // Answers go out as written: a stream's small events must not wait for the client's delayed
    // acknowledgement of the one before (Nagle's algorithm), which costs up to 40 ms each.
    .tcp_nodelay(true)
    // A client has 10 s to send its request head and 5 s to go away after the answer.
    .client_request_timeout(Duration::from_secs(10))
    .client_disconnect_timeout(Duration::from_secs(5))
    .listen(listener)?
    .run();
    Ok(server)
}
