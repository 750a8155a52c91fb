//! Roles of API tokens and what each may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role a token carries. `admin` may do everything; `analyst` reads; `gateway` fetches
/// policy, reports status and ships logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Gateway,
    Analyst,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Gateway, Role::Analyst, Role::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// Whether a token of this role may use a route that requires `required`.
    pub fn allows(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?} (expected gateway, analyst or admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gateway" => Ok(Role::Gateway),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        for (role, required, ok) in [
            (Role::Admin, Role::Gateway, true),
            (Role::Admin, Role::Analyst, true),
            (Role::Admin, Role::Admin, true),
            (Role::Analyst, Role::Analyst, true),
            (Role::Analyst, Role::Admin, false),
            (Role::Analyst, Role::Gateway, false),
            (Role::Gateway, Role::Gateway, true),
            (Role::Gateway, Role::Analyst, false),
            (Role::Gateway, Role::Admin, false),
        ] {
            assert_eq!(role.allows(required), ok, "{role} -> {required}");
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "unknown role \"root\" (expected gateway, analyst or admin)"
        );
    }
}
