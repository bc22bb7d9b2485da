//! The pages that stand in for Stripe's hosted checkout and portal in sandbox mode. Plain HTML
//! forms, served by the server itself, labelled as a sandbox on every line that matters.

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite},
    get,
    http::header,
    post, web,
};
use serde::Deserialize;

use super::{
    dto::CatalogPrice,
    portal,
    service::{self, BillingError},
};
use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {}", minor / 100, minor % 100, currency.to_uppercase())
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>
body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1f2937}}
.banner{{background:#fef3c7;border:1px solid #f59e0b;padding:.75rem;border-radius:.5rem;font-weight:600}}
.card{{border:1px solid #d1d5db;border-radius:.75rem;padding:1.25rem;margin-top:1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:.5rem;border:0;background:#4f46e5;color:#fff;cursor:pointer}}
button.secondary{{background:#e5e7eb;color:#111827}} form{{display:inline-block;margin-right:.5rem}}
</style></head><body><p class="banner" role="status">Sandbox mode: this page stands in for Stripe. No real payment is taken.</p>{body}</body></html>"#
        ))
}

/// The sandbox's pages; mounted only when the server runs in sandbox mode.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(checkout_page).service(pay).service(cancel).service(portal_page).service(portal_action);
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// The sandbox checkout page: pay or cancel.
#[get("/sandbox/checkout/{id}")]
pub async fn checkout_page(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (session, price) = service::find_session(&state.db, &id).await?;
    let id = escape(&session.id);
    let what = match price.interval.as_deref() {
        Some(every) => format!("{} credits every {every}", price.credits),
        None => format!("{} credits", price.credits),
    };
    let action = if session.status == crate::domain::billing::CheckoutStatus::Open.as_str() {
        format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/pay"><button type="submit">Pay {amount}</button></form>
<form method="post" action="/sandbox/checkout/{id}/cancel"><button type="submit" class="secondary">Cancel</button></form>"#,
            amount = money(price.unit_amount, &price.currency)
        )
    } else {
        format!("<p>This checkout session is {}.</p>", escape(&session.status))
    };
    Ok(page(
        "Sandbox checkout",
        &format!(
            r#"<main class="card"><h1>{name}</h1><p>{what}</p><p><strong>{amount}</strong>{per}</p>{action}</main>"#,
            name = escape(&price.product_name),
            amount = money(price.unit_amount, &price.currency),
            per = price.interval.as_deref().map(|i| format!(" per {i}")).unwrap_or_default(),
        ),
    ))
}

/// Pays the session through the same fulfilment the webhooks use, then returns to the app.
#[post("/sandbox/checkout/{id}/pay")]
pub async fn pay(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let next = service::pay_sandbox_session(&state.db, &state.clock, &state.settings.site_url, &id).await?;
    Ok(see_other(next))
}

/// Cancels the session and returns to the app.
#[post("/sandbox/checkout/{id}/cancel")]
pub async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let next = service::cancel_sandbox_session(&state.db, &state.settings.site_url, &id).await?;
    Ok(see_other(next))
}

#[derive(Debug, Deserialize)]
pub struct PortalQuery {
    token: Option<String>,
}

/// The portal's forms: `cancel=true|false` (cancel at period end, or resume) or `plan=<price id>`
/// (switch plans).
#[derive(Debug, Deserialize)]
pub struct PortalForm {
    cancel: Option<String>,
    plan: Option<String>,
}

fn portal_expired() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "This portal link has expired or was already used; open the portal again from the app.",
    )
}

/// The user of the portal session the browser's cookie carries.
async fn portal_user(state: &AppState, req: &HttpRequest) -> Result<uuid::Uuid, ApiError> {
    let Some(cookie) = req.cookie(portal::SESSION_COOKIE) else {
        return Err(portal_expired());
    };
    portal::session_user(&state.db, &state.clock, cookie.value()).await?.ok_or_else(portal_expired)
}

