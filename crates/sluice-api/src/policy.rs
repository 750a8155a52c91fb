//! Policy delivery and administration.
//!
//! Gateways: `GET /v1/policy` (the policy their group is served, JSON or gzip, `ETag`,
//! `If-None-Match` → 304, `?wait=30s` long poll, `?format=envoy-ratelimit|nginx` exports) and
//! `POST /v1/gateways/{id}/status`. Analysts: versions, one version, diffs, gateways. Admins:
//! publish, rollback, promote (each audited by the store in the same transaction).
//!
//! Steady-state polls do no database work and no serialisation: [`PolicyCache`] holds, per
//! version being served, the compact JSON and its gzip, built once when the version appears. The
//! cache is refreshed when this process publishes, when Postgres notifies `sluice_policy`
//! (another process published, e.g. the CLI), and by a cheap periodic check of the rollout table
//! (in case a notification was missed). Long polls wait on a `watch` channel, so a waiting
//! gateway costs one parked task.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::policy::{export, Policy, PolicyDiff};
use sluice_core::Role;
use sluice_store::policy::{
    self as store, GatewayReport, GatewayStatus, Publish, RolloutState, VersionInfo, DEFAULT_GROUP,
    NOTIFY_CHANNEL,
};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::logs::bad_query;
use crate::AppState;

/// Longest `wait` of a long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

const READ_VERSIONS: &str = "read policy versions";
const PUBLISH: &str = "publish policy";
const ROLLBACK: &str = "roll back policy";
const PROMOTE: &str = "promote policy";
const REPORT: &str = "report gateway status";
const READ_GATEWAYS: &str = "read gateway status";

/// A rendered export and the instant until which it is valid (the next expiry of a rule in it).
type CachedExport = (Bytes, Option<DateTime<Utc>>);

/// One served version, rendered once.
#[derive(Debug)]
pub struct Rendered {
    pub version: i64,
    pub policy: Policy,
    /// `"v{version}-{first 16 hex digits of the content hash}"`, quotes included.
    pub etag: HeaderValue,
    pub json: Bytes,
    pub gzip: Bytes,
    /// Exports by format: the text and the instant until which it is valid (the next expiry of
    /// a rule it includes).
    exports: Mutex<HashMap<&'static str, CachedExport>>,
}

impl Rendered {
    fn build(version: i64, policy: Policy) -> Rendered {
        let json = policy.to_json(Some(version));
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::default(),
        );
        enc.write_all(&json).expect("writing to a Vec cannot fail");
        let gzip = enc.finish().expect("writing to a Vec cannot fail");
        let hash = policy.content_hash();
        let short = &hash[hash.len() - 64..hash.len() - 48];
        let etag = HeaderValue::from_str(&format!("\"v{version}-{short}\""))
            .expect("an etag of ASCII digits and hex");
        Rendered {
            version,
            policy,
            etag,
            json: Bytes::from(json),
            gzip: Bytes::from(gzip),
            exports: Mutex::new(HashMap::new()),
        }
    }

    /// The export in `format` (cached until the next rule expiry it depends on).
    fn export(&self, format: &'static str, domain: &str, now: DateTime<Utc>) -> Bytes {
        let mut cache = self.exports.lock().expect("export cache poisoned");
        if domain == "sluice" {
            if let Some((text, until)) = cache.get(format) {
                if until.is_none_or(|u| now < u) {
                    return text.clone();
                }
            }
        }
        let text = match format {
            "envoy-ratelimit" => {
                export::envoy_ratelimit(&self.policy, Some(self.version), domain, now)
            }
            _ => export::nginx(&self.policy, Some(self.version), now),
        };
        let next_expiry = self
            .policy
            .rules()
            .iter()
            .filter_map(|r| r.expires_at)
            .filter(|t| *t > now)
            .min();
        let text = Bytes::from(text);
        if domain == "sluice" {
            cache.insert(format, (text.clone(), next_expiry));
        }
        text
    }
}

/// What is being served: the rollout state and the rendered versions it names.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub loaded: bool,
    /// The server is shutting down: long polls answer now instead of holding shutdown up.
    pub closing: bool,
    pub state: RolloutState,
    pub versions: HashMap<i64, Arc<Rendered>>,
}

