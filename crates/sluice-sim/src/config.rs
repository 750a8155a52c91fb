//! What to simulate: population sizes, attacks, the flash crowd and the volume, checked once by
//! [`SimConfig::validate`] so the generator never sees an impossible scenario.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sluice_core::Timestamp;

/// Six hours: the default simulated span.
pub const DEFAULT_DURATION_SECS: u64 = 6 * 3600;

/// A scenario. Two runs with equal configurations produce identical records, byte for byte.
///
/// `Default` is the replay benchmark scenario: 6 hours from 2026-03-02T00:00:00Z, ~540 identities
/// (220 API clients, 100 browsers, 8 batch jobs, one attack of each class, a flash crowd) and about
/// 1,000,000 lines. Use [`SimConfig::for_duration`] for a shorter or longer scenario with the
/// attack and flash-crowd schedule stretched to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seeds every random choice (identities, rates, paths, statuses).
    pub seed: u64,
    /// Log time of the first possible request.
    pub start: Timestamp,
    /// Simulated span in seconds (at least 60).
    pub duration_secs: u64,
    /// API clients identified by key, each with a tier, an endpoint mix and a daily rhythm.
    pub legit_clients: usize,
    /// Anonymous browsers identified by IP, in short sessions.
    pub browsers: usize,
    /// API keys that burst at the top of every hour and are quiet otherwise.
    pub batch_jobs: usize,
    /// Attacks, each with its own window; see [`AttackSpec::default_schedule`].
    pub attacks: Vec<AttackSpec>,
    pub flash_crowd: Option<FlashCrowdSpec>,
    /// Scale the legitimate traffic so the total is about this many lines (attacks keep their
    /// absolute rates, since their signatures are defined by them). `None` keeps the natural rates
    /// (about 19 requests per minute per API client).
    pub target_lines: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            target_lines: Some(1_000_000),
            ..SimConfig::for_duration(1, DEFAULT_DURATION_SECS)
        }
    }
}

impl SimConfig {
    /// Default populations, one attack of each class and a flash crowd spread over
    /// `duration_secs`, natural rates (`target_lines: None`).
    pub fn for_duration(seed: u64, duration_secs: u64) -> SimConfig {
        SimConfig {
            seed,
            start: default_start(),
            duration_secs,
            legit_clients: 220,
            browsers: 100,
            batch_jobs: 8,
            attacks: AttackSpec::default_schedule(duration_secs),
            flash_crowd: Some(FlashCrowdSpec::default_for(duration_secs)),
            target_lines: None,
        }
    }

    /// Log time just after the last possible request.
    pub fn end(&self) -> Timestamp {
        Timestamp(self.start.0 + secs_us(self.duration_secs))
    }

