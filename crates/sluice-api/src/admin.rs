//! The review API: suggested limits (`GET /v1/suggestions`, `GET /v1/suggestions/{id}`) and
//! their decisions (`POST /v1/suggestions/{id}/approve|reject|modify`), the auto-approval rules
//! (`GET|PUT /v1/auto-approval`) and the audit log (`GET /v1/audit`). Reads need analyst (or
//! admin); decisions and changes need admin. Every decision is one store transaction with its
//! policy version and audit rows (`sluice_store::review`).
//!
//! Bodies are read as bytes and parsed after the role check, so a caller without the role gets
//! 403 whatever it sent; bad values answer 400 naming the field.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sluice_core::approval::{AutoApprovalConfig, SuggestionState};
use sluice_core::policy::{Limit, Rule};
use sluice_core::time::Timestamp;
use sluice_core::Role;
use sluice_store::review::{
    self, AuditFilter, AutoApproval, DecideRequest, Decided, DecisionKind, Suggestion,
    SuggestionFilter,
};
use sluice_store::tokens::AuditEntry;

use crate::analyst::{bounded, time};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::logs::bad_query;
use crate::policy::json_body;
use crate::AppState;

const READ_SUGGESTIONS: &str = "read suggestions";
const DECIDE: &str = "decide suggestions";
const READ_AUTO: &str = "read auto-approval rules";
const SET_AUTO: &str = "change auto-approval rules";
const READ_AUDIT: &str = "read the audit log";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuggestionQuery {
    /// pending, approved, rejected, modified_approved or expired.
    pub state: Option<String>,
    pub client: Option<String>,
    /// true or false.
    pub abusive: Option<String>,
    /// 1..=500, default 50.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of suggestions; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Serialize)]
pub struct SuggestionList {
    pub items: Vec<Suggestion>,
    pub next_cursor: Option<String>,
}

fn cursor(v: Option<&str>) -> ApiResult<Option<i64>> {
    v.map(|c| {
        c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid cursor {c:?}: pass the next_cursor of the previous answer unchanged"
            ))
        })
    })
    .transpose()
}

fn nonempty(v: Option<&str>, name: &str) -> ApiResult<Option<String>> {
    match v {
        Some("") => Err(ApiError::BadRequest(format!("{name} must not be empty"))),
        other => Ok(other.map(str::to_owned)),
    }
}

/// The filters of `GET /v1/suggestions`.
pub fn parse_suggestion_query(q: &SuggestionQuery) -> ApiResult<SuggestionFilter> {
    let state = q
        .state
        .as_deref()
        .map(|s| {
            s.parse::<SuggestionState>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        })
        .transpose()?;
    let abusive = match q.abusive.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "abusive must be true or false, got {other:?}"
            )))
        }
    };
    Ok(SuggestionFilter {
        state,
        client: nonempty(q.client.as_deref(), "client")?,
        abusive,
        limit: bounded(
            q.limit.as_deref(),
            "limit",
            review::DEFAULT_LIMIT,
            review::MAX_LIMIT,
        )?,
        before_id: cursor(q.cursor.as_deref())?,
    })
}

/// `GET /v1/suggestions`. Analyst or admin.
pub async fn list_suggestions(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<SuggestionQuery>, QueryRejection>,
) -> ApiResult<Json<SuggestionList>> {
    who.require(Role::Analyst, READ_SUGGESTIONS)?;
    let Query(q) = q.map_err(bad_query)?;
    let filter = parse_suggestion_query(&q)?;
    let page = review::list(&state.pool, &filter).await?;
    Ok(Json(SuggestionList {
        items: page.items,
        next_cursor: page.next_before_id.map(|id| id.to_string()),
    }))
}

fn suggestion_id(id: Result<Path<String>, PathRejection>) -> ApiResult<i64> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid suggestion id {id:?}: expected a positive integer"
        ))
    })
}

/// `GET /v1/suggestions/{id}`. Analyst or admin.
pub async fn get_suggestion(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Suggestion>> {
    who.require(Role::Analyst, READ_SUGGESTIONS)?;
    let id = suggestion_id(id)?;
    Ok(Json(review::get(&state.pool, id).await?))
}

/// `POST /v1/suggestions/{id}/approve`; an empty body approves as suggested.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    pub comment: Option<String>,
    /// Publish the rule in shadow mode (true) or enforcing (false); default: as suggested.
    pub shadow: Option<bool>,
    /// RFC 3339 (log time): the limit reverts at this instant.
    pub temporary_until: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why (required).
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyBody {
    /// Why (required).
    pub comment: Option<String>,
    /// A whole rule (with the suggestion's rule id) to publish instead.
    pub rule: Option<Rule>,
    /// A limit that replaces the suggested rule's limit.
    pub limit: Option<Limit>,
    pub shadow: Option<bool>,
    pub temporary_until: Option<String>,
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json_body(body)
    }
}

fn until(v: Option<&str>) -> ApiResult<Option<Timestamp>> {
    Ok(time(v, "temporary_until")?.map(Timestamp::from_chrono))
}

async fn decided(state: &AppState, req: DecideRequest) -> ApiResult<Json<Decided>> {
    let d = review::decide(&state.pool, &req).await?;
    if d.policy_version.is_some() {
        // Serve the new version from this process at once (others follow the NOTIFY).
        state.policy.refresh(&state.pool).await?;
    }
    Ok(Json(d))
}

