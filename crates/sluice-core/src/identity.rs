//! Client identity: which field of a request names the client, and the policy that picks it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::record::AccessRecord;

/// The kind of field a client identity was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    ApiKey,
    Consumer,
    User,
    Ip,
}

impl ClientKind {
    pub const ALL: [ClientKind; 4] = [
        ClientKind::ApiKey,
        ClientKind::Consumer,
        ClientKind::User,
        ClientKind::Ip,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ClientKind::ApiKey => "api_key",
            ClientKind::Consumer => "consumer",
            ClientKind::User => "user",
            ClientKind::Ip => "ip",
        }
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("unknown client key field {0:?} (expected one of api_key, consumer, user, ip)")]
    UnknownField(String),
    #[error("client key list is empty (expected a comma-separated list such as api_key,consumer,user,ip)")]
    Empty,
    #[error("client key field {0:?} is listed twice")]
    Duplicate(String),
}

impl FromStr for ClientKind {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "api_key" => Ok(ClientKind::ApiKey),
            "consumer" => Ok(ClientKind::Consumer),
            "user" => Ok(ClientKind::User),
            "ip" => Ok(ClientKind::Ip),
            other => Err(IdentityError::UnknownField(other.to_owned())),
        }
    }
}

/// A resolved client identity: the kind of field and its value (the API key itself, the IP, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientId<'a> {
    pub kind: ClientKind,
    pub value: Cow<'a, str>,
}

impl ClientId<'_> {
    pub fn into_owned(self) -> ClientId<'static> {
        ClientId {
            kind: self.kind,
            value: Cow::Owned(self.value.into_owned()),
        }
    }
}

/// Ordered list of identity fields; the first one present in a record names its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKeyPolicy {
    order: Vec<ClientKind>,
}

impl Default for ClientKeyPolicy {
    fn default() -> Self {
        ClientKeyPolicy {
            order: ClientKind::ALL.to_vec(),
        }
    }
}

impl FromStr for ClientKeyPolicy {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut order = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let kind: ClientKind = part.parse()?;
            if order.contains(&kind) {
                return Err(IdentityError::Duplicate(part.to_owned()));
            }
            order.push(kind);
        }
        if order.is_empty() {
            return Err(IdentityError::Empty);
        }
        Ok(ClientKeyPolicy { order })
    }
}

impl fmt::Display for ClientKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.order.iter().map(|k| k.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl ClientKeyPolicy {
    pub fn order(&self) -> &[ClientKind] {
        &self.order
    }

    /// The identity of a record: the first configured field that is present and not `-`/empty.
    pub fn resolve<'a>(&self, rec: &AccessRecord<'a>) -> Option<ClientId<'a>> {
        for kind in &self.order {
            let value: Option<Cow<'a, str>> = match kind {
                ClientKind::ApiKey => present(&rec.api_key),
                ClientKind::Consumer => present(&rec.consumer),
                ClientKind::User => present(&rec.user),
                ClientKind::Ip => rec.ip.map(|ip| Cow::Owned(ip.to_string())),
            };
            if let Some(value) = value {
                return Some(ClientId { kind: *kind, value });
            }
        }
        None
    }
}

fn present<'a>(v: &Option<Cow<'a, str>>) -> Option<Cow<'a, str>> {
    match v {
        Some(s) if !s.is_empty() && s != "-" => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policy_lists() {
        assert_eq!(
            "api_key,ip".parse::<ClientKeyPolicy>().unwrap().to_string(),
            "api_key,ip"
        );
        assert_eq!(
            "api_key,host"
                .parse::<ClientKeyPolicy>()
                .unwrap_err()
                .to_string(),
            "unknown client key field \"host\" (expected one of api_key, consumer, user, ip)"
        );
        assert_eq!(
            "ip,ip".parse::<ClientKeyPolicy>().unwrap_err(),
            IdentityError::Duplicate("ip".into())
        );
        assert_eq!(
            " , ".parse::<ClientKeyPolicy>().unwrap_err(),
            IdentityError::Empty
        );
    }

    #[test]
    fn first_present_field_wins() {
        let policy = ClientKeyPolicy::default();
        let mut rec = AccessRecord {
            ip: Some("10.0.0.1".parse().unwrap()),
            user: Some("-".into()),
            ..Default::default()
        };
        assert_eq!(
            policy.resolve(&rec),
            Some(ClientId {
                kind: ClientKind::Ip,
                value: "10.0.0.1".into()
            })
        );
        rec.api_key = Some("ak_1".into());
        assert_eq!(
            policy.resolve(&rec),
            Some(ClientId {
                kind: ClientKind::ApiKey,
                value: "ak_1".into()
            })
        );
        let ip_only: ClientKeyPolicy = "ip".parse().unwrap();
        assert_eq!(ip_only.resolve(&rec).unwrap().kind, ClientKind::Ip);
        assert_eq!(
            ClientKeyPolicy::default().resolve(&AccessRecord::default()),
            None
        );
    }
}
