//! Network metrics: byte and packet rates from `/proc/net/dev`, summed over the
//! interfaces gmond counts (not `lo*`, not `bond*`, not VLANs, whose traffic their
//! parent already counts), and the smallest MTU of the interfaces that are up.
//! Pure: every function takes the files' text and the time of reading.

use std::collections::HashMap;

use crate::parse::ParseError;

const NET_DEV: &str = "/proc/net/dev";

/// gmond re-reads `/proc/net/dev` at most once a second and keeps the rates
/// in between, so every metric of one collection sees the same rates.
pub const MIN_INTERVAL_SECS: f64 = 1.0;

/// The counters of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Parses `/proc/net/dev` into (interface, counters), in file order.
pub fn parse_net_dev(text: &str) -> Result<Vec<(String, Counters)>, ParseError> {
    text.lines()
        .skip(2)
        .filter(|line| !line.trim().is_empty())
        .map(parse_interface)
        .collect()
}

fn parse_interface(line: &str) -> Result<(String, Counters), ParseError> {
    let (name, numbers) = line
        .split_once(':')
        .ok_or_else(|| ParseError::new(NET_DEV, format!("no ':' in {line:?}")))?;
    let numbers: Vec<u64> = numbers
        .split_whitespace()
        .map(|text| {
            text.parse()
                .map_err(|_| ParseError::new(NET_DEV, format!("bad counter {text:?}")))
        })
        .collect::<Result<_, _>>()?;
    if numbers.len() < 10 {
        return Err(ParseError::new(
            NET_DEV,
            format!("too few counters in {line:?}"),
        ));
    }
    let counters = Counters {
        rx_bytes: numbers[0],
        rx_packets: numbers[1],
        tx_bytes: numbers[8],
        tx_packets: numbers[9],
    };
    Ok((name.trim().to_string(), counters))
}

/// The VLAN interfaces listed in `/proc/net/vlan/config` (absent when the 8021q
/// module is not loaded, which means there are none).
pub fn vlan_interfaces(config: &str) -> Vec<String> {
    config
        .lines()
        .skip(2)
        .filter_map(|line| line.split('|').next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether gmond adds this interface's traffic to the host's.
pub fn is_counted(name: &str, vlans: &[String]) -> bool {
    !name.starts_with("lo") && !name.starts_with("bond") && !vlans.iter().any(|vlan| vlan == name)
}

/// The four rates gmond reports, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub bytes_in: f32,
    pub bytes_out: f32,
    pub pkts_in: f32,
    pub pkts_out: f32,
}

/// Turns successive readings of `/proc/net/dev` into rates.
#[derive(Debug, Clone)]
pub struct RateTracker {
    last: HashMap<String, Counters>,
    last_at: f64,
    rates: Rates,
}

impl RateTracker {
    /// Starts from a reading taken at `at` seconds; rates are 0 until the next one.
    pub fn new(sample: Vec<(String, Counters)>, at: f64) -> RateTracker {
        RateTracker {
            last: sample.into_iter().collect(),
            last_at: at,
            rates: Rates::default(),
        }
    }

    /// Whether a reading at `at` would be used; if not, there is no need to take it.
    pub fn wants_sample(&self, at: f64) -> bool {
        at - self.last_at >= MIN_INTERVAL_SECS
    }

    /// The current rates, given a reading taken at `at` seconds.
    pub fn update(&mut self, sample: Vec<(String, Counters)>, at: f64) -> Rates {
        if !self.wants_sample(at) {
            return self.rates;
        }
        let elapsed = at - self.last_at;
        let mut delta = [0u64; 4];
        for (name, now) in &sample {
            // An interface seen for the first time has no interval to measure yet.
            let Some(before) = self.last.get(name) else {
                continue;
            };
            let pairs = [
                (now.rx_bytes, before.rx_bytes),
                (now.tx_bytes, before.tx_bytes),
                (now.rx_packets, before.rx_packets),
                (now.tx_packets, before.tx_packets),
            ];
            for (sum, (now, before)) in delta.iter_mut().zip(pairs) {
                *sum = sum.saturating_add(counter_delta(now, before));
            }
        }
        let per_second = |count: u64| (count as f64 / elapsed) as f32;
        self.rates = Rates {
            bytes_in: per_second(delta[0]),
            bytes_out: per_second(delta[1]),
            pkts_in: per_second(delta[2]),
            pkts_out: per_second(delta[3]),
        };
        self.last = sample.into_iter().collect();
        self.last_at = at;
        self.rates
    }
}

/// How much a counter grew. The kernel's counters are 64-bit, so one that went
/// down was reset (the interface was re-created): count what it holds now.
fn counter_delta(now: u64, before: u64) -> u64 {
    if now >= before { now - before } else { now }
}

/// An interface's flags (hex, as in `/sys/class/net/IF/flags`) and MTU.
pub struct Link<'a> {
    pub flags: &'a str,
    pub mtu: &'a str,
}

