//! The route table: every route the router serves, with the access it needs, its parameters and
//! the names of its request and response schemas. The OpenAPI 3.1 document (`GET /openapi.json`)
//! is generated from it, and the router tests check every route in it against every role and
//! every route of the router against it (a route missing here fails them).

use serde_json::{json, Map, Value};
use sluice_core::Role;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token (health, readiness, this document).
    Public,
    /// Any valid token.
    AnyToken,
    /// A token of this role, or an admin token.
    Role(Role),
}

impl Access {
    /// Whether a token of `role` may call the route.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::AnyToken => true,
            Access::Role(need) => role.allows(need),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Access::Public => "No token needed.",
            Access::AnyToken => "Any valid token (gateway, analyst or admin).",
            Access::Role(Role::Gateway) => "Role: gateway (or admin).",
            Access::Role(Role::Analyst) => "Role: analyst (or admin).",
            Access::Role(Role::Admin) => "Role: admin.",
        }
    }
}

/// One route: method and path (OpenAPI path syntax, which is also axum's).
#[derive(Clone, Copy, Debug)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Query parameters (all optional unless the summary says otherwise).
    pub query: &'static [&'static str],
    /// The request body's schema name, if it takes a body.
    pub request: Option<&'static str>,
    /// The success answer's schema name.
    pub response: &'static str,
    /// The success status.
    pub status: u16,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RouteInfo {
    RouteInfo {
        method,
        path,
        access,
        summary,
        query: &[],
        request: None,
        response: "Empty",
        status: 200,
    }
}

impl RouteInfo {
    const fn query(mut self, q: &'static [&'static str]) -> RouteInfo {
        self.query = q;
        self
    }
    const fn request(mut self, schema: &'static str) -> RouteInfo {
        self.request = Some(schema);
        self
    }
    const fn response(mut self, schema: &'static str) -> RouteInfo {
        self.response = schema;
        self
    }
    const fn status(mut self, status: u16) -> RouteInfo {
        self.status = status;
        self
    }
}

