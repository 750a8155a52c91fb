//! Persistence for Sluice and the only crate that speaks SQL: the Postgres connection (an
//! external server or the embedded cluster), migrations, the COPY-based ingest writer, rollups,
//! partitions and retention, API tokens and the audit log, policy versions and their rollout.
//! partitions and retention, detection and forecast tables, client profiles, the analyst read
//! side, API tokens and the audit log.

pub mod alerts;
pub mod analyst;
pub mod db;
pub mod detection;
pub mod embedded;
pub mod encode;
pub mod error;
pub mod forecast;
pub mod ingest;
pub mod metrics;
pub mod policy;
pub mod profiles;
pub mod review;
pub mod roles;
pub mod testing;
pub mod tokens;
pub mod traffic;
pub mod tuning;
mod wire;

pub use db::{Database, DatabaseConfig, MigrationState};
pub use encode::{BatchBuilder, EncodedBatch, IngestCounts, RejectedLine};
pub use error::StoreError;
pub use ingest::WriteOutcome;
pub use sqlx::PgPool;
pub use tokens::TokenInfo;
