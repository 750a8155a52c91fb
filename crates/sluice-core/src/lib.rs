//! Domain types and pure rules shared by every Sluice crate: the canonical access record, client
//! identity, route normalisation, log-time arithmetic, limits (algorithms, selectors, the
//! `RateLimit-Policy` header) and the policy document gateways fetch. No IO lives here.

pub mod anomaly;
pub mod approval;
pub mod auth;
pub mod identity;
pub mod limit;
pub mod policy;
pub mod record;
pub mod reputation;
pub mod route;
pub mod time;
pub mod tuning;

pub use anomaly::{AnomalyKind, AnomalyState};
pub use auth::Role;
pub use identity::{ClientId, ClientKeyPolicy, ClientKind};
pub use limit::{Algorithm, CostUnit, Limit, Selector};
pub use record::AccessRecord;
pub use route::RouteNormalizer;
pub use time::Timestamp;