    /// Check that every window fits and every rate makes sense.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        if self.duration_secs < 60 {
            return Err(SimConfigError::TooShort(self.duration_secs));
        }
        if self.target_lines == Some(0) {
            return Err(SimConfigError::ZeroTarget);
        }
        for (i, a) in self.attacks.iter().enumerate() {
            let n = i + 1;
            if a.duration_secs == 0 {
                return Err(SimConfigError::Attack(
                    n,
                    a.class,
                    "has a zero duration".into(),
                ));
            }
            let end = a.start_offset_secs.saturating_add(a.duration_secs);
            if end > self.duration_secs {
                return Err(SimConfigError::Attack(
                    n,
                    a.class,
                    format!(
                        "ends at {end}s, after the end of the simulation ({}s)",
                        self.duration_secs
                    ),
                ));
            }
            if a.sources == 0 || a.sources > MAX_SOURCES {
                return Err(SimConfigError::Attack(
                    n,
                    a.class,
                    format!("needs 1 to {MAX_SOURCES} sources, not {}", a.sources),
                ));
            }
            if !(a.rate_per_min.is_finite() && a.rate_per_min > 0.0) {
                return Err(SimConfigError::Attack(
                    n,
                    a.class,
                    format!("rate must be positive, not {}", a.rate_per_min),
                ));
            }
            if a.class == AttackClass::CompromisedKey && self.legit_clients == 0 {
                return Err(SimConfigError::Attack(
                    n,
                    a.class,
                    "needs at least one legit client whose key can be stolen".into(),
                ));
            }
        }
        if let Some(f) = &self.flash_crowd {
            let end = f.start_offset_secs.saturating_add(f.duration_secs);
            if f.duration_secs == 0 || end > self.duration_secs {
                return Err(SimConfigError::FlashCrowd(format!(
                    "window {}s..{end}s must be non-empty and end by {}s",
                    f.start_offset_secs, self.duration_secs
                )));
            }
            if !(f.multiplier.is_finite() && f.multiplier >= 1.0) {
                return Err(SimConfigError::FlashCrowd(format!(
                    "multiplier must be at least 1, not {}",
                    f.multiplier
                )));
            }
            if !(0.0..=1.0).contains(&f.participation) {
                return Err(SimConfigError::FlashCrowd(format!(
                    "participation must be between 0 and 1, not {}",
                    f.participation
                )));
            }
            if f.hot_product == 0 {
                return Err(SimConfigError::FlashCrowd(
                    "hot product id must be positive".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Most sources an attack may use (IPs are drawn from a few hundred /24 networks).
pub const MAX_SOURCES: usize = 10_000;

/// 2026-03-02T00:00:00Z, a Monday.
pub fn default_start() -> Timestamp {
    Timestamp::from_civil(2026, 3, 2, 0, 0, 0, 0, 0).unwrap_or_default()
}

pub(crate) const fn secs_us(secs: u64) -> i64 {
    secs as i64 * 1_000_000
}

/// Why a configuration cannot be simulated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimConfigError {
    #[error("duration must be at least 60s, not {0}s")]
    TooShort(u64),
    #[error("target lines must be positive")]
    ZeroTarget,
    #[error("attack {0} ({1}) {2}")]
    Attack(usize, AttackClass, String),
    #[error("flash crowd {0}")]
    FlashCrowd(String),
}

/// The attack classes the simulator can play, with the signature each leaves in the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackClass {
    /// One IP (no key, spoofed browser agent) walking `/v1/products/{id}` sequentially at a high
    /// rate: thousands of distinct paths.
    Scraping,
    /// Many IPs in a few /24 networks, one agent, `POST /v1/login` a few times a minute each,
    /// mostly 401.
    CredentialStuffing,
    /// One new API key reading `/v1/users/{id}` with sequential ids below any static limit,
    /// mostly 404 and 403.
    Enumeration,
    /// A legitimate key suddenly used from new IPs with a new agent on new endpoints
    /// (`/v1/export`, `/v1/admin/...`); its usual traffic continues alongside.
    CompromisedKey,
    /// One IP requesting scanner paths (`/.env`, `/wp-login.php`, ...), mostly 404.
    Probing,
    /// Many IPs hammering `/v1/search` for a few minutes.
    Flood,
}

impl AttackClass {
    pub const ALL: [AttackClass; 6] = [
        AttackClass::Scraping,
        AttackClass::CredentialStuffing,
        AttackClass::Enumeration,
        AttackClass::CompromisedKey,
        AttackClass::Probing,
        AttackClass::Flood,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AttackClass::Scraping => "scraping",
            AttackClass::CredentialStuffing => "credential_stuffing",
            AttackClass::Enumeration => "enumeration",
            AttackClass::CompromisedKey => "compromised_key",
            AttackClass::Probing => "probing",
            AttackClass::Flood => "flood",
        }
    }

    /// Default `(sources, requests per minute per identity)`.
    pub const fn default_intensity(self) -> (usize, f64) {
        match self {
            AttackClass::Scraping => (1, 240.0),
            AttackClass::CredentialStuffing => (120, 2.0),
            AttackClass::Enumeration => (1, 10.0),
            AttackClass::CompromisedKey => (3, 20.0),
            AttackClass::Probing => (1, 40.0),
            AttackClass::Flood => (60, 180.0),
        }
    }
}

impl fmt::Display for AttackClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attack class name that is not one of [`AttackClass::ALL`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown attack class {0:?} (expected one of scraping, credential_stuffing, enumeration, compromised_key, probing, flood)")]
pub struct UnknownAttackClass(pub String);

impl FromStr for AttackClass {
    type Err = UnknownAttackClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        AttackClass::ALL
            .into_iter()
            .find(|c| c.as_str() == norm)
            .ok_or_else(|| UnknownAttackClass(s.to_owned()))
    }
}

/// One attack: its class, its window relative to the simulation start, and its intensity.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackSpec {
    pub class: AttackClass,
    pub start_offset_secs: u64,
    pub duration_secs: u64,
    /// Source IPs: one identity each for credential stuffing and floods; the new IPs a
    /// compromised key is used from; ignored (one IP) by scraping, enumeration and probing.
    pub sources: usize,
    /// Requests per minute per attacking identity (per IP for stuffing and floods, per key for a
    /// compromised key or enumeration). Never scaled by `target_lines`.
    pub rate_per_min: f64,
}

