//! Sluice's reference data plane: the five rate-limit algorithms (`algo`), a policy compiled
//! into matchers and decisions (`enforcer`), a tower layer any axum/hyper service can add
//! (`layer`), the policy client that long-polls the control plane (`client`), the access-log
//! shipper (`shipper`) and a reverse proxy tying them together (`gateway`).

pub mod algo;
pub mod client;
pub mod enforcer;
pub mod gateway;
pub mod layer;
pub mod net;
pub mod shipper;

pub use algo::{Clock, ManualClock, ScaledClock, SystemClock};
pub use enforcer::{Decision, Enforcer, EnforcerConfig, Fallback, RequestInfo, RuleHit};
pub use gateway::{start_gateway, ControlPlane, GatewayConfig, GatewayHandle};