/// `POST /v1/suggestions/{id}/approve` `{comment?, shadow?, temporary_until?}`. Admin.
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<Decided>> {
    who.require(Role::Admin, DECIDE)?;
    let id = suggestion_id(id)?;
    let b: ApproveBody = body_or_default(&body)?;
    let req = DecideRequest {
        id,
        kind: DecisionKind::Approve,
        actor: who.actor(),
        comment: b.comment,
        shadow: b.shadow,
        temporary_until: until(b.temporary_until.as_deref())?,
    };
    decided(&state, req).await
}

/// `POST /v1/suggestions/{id}/reject` `{comment}`. Admin.
pub async fn reject(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<Decided>> {
    who.require(Role::Admin, DECIDE)?;
    let id = suggestion_id(id)?;
    let b: RejectBody = body_or_default(&body)?;
    let req = DecideRequest {
        id,
        kind: DecisionKind::Reject,
        actor: who.actor(),
        comment: b.comment,
        shadow: None,
        temporary_until: None,
    };
    decided(&state, req).await
}

/// `POST /v1/suggestions/{id}/modify` `{comment, rule | limit, shadow?, temporary_until?}`.
/// Admin.
pub async fn modify(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<Decided>> {
    who.require(Role::Admin, DECIDE)?;
    let id = suggestion_id(id)?;
    let b: ModifyBody = body_or_default(&body)?;
    let rule = match (b.rule, b.limit) {
        (Some(rule), None) => rule,
        (None, Some(limit)) => {
            let mut rule = review::get(&state.pool, id).await?.rule;
            rule.limit = limit;
            rule
        }
        _ => {
            return Err(ApiError::BadRequest(
                "modify needs exactly one of rule (a whole rule) or limit (replaces the suggested rule's limit)".into(),
            ))
        }
    };
    let req = DecideRequest {
        id,
        kind: DecisionKind::Modify(rule),
        actor: who.actor(),
        comment: b.comment,
        shadow: b.shadow,
        temporary_until: until(b.temporary_until.as_deref())?,
    };
    decided(&state, req).await
}

/// `GET /v1/auto-approval`. Analyst or admin.
pub async fn get_auto_approval(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<AutoApproval>> {
    who.require(Role::Analyst, READ_AUTO)?;
    Ok(Json(review::get_auto_approval(&state.pool).await?))
}

/// `PUT /v1/auto-approval`: the whole configuration (fields left out take their defaults).
/// Admin.
pub async fn put_auto_approval(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<AutoApproval>> {
    who.require(Role::Admin, SET_AUTO)?;
    let cfg: AutoApprovalConfig = json_body(&body)?;
    Ok(Json(
        review::set_auto_approval(&state.pool, &cfg, &who.actor()).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An exact action (`suggestion.approve`) or a prefix such as `suggestion.*`.
    pub action: Option<String>,
    /// RFC 3339 (wall clock).
    pub since: Option<String>,
    /// 1..=500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A page of the audit log; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Serialize)]
pub struct AuditList {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The filters of `GET /v1/audit`.
pub fn parse_audit_query(q: &AuditQuery) -> ApiResult<AuditFilter> {
    Ok(AuditFilter {
        actor: nonempty(q.actor.as_deref(), "actor")?,
        action: nonempty(q.action.as_deref(), "action")?,
        since: time(q.since.as_deref(), "since")?,
        limit: bounded(
            q.limit.as_deref(),
            "limit",
            review::DEFAULT_LIMIT,
            review::MAX_LIMIT,
        )?,
        before_id: cursor(q.cursor.as_deref())?,
    })
}

/// `GET /v1/audit`. Analyst or admin.
pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<AuditList>> {
    who.require(Role::Analyst, READ_AUDIT)?;
    let Query(q) = q.map_err(bad_query)?;
    let filter = parse_audit_query(&q)?;
    let page = review::audit(&state.pool, &filter).await?;
    Ok(Json(AuditList {
        items: page.items,
        next_cursor: page.next_before_id.map(|id| id.to_string()),
    }))
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of every route. No token.
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::routes::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_parsed_at_the_edge() {
        let f = parse_suggestion_query(&SuggestionQuery {
            state: Some("pending".into()),
            abusive: Some("true".into()),
            cursor: Some("42".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (f.state, f.abusive, f.before_id, f.limit),
            (Some(SuggestionState::Pending), Some(true), Some(42), 50)
        );
        for (q, want) in [
            (
                SuggestionQuery {
                    state: Some("done".into()),
                    ..Default::default()
                },
                "unknown suggestion state \"done\" (expected one of pending, approved, rejected, modified_approved, expired)",
            ),
            (
                SuggestionQuery {
                    abusive: Some("yes".into()),
                    ..Default::default()
                },
                "abusive must be true or false, got \"yes\"",
            ),
            (
                SuggestionQuery {
                    cursor: Some("-1".into()),
                    ..Default::default()
                },
                "invalid cursor \"-1\": pass the next_cursor of the previous answer unchanged",
            ),
            (
                SuggestionQuery {
                    client: Some(String::new()),
                    ..Default::default()
                },
                "client must not be empty",
            ),
            (
                SuggestionQuery {
                    limit: Some("501".into()),
                    ..Default::default()
                },
                "limit must be an integer from 1 to 500, got \"501\"",
            ),
        ] {
            assert_eq!(
                parse_suggestion_query(&q).unwrap_err().to_string(),
                want
            );
        }
        let a = parse_audit_query(&AuditQuery {
            action: Some("suggestion.*".into()),
            since: Some("2026-03-02T04:10:00Z".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(a.action.as_deref(), Some("suggestion.*"));
        assert!(a.since.is_some());
    }
}