impl Snapshot {
    pub fn for_group(&self, group: &str) -> Option<&Arc<Rendered>> {
        self.state
            .version_for(group)
            .and_then(|v| self.versions.get(&v))
    }
}

/// The in-memory policy cache and its change notifications.
#[derive(Debug)]
pub struct PolicyCache {
    tx: watch::Sender<Arc<Snapshot>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        PolicyCache {
            tx: watch::Sender::new(Arc::new(Snapshot::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl PolicyCache {
    /// The current snapshot, loading it first if this process has not yet.
    pub async fn snapshot(&self, pool: &sqlx::PgPool) -> ApiResult<Arc<Snapshot>> {
        let snap = self.tx.borrow().clone();
        if snap.loaded {
            return Ok(snap);
        }
        self.refresh(pool).await?;
        Ok(self.tx.borrow().clone())
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Wake every long poll to answer now (graceful shutdown).
    pub fn close(&self) {
        self.tx.send_modify(|snap| {
            let mut s = Snapshot::clone(snap);
            s.closing = true;
            *snap = Arc::new(s);
        });
    }

    /// Re-read the rollout state; render versions that are newly served. Cheap when nothing
    /// changed (one small query).
    pub async fn refresh(&self, pool: &sqlx::PgPool) -> ApiResult<()> {
        self.refresh_with(pool, None).await
    }

    /// [`refresh`](Self::refresh), rendering `seed` (a version this process just published,
    /// already validated) instead of reading it back.
    async fn refresh_with(
        &self,
        pool: &sqlx::PgPool,
        seed: Option<(i64, Policy)>,
    ) -> ApiResult<()> {
        let mut seed = seed;
        let _guard = self.refresh_lock.lock().await;
        let state = store::rollout(pool).await?;
        let current = self.tx.borrow().clone();
        if current.loaded && current.state == state {
            return Ok(());
        }
        let mut versions = HashMap::new();
        let wanted = state
            .all
            .into_iter()
            .chain(state.pinned.iter().map(|p| p.1));
        for v in wanted {
            if let Some(r) = current.versions.get(&v) {
                versions.insert(v, r.clone());
                continue;
            }
            let policy = match seed.take() {
                Some((sv, p)) if sv == v => p,
                _ => store::get(pool, v).await?.policy,
            };
            let rendered = tokio::task::spawn_blocking(move || Rendered::build(v, policy))
                .await
                .map_err(|e| ApiError::Internal(format!("rendering policy {v}: {e}")))?;
            versions.insert(v, Arc::new(rendered));
        }
        tracing::info!(all = ?state.all, pinned = ?state.pinned, "serving policy");
        let closing = current.closing;
        self.tx.send_replace(Arc::new(Snapshot {
            loaded: true,
            closing,
            state,
            versions,
        }));
        Ok(())
    }
}

/// Keep `cache` fresh: on every `sluice_policy` notification and every `every`. Ends when the
/// cache is dropped.
pub(crate) fn spawn_refresher(cache: Weak<PolicyCache>, pool: sqlx::PgPool, every: Duration) {
    tokio::spawn(async move {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for policy changes; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for policy changes; polling only");
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.try_recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = notified => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "policy notifications lost; polling only");
                        listener = None;
                    }
                }
                _ = tick.tick() => {}
            }
            let Some(cache) = cache.upgrade() else { break };
            if let Err(e) = cache.refresh(&pool).await {
                tracing::warn!(error = %e, "policy refresh failed; serving the last good policy");
            }
        }
    });
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// Long poll: how long to wait for a version other than `If-None-Match` (e.g. `30s`).
    pub wait: Option<String>,
    /// `json` (default), `envoy-ratelimit` or `nginx`.
    pub format: Option<String>,
    /// The gateway group (default `default`); a pinned group gets its version first.
    pub group: Option<String>,
    /// The envoyproxy/ratelimit domain (default `sluice`).
    pub domain: Option<String>,
}

/// `30s`, `500ms`, `1m` or a bare number of seconds, at most [`MAX_WAIT`].
pub fn parse_wait(v: &str) -> ApiResult<Duration> {
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid wait {v:?}: expected a duration such as 30s, 500ms or 1m, at most {}s",
            MAX_WAIT.as_secs()
        ))
    };
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1000)
    };
    if num.is_empty() || num.len() > 9 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: u64 = num.parse::<u64>().map_err(|_| bad())? * unit_ms;
    let d = Duration::from_millis(ms);
    if d > MAX_WAIT {
        return Err(bad());
    }
    Ok(d)
}

