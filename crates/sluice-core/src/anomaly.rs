//! What an anomaly is on the wire and in the database: its kind, its state, and the reasons that
//! explain it. The detector decides them; the store and the API parse them from text here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an anomaly looks like, inferred from the features that deviated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Scraping,
    CredentialStuffing,
    Enumeration,
    CompromisedKey,
    Probing,
    Flood,
    RateSpike,
    /// Unlike the client's past or the population, without a more specific pattern.
    Unusual,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 8] = [
        AnomalyKind::Scraping,
        AnomalyKind::CredentialStuffing,
        AnomalyKind::Enumeration,
        AnomalyKind::CompromisedKey,
        AnomalyKind::Probing,
        AnomalyKind::Flood,
        AnomalyKind::RateSpike,
        AnomalyKind::Unusual,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Scraping => "scraping",
            AnomalyKind::CredentialStuffing => "credential_stuffing",
            AnomalyKind::Enumeration => "enumeration",
            AnomalyKind::CompromisedKey => "compromised_key",
            AnomalyKind::Probing => "probing",
            AnomalyKind::Flood => "flood",
            AnomalyKind::RateSpike => "rate_spike",
            AnomalyKind::Unusual => "unusual",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown anomaly kind {0:?} (expected one of scraping, credential_stuffing, enumeration, compromised_key, probing, flood, rate_spike, unusual)")]
pub struct UnknownAnomalyKind(pub String);

impl FromStr for AnomalyKind {
    type Err = UnknownAnomalyKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnomalyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownAnomalyKind(s.to_owned()))
    }
}

/// Whether an anomaly is still being flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyState {
    Open,
    Resolved,
}

impl AnomalyState {
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyState::Open => "open",
            AnomalyState::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AnomalyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown anomaly state {0:?} (expected open or resolved)")]
pub struct UnknownAnomalyState(pub String);

impl FromStr for AnomalyState {
    type Err = UnknownAnomalyState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(AnomalyState::Open),
            "resolved" => Ok(AnomalyState::Resolved),
            other => Err(UnknownAnomalyState(other.to_owned())),
        }
    }
}

/// One feature that deviated: what was seen and what the baseline expected (the explanation an
/// analyst reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    pub observed: f64,
    pub expected: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_round_trip_through_text_and_json() {
        for k in AnomalyKind::ALL {
            assert_eq!(k.as_str().parse::<AnomalyKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for s in [AnomalyState::Open, AnomalyState::Resolved] {
            assert_eq!(s.as_str().parse::<AnomalyState>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }

    #[test]
    fn unknown_values_say_what_is_expected() {
        assert_eq!(
            "Scraping".parse::<AnomalyKind>().unwrap_err().to_string(),
            "unknown anomaly kind \"Scraping\" (expected one of scraping, credential_stuffing, \
             enumeration, compromised_key, probing, flood, rate_spike, unusual)"
        );
        assert_eq!(
            "closed".parse::<AnomalyState>().unwrap_err().to_string(),
            "unknown anomaly state \"closed\" (expected open or resolved)"
        );
    }
}
