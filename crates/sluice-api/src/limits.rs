//! `GET /v1/clients/{client}/limits`: the rules of the policy version served to every gateway
//! that name this client (its API key, consumer or user exactly, or a subnet holding its IP
//! address), and the per-client rules (`"*"` selectors) that give it a counter of its own.
//! Answered from the in-memory policy cache, at most [`MAX_RULES`] rules of each. Analyst or
//! admin.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;
use sluice_core::limit::{IpMatch, Match, Selector};
use sluice_core::policy::Rule;
use sluice_core::Role;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const READ_LIMITS: &str = "read the limits in force";
/// Most rules listed in each part of the answer.
pub const MAX_RULES: usize = 200;

#[derive(Debug, Serialize)]
pub struct ClientLimits {
    pub client: String,
    /// The version served to every gateway (`None`: nothing published yet).
    pub version: Option<i64>,
    /// Rules that name this client.
    pub rules: Vec<Rule>,
    /// Rules that count every client separately (so this one too), such as `api_key: "*"`.
    pub per_client: Vec<Rule>,
    /// More rules matched than were listed.
    pub truncated: bool,
}

fn names(m: &Option<Match>, client: &str) -> bool {
    matches!(m, Some(Match::Exactly(v)) if v == client)
}

fn each(m: &Option<Match>) -> bool {
    matches!(m, Some(Match::Each))
}

/// Whether `s` names `client` itself, and whether it counts every client separately.
fn classify(s: &Selector, client: &str, ip: Option<IpAddr>) -> (bool, bool) {
    let ip_names = match (&s.ip, ip) {
        (Some(IpMatch::Net(net)), Some(ip)) => net.contains(ip),
        _ => false,
    };
    let named = names(&s.api_key, client)
        || names(&s.consumer, client)
        || names(&s.user, client)
        || ip_names;
    let per_client = each(&s.api_key)
        || each(&s.consumer)
        || each(&s.user)
        || matches!(s.ip, Some(IpMatch::Each));
    (named, per_client)
}

/// The rules of `rules` that name `client` and the per-client ones, each capped.
pub fn client_rules(rules: &[Rule], client: &str) -> (Vec<Rule>, Vec<Rule>, bool) {
    let ip = client.parse::<IpAddr>().ok();
    let (mut named, mut per_client, mut truncated) = (Vec::new(), Vec::new(), false);
    for r in rules {
        let (n, p) = classify(&r.selector, client, ip);
        let into = if n {
            &mut named
        } else if p {
            &mut per_client
        } else {
            continue;
        };
        if into.len() < MAX_RULES {
            into.push(r.clone());
        } else {
            truncated = true;
        }
    }
    (named, per_client, truncated)
}

pub async fn get_client_limits(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    client: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ClientLimits>> {
    who.require(Role::Analyst, READ_LIMITS)?;
    let Path(client) = client.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let snap = state.policy.snapshot(&state.pool).await?;
    let served = snap.for_group("*");
    let (rules, per_client, truncated) = served
        .map(|r| client_rules(r.policy.rules(), &client))
        .unwrap_or_default();
    Ok(Json(ClientLimits {
        client,
        version: served.map(|r| r.version),
        rules,
        per_client,
        truncated,
    }))
}