/// Whether an `If-None-Match` header names `etag` (weak comparison; `*` matches anything).
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == want)
}

/// Whether `Accept-Encoding` allows gzip.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

fn not_modified(r: &Rendered) -> Response {
    metrics::counter!("sluice_policy_not_modified_total").increment(1);
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    let h = res.headers_mut();
    h.insert(header::ETAG, r.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn export_format(v: Option<&str>) -> ApiResult<Option<&'static str>> {
    match v {
        None | Some("json") => Ok(None),
        Some("envoy-ratelimit") => Ok(Some("envoy-ratelimit")),
        Some("nginx") => Ok(Some("nginx")),
        Some(other) => Err(ApiError::BadRequest(format!(
            "unknown format {other:?} (expected one of {})",
            export::FORMATS.join(", ")
        ))),
    }
}

fn full(r: &Rendered, headers: &HeaderMap, format: Option<&'static str>, domain: &str) -> Response {
    let mut res = match format {
        None if accepts_gzip(headers) => {
            let mut res = Body::from(r.gzip.clone()).into_response();
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            res
        }
        None => Body::from(r.json.clone()).into_response(),
        Some(f) => Body::from(r.export(f, domain, Utc::now())).into_response(),
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            None => "application/json",
            Some("envoy-ratelimit") => "application/yaml",
            Some(_) => "text/plain; charset=utf-8",
        }),
    );
    h.insert(header::ETAG, r.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert("x-sluice-policy-version", HeaderValue::from(r.version));
    res
}

/// `GET /v1/policy`. Any valid token (gateways poll it; analysts and admins may read it).
pub async fn get_policy(
    State(state): State<Arc<AppState>>,
    q: Result<Query<PolicyQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    metrics::counter!("sluice_policy_polls_total").increment(1);
    let Query(q) = q.map_err(bad_query)?;
    let format = export_format(q.format.as_deref())?;
    let wait = q.wait.as_deref().map(parse_wait).transpose()?;
    let group = q.group.as_deref().unwrap_or(DEFAULT_GROUP);
    if group != DEFAULT_GROUP {
        store::check_group(group)?;
    }
    let domain = q.domain.as_deref().unwrap_or("sluice");
    if format != Some("envoy-ratelimit") && q.domain.is_some() {
        return Err(ApiError::BadRequest(
            "domain applies only to format=envoy-ratelimit".into(),
        ));
    }
    if domain.is_empty() || domain.len() > 128 {
        return Err(ApiError::BadRequest(
            "domain must be 1 to 128 characters".into(),
        ));
    }
    let cache = &state.policy;
    // Subscribe before looking, so a publish between the look and the wait is not missed.
    let mut rx = cache.subscribe();
    let snap = cache.snapshot(&state.pool).await?;
    let nothing = || {
        ApiError::NotFound(format!(
            "policy for gateway group {group:?} (nothing has been published yet)"
        ))
    };
    let mut current = snap.for_group(group).cloned();
    if current.is_none() {
        // Nothing served yet: a first publish by another process may not have been noticed.
        cache.refresh(&state.pool).await?;
        current = cache.snapshot(&state.pool).await?.for_group(group).cloned();
    }
    match (current, wait) {
        (Some(r), _) if !none_match(&headers, &r.etag) => Ok(full(&r, &headers, format, domain)),
        (Some(r), None) => Ok(not_modified(&r)),
        (None, None) => Err(nothing()),
        (current, Some(wait)) => {
            let _waiting = crate::metrics::WaiterGuard::enter();
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {
                        let snap = rx.borrow_and_update().clone();
                        if let Some(r) = snap.for_group(group) {
                            if !none_match(&headers, &r.etag) {
                                return Ok(full(r, &headers, format, domain));
                            }
                            if snap.closing {
                                return Ok(not_modified(r));
                            }
                        }
                        if snap.closing {
                            return Err(nothing());
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        return match current {
                            Some(r) => Ok(not_modified(&r)),
                            None => Err(nothing()),
                        };
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishQuery {
    /// Why (stored with the version and in the audit log).
    pub comment: Option<String>,
    /// Publish to this gateway group only (canary); promote it later.
    pub group: Option<String>,
}

/// `POST /v1/policy/versions`: the body is a policy document. Admin.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<PublishQuery>, QueryRejection>,
    body: Body,
) -> ApiResult<Response> {
    who.require(Role::Admin, PUBLISH)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = state.config.max_policy_bytes;
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit,
            what: " for a policy document",
        })?;
    let policy = tokio::task::spawn_blocking(move || Policy::parse(&bytes))
        .await
        .map_err(|e| ApiError::Internal(format!("parsing policy: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let actor = who.actor();
    let info = store::publish(
        &state.pool,
        &policy,
        &Publish {
            actor: &actor,
            comment: q.comment.as_deref(),
            group: q.group.as_deref(),
        },
    )
    .await?;
    state
        .policy
        .refresh_with(&state.pool, Some((info.version, policy)))
        .await?;
    metrics::counter!("sluice_policy_publishes_total", "action" => "publish").increment(1);
    created(info)
}

fn created(info: VersionInfo) -> ApiResult<Response> {
    let location = format!("/v1/policy/versions/{}", info.version);
    let mut res = (StatusCode::CREATED, Json(info)).into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ASCII location"),
    );
    Ok(res)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    pub to: i64,
    pub comment: Option<String>,
}

/// A JSON body whatever its `Content-Type` (gateways and scripts often send none); errors name
/// the path of the bad value.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path == "?" {
            ApiError::BadRequest(format!("invalid JSON body: {}", e.inner()))
        } else {
            ApiError::BadRequest(format!("invalid JSON body: {path}: {}", e.inner()))
        }
    })
}

