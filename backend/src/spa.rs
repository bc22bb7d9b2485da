//! Serves the built SPA: files from the frontend folder, long-cached when their names are
//! hashed, and `index.html` (never cached) for every other GET so deep links work. Without a
//! build, `/` says so in one line.

use std::path::{Component, Path, PathBuf};

use actix_web::{HttpRequest, HttpResponse, http::header, web};

use crate::state::AppState;

fn safe_join(root: &Path, request_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for component in Path::new(request_path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(path)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The Next.js seed's page URLs and the SPA's pages that replaced them. Old bookmarks, links in
/// mails, and a `BILLING_PORTAL_RETURN_URL=…/dashboard` carried over from the seed land there.
const MOVED_PAGES: [(&str, &str); 4] =
    [("/dashboard", "/"), ("/example-ai", "/example"), ("/auth/signin", "/sign-in"), ("/auth/signup", "/sign-up")];

/// A permanent redirect (308) from a seed page to its Tollgate page, keeping the query string.
pub fn moved_page(req: &HttpRequest) -> Option<HttpResponse> {
    let path = req.path();
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let (_, to) = MOVED_PAGES.iter().find(|(from, _)| *from == path)?;
    let location = match req.query_string() {
        "" => (*to).to_owned(),
        query => format!("{to}?{query}"),
    };
    Some(HttpResponse::PermanentRedirect().insert_header((header::LOCATION, location)).finish())
}

/// The GET fallback: a file of the SPA, or its `index.html`.
pub async fn serve(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let root = &state.settings.frontend_dir;
    let index = root.join("index.html");
    if let Some(file) = safe_join(root, req.path()).filter(|p| p.is_file())
        && let Ok(bytes) = tokio::fs::read(&file).await
    {
        {
            let hashed = req.path().starts_with("/assets/");
            let cache = if hashed { "public, max-age=31536000, immutable" } else { "no-cache" };
            return HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, content_type(&file)))
                .insert_header((header::CACHE_CONTROL, cache))
                .body(bytes);
        }
    }
    match tokio::fs::read(&index).await {
        Ok(bytes) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(bytes),
        Err(_) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(
                "<!doctype html><title>Tollgate</title><p>Tollgate is running. The SPA is not built \
                 (see README); the API is under <a href=\"/docs/\">/docs</a>.</p>\n",
            ),
    }
}