const GATEWAY: Access = Access::Role(Role::Gateway);
const ANALYST: Access = Access::Role(Role::Analyst);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route of [`crate::router`].
pub const ROUTES: &[RouteInfo] = &[
    route("GET", "/healthz", Access::Public, "Liveness: answers `ok`.").response("Text"),
    route(
        "GET",
        "/readyz",
        Access::Public,
        "Readiness: answers `ready` when the database answers.",
    )
    .response("Text"),
    route(
        "GET",
        "/openapi.json",
        Access::Public,
        "This document (OpenAPI 3.1).",
    )
    .response("OpenApi"),
    route(
        "GET",
        "/metrics",
        ANALYST,
        "Prometheus metrics (text exposition format); without a token when served with `--metrics-public`.",
    )
    .response("Text"),
    route(
        "POST",
        "/v1/logs",
        GATEWAY,
        "Ship access-log lines (any supported format, optionally gzip).",
    )
    .query(&["format", "log_format", "source"])
    .request("LogLines")
    .response("LogsResponse"),
    route(
        "GET",
        "/v1/logs/rejects",
        ANALYST,
        "Rejected log lines and why.",
    )
    .query(&["source", "limit", "before"])
    .response("RejectList"),
    route(
        "GET",
        "/v1/whoami",
        Access::AnyToken,
        "The calling token's name and role.",
    )
    .response("WhoAmI"),
    route(
        "GET",
        "/v1/anomalies",
        ANALYST,
        "Anomalies, newest first, keyset-paginated.",
    )
    .query(&[
        "state",
        "kind",
        "client",
        "client_kind",
        "since",
        "until",
        "limit",
        "cursor",
    ])
    .response("AnomalyPage"),
    route(
        "GET",
        "/v1/anomalies/{id}",
        ANALYST,
        "One anomaly with a page of its members.",
    )
    .query(&["members_limit", "members_cursor"])
    .response("AnomalyDetail"),
    route(
        "GET",
        "/v1/clients/{client}",
        ANALYST,
        "A client's baseline against its recent minutes, its anomalies and its reputation.",
    )
    .query(&["kind", "until", "window_minutes", "anomalies_limit"])
    .response("ClientAnswer"),
    route(
        "GET",
        "/v1/forecasts",
        ANALYST,
        "Per-route forecasts and capacity factors.",
    )
    .query(&["route", "until", "window_minutes"])
    .response("ForecastAnswer"),
    route(
        "GET",
        "/v1/policy",
        Access::AnyToken,
        "The policy the caller's gateway group is served (ETag, long poll, exports).",
    )
    .query(&["wait", "format", "group", "domain"])
    .response("PolicyDocument"),
    route(
        "GET",
        "/v1/policy/versions",
        ANALYST,
        "Policy versions, newest first, and the rollout state.",
    )
    .query(&["limit", "before"])
    .response("VersionList"),
    route(
        "POST",
        "/v1/policy/versions",
        ADMIN,
        "Publish a policy document as a new version.",
    )
    .query(&["comment", "group"])
    .request("PolicyDocument")
    .response("VersionInfo")
    .status(201),
    route(
        "GET",
        "/v1/policy/versions/{version}",
        ANALYST,
        "One policy version with its document.",
    )
    .response("VersionDetail"),
    route(
        "GET",
        "/v1/policy/diff",
        ANALYST,
        "Rules added, removed and changed between two versions (from and to are required).",
    )
    .query(&["from", "to"])
    .response("DiffAnswer"),
    route(
        "POST",
        "/v1/policy/rollback",
        ADMIN,
        "Publish a copy of an older version.",
    )
    .request("RollbackBody")
    .response("VersionInfo")
    .status(201),
    route(
        "POST",
        "/v1/policy/promote",
        ADMIN,
        "Serve a version (e.g. a canary's) to every gateway.",
    )
    .request("PromoteBody")
    .response("RolloutState"),
    route(
        "GET",
        "/v1/gateways",
        ANALYST,
        "Every gateway with its applied and desired version.",
    )
    .response("GatewayList"),
    route(
        "POST",
        "/v1/gateways/{id}/status",
        GATEWAY,
        "A gateway reports the version it applied or the error it hit.",
    )
    .request("StatusBody")
    .response("GatewayStatus"),
    route(
        "GET",
        "/v1/suggestions",
        ANALYST,
        "Suggested limits, newest first, keyset-paginated.",
    )
    .query(&["state", "client", "abusive", "limit", "cursor"])
    .response("SuggestionList"),
    route(
        "GET",
        "/v1/suggestions/{id}",
        ANALYST,
        "One suggestion with its evidence and decision.",
    )
    .response("Suggestion"),
    route(
        "POST",
        "/v1/suggestions/{id}/approve",
        ADMIN,
        "Approve: publish the suggested rule as a new policy version.",
    )
    .request("ApproveBody")
    .response("Decided"),
    route(
        "POST",
        "/v1/suggestions/{id}/reject",
        ADMIN,
        "Reject (a comment is required); publishes nothing.",
    )
    .request("RejectBody")
    .response("Decided"),
    route(
        "POST",
        "/v1/suggestions/{id}/modify",
        ADMIN,
        "Approve a modified rule or limit (a comment is required).",
    )
    .request("ModifyBody")
    .response("Decided"),
    route(
        "GET",
        "/v1/auto-approval",
        ANALYST,
        "The auto-approval rules in force.",
    )
    .response("AutoApproval"),
    route(
        "PUT",
        "/v1/auto-approval",
        ADMIN,
        "Replace the auto-approval rules (audited).",
    )
    .request("AutoApprovalConfig")
    .response("AutoApproval"),
    route(
        "GET",
        "/v1/audit",
        ANALYST,
        "The audit log, newest first, keyset-paginated.",
    )
    .query(&["actor", "action", "since", "limit", "cursor"])
    .response("AuditPage"),
    // The web UI (ui.rs, traffic.rs, limits.rs).
    route(
        "GET",
        "/ui",
        Access::Public,
        "The web UI (static page; signs in with an API token and reads /v1).",
    )
    .response("Html"),
    route(
        "GET",
        "/ui/assets/{file}",
        Access::Public,
        "A static file of the web UI (scripts, styles, the vendored chart library).",
    )
    .response("Asset"),
    route(
        "GET",
        "/v1/traffic",
        ANALYST,
        "Requests, 429s, other 4xx, 5xx and latency per step from the rollups (at most 2,000 points).",
    )
    .query(&["from", "to", "step", "route", "client", "client_kind"])
    .response("Traffic"),
    route(
        "GET",
        "/v1/clients/{client}/limits",
        ANALYST,
        "The rules in force that name a client, and the per-client rules.",
    )
    .response("ClientLimits"),
];

