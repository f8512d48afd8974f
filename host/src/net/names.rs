//! Which host a received packet is about, named as gmond names it.
//!
//! gmond keys hosts by the packet's source address and names them by its reverse DNS
//! (127.0.0.1 shows as `localhost`), ignoring the packet's own `host` field, unless the
//! packet is spoofed: then the field reads `IP:name` and both come from it
//! (reference LAYOUT.md §2). Reverse lookups block, so they run on a blocking thread,
//! once per address, for at most [`REVERSE_DNS_TIMEOUT`]: gmond waits on its resolver
//! with its whole receive loop, wasmond names a host it cannot resolve in time by its
//! address. The answers (or the address itself) are cached for the daemon's life, up to
//! [`MAX_CACHED_NAMES`]. Every name is kept as [`safe::host_name`] makes it: a PTR
//! record or a spoofed field may say anything, and gmond and gmetad use it raw.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::wire::safe;

/// Most addresses whose names are remembered; past it the cache starts afresh, so a
/// flood of source addresses cannot grow it without bound.
pub(crate) const MAX_CACHED_NAMES: usize = 65_536;

/// The longest the receive loop waits for a new address's name.
pub(crate) const REVERSE_DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A host as the store shows it: its name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    pub name: Arc<str>,
    pub ip: Arc<str>,
}

/// The reverse-DNS names of the addresses seen so far.
#[derive(Debug, Default)]
pub(crate) struct HostNames {
    cache: HashMap<IpAddr, HostId>,
}

impl HostNames {
    /// The host a packet from `source` is about, given its `host` field and spoof flag.
    pub(crate) async fn identify(
        &mut self,
        source: IpAddr,
        host_field: &str,
        spoof: bool,
    ) -> HostId {
        if spoof && let Some(host) = spoofed(host_field) {
            return host;
        }
        self.by_address(source).await
    }

    async fn by_address(&mut self, source: IpAddr) -> HostId {
        let source = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            v4 => v4,
        };
        if let Some(host) = self.cache.get(&source) {
            return host.clone();
        }
        let lookup = tokio::task::spawn_blocking(move || reverse_dns(source));
        let name = match tokio::time::timeout(REVERSE_DNS_TIMEOUT, lookup).await {
            Ok(Ok(Some(name))) => name,
            Ok(Ok(None) | Err(_)) => source.to_string(),
            Err(_) => {
                tracing::warn!(%source, "no reverse DNS answer in {REVERSE_DNS_TIMEOUT:?}: host named by its address");
                source.to_string()
            }
        };
        let host = HostId {
            name: safe::host_name(&name).into(),
            ip: source.to_string().into(),
        };
        if self.cache.len() >= MAX_CACHED_NAMES {
            self.cache.clear();
        }
        self.cache.insert(source, host.clone());
        host
    }
}

/// The host a spoofed packet names in its `IP:name` field; `None` when the field has no
/// colon or an empty part (gmetric refuses such a `-S`, but a packet may carry anything).
/// Both parts are kept as [`safe::host_name`] makes them.
pub fn spoofed(host_field: &str) -> Option<HostId> {
    let (ip, name) = host_field.rsplit_once(':')?;
    if ip.is_empty() || name.is_empty() {
        return None;
    }
    Some(HostId {
        name: safe::host_name(name).into(),
        ip: safe::host_name(ip).into(),
    })
}

/// The name gmond gives the host whose packets come from `ip`: its reverse DNS, or
/// the address itself. Blocks on the resolver.
pub(crate) fn name_of(ip: IpAddr) -> String {
    reverse_dns(ip).map_or_else(
        || ip.to_string(),
        |name| safe::host_name(&name).into_owned(),
    )
}

/// The address this host's packets to `destination` leave from, as the peer sees it
/// (a connected UDP socket's local address; nothing is sent).
pub(crate) fn source_address_towards(destination: SocketAddr) -> std::io::Result<IpAddr> {
    let unspecified: SocketAddr = if destination.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(unspecified)?;
    socket.connect(destination)?;
    Ok(socket.local_addr()?.ip())
}

/// The name `ip` resolves to, if any (`getnameinfo` with `NI_NAMEREQD`).
fn reverse_dns(ip: IpAddr) -> Option<String> {
    let address = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `address` is a valid sockaddr of the given length, `host` is a writable
    // buffer of the given length, and no service name is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            address.as_ptr().cast(),
            address.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_host_is_named_from_the_address_peers_see() {
        let source = source_address_towards("127.0.0.1:8649".parse().unwrap()).unwrap();
        assert_eq!(source, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(name_of(source), "localhost");
    }

    #[test]
    fn spoofed_fields_give_ip_and_name() {
        let host = spoofed("10.1.2.3:spoofhost").unwrap();
        assert_eq!((&*host.ip, &*host.name), ("10.1.2.3", "spoofhost"));
    }

    #[test]
    fn malformed_spoof_fields_are_refused() {
        assert_eq!(spoofed("nocolon"), None);
        assert_eq!(spoofed(":name"), None);
        assert_eq!(spoofed("10.1.2.3:"), None);
    }

    #[tokio::test]
    async fn loopback_is_named_like_gmond_names_it() {
        let mut names = HostNames::default();
        let host = names
            .identify("127.0.0.1".parse().unwrap(), "vm", false)
            .await;
        // gmond shows 127.0.0.1 as `localhost` (reference captures): the packet's own
        // host field is ignored unless spoofed.
        assert_eq!(&*host.name, "localhost");
        assert_eq!(&*host.ip, "127.0.0.1");
        let mapped = names
            .identify("::ffff:127.0.0.1".parse().unwrap(), "vm", false)
            .await;
        assert_eq!(mapped, host);
    }

    /// TEST-NET-1 (RFC 5737) has no reverse DNS: the host is named by its address,
    /// within the lookup's bound.
    #[tokio::test]
    async fn an_address_without_a_name_is_named_by_itself() {
        let mut names = HostNames::default();
        let started = std::time::Instant::now();
        let host = names
            .identify("192.0.2.200".parse().unwrap(), "vm", false)
            .await;
        assert_eq!((&*host.name, &*host.ip), ("192.0.2.200", "192.0.2.200"));
        assert!(started.elapsed() < REVERSE_DNS_TIMEOUT + std::time::Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_spoofed_packet_names_its_own_host() {
        let mut names = HostNames::default();
        let host = names
            .identify("127.0.0.1".parse().unwrap(), "10.9.8.7:db1", true)
            .await;
        assert_eq!((&*host.ip, &*host.name), ("10.9.8.7", "db1"));
    }
}
