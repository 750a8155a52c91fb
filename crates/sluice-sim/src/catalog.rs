//! The simulated service: its routes with latency and size profiles (the ground truth that cost
//! weights and capacity models can be checked against), user agents, search words and the paths
//! vulnerability scanners try.

use serde::Serialize;

/// Every route of the simulated shop API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteId {
    Home,
    ProductGet,
    ProductList,
    Search,
    CartGet,
    CartAdd,
    OrderGet,
    OrderCreate,
    Login,
    UserGet,
    Export,
    AdminUsers,
    AdminKeys,
    Static,
    Health,
    /// Anything the service does not serve (scanner paths); answered by the gateway.
    Unmatched,
}

/// One route: method, template (as a route pattern for `RouteNormalizer`), and the log-normal
/// profiles of successful responses. Error responses are small and about three times faster.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RouteDef {
    pub id: RouteId,
    pub method: &'static str,
    pub template: &'static str,
    /// Median total latency in milliseconds.
    pub latency_ms: f64,
    /// Log-normal shape of the latency (standard deviation of its logarithm).
    pub latency_sigma: f64,
    /// Median response body size in bytes.
    pub bytes: f64,
    pub bytes_sigma: f64,
    /// Request size (headers and body) in bytes.
    pub request_bytes: u64,
}

const fn r(
    id: RouteId,
    method: &'static str,
    template: &'static str,
    (latency_ms, latency_sigma): (f64, f64),
    (bytes, bytes_sigma): (f64, f64),
    request_bytes: u64,
) -> RouteDef {
    RouteDef {
        id,
        method,
        template,
        latency_ms,
        latency_sigma,
        bytes,
        bytes_sigma,
        request_bytes,
    }
}

/// The catalogue, indexed by `RouteId as usize`: method, template, (median latency ms, sigma),
/// (median bytes, sigma), request bytes. `/v1/export` is the expensive one.
#[rustfmt::skip]
pub const ROUTES: [RouteDef; 16] = [
    r(RouteId::Home, "GET", "/", (18.0, 0.35), (34_000.0, 0.1), 420),
    r(RouteId::ProductGet, "GET", "/v1/products/{id}", (24.0, 0.45), (2_300.0, 0.3), 380),
    r(RouteId::ProductList, "GET", "/v1/products", (42.0, 0.45), (21_000.0, 0.35), 390),
    r(RouteId::Search, "GET", "/v1/search", (120.0, 0.55), (8_200.0, 0.5), 400),
    r(RouteId::CartGet, "GET", "/v1/cart", (28.0, 0.4), (1_400.0, 0.4), 360),
    r(RouteId::CartAdd, "POST", "/v1/cart", (46.0, 0.4), (1_500.0, 0.3), 520),
    r(RouteId::OrderGet, "GET", "/v1/orders/{id}", (35.0, 0.45), (3_100.0, 0.4), 370),
    r(RouteId::OrderCreate, "POST", "/v1/orders", (160.0, 0.5), (2_900.0, 0.3), 1_400),
    r(RouteId::Login, "POST", "/v1/login", (85.0, 0.25), (420.0, 0.1), 610),
    r(RouteId::UserGet, "GET", "/v1/users/{id}", (20.0, 0.4), (850.0, 0.2), 360),
    r(RouteId::Export, "GET", "/v1/export", (2_400.0, 0.45), (4_500_000.0, 0.6), 380),
    r(RouteId::AdminUsers, "GET", "/v1/admin/users", (75.0, 0.4), (48_000.0, 0.4), 370),
    r(RouteId::AdminKeys, "GET", "/v1/admin/keys", (60.0, 0.4), (6_000.0, 0.4), 370),
    r(RouteId::Static, "GET", "/static/**", (3.0, 0.5), (41_000.0, 0.9), 330),
    r(RouteId::Health, "GET", "/healthz", (0.8, 0.3), (15.0, 0.0), 120),
    r(RouteId::Unmatched, "GET", "/**", (1.2, 0.3), (150.0, 0.1), 300),
];

impl RouteId {
    pub fn def(self) -> &'static RouteDef {
        &ROUTES[self as usize]
    }
}

/// Largest product id; legitimate traffic picks ids log-uniformly (low ids are popular).
pub const PRODUCTS: u32 = 50_000;

/// SDKs and HTTP libraries of legitimate API clients (none of them is curl, which the
/// compromised-key attacker uses).
pub(crate) const SDK_AGENTS: &[&str] = &[
    "shopapi-python/3.2.1 (CPython 3.11.7; Linux)",
    "shopapi-python/3.1.0 (CPython 3.10.12; Linux)",
    "shopapi-node/5.4.0 (node v20.11.0; linux)",
    "shopapi-node/5.3.2 (node v18.19.0; darwin)",
    "shopapi-go/1.8.3",
    "shopapi-java/2.7.0 (Java 17.0.9)",
    "shopapi-ruby/4.0.1 (ruby 3.2.2)",
    "shopapi-php/1.12.0 (PHP 8.2.15)",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "axios/1.6.7",
    "Go-http-client/2.0",
];