/// `POST /v1/policy/rollback` `{"to": 3, "comment": "..."}`: publish a copy of version 3. Admin.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    who.require(Role::Admin, ROLLBACK)?;
    let b: RollbackBody = json_body(&body)?;
    let info = store::rollback(&state.pool, b.to, &who.actor(), b.comment.as_deref()).await?;
    state.policy.refresh(&state.pool).await?;
    metrics::counter!("sluice_policy_publishes_total", "action" => "rollback").increment(1);
    created(info)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    pub version: i64,
    pub comment: Option<String>,
}

/// `POST /v1/policy/promote` `{"version": 5}`: serve version 5 (e.g. a canary's) to every
/// gateway. Admin.
pub async fn promote(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<RolloutState>> {
    who.require(Role::Admin, PROMOTE)?;
    let b: PromoteBody = json_body(&body)?;
    let after = store::promote(&state.pool, b.version, &who.actor(), b.comment.as_deref()).await?;
    state.policy.refresh(&state.pool).await?;
    metrics::counter!("sluice_policy_publishes_total", "action" => "promote").increment(1);
    Ok(Json(after))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1..=500, default 50.
    pub limit: Option<String>,
    /// Versions older than this one (the last version of the previous page).
    pub before: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct VersionList {
    pub rollout: RolloutState,
    pub versions: Vec<VersionInfo>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

fn version_param(v: &str, name: &str) -> ApiResult<i64> {
    v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{name} must be a policy version (an integer from 1), got {v:?}"
        ))
    })
}

