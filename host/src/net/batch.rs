//! Sending many datagrams to one destination with few system calls, at a bounded pace.
//!
//! On Linux one `sendmmsg(2)` carries up to [`MAX_BATCH`] datagrams; elsewhere each is a
//! `send_to`. The [`Pacer`] spaces bursts out: a receiver on the same host gets loopback
//! datagrams straight into its socket buffer, and whatever does not fit is dropped without
//! a word to the sender (gmond loses all but ~256 of a burst this way). Pacing keeps a
//! burst within what a receiver with a default buffer drains in time.
//!
//! `quinn-udp` was considered: its gain is GSO, which needs equal-sized segments, while
//! gmetric datagrams vary in size; plain `sendmmsg` gets the syscall saving without it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Most datagrams handed to one `sendmmsg` call.
pub(crate) const MAX_BATCH: usize = 64;

/// What one [`send_all`] achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchReport {
    pub sent: usize,
    pub failed: usize,
}

/// Sends every datagram to `destination`. A datagram the OS refuses (too large, no
/// route) is counted as failed and skipped, so one bad datagram never stops the rest;
/// the last such error is returned alongside the report for logging.
pub(crate) async fn send_all(
    socket: &UdpSocket,
    destination: SocketAddr,
    datagrams: &[&[u8]],
) -> (BatchReport, Option<io::Error>) {
    let destination = SockAddr::from(destination);
    let mut report = BatchReport::default();
    let mut last_error = None;
    let mut rest = datagrams;
    while !rest.is_empty() {
        if let Err(error) = socket.writable().await {
            report.failed += rest.len();
            return (report, Some(error));
        }
        match socket.try_io(Interest::WRITABLE, || send_some(socket, &destination, rest)) {
            Ok(count) => {
                report.sent += count;
                rest = &rest[count..];
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                report.failed += 1;
                rest = &rest[1..];
                last_error = Some(error);
            }
        }
    }
    (report, last_error)
}

/// Sends a prefix of `datagrams` with one system call; returns how many went.
#[cfg(target_os = "linux")]
fn send_some(socket: &UdpSocket, destination: &SockAddr, datagrams: &[&[u8]]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let count = datagrams.len().min(MAX_BATCH);
    let mut iovecs: Vec<libc::iovec> = datagrams[..count]
        .iter()
        .map(|datagram| libc::iovec {
            iov_base: datagram.as_ptr().cast_mut().cast(),
            iov_len: datagram.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iovec| {
            // SAFETY: an all-zero msghdr is a valid empty header; the fields that matter
            // are set just below.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = destination.as_ptr().cast_mut().cast();
            header.msg_hdr.msg_namelen = destination.len();
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: every header points at an iovec and at the destination address, all of
    // which (and the datagrams they point into) outlive the call; the kernel only reads
    // them, and writes msg_len into `headers`, which we own.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_some(socket: &UdpSocket, destination: &SockAddr, datagrams: &[&[u8]]) -> io::Result<usize> {
    let destination = destination
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP address"))?;
    socket.try_send_to(datagrams[0], destination).map(|_| 1)
}

/// Spaces sends out to at most `rate` datagrams a second; the caller sends bursts and
/// books each one before it goes.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    per_datagram: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` datagrams per second (0 = unpaced).
    pub fn new(rate: u32) -> Pacer {
        let per_datagram = match rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(1) / rate,
        };
        Pacer {
            per_datagram,
            next: None,
        }
    }

    /// Waits until `count` more datagrams may go, and books them.
    pub async fn wait(&mut self, count: usize) {
        if let Some(until) = self.book(Instant::now(), count) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Books `count` datagrams as of `now`; returns when they may go, if not at once.
    fn book(&mut self, now: Instant, count: usize) -> Option<Instant> {
        if self.per_datagram.is_zero() {
            return None;
        }
        // Credit never accumulates beyond one burst: an idle minute does not allow a
        // minute's worth of datagrams in one go.
        let start = self.next.filter(|&next| next > now).unwrap_or(now);
        let booked = self.per_datagram * u32::try_from(count).unwrap_or(u32::MAX);
        self.next = Some(start + booked);
        (start > now).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (sender, receiver)
    }

    #[tokio::test]
    async fn every_datagram_arrives_whole_and_in_order() {
        let (sender, receiver) = pair().await;
        let payloads: Vec<Vec<u8>> = (0..150u32)
            .map(|i| i.to_be_bytes().repeat(1 + i as usize % 7))
            .collect();
        let datagrams: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let (report, error) = send_all(&sender, receiver.local_addr().unwrap(), &datagrams).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            report,
            BatchReport {
                sent: 150,
                failed: 0
            }
        );
        let mut buf = [0u8; 64];
        for expected in &payloads {
            let (len, from) = receiver.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], expected.as_slice());
            assert_eq!(from, sender.local_addr().unwrap());
        }
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_skipped_not_fatal() {
        let (sender, receiver) = pair().await;
        let too_big = vec![0u8; 70_000];
        let datagrams: Vec<&[u8]> = vec![b"one", &too_big, b"three"];
        let (report, error) = send_all(&sender, receiver.local_addr().unwrap(), &datagrams).await;
        assert_eq!(report, BatchReport { sent: 2, failed: 1 });
        assert!(error.is_some());
        let mut buf = [0u8; 16];
        let (len, _) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"one");
        let (len, _) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"three");
    }

    #[test]
    fn the_pacer_spaces_bursts_by_the_rate() {
        let mut pacer = Pacer::new(1000);
        let start = Instant::now();
        assert_eq!(pacer.book(start, 100), None, "the first burst goes at once");
        // Each later burst of 100 at 1000/s may go 100 ms after the one before.
        for burst in 1..5u64 {
            let until = pacer.book(start, 100).unwrap();
            assert_eq!(until - start, Duration::from_millis(100 * burst));
        }
    }

    #[test]
    fn idle_time_earns_no_extra_credit() {
        let mut pacer = Pacer::new(1000);
        let start = Instant::now();
        pacer.book(start, 100);
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.book(later, 100), None);
        assert_eq!(
            pacer.book(later, 100),
            Some(later + Duration::from_millis(100))
        );
    }

    #[test]
    fn an_unpaced_pacer_never_waits() {
        let mut pacer = Pacer::new(0);
        let now = Instant::now();
        assert_eq!(pacer.book(now, 1_000_000), None);
        assert_eq!(pacer.book(now, 1_000_000), None);
    }
}
