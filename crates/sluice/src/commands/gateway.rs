//! `sluice gateway`: the reference data plane (`sluice_enforcer::start_gateway`) until Ctrl-C or
//! SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sluice_enforcer::layer::Extract;
use sluice_enforcer::{start_gateway, ControlPlane, Fallback, GatewayConfig, SystemClock};

use super::shutdown_signal;
use crate::cli::GatewayArgs;

pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let fallback: Fallback = args
        .fallback
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
        .context("invalid --fallback")?;
    let mut cfg = GatewayConfig::new(args.listen, &args.upstream);
    cfg.control_plane = Some(ControlPlane {
        url: args.control_plane.trim_end_matches('/').to_owned(),
        token: args.token.expose_secret().to_owned(),
        gateway_id: args.gateway_id.clone(),
        group: args.group.clone(),
        ship_logs: !args.no_logs,
    });
    cfg.state_dir = args.state_dir.clone();
    cfg.legacy_headers = args.legacy_headers;
    cfg.fallback = fallback;
    cfg.extract = Extract {
        trust_forwarded_for: args.trust_forwarded_for,
        ..Extract::default()
    };
    let gw = start_gateway(cfg, Arc::new(SystemClock))
        .await
        .context("failed to start the gateway")?;
    tracing::info!(
        listen = %gw.local_addr,
        upstream = %args.upstream,
        control_plane = %args.control_plane,
        gateway_id = %args.gateway_id,
        version = gw.enforcer.version(),
        "gateway listening"
    );
    shutdown_signal().await;
    gw.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