impl AttackSpec {
    /// An attack with the class's default intensity.
    pub fn new(class: AttackClass, start_offset_secs: u64, duration_secs: u64) -> AttackSpec {
        let (sources, rate_per_min) = class.default_intensity();
        AttackSpec {
            class,
            start_offset_secs,
            duration_secs,
            sources,
            rate_per_min,
        }
    }

    /// One attack of each class at staggered times across `duration_secs` (for 6 hours:
    /// scraping at 0:36 for 25 min, credential stuffing at 1:30 for 40 min, enumeration at 2:24
    /// for 90 min, compromised key at 3:18 for 29 min, probing at 4:12 for 11 min, flood at 5:06
    /// for 4 min). Each lasts at least a minute.
    pub fn default_schedule(duration_secs: u64) -> Vec<AttackSpec> {
        let d = duration_secs as f64;
        let at = |f: f64| (d * f) as u64;
        let len = |f: f64| ((d * f) as u64).max(60);
        [
            (AttackClass::Scraping, 0.10, 0.07),
            (AttackClass::CredentialStuffing, 0.25, 0.11),
            (AttackClass::Enumeration, 0.40, 0.25),
            (AttackClass::CompromisedKey, 0.55, 0.08),
            (AttackClass::Probing, 0.70, 0.03),
            (AttackClass::Flood, 0.85, 0.01),
        ]
        .into_iter()
        .map(|(class, s, l)| {
            let start = at(s);
            let dur = len(l).min(duration_secs.saturating_sub(start));
            AttackSpec::new(class, start, dur)
        })
        .collect()
    }
}

/// Many existing clients and browsers rising together, plus new browsers arriving, on one
/// popular product page. Legitimate traffic: nothing in it should be flagged.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashCrowdSpec {
    pub start_offset_secs: u64,
    pub duration_secs: u64,
    /// Rate factor of participating clients at the plateau (ramping up over 3 minutes and down
    /// over the last 5).
    pub multiplier: f64,
    /// Share of API clients and browsers that take part (0 to 1).
    pub participation: f64,
    /// Browsers (new IPs) that appear only during the crowd.
    pub new_browsers: usize,
    /// The popular page: `/v1/products/{hot_product}`.
    pub hot_product: u32,
}

impl FlashCrowdSpec {
    /// At 45% of the span for 7% of it (for 6 hours: 2:42 for 25 minutes), ×5 with 80% taking part.
    pub fn default_for(duration_secs: u64) -> FlashCrowdSpec {
        let d = duration_secs as f64;
        let start = (d * 0.45) as u64;
        FlashCrowdSpec {
            start_offset_secs: start,
            duration_secs: ((d * 0.07) as u64)
                .max(60)
                .min(duration_secs.saturating_sub(start)),
            multiplier: 5.0,
            participation: 0.8,
            new_browsers: 30,
            hot_product: 1337,
        }
    }
}