pub(crate) const BATCH_AGENTS: &[&str] = &[
    "shopapi-sync/1.4.2 (cron)",
    "airflow-shopapi-operator/0.9.1",
    "python-requests/2.31.0 (nightly-etl)",
];

pub(crate) const BROWSER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.101 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 Edg/121.0.2277.83",
];

pub(crate) const SCRAPER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";
pub(crate) const STUFFING_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36";
pub(crate) const ENUMERATION_AGENT: &str = "Go-http-client/1.1";
pub(crate) const COMPROMISED_AGENT: &str = "curl/8.4.0";
pub(crate) const PROBE_AGENT: &str = "Mozilla/5.0 zgrab/0.x";
pub(crate) const FLOOD_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/58.0.3029.110 Safari/537.36",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)",
    "python-httpx/0.26.0",
];

pub(crate) const STATIC_ASSETS: &[&str] = &[
    "/static/app.3f9c2b.js",
    "/static/vendor.91ad04.js",
    "/static/app.77e1c0.css",
    "/static/logo.svg",
    "/static/fonts/inter-var.woff2",
    "/static/img/hero.webp",
];

pub(crate) const SEARCH_WORDS: &[&str] = &[
    "shoes",
    "jacket",
    "laptop",
    "headphones",
    "coffee",
    "backpack",
    "lamp",
    "desk",
    "chair",
    "phone+case",
    "socks",
    "kettle",
    "monitor",
    "keyboard",
    "mouse",
    "tent",
    "bike",
    "helmet",
    "watch",
    "sunglasses",
    "towel",
    "blender",
    "camera",
    "tripod",
    "charger",
    "cable",
    "mug",
    "notebook",
    "pen",
    "scarf",
];

/// Scanner paths: configuration leaks, admin panels and known exploit targets.
pub(crate) const PROBE_PATHS: &[(&str, &str)] = &[
    ("GET", "/.env"),
    ("GET", "/wp-login.php"),
    ("GET", "/admin/config.php"),
    ("GET", "/.git/config"),
    ("GET", "/.git/HEAD"),
    ("GET", "/phpmyadmin/index.php"),
    ("GET", "/server-status"),
    ("GET", "/.aws/credentials"),
    ("GET", "/config.json"),
    ("GET", "/backup.sql"),
    ("GET", "/db.sql.gz"),
    ("GET", "/.DS_Store"),
    ("GET", "/actuator/env"),
    ("GET", "/actuator/health"),
    ("GET", "/api/v1/pods"),
    ("GET", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"),
    ("POST", "/xmlrpc.php"),
    ("GET", "/wp-admin/setup-config.php"),
    ("GET", "/cgi-bin/luci/;stok=/locale"),
    ("POST", "/boaform/admin/formLogin"),
    ("GET", "/HNAP1/"),
    ("GET", "/solr/admin/info/system"),
    ("GET", "/console/login/LoginForm.jsp"),
    ("GET", "/owa/auth/logon.aspx"),
    ("GET", "/remote/fgt_lang"),
    ("GET", "/_ignition/execute-solution"),
    ("GET", "/telescope/requests"),
    ("GET", "/debug/default/view"),
    ("GET", "/.well-known/security.txt"),
    ("GET", "/sftp-config.json"),
    ("GET", "/web.config"),
    ("GET", "/id_rsa"),
];

/// Directory prefixes scanners repeat the list under once it is exhausted.
pub(crate) const PROBE_PREFIXES: &[&str] = &[
    "",
    "/old",
    "/backup",
    "/wordpress",
    "/wp",
    "/test",
    "/dev",
    "/api",
    "/v2",
    "/shop",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_indexed_by_route_id() {
        for (i, def) in ROUTES.iter().enumerate() {
            assert_eq!(def.id as usize, i, "{:?}", def.id);
            assert_eq!(def.id.def().template, def.template);
        }
        assert!(RouteId::Export.def().latency_ms > 10.0 * RouteId::Search.def().latency_ms);
    }

    #[test]
    fn strings_need_no_escaping_in_any_format() {
        let all = SDK_AGENTS
            .iter()
            .chain(BATCH_AGENTS)
            .chain(BROWSER_AGENTS)
            .chain(FLOOD_AGENTS)
            .chain(STATIC_ASSETS)
            .chain(SEARCH_WORDS)
            .chain(PROBE_PATHS.iter().map(|(_, p)| p))
            .chain(PROBE_PREFIXES);
        for s in all {
            assert!(
                s.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{s:?}"
            );
        }
        assert!(!SDK_AGENTS.contains(&COMPROMISED_AGENT));
    }
}