/// What each schema name stands for (the Rust type that produces or reads it).
const SCHEMAS: &[(&str, &str)] = &[
    ("Text", "Plain text."),
    ("Html", "An HTML page."),
    ("Asset", "A static file (JavaScript, CSS or text)."),
    (
        "Traffic",
        "`sluice_store::traffic::Traffic`: `{from, to, step_seconds, points: [{t, requests, status_429, status_4xx, status_5xx, latency_avg_ms, latency_max_ms}], totals}`.",
    ),
    (
        "ClientLimits",
        "`sluice_api::limits::ClientLimits`: `{client, version, rules, per_client, truncated}`.",
    ),
    ("OpenApi", "An OpenAPI 3.1 document."),
    (
        "LogLines",
        "Access-log lines, one per line, in the format named by `format` or detected.",
    ),
    (
        "LogsResponse",
        "`sluice_api::logs::LogsResponse`: lines read, accepted and rejected, the batch id, whether it was a duplicate, the format.",
    ),
    ("RejectList", "`{items, next_before}`: rejected lines with their reasons."),
    ("WhoAmI", "`{name, role}` of the calling token."),
    (
        "AnomalyPage",
        "`sluice_store::analyst::AnomalyPage`: `{items, next_cursor}`.",
    ),
    (
        "AnomalyDetail",
        "`sluice_store::analyst::AnomalyDetail`: an anomaly, its members and `members_next_cursor`.",
    ),
    (
        "ClientAnswer",
        "`sluice_store::analyst::ClientView` plus `reputation` (`sluice_store::review::ClientReputation`: score, first_seen, updated_at, good_minutes, history) or null.",
    ),
    ("ForecastAnswer", "`sluice_api::forecasts` answer."),
    (
        "PolicyDocument",
        "A `sluice.policy/v1` document (docs/policy-format.md, docs/policy.schema.json).",
    ),
    (
        "VersionList",
        "`{rollout, versions, next_before}` of `sluice_store::policy::VersionInfo`.",
    ),
    ("VersionInfo", "`sluice_store::policy::VersionInfo`."),
    ("VersionDetail", "A `VersionInfo` with its `document`."),
    ("DiffAnswer", "`{from, to, added, removed, changed}`."),
    ("RollbackBody", "`{to, comment?}`."),
    ("PromoteBody", "`{version, comment?}`."),
    ("RolloutState", "`{all, pinned}`: which version each gateway group is served."),
    ("GatewayList", "`{rollout, gateways}`."),
    ("StatusBody", "`{applied_version?, error?, group?}`."),
    ("GatewayStatus", "`sluice_store::policy::GatewayStatus`."),
    (
        "SuggestionList",
        "`{items, next_cursor}` of `Suggestion`; pass `next_cursor` as `cursor`.",
    ),
    (
        "Suggestion",
        "`sluice_store::review::Suggestion`: every column of `limit_suggestions` (rule, current rule, diff, evidence, backtest, decision).",
    ),
    (
        "ApproveBody",
        "`{comment?, shadow?, temporary_until?}` (temporary_until: RFC 3339, log time). An empty body approves as suggested.",
    ),
    ("RejectBody", "`{comment}` (required)."),
    (
        "ModifyBody",
        "`{comment, rule | limit, shadow?, temporary_until?}`: a whole rule (same id), or a limit that replaces the suggested rule's limit.",
    ),
    (
        "Decided",
        "`{suggestion, policy_version}`: the decided suggestion and the policy version an approval published.",
    ),
    (
        "AutoApproval",
        "`{config, updated_at, updated_by}`; `updated_*` are null while the defaults apply.",
    ),
    (
        "AutoApprovalConfig",
        "`sluice_core::approval::AutoApprovalConfig`: `{loosen, tighten_abusive, enforce}` (docs/tuning.md).",
    ),
    (
        "AuditPage",
        "`{items, next_cursor}` of audit entries `{id, at, actor, action, target, reason, before, after}`.",
    ),
    ("Empty", "No body."),
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn media(name: &str) -> &'static str {
    match name {
        "Text" => "text/plain",
        "LogLines" => "text/plain",
        _ => "application/json",
    }
}