/// Parse a span such as `90s`, `45m`, `6h`, `1d` or a bare number of seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, DurationError> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| DurationError(s.to_owned()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?} (expected a whole number with s, m, h or d, such as 90m or 6h)")]
pub struct DurationError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, expect) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("45m", Some(2700)),
            (" 6h ", Some(21_600)),
            ("1d", Some(86_400)),
            ("", None),
            ("h", None),
            ("1.5h", None),
            ("-3m", None),
        ] {
            assert_eq!(parse_duration_secs(input).ok(), expect, "{input:?}");
        }
        assert_eq!(
            parse_duration_secs("6x").unwrap_err().to_string(),
            r#"invalid duration "6x" (expected a whole number with s, m, h or d, such as 90m or 6h)"#
        );
    }

    #[test]
    fn attack_class_names_round_trip() {
        for c in AttackClass::ALL {
            assert_eq!(c.as_str().parse::<AttackClass>().unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert_eq!(
            "credential-stuffing".parse::<AttackClass>().unwrap(),
            AttackClass::CredentialStuffing
        );
        assert_eq!(
            "ddos".parse::<AttackClass>().unwrap_err().to_string(),
            "unknown attack class \"ddos\" (expected one of scraping, credential_stuffing, enumeration, compromised_key, probing, flood)"
        );
    }

    #[test]
    fn default_schedule_fits() {
        for secs in [60, 600, 3600, DEFAULT_DURATION_SECS, 86_400] {
            let cfg = SimConfig::for_duration(1, secs);
            assert_eq!(cfg.validate(), Ok(()), "{secs}s");
            assert_eq!(cfg.attacks.len(), AttackClass::ALL.len());
        }
        assert_eq!(SimConfig::default().validate(), Ok(()));
        assert_eq!(
            SimConfig::default().start.to_string(),
            "2026-03-02T00:00:00Z"
        );
    }

    #[test]
    fn bad_configs_have_exact_messages() {
        let base = || SimConfig::for_duration(1, 3600);
        let cases: Vec<(SimConfig, &str)> = vec![
            (
                SimConfig {
                    duration_secs: 30,
                    attacks: vec![],
                    flash_crowd: None,
                    ..base()
                },
                "duration must be at least 60s, not 30s",
            ),
            (
                SimConfig {
                    target_lines: Some(0),
                    ..base()
                },
                "target lines must be positive",
            ),
            (
                SimConfig {
                    attacks: vec![AttackSpec::new(AttackClass::Flood, 3500, 200)],
                    ..base()
                },
                "attack 1 (flood) ends at 3700s, after the end of the simulation (3600s)",
            ),
            (
                SimConfig {
                    attacks: vec![
                        AttackSpec::new(AttackClass::Probing, 0, 60),
                        AttackSpec::new(AttackClass::Scraping, 10, 0),
                    ],
                    ..base()
                },
                "attack 2 (scraping) has a zero duration",
            ),
            (
                SimConfig {
                    attacks: vec![AttackSpec {
                        sources: 0,
                        ..AttackSpec::new(AttackClass::CredentialStuffing, 0, 60)
                    }],
                    ..base()
                },
                "attack 1 (credential_stuffing) needs 1 to 10000 sources, not 0",
            ),
            (
                SimConfig {
                    attacks: vec![AttackSpec {
                        rate_per_min: f64::NAN,
                        ..AttackSpec::new(AttackClass::Enumeration, 0, 60)
                    }],
                    ..base()
                },
                "attack 1 (enumeration) rate must be positive, not NaN",
            ),
            (
                SimConfig {
                    legit_clients: 0,
                    attacks: vec![AttackSpec::new(AttackClass::CompromisedKey, 0, 60)],
                    ..base()
                },
                "attack 1 (compromised_key) needs at least one legit client whose key can be stolen",
            ),
            (
                SimConfig {
                    flash_crowd: Some(FlashCrowdSpec {
                        start_offset_secs: 3590,
                        ..FlashCrowdSpec::default_for(3600)
                    }),
                    ..base()
                },
                "flash crowd window 3590s..3842s must be non-empty and end by 3600s",
            ),
            (
                SimConfig {
                    flash_crowd: Some(FlashCrowdSpec {
                        multiplier: 0.5,
                        ..FlashCrowdSpec::default_for(3600)
                    }),
                    ..base()
                },
                "flash crowd multiplier must be at least 1, not 0.5",
            ),
            (
                SimConfig {
                    flash_crowd: Some(FlashCrowdSpec {
                        participation: 1.5,
                        ..FlashCrowdSpec::default_for(3600)
                    }),
                    ..base()
                },
                "flash crowd participation must be between 0 and 1, not 1.5",
            ),
        ];
        for (cfg, msg) in cases {
            assert_eq!(cfg.validate().unwrap_err().to_string(), msg);
        }
    }
}
