//! `sluice demo`: the closed loop on one machine. A small upstream API ([`upstream`]), the
//! reference gateway in front of it, the control plane (ingest, detection, forecasts, profiles, tuning and
//! auto-approval, policy delivery, the UI), and the simulator's legitimate and attack traffic
//! played through the gateway in real time on compressed log time ([`clock`], [`driver`]). The
//! run is scored against the simulator's ground truth ([`score`]).

pub mod clock;
pub mod driver;
pub mod run;
pub mod scenario;
pub mod score;
pub mod upstream;
