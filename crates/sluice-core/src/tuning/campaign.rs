//! Campaign subnets: a distributed attack (credential stuffing from a few hosting networks, say)
//! sends so little per address that a limit per address cannot stop it, and the addresses the
//! detector did not flag yet go on unhindered. When enough of one campaign's flagged addresses
//! share a network, one limit with one shared counter for the whole network stops all of it,
//! flagged or not, provided no established client (one with normal history) lives there too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::limit::Cidr;

/// When a campaign's network gets a limit of its own (`campaign_subnets` in the tuning settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubnetConfig {
    /// Flagged members of one campaign in one network needed for a network limit; 0 turns
    /// network limits off.
    pub min_members: usize,
    /// Network size for IPv4 addresses (prefix length).
    pub prefix_v4: u8,
    /// Network size for IPv6 addresses (prefix length).
    pub prefix_v6: u8,
}

impl Default for SubnetConfig {
    fn default() -> Self {
        SubnetConfig {
            min_members: 3,
            prefix_v4: 24,
            prefix_v6: 64,
        }
    }
}

impl SubnetConfig {
    /// The network an address belongs to.
    pub fn network_of(&self, ip: IpAddr) -> Cidr {
        let prefix = if ip.is_ipv4() {
            self.prefix_v4
        } else {
            self.prefix_v6
        };
        Cidr::network_of(ip, prefix)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.prefix_v4 == 0 || self.prefix_v4 > 32 {
            return Err(format!(
                "campaign_subnets.prefix_v4 must be 1 to 32, not {}",
                self.prefix_v4
            ));
        }
        if self.prefix_v6 == 0 || self.prefix_v6 > 128 {
            return Err(format!(
                "campaign_subnets.prefix_v6 must be 1 to 128, not {}",
                self.prefix_v6
            ));
        }
        Ok(())
    }
}

/// One network that holds enough of a campaign's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignNet {
    pub net: Cidr,
    /// The campaign's flagged members in it.
    pub members: Vec<IpAddr>,
    /// Other addresses active in it, none established (new addresses alongside the campaign).
    pub others: Vec<IpAddr>,
}

/// What [`campaign_nets`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignNets {
    pub nets: Vec<CampaignNet>,
    /// Networks with enough members that also hold an established client, with that client:
    /// a shared counter would throttle it, so they get no network limit.
    pub spared: Vec<(Cidr, IpAddr)>,
}

/// The networks of one campaign that get a limit: those holding at least `min_members` of its
/// flagged `members` and no established address. `active` is every IP client active in the
/// window, with whether it is established (has normal history of its own).
pub fn campaign_nets(
    members: &[IpAddr],
    active: &[(IpAddr, bool)],
    cfg: &SubnetConfig,
) -> CampaignNets {
    let mut out = CampaignNets::default();
    if cfg.min_members == 0 {
        return out;
    }
    let mut by_net: BTreeMap<String, (Cidr, Vec<IpAddr>)> = BTreeMap::new();
    for &ip in members {
        let net = cfg.network_of(ip);
        let e = by_net
            .entry(net.to_string())
            .or_insert_with(|| (net, Vec::new()));
        if !e.1.contains(&ip) {
            e.1.push(ip);
        }
    }
    for (net, mut found) in by_net.into_values() {
        if found.len() < cfg.min_members {
            continue;
        }
        found.sort();
        let inside = active
            .iter()
            .filter(|(ip, _)| net.contains(*ip) && !found.contains(ip));
        let mut others = Vec::new();
        let mut established = None;
        for &(ip, est) in inside {
            if est {
                established.get_or_insert(ip);
            } else {
                others.push(ip);
            }
        }
        match established {
            Some(ip) => out.spared.push((net, ip)),
            None => {
                others.sort();
                others.dedup();
                out.nets.push(CampaignNet {
                    net,
                    members: found,
                    others,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn networks_are_cut_at_the_configured_prefix() {
        let cfg = SubnetConfig::default();
        let cases = [
            ("185.209.250.17", "185.209.250.0/24"),
            ("10.1.2.3", "10.1.2.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ];
        for (ip, net) in cases {
            assert_eq!(cfg.network_of(ip.parse().unwrap()).to_string(), net, "{ip}");
        }
        let wide = SubnetConfig {
            prefix_v4: 16,
            ..SubnetConfig::default()
        };
        assert_eq!(
            wide.network_of("10.1.2.3".parse().unwrap()).to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn which_networks_get_a_limit() {
        struct Case {
            name: &'static str,
            members: &'static [&'static str],
            active: &'static [(&'static str, bool)],
            nets: &'static [&'static str],
            spared: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "three members in one /24, nothing else there",
                members: &["203.0.113.1", "203.0.113.2", "203.0.113.3"],
                active: &[("203.0.113.1", false), ("198.51.100.9", true)],
                nets: &["203.0.113.0/24"],
                spared: &[],
            },
            Case {
                name: "two members are not enough",
                members: &["203.0.113.1", "203.0.113.2", "198.51.100.3"],
                active: &[],
                nets: &[],
                spared: &[],
            },
            Case {
                name: "an established client in the network spares it",
                members: &["203.0.113.1", "203.0.113.2", "203.0.113.3"],
                active: &[("203.0.113.200", true)],
                nets: &[],
                spared: &["203.0.113.0/24"],
            },
            Case {
                name: "a new unflagged address is caught with the campaign",
                members: &["203.0.113.1", "203.0.113.2", "203.0.113.3"],
                active: &[("203.0.113.77", false)],
                nets: &["203.0.113.0/24"],
                spared: &[],
            },
            Case {
                name: "a member counted once however often it is named",
                members: &["203.0.113.1", "203.0.113.1", "203.0.113.2"],
                active: &[],
                nets: &[],
                spared: &[],
            },
            Case {
                name: "several networks",
                members: &[
                    "203.0.113.1",
                    "203.0.113.2",
                    "203.0.113.3",
                    "198.51.100.1",
                    "198.51.100.2",
                    "198.51.100.3",
                    "192.0.2.1",
                ],
                active: &[],
                nets: &["198.51.100.0/24", "203.0.113.0/24"],
                spared: &[],
            },
        ];
        for c in cases {
            let active: Vec<(IpAddr, bool)> = c
                .active
                .iter()
                .map(|(ip, e)| (ip.parse().unwrap(), *e))
                .collect();
            let got = campaign_nets(&ips(c.members), &active, &SubnetConfig::default());
            let nets: Vec<String> = got.nets.iter().map(|n| n.net.to_string()).collect();
            let spared: Vec<String> = got.spared.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(nets, c.nets, "{}", c.name);
            assert_eq!(spared, c.spared, "{}", c.name);
        }
        let got = campaign_nets(
            &ips(&["203.0.113.1", "203.0.113.2", "203.0.113.3"]),
            &[("203.0.113.77".parse().unwrap(), false)],
            &SubnetConfig::default(),
        );
        assert_eq!(got.nets[0].others, ips(&["203.0.113.77"]));
        assert_eq!(got.nets[0].members.len(), 3);
        let off = SubnetConfig {
            min_members: 0,
            ..SubnetConfig::default()
        };
        assert_eq!(
            campaign_nets(&ips(&["203.0.113.1"; 5]), &[], &off),
            CampaignNets::default()
        );
    }
}
