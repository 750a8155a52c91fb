//! The policy client: long-polls `GET /v1/policy` (ETag, `If-None-Match`, `?wait=30s`, gzip,
//! bearer token), applies each new version to the [`Enforcer`], keeps the last good policy on
//! disk, and reports what it applied (or why it could not) to
//! `POST /v1/gateways/{id}/status`.
//!
//! Invariants: the enforcer only ever gets a validated policy; a policy that fails validation,
//! an unreachable control plane or an error answer never replaces the one in force. The file on
//! disk is written to a temporary file and renamed over the old one, so a crash leaves either the
//! old or the new policy, never half of one; it is loaded at start, before the first poll.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use sluice_core::policy::{Policy, PolicyDocument};
use tokio::sync::watch;

use crate::enforcer::Enforcer;
use crate::net::{self as h, HttpClient};

/// The file the last good policy is kept in, under the state directory.
pub const POLICY_FILE: &str = "policy.json";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    #[error("control plane answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("received policy is invalid: {0}")]
    Invalid(String),
    #[error("state directory: {0}")]
    Disk(String),
}

/// Policy client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:8080`.
    pub control_plane: String,
    /// Bearer token with the gateway role.
    pub token: String,
    pub gateway_id: String,
    /// Gateway group (staged rollout); `None` is everyone.
    pub group: Option<String>,
    /// Where the last good policy is kept (`policy.json`); `None` keeps nothing.
    pub state_dir: Option<PathBuf>,
    /// Long-poll wait (at most 60 s, the server's limit).
    pub wait: Duration,
    /// Back-off after a failed poll: full jitter between 0 and `min(max, min * 2^n)`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl ClientConfig {
    pub fn new(control_plane: &str, token: &str, gateway_id: &str) -> ClientConfig {
        ClientConfig {
            control_plane: control_plane.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            gateway_id: gateway_id.to_owned(),
            group: None,
            state_dir: None,
            wait: Duration::from_secs(30),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What one poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// A new version was applied.
    Applied(i64),
    /// The version in force is still current.
    NotModified,
    /// Nothing has been published for this gateway's group.
    NothingPublished,
}

/// The client's view, for callers that wait on it (tests, health).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientState {
    /// The version in force (from the control plane or from disk).
    pub version: Option<i64>,
    /// The last error, cleared by the next successful poll.
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct PolicyClient {
    cfg: ClientConfig,
    enforcer: Arc<Enforcer>,
    http: HttpClient,
    etag: Option<String>,
    reported: Option<i64>,
    state: watch::Sender<ClientState>,
}

/// The ETag the control plane gives a version: `"v<version>-<first 16 hex digits of the hash>"`.
fn etag_of(version: i64, hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    format!("\"v{version}-{}\"", &hex[..hex.len().min(16)])
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, synced, renamed
/// over `path`, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Parse a served document: the validated policy and its version.
fn parse_document(json: &[u8]) -> Result<(Policy, Option<i64>), String> {
    let doc: PolicyDocument =
        serde_json::from_slice(json).map_err(|e| format!("invalid policy: {e}"))?;
    let version = doc.version;
    let policy = Policy::from_document(doc).map_err(|e| e.to_string())?;
    Ok((policy, version))
}

impl PolicyClient {
    pub fn new(cfg: ClientConfig, enforcer: Arc<Enforcer>) -> PolicyClient {
        PolicyClient {
            cfg,
            enforcer,
            http: h::client(),
            etag: None,
            reported: None,
            state: watch::Sender::new(ClientState::default()),
        }
    }

    /// Watch the version in force and the last error.
    pub fn subscribe(&self) -> watch::Receiver<ClientState> {
        self.state.subscribe()
    }

    fn policy_path(&self) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join(POLICY_FILE))
    }

    /// Load the last good policy from the state directory and enforce it. `Ok(None)` when there
    /// is none; an unreadable or invalid file is an error (and nothing is applied).
    pub fn load_from_disk(&mut self) -> Result<Option<i64>, ClientError> {
        let Some(path) = self.policy_path() else {
            return Ok(None);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::Disk(format!("{}: {e}", path.display()))),
        };
        let (policy, version) = parse_document(&bytes)
            .map_err(|e| ClientError::Disk(format!("{}: {e}", path.display())))?;
        self.enforcer.apply(&policy, version);
        self.etag = version.map(|v| etag_of(v, policy.content_hash()));
        self.state.send_modify(|s| s.version = version);
        tracing::info!(version, path = %path.display(), "policy loaded from disk");
        Ok(version)
    }

    fn request(&self, method: Method, path_and_query: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.cfg.control_plane))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.cfg.token));
        if !body.is_empty() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body)).expect("a request of valid parts")
    }

    /// One `GET /v1/policy`, long-polling for `wait` when given.
    pub async fn poll_once(&mut self, wait: Option<Duration>) -> Result<Poll, ClientError> {
        let res = self.fetch(wait).await;
        match &res {
            Ok(_) => self.state.send_modify(|s| s.error = None),
            Err(e) => {
                let msg = e.to_string();
                self.state.send_modify(|s| s.error = Some(msg));
            }
        }
        // Tell the control plane what is in force (once per version), or why a fetched policy
        // could not be applied.
        match &res {
            Err(ClientError::Invalid(why)) => {
                let body = serde_json::json!({"error": why, "group": self.cfg.group});
                self.report(body).await;
            }
            Ok(_) => {
                if let Some(v) = self.enforcer.version() {
                    if self.reported != Some(v) {
                        let body =
                            serde_json::json!({"applied_version": v, "group": self.cfg.group});
                        if self.report(body).await {
                            self.reported = Some(v);
                        }
                    }
                }
            }
            Err(_) => {}
        }
        res
    }

    async fn fetch(&mut self, wait: Option<Duration>) -> Result<Poll, ClientError> {
        let mut q = Vec::new();
        if let Some(w) = wait {
            q.push(format!("wait={}ms", w.as_millis()));
        }
        if let Some(g) = &self.cfg.group {
            q.push(format!("group={g}"));
        }
        let path = if q.is_empty() {
            "/v1/policy".to_owned()
        } else {
            format!("/v1/policy?{}", q.join("&"))
        };
        let mut req = self.request(Method::GET, &path, Bytes::new());
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        if let Some(etag) = self.etag.as_deref().and_then(|e| e.parse().ok()) {
            req.headers_mut().insert(header::IF_NONE_MATCH, etag);
        }
        let timeout = wait.unwrap_or_default() + Duration::from_secs(15);
        let res = h::send(&self.http, req, timeout)
            .await
            .map_err(ClientError::Unreachable)?;
        match res.status() {
            StatusCode::NOT_MODIFIED => return Ok(Poll::NotModified),
            StatusCode::NOT_FOUND => return Ok(Poll::NothingPublished),
            StatusCode::OK => {}
            status => {
                return Err(ClientError::Status {
                    status,
                    body: String::from_utf8_lossy(res.body())
                        .chars()
                        .take(512)
                        .collect(),
                })
            }
        }
        let gz = res
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let json = if gz {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&res.body()[..])
                .read_to_end(&mut out)
                .map_err(|e| ClientError::Invalid(format!("invalid gzip body: {e}")))?;
            out
        } else {
            res.body().to_vec()
        };
        let (policy, version) = parse_document(&json).map_err(ClientError::Invalid)?;
        let version = version
            .ok_or_else(|| ClientError::Invalid("the served document has no version".into()))?;
        self.enforcer.apply(&policy, Some(version));
        self.etag = res
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| Some(etag_of(version, policy.content_hash())));
        self.state.send_modify(|s| s.version = Some(version));
        tracing::info!(version, rules = policy.rules().len(), "policy applied");
        if let Some(path) = self.policy_path() {
            // Keep the document as served; a failure here is logged, enforcement goes on.
            write_atomic(&path, &json)
                .map_err(|e| ClientError::Disk(format!("writing {}: {e}", path.display())))?;
        }
        Ok(Poll::Applied(version))
    }

    /// `POST /v1/gateways/{id}/status`; false when it did not get through (tried again later).
    async fn report(&self, body: serde_json::Value) -> bool {
        let path = format!("/v1/gateways/{}/status", self.cfg.gateway_id);
        let req = self.request(Method::POST, &path, Bytes::from(body.to_string()));
        match h::send(&self.http, req, Duration::from_secs(10)).await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(status = %r.status(), body = %String::from_utf8_lossy(r.body()), "gateway status report refused");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway status report failed");
                false
            }
        }
    }

    /// Poll until `shutdown` resolves: long polls back to back, full-jitter back-off after
    /// errors. The enforcer keeps the policy in force through every error.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut failures = 0u32;
        tokio::pin!(shutdown);
        loop {
            let wait = Some(self.cfg.wait);
            let pause = tokio::select! {
                _ = &mut shutdown => return,
                r = self.poll_once(wait) => match r {
                    Ok(Poll::NothingPublished) => {
                        failures = 0;
                        // The server answers 404 at once when nothing is published.
                        Some(self.cfg.retry_max.min(Duration::from_secs(5)))
                    }
                    Ok(_) => {
                        failures = 0;
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, version = self.enforcer.version(), "policy poll failed; enforcing the last good policy");
                        failures = failures.saturating_add(1);
                        Some(h::backoff(failures, self.cfg.retry_min, self.cfg.retry_max))
                    }
                }
            };
            if let Some(p) = pause {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(p) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_the_control_plane() {
        assert_eq!(
            etag_of(
                7,
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            "\"v7-0123456789abcdef\""
        );
    }

    #[test]
    fn atomic_writes_replace_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join(POLICY_FILE);
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(POLICY_FILE)]);
    }
}
