//! The Next.js seed's API paths (`/api/credits/spend` and the rest; see `seed-summary.md`): a
//! client written for the seed gets a 404 whose `detail` names the `/api/v1` route to call
//! instead, not a bare "no route". The seed's webhook path, `/api/webhooks/stripe`, is a real
//! route (`billing::handlers::stripe_webhook_legacy`) and never reaches this.

use actix_web::http::Method;

use crate::routes::KnownRoutes;

/// Seed paths whose Tollgate route is not simply the same path under `/api/v1`.
const RENAMED: [(&str, &str); 12] = [
    ("/api/stripe/checkout", "/api/v1/billing/checkout-session"),
    ("/api/stripe/checkout-session", "/api/v1/billing/checkout-session"),
    ("/api/stripe/portal", "/api/v1/billing/portal-link"),
    ("/api/stripe/portal-link", "/api/v1/billing/portal-link"),
    ("/api/stripe/webhook", "/api/v1/webhooks/stripe"),
    ("/api/credits/history", "/api/v1/credits/ledger"),
    ("/api/credits/usage", "/api/v1/usage"),
    ("/api/auth/signin", "/api/v1/auth/login"),
    ("/api/auth/callback/credentials", "/api/v1/auth/login"),
    ("/api/auth/signup", "/api/v1/auth/register"),
    ("/api/auth/session", "/api/v1/me"),
    ("/api/auth/signout", "/api/v1/auth/logout"),
];

/// `POST /api/v1/credits/spend`, or `GET or HEAD …` for a path with several methods.
fn route(known: &KnownRoutes, path: &str) -> Option<String> {
    let methods = known.allowed(path)?;
    let methods: Vec<&str> = methods.iter().filter(|m| **m != Method::HEAD).map(Method::as_str).collect();
    Some(format!("{} {path}", methods.join(" or ")))
}

/// The `detail` of a 404 for a path outside `/api/v1` under `/api/`: the route to use instead.
pub fn api_hint(known: &KnownRoutes, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/")?;
    if rest.starts_with("v1/") || rest == "v1" {
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    let instead = RENAMED
        .iter()
        .find(|(seed, _)| *seed == trimmed)
        .and_then(|(_, tollgate)| route(known, tollgate))
        .or_else(|| route(known, &format!("/api/v1/{}", rest.trim_end_matches('/'))));
    Some(match instead {
        Some(instead) => format!(
            "`{trimmed}` is a path of the Next.js seed; Tollgate's API is under /api/v1: use `{instead}` \
             (all routes: /docs)."
        ),
        None if rest.starts_with("trpc/") || rest == "trpc" => "Tollgate has no tRPC endpoint: read the balance \
             with `GET /api/v1/credits/balance`, the history with `GET /api/v1/credits/ledger` and the plan with \
             `GET /api/v1/billing/subscription` (all routes: /docs)."
            .to_owned(),
        None => format!("No route for `{trimmed}`: Tollgate's API is under /api/v1 (all routes: /docs)."),
    })
}