/// The path parameters of an OpenAPI path, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation(r: &RouteInfo) -> Value {
    let mut params: Vec<Value> = path_params(r.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(r.query.iter().map(
        |q| json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}}),
    ));
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(format!("{} {}", r.method, r.path)),
    );
    op.insert("summary".into(), json!(r.summary));
    op.insert("description".into(), json!(r.access.describe()));
    let role = match r.access {
        Access::Public => "public",
        Access::AnyToken => "any",
        Access::Role(role) => role.as_str(),
    };
    op.insert("x-sluice-role".into(), json!(role));
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(req) = r.request {
        op.insert(
            "requestBody".into(),
            json!({"content": {media(req): {"schema": schema_ref(req)}}}),
        );
    }
    let mut responses = Map::new();
    let ok = if r.response == "Empty" {
        json!({"description": "success"})
    } else {
        json!({"description": "success", "content": {media(r.response): {"schema": schema_ref(r.response)}}})
    };
    responses.insert(r.status.to_string(), ok);
    if r.access != Access::Public {
        responses.insert(
            "401".into(),
            json!({"$ref": "#/components/responses/Problem"}),
        );
    }
    if matches!(r.access, Access::Role(_)) {
        responses.insert(
            "403".into(),
            json!({"$ref": "#/components/responses/Problem"}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/Problem"}),
    );
    op.insert("responses".into(), Value::Object(responses));
    if r.access == Access::Public {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let item = paths
            .entry(r.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item.as_object_mut()
            .expect("a path item is an object")
            .insert(r.method.to_ascii_lowercase(), operation(r));
    }
    let mut schemas = Map::new();
    for (name, what) in SCHEMAS {
        let schema = match *name {
            "Text" | "LogLines" => json!({"type": "string", "description": what}),
            "Empty" => json!({"description": what}),
            _ => json!({"type": "object", "description": what}),
        };
        schemas.insert((*name).into(), schema);
    }
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "RFC 9457 problem details; `detail` says what was wrong.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"}
            }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Adaptive rate limiting control plane. Every /v1 route needs `Authorization: Bearer <token>`; the role each needs is in its description and in `x-sluice-role`."
        },
        "paths": Value::Object(paths),
        "components": {
            "schemas": Value::Object(schemas),
            "responses": {
                "Problem": {
                    "description": "An error (RFC 9457 problem+json).",
                    "content": {"application/problem+json": {"schema": schema_ref("Problem")}}
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        },
        "security": [{"bearer": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_named_by_a_route_is_described_and_every_route_is_unique() {
        let names: Vec<&str> = SCHEMAS.iter().map(|(n, _)| *n).collect();
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            for s in r.request.iter().chain(std::iter::once(&r.response)) {
                assert!(
                    names.contains(s),
                    "{} {}: schema {s} undescribed",
                    r.method,
                    r.path
                );
            }
            assert!(
                (r.path.starts_with("/v1/") || r.path == "/metrics")
                    != (r.access == Access::Public),
                "{} {}: /v1 routes and /metrics need a token, others none",
                r.method,
                r.path
            );
        }
        let doc = openapi();
        for (name, _) in SCHEMAS {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["paths"]["/v1/suggestions/{id}/approve"]["post"]["x-sluice-role"],
            "admin"
        );
        assert_eq!(
            doc["paths"]["/v1/suggestions/{id}"]["get"]["parameters"][0]["name"],
            "id"
        );
        assert_eq!(path_params("/v1/gateways/{id}/status"), ["id"]);
    }
}
