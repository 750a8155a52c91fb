//! Speed of the client-profile extraction (`sluice_ml::profile::extract`, polars lazy group_by)
//! next to a plain Rust implementation (`extract_plain`: rows bucketed per client, each
//! statistic by sorting the bucket), on the same generated history in the same run.
//!
//! ```text
//! cargo run --release -p sluice-ml --example profiles [-- --runs 5]
//! ```
//!
//! Two shapes: 100,000 clients × 60 minutes (a wide hour) and 500 clients × 7 days (the default
//! history of a realistic deployment); every client active in 2 of 3 minutes, about 1% of minutes
//! flagged. Both implementations are checked to agree before timing. Figures are the median of
//! the runs; building the columnar batch (`ProfileHistory::push`, shared by both) is timed apart.

use std::time::Instant;

use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::{ClientKind, Timestamp};
use sluice_ml::profile::{extract, extract_plain, MinuteRow, ProfileConfig, ProfileHistory};

/// 2026-03-02T00:00:00Z
const START: i64 = 1_772_409_600_000_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn generate(clients: usize, minutes: i64) -> ProfileHistory {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let names: Vec<String> = (0..clients).map(|c| format!("ak_{c:08x}")).collect();
    let mut h = ProfileHistory::with_capacity(clients * minutes as usize * 2 / 3 + 1);
    for m in 0..minutes {
        let t = START + m * MICROS_PER_MINUTE;
        // A daily rhythm: busier in the middle of the (UTC) day.
        let hour = (m / 60) % 24;
        let rhythm = 1.0 + (((hour as f64) - 12.0).abs() < 6.0) as u8 as f64;
        for (c, name) in names.iter().enumerate() {
            let r = rng.next();
            if r.is_multiple_of(3) {
                continue;
            }
            let base = 1 + (c % 40) as u64;
            let requests = ((base as f64 * rhythm) as u64 + (r >> 10) % (base + 1)) as i32;
            h.push(
                if c % 10 == 0 {
                    ClientKind::Ip
                } else {
                    ClientKind::ApiKey
                },
                name,
                MinuteRow {
                    minute: Timestamp::from_micros(t),
                    requests,
                    peak_10s: requests / 4 + ((r >> 30) % 3) as i32,
                    distinct_routes: 1 + ((r >> 40) % 6) as i32,
                    error_share: ((r >> 50) % 20) as f32 / 100.0,
                    score: r.is_multiple_of(101).then_some(0.9),
                },
            );
        }
    }
    h
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(label: &str, clients: usize, minutes: i64, runs: usize) {
    let cfg = ProfileConfig::default();
    let mut build = Vec::new();
    let mut polars = Vec::new();
    let mut plain = Vec::new();
    let mut rows = 0;
    let mut profiles = 0;
    for run in 0..runs {
        let t = Instant::now();
        let h = generate(clients, minutes);
        build.push(t.elapsed().as_secs_f64());
        rows = h.len();

        let t = Instant::now();
        let a = extract(&h, &cfg).expect("polars extraction");
        polars.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let b = extract_plain(&h, &cfg);
        plain.push(t.elapsed().as_secs_f64());
        profiles = a.len();

        if run == 0 {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!((&x.client, x.active_minutes), (&y.client, y.active_minutes));
                assert!((x.requests_median - y.requests_median).abs() < 1e-9);
                assert!((x.requests_mad - y.requests_mad).abs() < 1e-9);
                assert!((x.requests_p95 - y.requests_p95).abs() < 1e-9);
                assert_eq!(x.hour_of_day, y.hour_of_day);
            }
        }
    }
    let (build, polars, plain) = (median(build), median(polars), median(plain));
    println!(
        "{label:<28} {rows:>10} {profiles:>9} {build:>9.3} {polars:>10.3} {plain:>10.3} {:>8.2}",
        polars / plain
    );
}

fn main() {
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            other => {
                eprintln!("unknown argument {other:?} (usage: profiles [--runs N])");
                std::process::exit(2);
            }
        }
    }
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "shape", "rows", "profiles", "build s", "polars s", "plain s", "ratio"
    );
    bench("100,000 clients x 60 min", 100_000, 60, runs);
    bench("500 clients x 7 days", 500, 7 * 24 * 60, runs);
    println!("(median of {runs} runs; ratio = polars / plain, below 1 means polars is faster)");
}
