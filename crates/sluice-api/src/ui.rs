//! The built-in web UI: static files compiled into the binary (`include_str!`/`include_bytes!`
//! over `crates/sluice-api/ui/`), served at `/ui` and `/ui/assets/*` without a token since they
//! hold no data. The page signs in with an API token the user pastes (kept in `sessionStorage`)
//! and reads everything through the `/v1` API with it, so the server's role checks apply to the
//! UI exactly as to any other client. No build step and no CDN: the chart library (uPlot, MIT)
//! is vendored under `ui/vendor/`.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// One embedded file: name under `/ui/assets/`, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

const INDEX: &str = include_str!("../ui/index.html");

const ASSETS: &[Asset] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/charts.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/pages.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/style.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/vendor/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../ui/vendor/uPlot.LICENSE"),
    ),
];

/// Scripts and styles only from this origin; data only from this origin's API. uPlot sets
/// element styles, hence `style-src 'unsafe-inline'`; no inline script is allowed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The UI's routes (no authentication: static files only).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/assets/{file}", get(asset))
}

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Assets change with the binary; revalidating costs one request per page load.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX.as_bytes())
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, body)) => with_headers(ct, body),
        None => ApiError::NotFound(format!("UI asset {file:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_only_embedded_assets() {
        for (i, _) in INDEX.match_indices("/ui/assets/") {
            let rest = &INDEX[i + "/ui/assets/".len()..];
            let name = &rest[..rest.find('"').expect("quoted asset path")];
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "index.html links {name}, which is not embedded"
            );
        }
    }

    #[test]
    fn modules_import_only_embedded_assets() {
        for (_, ct, body) in ASSETS.iter().filter(|(n, _, _)| !n.starts_with("uPlot")) {
            if !ct.starts_with("text/javascript") {
                continue;
            }
            let text = std::str::from_utf8(body).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit("from ").next().unwrap_or(line);
                let name = from
                    .trim_matches(|c| c == '\'' || c == '"' || c == ';' || c == ' ')
                    .trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == name),
                    "{line}: {name} is not embedded"
                );
            }
        }
    }
}