/// The other plans of the catalog, each with a button that switches to it.
fn plan_changes(plans: &[CatalogPrice], current: &str) -> String {
    let others: Vec<&CatalogPrice> = plans.iter().filter(|p| p.price_id != current).collect();
    if others.is_empty() {
        return String::new();
    }
    let buttons: String = others
        .iter()
        .map(|plan| {
            let every = plan.interval.as_deref().unwrap_or("period");
            format!(
                r#"<li><form method="post" action="/sandbox/portal"><input type="hidden" name="plan" value="{id}"><button type="submit" class="secondary">Switch to {name}</button></form> {price} per {every}, {credits} credits every {every}</li>"#,
                id = escape(&plan.price_id),
                name = escape(&plan.name),
                price = money(plan.unit_amount, &plan.currency),
                credits = plan.credits,
                every = escape(every),
            )
        })
        .collect();
    format!(
        r#"<h2>Change plan</h2><p>Switching starts a new period of the new plan today and grants its credits at once (as
Stripe does for a plan change invoiced immediately). The credits of your current period stay until that period
would have ended.</p><ul>{buttons}</ul>"#
    )
}

/// The sandbox billing portal: see the plan, switch to another plan of the catalog, cancel at
/// period end or resume. Opened with a single-use link (`?token=`), which is traded at once for a
/// portal session cookie and a redirect to the same page without the token.
#[get("/sandbox/portal")]
pub async fn portal_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<PortalQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &query.token {
        let (_, session) = portal::open_link(&state.db, &state.clock, token).await?.ok_or_else(portal_expired)?;
        let cookie = Cookie::build(portal::SESSION_COOKIE, session)
            .path("/sandbox/portal")
            .http_only(true)
            .secure(state.settings.secure_cookies())
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(portal::SESSION_TTL.num_seconds()))
            .finish();
        let mut response = see_other("/sandbox/portal".to_owned());
        response.add_cookie(&cookie).map_err(ApiError::internal)?;
        return Ok(response);
    }
    let user_id = portal_user(&state, &req).await?;
    let current = service::subscription(&state.db, user_id).await?.subscription;
    let back = state.settings.billing_portal_return_url.clone();
    let body = match current {
        None => "<main class=\"card\"><h1>Billing portal</h1><p>You have no subscription. Plans are bought on the \
                 Credits page.</p></main>"
            .to_owned(),
        Some(sub) => {
            let changes = if crate::domain::billing::SubscriptionStatus::LIVE.contains(&sub.status) {
                plan_changes(&service::catalog(&state.db, "sandbox", None).await?.plans, &sub.price_id)
            } else {
                String::new()
            };
            let (label, value) =
                if sub.cancel_at_period_end { ("Resume plan", "false") } else { ("Cancel at period end", "true") };
            format!(
                r#"<main class="card"><h1>Billing portal</h1><p><strong>{plan}</strong>: {status}</p>
<p>Current period ends {end}.{note}</p>
<form method="post" action="/sandbox/portal"><input type="hidden" name="cancel" value="{value}"><button type="submit">{label}</button></form>
{changes}</main>"#,
                plan = escape(sub.plan_name.as_deref().unwrap_or(&sub.price_id)),
                status = escape(sub.status.as_str()),
                end = sub.current_period_end.format("%Y-%m-%d"),
                note = if sub.cancel_at_period_end { " It will not renew." } else { "" },
            )
        }
    };
    Ok(page("Sandbox billing portal", &format!("{body}<p><a href=\"{}\">Return to Tollgate</a></p>", escape(&back))))
}

/// Applies the portal's action and shows the portal again. The session cookie is `SameSite=Lax`,
/// so another site cannot post this form for the user.
#[post("/sandbox/portal")]
pub async fn portal_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<PortalForm>,
) -> Result<HttpResponse, ApiError> {
    let user_id = portal_user(&state, &req).await?;
    let form = form.into_inner();
    let done = match (form.plan, form.cancel) {
        (Some(plan), _) => match service::change_sandbox_plan(&state.db, &state.clock, user_id, &plan).await {
            Ok(_) => Ok(()),
            Err(BillingError::UnknownPrice(_)) => {
                let message = format!("plan `{plan}` is not a plan of the catalog");
                return Err(ApiError::field("plan", "unknown_plan", message));
            }
            Err(e) => Err(e),
        },
        (None, Some(at_period_end)) => {
            service::set_cancel_at_period_end(&state.db, &state.clock, user_id, at_period_end == "true")
                .await
                .map(|_| ())
        }
        (None, None) => return Err(ApiError::field("plan", "required", "plan (or cancel) is required")),
    };
    match done {
        Ok(()) | Err(BillingError::NoSubscription) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/sandbox/portal".to_owned()))
}
