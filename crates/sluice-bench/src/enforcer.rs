//! `sluice-bench enforcer`: throughput and latency of the reference gateway with enforcement on
//! (a realistic 1,000-rule policy) against the same proxy with enforcement off, measured in the
//! same run over loopback with an in-process load loop, printed side by side as ratios (median
//! of several rounds, alternating which side goes first).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use sluice_core::limit::{CostUnit, IpMatch, Limit, Match, Selector};
use sluice_core::policy::{Policy, Rule};
use sluice_enforcer::{start_gateway, GatewayConfig, GatewayHandle, SystemClock};

#[derive(Debug, Args)]
pub struct EnforcerArgs {
    /// Rules in the enforced policy.
    #[arg(long, default_value_t = 1000)]
    pub rules: usize,
    /// Concurrent connections of the load loop.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds per side per round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// A policy like a real one: one limit per named API key (most rules), per-route limits, a few
/// subnets, a shadow rule, and a per-key default. Limits are high enough that nothing is
/// rejected: the benchmark measures the cost of deciding, not of answering 429.
fn policy(n: usize) -> Policy {
    let big = |algo: usize| {
        let (rate, window_seconds) = (10_000_000, 60);
        match algo % 5 {
            0 => Limit::TokenBucket {
                rate,
                window_seconds,
                burst: rate,
            },
            1 => Limit::FixedWindow {
                rate,
                window_seconds,
            },
            2 => Limit::SlidingWindowCounter {
                rate,
                window_seconds,
            },
            3 => Limit::LeakyBucket {
                rate,
                window_seconds,
                queue: rate,
            },
            _ => Limit::SlidingWindowLog {
                rate: 100_000,
                window_seconds: 1,
            },
        }
    };
    let rule = |id: String, selector: Selector, limit: Limit, shadow: bool| Rule {
        id,
        selector,
        limit,
        cost: CostUnit::Requests,
        shadow,
        expires_at: None,
        ratelimit_policy: None,
        reason: None,
        source: Some("bench".into()),
    };
    let mut rules = vec![
        rule(
            "default-per-key".into(),
            Selector {
                api_key: Some(Match::Each),
                ..Selector::default()
            },
            big(0),
            false,
        ),
        rule(
            "shadow-per-ip".into(),
            Selector {
                ip: Some(IpMatch::Each),
                ..Selector::default()
            },
            big(2),
            true,
        ),
    ];
    for i in 0..10 {
        rules.push(rule(
            format!("subnet-{i}"),
            Selector {
                ip: Some(IpMatch::Net(format!("10.{i}.0.0/16").parse().unwrap())),
                ..Selector::default()
            },
            big(1),
            false,
        ));
        rules.push(rule(
            format!("route-{i}"),
            Selector {
                route: Some(Match::Exactly(format!("/v1/r{i}/{{id}}"))),
                api_key: Some(Match::Each),
                ..Selector::default()
            },
            big(i),
            false,
        ));
    }
    let mut i = 0;
    while rules.len() < n {
        rules.push(rule(
            format!("key-{i}"),
            Selector {
                api_key: Some(Match::Exactly(format!("key-{i}"))),
                ..Selector::default()
            },
            big(i),
            false,
        ));
        i += 1;
    }
    rules.truncate(n.max(1));
    Policy::new(rules).expect("the benchmark policy is valid")
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

async fn load(addr: SocketAddr, args: &EnforcerArgs, keys: usize) -> Sample {
    let client = sluice_enforcer::net::client();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = (i >> 33) % keys.max(1);
                let req =
                    http::Request::get(format!("http://{addr}/v1/r{}/{}", key % 10, i % 1000))
                        .header("x-api-key", format!("key-{key}"))
                        .body(Full::new(Bytes::new()))
                        .expect("valid request");
                let t = Instant::now();
                match sluice_enforcer::net::send(&client, req, Duration::from_secs(10)).await {
                    Ok(r) if r.status().is_success() => lat.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let q = |p: f64| {
        if all.is_empty() {
            f64::NAN
        } else {
            f64::from(all[((all.len() - 1) as f64 * p) as usize])
        }
    };
    Sample {
        rps: all.len() as f64 / args.seconds as f64,
        p50_us: q(0.5),
        p99_us: q(0.99),
        errors,
    }
}

async fn gateway(upstream: SocketAddr, enforce: bool) -> anyhow::Result<GatewayHandle> {
    let mut cfg = GatewayConfig::new("127.0.0.1:0".parse()?, &format!("http://{upstream}"));
    cfg.enforce = enforce;
    Ok(start_gateway(cfg, Arc::new(SystemClock)).await?)
}

pub async fn run(args: EnforcerArgs) -> anyhow::Result<()> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream = l.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let _ = axum::serve(l, app).await;
    });
    let on = gateway(upstream, true).await?;
    let policy = policy(args.rules);
    on.enforcer.apply(&policy, Some(1));
    let off = gateway(upstream, false).await?;
    let keys = args.rules;
    println!(
        "enforcer benchmark: {} rules, {} connections, {} s per side, {} rounds, load {}",
        policy.rules().len(),
        args.connections,
        args.seconds,
        args.rounds,
        crate::load_average()
    );
    // Warm both (connection pools, key state).
    load(
        on.local_addr,
        &EnforcerArgs {
            seconds: 1,
            ..args_copy(&args)
        },
        keys,
    )
    .await;
    load(
        off.local_addr,
        &EnforcerArgs {
            seconds: 1,
            ..args_copy(&args)
        },
        keys,
    )
    .await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    println!("round  on: req/s   p50 µs   p99 µs | off: req/s   p50 µs   p99 µs");
    for r in 0..args.rounds {
        let (x, y) = if r % 2 == 0 {
            let x = load(on.local_addr, &args, keys).await;
            (x, load(off.local_addr, &args, keys).await)
        } else {
            let y = load(off.local_addr, &args, keys).await;
            (load(on.local_addr, &args, keys).await, y)
        };
        println!(
            "{r:>5}  {:>9.0} {:>8.0} {:>8.0} | {:>9.0} {:>8.0} {:>8.0}{}",
            x.rps,
            x.p50_us,
            x.p99_us,
            y.rps,
            y.p50_us,
            y.p99_us,
            if x.errors + y.errors > 0 {
                format!("  ({} errors)", x.errors + y.errors)
            } else {
                String::new()
            }
        );
        a.push(x);
        b.push(y);
    }
    let med =
        |v: &[Sample], f: fn(&Sample) -> f64| crate::median(&v.iter().map(f).collect::<Vec<_>>());
    let (rps_on, rps_off) = (med(&a, |s| s.rps), med(&b, |s| s.rps));
    let (p99_on, p99_off) = (med(&a, |s| s.p99_us), med(&b, |s| s.p99_us));
    let (p50_on, p50_off) = (med(&a, |s| s.p50_us), med(&b, |s| s.p50_us));
    println!("median   enforcement on | off | ratio on/off");
    println!(
        "req/s    {rps_on:>14.0} | {rps_off:>9.0} | {:.3}",
        rps_on / rps_off
    );
    println!(
        "p50 µs   {p50_on:>14.0} | {p50_off:>9.0} | {:.3}",
        p50_on / p50_off
    );
    println!(
        "p99 µs   {p99_on:>14.0} | {p99_off:>9.0} | {:.3}  (added p99: {:.0} µs)",
        p99_on / p99_off,
        p99_on - p99_off
    );
    let m = on.enforcer.metrics();
    let matched: u64 = m.iter().map(|r| r.matched).sum();
    let rejected: u64 = m.iter().map(|r| r.rejected).sum();
    println!("enforced side: {matched} rule matches, {rejected} rejections");
    on.shutdown().await;
    off.shutdown().await;
    Ok(())
}

fn args_copy(a: &EnforcerArgs) -> EnforcerArgs {
    EnforcerArgs {
        rules: a.rules,
        connections: a.connections,
        seconds: a.seconds,
        rounds: a.rounds,
    }
}
