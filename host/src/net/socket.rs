//! Opening the sockets the channels describe: addresses, multicast membership and TTL,
//! and socket buffers sized so bursts are not dropped.
//!
//! gmond leaves `udp_recv_channel` at the OS default receive buffer (about 256 datagrams
//! on Linux), and its own start-up burst overflows it (reference measurements/SUMMARY.md).
//! wasmond asks for [`DEFAULT_RECV_BUFFER`] unless the channel sets `buffer`, and forces
//! it past `net.core.rmem_max` where it may (root), else takes what the OS grants.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::{Family, TcpAcceptChannel, UdpRecvChannel, UdpSendChannel};

/// Receive buffer asked for when the channel sets none: room for about 4 000 of the
/// kernel's per-datagram allocations, i.e. a full metadata burst of 2 000 metrics.
pub(crate) const DEFAULT_RECV_BUFFER: usize = 8 << 20;

/// Send buffer for send channels: large enough that a paced burst never waits on it.
pub(crate) const DEFAULT_SEND_BUFFER: usize = 4 << 20;

/// Connections waiting to be accepted.
const TCP_BACKLOG: i32 = 1024;

/// Binds a `tcp_accept_channel`: its `bind` address, else every address of its family.
pub(crate) fn bind_tcp(channel: &TcpAcceptChannel) -> io::Result<TcpListener> {
    bind_tcp_listener(channel.bind.as_deref(), channel.family, channel.port)
}

/// Binds a TCP listener on `bind` (else every address of `family`) and `port`.
pub(crate) fn bind_tcp_listener(
    bind: Option<&str>,
    family: Family,
    port: u16,
) -> io::Result<TcpListener> {
    let ip = bind_ip(bind, family)?;
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds a `udp_recv_channel`: to its multicast group (joined on `mcast_if`, else any
/// interface) or to its `bind` address, with a large receive buffer.
pub(crate) fn bind_udp_recv(channel: &UdpRecvChannel) -> io::Result<UdpSocket> {
    let group = channel.mcast_join.as_deref().map(parse_ip).transpose()?;
    let ip = match group {
        Some(group) => group,
        None => bind_ip(channel.bind.as_deref(), channel.family)?,
    };
    let addr = SocketAddr::new(ip, channel.port);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    let wanted = channel
        .buffer
        .map_or(DEFAULT_RECV_BUFFER, |bytes| bytes as usize);
    set_recv_buffer(&socket, wanted)?;
    socket.bind(&addr.into())?;
    if let Some(group) = group {
        join_group(&socket, group, channel.mcast_if.as_deref())?;
    }
    UdpSocket::from_std(socket.into())
}

/// Where a `udp_send_channel` sends: `host:port`, or `mcast_join:port` for multicast.
pub(crate) async fn send_destination(channel: &UdpSendChannel) -> io::Result<SocketAddr> {
    let host = channel
        .mcast_join
        .as_deref()
        .or(channel.host.as_deref())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "udp_send_channel has neither host nor mcast_join",
            )
        })?;
    tokio::net::lookup_host((host, channel.port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))
}

