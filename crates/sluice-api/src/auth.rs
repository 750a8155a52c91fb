//! Bearer-token authentication with a short-lived cache, and role checks.
//!
//! Architecture invariant: every route except `/healthz` and `/readyz` goes through
//! [`authenticate`]; handlers state the role they need with [`Principal::require`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sluice_core::Role;
use sluice_store::tokens;

use crate::error::ApiError;
use crate::AppState;

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// Fail with 403 unless this principal's role covers `need`.
    pub fn require(&self, need: Role, action: &'static str) -> Result<(), ApiError> {
        if self.role.allows(need) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                have: self.role.as_str(),
                need: need.as_str(),
                action,
            })
        }
    }

    /// How this principal appears in the audit log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// A token lookup result and when it was made.
type CachedLookup = (Option<Principal>, Instant);

/// Token lookups are cached for `ttl`, so a revoked token stops working within that time.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    map: std::sync::Mutex<hashbrown::HashMap<[u8; 32], CachedLookup>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            map: std::sync::Mutex::new(hashbrown::HashMap::new()),
        }
    }

    async fn lookup(
        &self,
        pool: &sqlx::PgPool,
        secret: &str,
    ) -> Result<Option<Principal>, ApiError> {
        let key = tokens::hash_token(secret);
        if let Some((p, at)) = self.map.lock().expect("token cache poisoned").get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let p = tokens::authenticate(pool, secret)
            .await?
            .map(|t| Principal {
                token_id: t.id,
                name: t.name,
                role: t.role,
            });
        let mut map = self.map.lock().expect("token cache poisoned");
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(key, (p.clone(), Instant::now()));
        Ok(p)
    }

    pub fn clear(&self) {
        self.map.lock().expect("token cache poisoned").clear();
    }
}

/// Middleware: resolve the bearer token into a [`Principal`] request extension, or answer 401.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .ok_or(ApiError::Unauthenticated)?;
    let principal = state
        .tokens
        .lookup(&state.pool, &secret)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}
