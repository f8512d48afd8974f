//! gmond's `acl { default = ...; access { ip mask action } ... }` applied to a peer address.
//!
//! The first `access` whose prefix contains the peer decides; otherwise `default` does.
//! No acl at all allows everyone, as in gmond. An IPv4 peer seen on an IPv6 socket
//! (`::ffff:a.b.c.d`) is matched as the IPv4 address it is, so `ip = 127.0.0.1` rules
//! hold whichever family the channel listens on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{Acl, AclAction};

/// Whether `acl` lets `peer` use the channel.
pub fn allows(acl: Option<&Acl>, peer: IpAddr) -> bool {
    let Some(acl) = acl else { return true };
    let peer = unmapped(peer);
    let action = acl
        .access
        .iter()
        .find(|rule| in_prefix(peer, unmapped(rule.ip), rule.mask))
        .map_or(acl.default, |rule| rule.action);
    action == AclAction::Allow
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `peer` shares its first `mask` bits with `network`. Families never match one
/// another; a mask longer than the address compares every bit.
fn in_prefix(peer: IpAddr, network: IpAddr, mask: u8) -> bool {
    match (peer, network) {
        (IpAddr::V4(peer), IpAddr::V4(network)) => {
            prefix_eq(v4_bits(peer), v4_bits(network), mask.min(32), 32)
        }
        (IpAddr::V6(peer), IpAddr::V6(network)) => {
            prefix_eq(v6_bits(peer), v6_bits(network), mask.min(128), 128)
        }
        _ => false,
    }
}

fn v4_bits(ip: Ipv4Addr) -> u128 {
    u32::from(ip).into()
}

fn v6_bits(ip: Ipv6Addr) -> u128 {
    u128::from(ip)
}

/// Compares the top `mask` bits of two `width`-bit addresses held in a u128.
fn prefix_eq(a: u128, b: u128, mask: u8, width: u32) -> bool {
    if mask == 0 {
        return true;
    }
    let shift = width - u32::from(mask);
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclAccess, Location};

    fn rule(ip: &str, mask: u8, action: AclAction) -> AclAccess {
        AclAccess {
            ip: ip.parse().unwrap(),
            mask,
            action,
            declared_at: Location::whole_file("test.conf"),
        }
    }

    fn acl(default: AclAction, access: Vec<AclAccess>) -> Acl {
        Acl { default, access }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn no_acl_allows_everyone() {
        assert!(allows(None, ip("203.0.113.9")));
    }

    #[test]
    fn default_applies_when_no_rule_matches() {
        let deny_all = acl(AclAction::Deny, vec![rule("10.0.0.0", 8, AclAction::Allow)]);
        assert!(!allows(Some(&deny_all), ip("192.168.1.1")));
        assert!(allows(Some(&deny_all), ip("10.200.3.4")));
    }

    #[test]
    fn first_matching_rule_wins() {
        let acl = acl(
            AclAction::Allow,
            vec![
                rule("127.0.0.1", 32, AclAction::Deny),
                rule("127.0.0.0", 8, AclAction::Allow),
            ],
        );
        assert!(!allows(Some(&acl), ip("127.0.0.1")));
        assert!(allows(Some(&acl), ip("127.0.0.2")));
    }

    #[test]
    fn mask_counts_leading_bits() {
        let acl = acl(
            AclAction::Deny,
            vec![rule("192.168.4.0", 22, AclAction::Allow)],
        );
        assert!(allows(Some(&acl), ip("192.168.7.255")));
        assert!(!allows(Some(&acl), ip("192.168.8.0")));
    }

    #[test]
    fn mask_zero_matches_every_address_of_the_family() {
        let acl = acl(AclAction::Allow, vec![rule("0.0.0.0", 0, AclAction::Deny)]);
        assert!(!allows(Some(&acl), ip("8.8.8.8")));
        assert!(
            allows(Some(&acl), ip("::1")),
            "an IPv4 rule never matches IPv6"
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_rules() {
        let acl = acl(
            AclAction::Deny,
            vec![rule("127.0.0.1", 32, AclAction::Allow)],
        );
        assert!(allows(Some(&acl), ip("::ffff:127.0.0.1")));
        assert!(!allows(Some(&acl), ip("::ffff:127.0.0.2")));
    }

    #[test]
    fn ipv6_rules_match_ipv6_peers() {
        let acl = acl(AclAction::Deny, vec![rule("fd00::", 16, AclAction::Allow)]);
        assert!(allows(Some(&acl), ip("fd00:1::5")));
        assert!(!allows(Some(&acl), ip("fe80::1")));
    }

    #[test]
    fn oversized_masks_compare_every_bit() {
        let acl = acl(
            AclAction::Deny,
            vec![rule("10.1.2.3", 99, AclAction::Allow)],
        );
        assert!(allows(Some(&acl), ip("10.1.2.3")));
        assert!(!allows(Some(&acl), ip("10.1.2.4")));
    }
}
