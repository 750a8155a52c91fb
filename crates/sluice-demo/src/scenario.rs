//! The demo's scenario: a few hours of history (baselines) followed by the live part the driver
//! plays in real time, with the flash crowd and one attack of each class inside the live part.
//!
//! Attack rates keep the simulator's per-identity defaults (their signatures), except the flood,
//! whose botnet is smaller and slower (12 IPs at 120 requests per log minute instead of 60 at
//! 180): at 30× a full flood is 5,400 requests per wall second, more than two cores can proxy,
//! log, ship and ingest while the control plane runs. The flash crowd rises ×3 rather than ×5 for
//! the same reason. Each attack lasts long enough (28% of the live span) that an enforcement
//! within the 60 s target can be seen while it goes on.

use sluice_core::time::MICROS_PER_SEC;
use sluice_core::Timestamp;
use sluice_sim::{default_start, AttackClass, AttackSpec, FlashCrowdSpec, SimConfig};

/// What the scenario is built from.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub seed: u64,
    /// API clients (identified by key); browsers are as many, batch jobs 2.
    pub clients: usize,
    /// Log time of history before the live part.
    pub history_secs: u64,
    /// Log time of the live part (wall duration × time scale).
    pub live_secs: u64,
}

/// The simulation covering history and live part, and where the live part starts.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub sim: SimConfig,
    pub live_start: Timestamp,
    pub end: Timestamp,
}

/// Where each attack starts within the live part (share of it), in class order.
const ATTACK_STARTS: [(AttackClass, f64); 6] = [
    (AttackClass::Scraping, 0.05),
    (AttackClass::CredentialStuffing, 0.13),
    (AttackClass::Enumeration, 0.21),
    (AttackClass::CompromisedKey, 0.29),
    (AttackClass::Probing, 0.37),
    (AttackClass::Flood, 0.45),
];
/// Share of the live part each attack lasts.
const ATTACK_LEN: f64 = 0.28;

pub fn build(cfg: &ScenarioConfig) -> Scenario {
    let live = cfg.live_secs.max(120);
    let h = cfg.history_secs;
    let duration = h + live;
    let at = |f: f64| h + (live as f64 * f) as u64;
    let attack_len = ((live as f64 * ATTACK_LEN) as u64).max(60);
    let attacks = ATTACK_STARTS
        .iter()
        .map(|&(class, f)| {
            let start = at(f);
            let mut a = AttackSpec::new(class, start, attack_len.min(duration - start));
            if class == AttackClass::Flood {
                a.sources = 12;
                a.rate_per_min = 120.0;
            }
            a
        })
        .collect();
    let crowd_start = at(0.55);
    let flash_crowd = FlashCrowdSpec {
        start_offset_secs: crowd_start,
        duration_secs: ((live as f64 * 0.2) as u64)
            .max(60)
            .min(duration - crowd_start),
        multiplier: 3.0,
        new_browsers: (cfg.clients / 2).max(5),
        ..FlashCrowdSpec::default_for(duration)
    };
    let sim = SimConfig {
        seed: cfg.seed,
        start: default_start(),
        duration_secs: duration,
        legit_clients: cfg.clients.max(1),
        browsers: cfg.clients,
        batch_jobs: 2,
        attacks,
        flash_crowd: Some(flash_crowd),
        target_lines: None,
    };
    let start = sim.start.micros();
    Scenario {
        live_start: Timestamp::from_micros(start + h as i64 * MICROS_PER_SEC),
        end: sim.end(),
        sim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_and_crowd_fall_in_the_live_part() {
        let s = build(&ScenarioConfig {
            seed: 1,
            clients: 30,
            history_secs: 3 * 3600,
            live_secs: 180 * 30,
        });
        assert_eq!(s.sim.validate(), Ok(()));
        assert_eq!(s.sim.attacks.len(), 6);
        let live = s.live_start.micros() - s.sim.start.micros();
        for a in &s.sim.attacks {
            assert!(a.start_offset_secs as i64 * MICROS_PER_SEC >= live, "{a:?}");
            assert!(a.start_offset_secs + a.duration_secs <= s.sim.duration_secs);
        }
        let f = s.sim.flash_crowd.as_ref().unwrap();
        assert!(f.start_offset_secs as i64 * MICROS_PER_SEC >= live);
        // a short live part still validates
        let short = build(&ScenarioConfig {
            seed: 2,
            clients: 5,
            history_secs: 3600,
            live_secs: 60,
        });
        assert_eq!(short.sim.validate(), Ok(()));
    }
}
