//! Ground truth: who is who in the simulated logs, when each attack ran and when the flash crowd
//! hit. Serialised as the labels file that tests and benchmarks read back.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sluice_core::{ClientKind, Timestamp};

use crate::config::AttackClass;

/// The labels file.
///
/// ```json
/// {"seed":1,"start":"2026-03-02T00:00:00Z","end":"2026-03-02T06:00:00Z",
///  "identities":[{"kind":"api_key","value":"ak_3f...","label":"legit","attack_class":null,"attack_id":null}, ...],
///  "attacks":[{"id":"scraping-1","class":"scraping","start":"...","end":"...",
///              "identities":[{"kind":"ip","value":"203.0.113.7"}],"ips":["203.0.113.7"]}, ...],
///  "flash_crowds":[{"start":"...","end":"...","route":"/v1/products/{id}","path":"/v1/products/1337","multiplier":5.0}]}
/// ```
///
/// Identities are named the way the default client-key policy (`api_key,consumer,user,ip`)
/// resolves them: requests that carry an API key belong to the key, the others to their IP.
/// Every listed identity sends at least one request; every request belongs to a listed identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub seed: u64,
    #[serde(with = "rfc3339")]
    pub start: Timestamp,
    #[serde(with = "rfc3339")]
    pub end: Timestamp,
    pub identities: Vec<IdentityLabel>,
    pub attacks: Vec<AttackLabel>,
    pub flash_crowds: Vec<FlashCrowdLabel>,
}

/// What an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficLabel {
    /// An API client with a daily rhythm.
    Legit,
    /// An anonymous browser.
    Browser,
    /// A key that bursts at the top of every hour.
    BatchJob,
    /// A browser that arrives with the flash crowd (legitimate).
    FlashCrowd,
    Attack,
}

impl TrafficLabel {
    pub const fn is_attack(self) -> bool {
        matches!(self, TrafficLabel::Attack)
    }
}

/// One identity. A stolen key is labelled `attack` (class `compromised_key`) for the whole run,
/// although its owner's legitimate traffic goes on before and during the attack; the attacker's
/// own requests are those from [`AttackLabel::ips`] within the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLabel {
    pub kind: ClientKind,
    pub value: String,
    pub label: TrafficLabel,
    pub attack_class: Option<AttackClass>,
    pub attack_id: Option<String>,
}

/// An identity as the client-key policy names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityRef {
    pub kind: ClientKind,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackLabel {
    /// `<class>-<n>`, n counting from 1 in configuration order.
    pub id: String,
    pub class: AttackClass,
    /// The window: every attack request has `start <= ts < end`, and each identity sends its
    /// first request within the first minute.
    #[serde(with = "rfc3339")]
    pub start: Timestamp,
    #[serde(with = "rfc3339")]
    pub end: Timestamp,
    pub identities: Vec<IdentityRef>,
    /// Source IPs of the attack requests (for a compromised key: the new IPs only).
    pub ips: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlashCrowdLabel {
    #[serde(with = "rfc3339")]
    pub start: Timestamp,
    #[serde(with = "rfc3339")]
    pub end: Timestamp,
    /// Route template of the popular page.
    pub route: String,
    pub path: String,
    pub multiplier: f64,
}

impl Labels {
    /// Map from identity to its label, for scoring detections.
    pub fn by_identity(&self) -> HashMap<IdentityRef, &IdentityLabel> {
        self.identities
            .iter()
            .map(|l| {
                (
                    IdentityRef {
                        kind: l.kind,
                        value: l.value.clone(),
                    },
                    l,
                )
            })
            .collect()
    }

    /// The label of one identity.
    pub fn identity(&self, kind: ClientKind, value: &str) -> Option<&IdentityLabel> {
        self.identities
            .iter()
            .find(|l| l.kind == kind && l.value == value)
    }

    pub fn attack(&self, id: &str) -> Option<&AttackLabel> {
        self.attacks.iter().find(|a| a.id == id)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<Labels, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Timestamps as RFC 3339 strings in UTC, with as many fraction digits as needed.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use sluice_core::Timestamp;

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(ts)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| Timestamp::from_chrono(t.to_utc()))
            .map_err(|e| serde::de::Error::custom(format!("invalid time {text:?}: {e}")))
    }
}