const IFF_UP: u32 = 0x1;

/// `mtu`: the smallest MTU of the interfaces that are up, or None when none is.
///
/// That is what gmond's `get_min_mtu` means to report. gmond 3.7.2 on 64-bit Linux
/// reports the MTU of the first interface only (usually `lo`, 65536): its walk of
/// `SIOCGIFCONF` steps 32 bytes through 40-byte entries, so it never parses the
/// second one (strace shows it asking for `lo`'s MTU alone).
pub fn min_mtu_of_up_links<'a>(links: impl IntoIterator<Item = Link<'a>>) -> Option<u32> {
    links
        .into_iter()
        .filter(|link| {
            let hex = link.flags.trim().trim_start_matches("0x");
            u32::from_str_radix(hex, 16).is_ok_and(|flags| flags & IFF_UP != 0)
        })
        .filter_map(|link| link.mtu.trim().parse().ok())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV_TEXT: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0: 322151178   11033    0    0    0     0          0         0   755173    6719    0    0    0     0       0          0
 bond0:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
";

    fn sample(rx: u64, tx: u64) -> Vec<(String, Counters)> {
        let eth0 = Counters {
            rx_bytes: rx,
            rx_packets: rx / 100,
            tx_bytes: tx,
            tx_packets: tx / 100,
        };
        vec![("eth0".to_string(), eth0)]
    }

    #[test]
    fn parses_net_dev() {
        let all = parse_net_dev(NET_DEV_TEXT).unwrap();
        let names: Vec<_> = all.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "bond0"]);
        let eth0 = all[1].1;
        assert_eq!(
            (
                eth0.rx_bytes,
                eth0.rx_packets,
                eth0.tx_bytes,
                eth0.tx_packets
            ),
            (322151178, 11033, 755173, 6719)
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_net_dev("h1\nh2\neth0 1 2 3\n").is_err());
        assert!(parse_net_dev("h1\nh2\neth0: 1 2 3\n").is_err());
        assert!(parse_net_dev("h1\nh2\neth0: 1 2 3 4 5 6 7 8 x 10\n").is_err());
        assert_eq!(parse_net_dev("").unwrap(), vec![]);
    }

    #[test]
    fn counts_what_gmond_counts() {
        let vlans = vlan_interfaces(
            "VLAN Dev name | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\neth0.100 | 100 | eth0\n",
        );
        assert_eq!(vlans, ["eth0.100"]);
        assert!(is_counted("eth0", &vlans));
        assert!(!is_counted("eth0.100", &vlans));
        assert!(!is_counted("lo", &vlans));
        assert!(!is_counted("bond0", &vlans));
    }

    #[test]
    fn rates_are_per_second_between_readings() {
        let mut tracker = RateTracker::new(sample(1000, 500), 10.0);
        let rates = tracker.update(sample(5000, 2500), 14.0);
        assert_eq!((rates.bytes_in, rates.bytes_out), (1000.0, 500.0));
        assert_eq!((rates.pkts_in, rates.pkts_out), (10.0, 5.0));
    }

    #[test]
    fn readings_closer_than_a_second_keep_the_rates() {
        let mut tracker = RateTracker::new(sample(0, 0), 0.0);
        assert!(!tracker.wants_sample(0.5));
        assert_eq!(tracker.update(sample(1_000_000, 0), 0.5), Rates::default());
        let rates = tracker.update(sample(2000, 0), 2.0);
        assert_eq!(rates.bytes_in, 1000.0);
        assert_eq!(tracker.update(sample(9999, 0), 2.1), rates);
    }

    #[test]
    fn new_interfaces_and_resets_do_not_spike() {
        let mut tracker = RateTracker::new(vec![], 0.0);
        assert_eq!(
            tracker.update(sample(1 << 40, 0), 1.0).bytes_in,
            0.0,
            "first sight of eth0"
        );
        assert_eq!(
            tracker.update(sample(300, 0), 2.0).bytes_in,
            300.0,
            "eth0 was re-created"
        );
    }

    #[test]
    fn mtu_is_the_smallest_of_the_links_that_are_up() {
        let links = [
            Link {
                flags: "0x9\n",
                mtu: "65536\n",
            },
            Link {
                flags: "0x1003\n",
                mtu: "1400\n",
            },
            Link {
                flags: "0x82\n",
                mtu: "1000\n",
            },
        ];
        assert_eq!(min_mtu_of_up_links(links), Some(1400));
        assert_eq!(
            min_mtu_of_up_links([Link {
                flags: "0x82",
                mtu: "1500"
            }]),
            None
        );
        assert_eq!(
            min_mtu_of_up_links([Link {
                flags: "zz",
                mtu: "1500"
            }]),
            None
        );
    }
}
