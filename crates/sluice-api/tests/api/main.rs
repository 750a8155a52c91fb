//! Router tests: the whole `sluice_api::router` driven in-process with
//! `tower::ServiceExt::oneshot`, on a fresh real Postgres database per test (`TestDb`; never a
//! mock). One test binary, so the embedded cluster (when `DATABASE_URL` is unset) starts once.

mod admin;
mod analyst;
mod auth;
mod backpressure;
mod dashboards;
mod fixtures;
mod forecasts;
mod helpers;
mod logs;
mod metrics;
mod policy;
mod promql;
mod routes;
mod traffic;
