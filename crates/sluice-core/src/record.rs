//! The canonical access record every log format is parsed into.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::identity::ClientId;
use crate::time::Timestamp;

/// One request as seen by a gateway, in Sluice's canonical shape.
///
/// String fields borrow from the input line where no unescaping was needed, so parsing a line
/// allocates only for escaped values and extras. Fields a format does not carry are `None`.
/// `route` and `client` are derived by the ingest pipeline (see [`crate::RouteNormalizer`] and
/// [`crate::ClientKeyPolicy`]); parsers leave them empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessRecord<'a> {
    /// Request start (or log write) time in UTC microseconds.
    pub ts: Timestamp,
    /// Gateway or log source name.
    pub source: Option<Cow<'a, str>>,
    /// API key (`$http_x_api_key`, the `X-API-Key` header, ...).
    pub api_key: Option<Cow<'a, str>>,
    /// Gateway consumer (Kong `consumer.id`).
    pub consumer: Option<Cow<'a, str>>,
    /// Authenticated user (`$remote_user`, `%u`).
    pub user: Option<Cow<'a, str>>,
    /// Client IP address.
    pub ip: Option<IpAddr>,
    pub method: Option<Cow<'a, str>>,
    pub host: Option<Cow<'a, str>>,
    /// Path without the query string; never empty (`/` at least, or `*` for `OPTIONS *`).
    pub path: Cow<'a, str>,
    /// Query string without the leading `?`.
    pub query: Option<Cow<'a, str>>,
    pub protocol: Option<Cow<'a, str>>,
    pub status: u16,
    /// Bytes sent to the client (response).
    pub bytes_sent: Option<u64>,
    /// Bytes received from the client (request).
    pub bytes_received: Option<u64>,
    /// Total request latency in microseconds.
    pub latency_us: Option<u64>,
    /// Upstream (backend) latency in microseconds.
    pub upstream_latency_us: Option<u64>,
    pub user_agent: Option<Cow<'a, str>>,
    pub referer: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    /// Fields of the input that have no canonical slot, kept verbatim.
    pub extras: serde_json::Map<String, serde_json::Value>,
    /// Normalised route (`/v1/products/{id}`), set by the ingest pipeline.
    pub route: Option<Cow<'a, str>>,
    /// Resolved client identity, set by the ingest pipeline.
    pub client: Option<ClientId<'a>>,
}

impl AccessRecord<'_> {
    /// Detach from the input buffer.
    pub fn into_owned(self) -> AccessRecord<'static> {
        fn own(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(|c| Cow::Owned(c.into_owned()))
        }
        AccessRecord {
            ts: self.ts,
            source: own(self.source),
            api_key: own(self.api_key),
            consumer: own(self.consumer),
            user: own(self.user),
            ip: self.ip,
            method: own(self.method),
            host: own(self.host),
            path: Cow::Owned(self.path.into_owned()),
            query: own(self.query),
            protocol: own(self.protocol),
            status: self.status,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            latency_us: self.latency_us,
            upstream_latency_us: self.upstream_latency_us,
            user_agent: own(self.user_agent),
            referer: own(self.referer),
            request_id: own(self.request_id),
            extras: self.extras,
            route: own(self.route),
            client: self.client.map(ClientId::into_owned),
        }
    }
}