/// `GET /v1/policy/versions`. Analyst or admin.
pub async fn list_versions(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<VersionList>> {
    who.require(Role::Analyst, READ_VERSIONS)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = crate::analyst::bounded(q.limit.as_deref(), "limit", 50, 500)?;
    let before = q
        .before
        .as_deref()
        .map(|v| version_param(v, "before"))
        .transpose()?;
    let versions = store::list(&state.pool, i64::from(limit), before).await?;
    let next_before = (versions.len() == limit as usize)
        .then(|| versions.last().map(|v| v.version))
        .flatten();
    Ok(Json(VersionList {
        rollout: store::rollout(&state.pool).await?,
        versions,
        next_before,
    }))
}

#[derive(Debug, Serialize)]
pub struct VersionDetail {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub document: serde_json::Value,
}

/// `GET /v1/policy/versions/{v}`: the version's metadata and its document. Analyst or admin.
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    v: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<VersionDetail>> {
    who.require(Role::Analyst, READ_VERSIONS)?;
    let Path(v) = v.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let v = version_param(&v, "version")?;
    let stored = store::get(&state.pool, v).await?;
    let document = serde_json::to_value(stored.policy.document(Some(v)))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(VersionDetail {
        info: stored.info,
        document,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DiffAnswer {
    pub from: i64,
    pub to: i64,
    #[serde(flatten)]
    pub diff: PolicyDiff,
}

/// `GET /v1/policy/diff?from=1&to=3`: rules added, removed and changed. Analyst or admin.
pub async fn diff(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult<Json<DiffAnswer>> {
    who.require(Role::Analyst, READ_VERSIONS)?;
    let Query(q) = q.map_err(bad_query)?;
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::BadRequest(
            "diff needs both from and to (policy versions)".into(),
        ));
    };
    let (from, to) = (version_param(from, "from")?, version_param(to, "to")?);
    let diff = store::diff(&state.pool, from, to).await?;
    Ok(Json(DiffAnswer { from, to, diff }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub applied_version: Option<i64>,
    pub error: Option<String>,
    pub group: Option<String>,
}

/// `POST /v1/gateways/{id}/status` `{"applied_version": 4}` or `{"error": "..."}`. Gateway.
pub async fn report_status(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<GatewayStatus>> {
    who.require(Role::Gateway, REPORT)?;
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let b: StatusBody = json_body(&body)?;
    if b.applied_version.is_none() && b.error.is_none() {
        return Err(ApiError::BadRequest(
            "report applied_version (the version the gateway now enforces) or error (why it could not apply one)".into(),
        ));
    }
    if b.error
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > 4096)
    {
        return Err(ApiError::BadRequest("error must be 1 to 4096 bytes".into()));
    }
    let g = store::report_gateway(
        &state.pool,
        &id,
        &GatewayReport {
            group: b.group.as_deref(),
            applied_version: b.applied_version,
            error: b.error.as_deref(),
        },
    )
    .await?;
    Ok(Json(g))
}

#[derive(Debug, Serialize)]
pub struct GatewayList {
    pub rollout: RolloutState,
    pub gateways: Vec<GatewayStatus>,
}

/// `GET /v1/gateways`: every gateway's group, applied version, desired version and state.
/// Analyst or admin.
pub async fn list_gateways(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<GatewayList>> {
    who.require(Role::Analyst, READ_GATEWAYS)?;
    Ok(Json(GatewayList {
        rollout: store::rollout(&state.pool).await?,
        gateways: store::list_gateways(&state.pool).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        for (v, ms) in [
            ("30s", 30_000),
            ("500ms", 500),
            ("1m", 60_000),
            ("0", 0),
            ("60", 60_000),
        ] {
            assert_eq!(parse_wait(v).unwrap(), Duration::from_millis(ms), "{v}");
        }
        for v in ["", "61s", "2m", "-1s", "1h", "s", "1.5s", "9999999999"] {
            assert_eq!(
                parse_wait(v).unwrap_err().to_string(),
                format!(
                    "invalid wait {v:?}: expected a duration such as 30s, 500ms or 1m, at most 60s"
                )
            );
        }
    }

    #[test]
    fn conditional_headers() {
        let etag = HeaderValue::from_static("\"v3-0123456789abcdef\"");
        let h = |name: header::HeaderName, v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(name, HeaderValue::from_static(v));
            m
        };
        assert!(none_match(
            &h(header::IF_NONE_MATCH, "\"v3-0123456789abcdef\""),
            &etag
        ));
        assert!(none_match(
            &h(header::IF_NONE_MATCH, "W/\"v3-0123456789abcdef\""),
            &etag
        ));
        assert!(none_match(
            &h(header::IF_NONE_MATCH, "\"x\", \"v3-0123456789abcdef\""),
            &etag
        ));
        assert!(none_match(&h(header::IF_NONE_MATCH, "*"), &etag));
        assert!(!none_match(
            &h(header::IF_NONE_MATCH, "\"v2-0123456789abcdef\""),
            &etag
        ));
        assert!(!none_match(&HeaderMap::new(), &etag));
        assert!(accepts_gzip(&h(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )));
        assert!(accepts_gzip(&h(
            header::ACCEPT_ENCODING,
            "br;q=1.0, GZIP;q=0.5"
        )));
        assert!(accepts_gzip(&h(header::ACCEPT_ENCODING, "*")));
        assert!(!accepts_gzip(&h(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&h(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
