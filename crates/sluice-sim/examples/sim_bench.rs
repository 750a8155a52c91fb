//! Simulator throughput: generates the default scenario (6 hours, ~540 identities, ~1,000,000
//! lines) and prints lines per second for generation alone and for each output format.
//!
//! `cargo run --release -p sluice-sim --example sim_bench [-- LINES]` (default 1000000).

use std::io::{self, Write};
use std::time::Instant;

use sluice_sim::{generate, write_logs, SimConfig, SimFormat};

/// Counts bytes and discards them.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() {
    let lines: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = SimConfig {
        target_lines: Some(lines),
        ..SimConfig::default()
    };
    let t = Instant::now();
    let sim = generate(&cfg).expect("default scenario is valid");
    let expected = sim.expected_lines();
    let identities = sim.labels().identities.len();
    let n = sim.count();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "scenario: {}s, {identities} identities, {n} records (expected {expected})",
        cfg.duration_secs
    );
    println!("| output | lines | MB | seconds | lines/s |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| records only | {n} | - | {secs:.2} | {:.0} |",
        n as f64 / secs
    );
    for format in SimFormat::ALL {
        let mut out = Count(0);
        let t = Instant::now();
        write_logs(&cfg, format, &mut out).expect("writing to memory cannot fail");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| {format} | {n} | {:.0} | {secs:.2} | {:.0} |",
            out.0 as f64 / 1e6,
            n as f64 / secs
        );
    }
}