/// A socket for a `udp_send_channel` sending to `destination`: bound to `bind` if set,
/// with the channel's multicast TTL and interface, and a large send buffer.
pub(crate) fn open_udp_send(
    channel: &UdpSendChannel,
    destination: SocketAddr,
) -> io::Result<UdpSocket> {
    let domain = Domain::for_address(destination);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    set_send_buffer(&socket, DEFAULT_SEND_BUFFER)?;
    let local = match channel.bind.as_deref() {
        Some(bind) => parse_ip(bind)?,
        None if destination.is_ipv4() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    socket.bind(&SocketAddr::new(local, 0).into())?;
    if destination.ip().is_multicast() {
        set_multicast_options(&socket, destination.ip(), channel)?;
    }
    UdpSocket::from_std(socket.into())
}

fn set_multicast_options(
    socket: &Socket,
    group: IpAddr,
    channel: &UdpSendChannel,
) -> io::Result<()> {
    let interface = channel.mcast_if.as_deref();
    match group {
        IpAddr::V4(_) => {
            socket.set_multicast_ttl_v4(channel.ttl.into())?;
            // Loop back, as gmond does, so a receive channel on this host sees our packets.
            socket.set_multicast_loop_v4(true)?;
            match interface.map(|name| (name, name.parse::<Ipv4Addr>())) {
                Some((_, Ok(address))) => socket.set_multicast_if_v4(&address)?,
                // An interface given by name: send through that device.
                Some((name, Err(_))) => socket.bind_device(Some(name.as_bytes()))?,
                None => {}
            }
        }
        IpAddr::V6(_) => {
            socket.set_multicast_hops_v6(channel.ttl.into())?;
            socket.set_multicast_loop_v6(true)?;
            if let Some(interface) = interface {
                socket.set_multicast_if_v6(interface_index(interface)?)?;
            }
        }
    }
    Ok(())
}

fn join_group(socket: &Socket, group: IpAddr, interface: Option<&str>) -> io::Result<()> {
    match group {
        IpAddr::V4(group) => {
            let interface = match interface {
                None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
                Some(text) => match text.parse() {
                    Ok(address) => InterfaceIndexOrAddress::Address(address),
                    Err(_) => InterfaceIndexOrAddress::Index(interface_index(text)?),
                },
            };
            socket.join_multicast_v4_n(&group, &interface)
        }
        IpAddr::V6(group) => {
            let index = interface.map_or(Ok(0), interface_index)?;
            socket.join_multicast_v6(&group, index)
        }
    }
}

/// Asks for `bytes` of receive buffer, beyond `rmem_max` where allowed; returns what the
/// OS granted (Linux reports twice the request, its bookkeeping included).
pub(crate) fn set_recv_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    if force_buffer(socket, libc::SO_RCVBUFFORCE, bytes).is_err() {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.recv_buffer_size()
}

/// Asks for `bytes` of send buffer, as [`set_recv_buffer`] does.
pub(crate) fn set_send_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    if force_buffer(socket, libc::SO_SNDBUFFORCE, bytes).is_err() {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.send_buffer_size()
}

/// Sets a buffer size through `SO_*BUFFORCE`, which only a privileged process may use.
fn force_buffer(socket: &Socket, option: libc::c_int, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd is open for the call's duration (borrowed from `socket`), and the
    // option value is a c_int whose size is passed along with its address.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The receive buffer a tokio socket has (for logs and tests).
pub(crate) fn recv_buffer_size(socket: &UdpSocket) -> io::Result<usize> {
    SockRef::from(socket).recv_buffer_size()
}

/// `SO_MEMINFO` (asm-generic/socket.h; libc does not name it): the socket's memory
/// counters, `SK_MEMINFO_DROPS` among them.
const SO_MEMINFO: libc::c_int = 55;

/// Datagrams the kernel dropped on this socket since it opened (its receive buffer was
/// full): the `drops` column of `/proc/net/udp`, read with `SO_MEMINFO`.
pub(crate) fn kernel_drops(socket: &UdpSocket) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut counters = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = std::mem::size_of_val(&counters) as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for writing; the kernel copies at most
    // `len` bytes and sets `len` to what it copied.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            counters.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&counters) {
        return Err(io::Error::other(
            "SO_MEMINFO has no drop count on this kernel",
        ));
    }
    Ok(counters[libc::SK_MEMINFO_DROPS as usize])
}

fn bind_ip(bind: Option<&str>, family: Family) -> io::Result<IpAddr> {
    match (bind, family) {
        (Some(bind), _) => parse_ip(bind),
        (None, Family::Inet4) => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        (None, Family::Inet6) => Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    }
}

fn parse_ip(text: &str) -> io::Result<IpAddr> {
    text.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?} is not an IP address"),
        )
    })
}

fn interface_index(interface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name holds a NUL"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {interface}"),
        )),
        index => Ok(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    fn recv_channel(buffer: Option<u32>) -> UdpRecvChannel {
        UdpRecvChannel {
            port: 0,
            bind: Some("127.0.0.1".into()),
            mcast_join: None,
            mcast_if: None,
            family: Family::Inet4,
            retry_bind: false,
            buffer,
            acl: None,
            declared_at: Location::whole_file("test.conf"),
        }
    }

    /// gmond keeps the OS default (~208 KiB, ~256 datagrams); ours holds a start-up burst.
    #[tokio::test]
    async fn receive_channels_get_a_large_buffer_by_default() {
        let socket = bind_udp_recv(&recv_channel(None)).unwrap();
        let ours = recv_buffer_size(&socket).unwrap();
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(ours >= SockRef::from(&plain).recv_buffer_size().unwrap());
        // SAFETY: geteuid has no preconditions. Only a privileged process may go past
        // net.core.rmem_max, so only then is the full size certain.
        if unsafe { libc::geteuid() } == 0 {
            assert!(ours >= DEFAULT_RECV_BUFFER, "{ours}");
        }
        assert!(socket.local_addr().unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn a_configured_buffer_is_honoured() {
        let socket = bind_udp_recv(&recv_channel(Some(65_536))).unwrap();
        // Linux reports double the request (its bookkeeping included).
        assert_eq!(recv_buffer_size(&socket).unwrap(), 2 * 65_536);
    }

    #[test]
    fn a_bind_that_is_not_an_address_is_an_error() {
        let mut channel = recv_channel(None);
        channel.bind = Some("not-an-ip".into());
        assert_eq!(
            bind_udp_recv(&channel).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
