//! CPU metrics from `/proc/stat` and `/sys/devices/system/cpu`, computed as
//! gmond's `libmetrics/linux/metrics.c` does: each `cpu_*` percentage is the share
//! of its jiffies in all jiffies since that metric was last asked for; `cpu_aidle`
//! is the idle share since boot; `cpu_system` includes irq and softirq time.
//! Pure: every function takes the files' text.

use crate::parse::{ParseError, field};

const STAT: &str = "/proc/stat";

/// The jiffy counters of the aggregate `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    /// How many counters the line has: 4 on Linux 2.4, 7 on early 2.6, 8 or more since.
    pub states: usize,
}

/// Which share of the CPU time a `cpu_*` metric reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuShare {
    User,
    Nice,
    /// System time, plus irq and softirq time as gmond counts them.
    System,
    Idle,
    Wio,
    Intr,
    Sintr,
    Steal,
}

impl CpuTimes {
    /// Reads the `cpu ` line of `/proc/stat`.
    pub fn parse(stat: &str) -> Result<CpuTimes, ParseError> {
        let line = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .ok_or_else(|| ParseError::new(STAT, "no aggregate \"cpu \" line"))?;
        let counters: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|text| {
                text.parse()
                    .map_err(|_| ParseError::new(STAT, format!("bad counter {text:?}")))
            })
            .collect::<Result<_, _>>()?;
        if counters.len() < 4 {
            return Err(ParseError::new(
                STAT,
                format!("only {} counters on the cpu line", counters.len()),
            ));
        }
        let at = |i: usize| counters.get(i).copied().unwrap_or(0);
        Ok(CpuTimes {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
            states: counters.len(),
        })
    }

    /// All jiffies, summed as gmond's `total_jiffies_func` does. Guest time is
    /// already inside user time, so it is not added again.
    pub fn total(&self) -> u64 {
        let base = self.user + self.nice + self.system + self.idle;
        match self.states {
            4 => base,
            5..=7 => base + self.iowait + self.irq + self.softirq,
            _ => base + self.iowait + self.irq + self.softirq + self.steal,
        }
    }

    /// The jiffies that count towards `share`.
    pub fn jiffies(&self, share: CpuShare) -> u64 {
        match share {
            CpuShare::User => self.user,
            CpuShare::Nice => self.nice,
            CpuShare::System if self.states > 4 => self.system + self.irq + self.softirq,
            CpuShare::System => self.system,
            CpuShare::Idle => self.idle,
            CpuShare::Wio => self.iowait,
            CpuShare::Intr => self.irq,
            CpuShare::Sintr => self.softirq,
            CpuShare::Steal => self.steal,
        }
    }

    /// `cpu_aidle`: the percentage of all jiffies since boot spent idle.
    pub fn idle_since_boot(&self) -> f32 {
        percent(self.idle, self.total())
    }
}

/// `part` as a percentage of `total`, clamped to 0..=100 as gmond's `sanityCheck` does.
fn percent(part: u64, total: u64) -> f32 {
    if total == 0 {
        return 0.0;
    }
    ((part as f64 / total as f64) * 100.0).clamp(0.0, 100.0) as f32
}

/// One `cpu_*` percentage metric: remembers the counters at its last reading,
/// because gmond measures each metric over the time since it was last collected.
#[derive(Debug, Clone)]
pub struct ShareTracker {
    share: CpuShare,
    last: CpuTimes,
    value: f32,
}

impl ShareTracker {
    /// Starts from `baseline`; until time passes, the value is the share since boot
    /// (which is what gmond's first reading reports).
    pub fn new(share: CpuShare, baseline: CpuTimes) -> ShareTracker {
        let value = percent(baseline.jiffies(share), baseline.total());
        ShareTracker {
            share,
            last: baseline,
            value,
        }
    }

    /// The share of the jiffies since the last update. When no jiffy has passed,
    /// the previous value stands (gmond keeps it while its cached file is fresh).
    pub fn update(&mut self, now: CpuTimes) -> f32 {
        let total = now.total().saturating_sub(self.last.total());
        if total > 0 {
            let part = now
                .jiffies(self.share)
                .saturating_sub(self.last.jiffies(self.share));
            self.value = percent(part, total);
            self.last = now;
        }
        self.value
    }
}

/// `boottime`: the `btime` line of `/proc/stat`, in seconds since the epoch.
pub fn boot_time(stat: &str) -> Result<u32, ParseError> {
    let line = stat
        .lines()
        .find(|line| line.starts_with("btime "))
        .ok_or_else(|| ParseError::new(STAT, "no btime line"))?;
    field(STAT, line, 1)
}

/// `cpu_num` from `/sys/devices/system/cpu/online` (a list like `0-3,6`), which is
/// what glibc's `get_nprocs()`, gmond's source, reads.
pub fn online_cpus(list: &str) -> Result<u16, ParseError> {
    const FILE: &str = "/sys/devices/system/cpu/online";
    let bad = || ParseError::new(FILE, format!("not a CPU list: {:?}", list.trim()));
    let mut count: u32 = 0;
    for range in list.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first: u32 = first.parse().map_err(|_| bad())?;
        let last: u32 = last.parse().map_err(|_| bad())?;
        if last < first {
            return Err(bad());
        }
        count = count.saturating_add(last - first + 1);
    }
    u16::try_from(count).map_err(|_| bad())
}

/// `cpu_num` when `/sys` is not readable: the `cpuN` lines of `/proc/stat`, one per
/// online CPU (glibc's own fallback).
pub fn cpu_lines(stat: &str) -> u16 {
    let per_cpu = stat
        .lines()
        .filter(|line| {
            line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
        })
        .count();
    u16::try_from(per_cpu).unwrap_or(u16::MAX)
}

/// `cpu_speed` in MHz: `scaling_max_freq` (kHz) when cpufreq exists, else the first
/// `cpu MHz` of `/proc/cpuinfo`, truncated as gmond's `strtol` does; 0 when neither
/// says (gmond's value too).
pub fn speed_mhz(scaling_max_freq_khz: Option<&str>, cpuinfo: &str) -> u32 {
    let from_cpufreq = scaling_max_freq_khz
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(|khz| khz / 1000);
    if let Some(mhz) = from_cpufreq.filter(|&mhz| mhz > 0) {
        return u32::try_from(mhz).unwrap_or(u32::MAX);
    }
    cpuinfo
        .lines()
        .find(|line| line.starts_with("cpu MHz"))
        .and_then(|line| line.split_once(':'))
        .and_then(|(_, value)| value.trim().split('.').next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_6X: &str = "cpu  50583 698 5646 17700 346 0 60 51 0 0\n\
        cpu0 25214 249 2523 9493 61 0 13 22 0 0\n\
        cpu1 25368 448 3123 8206 285 0 47 28 0 0\n\
        intr 345483 0 0\n\
        ctxt 690024\n\
        btime 1795935402\n\
        processes 12150\n";

    #[test]
    fn parses_the_aggregate_line() {
        let t = CpuTimes::parse(STAT_6X).unwrap();
        assert_eq!(
            (t.user, t.nice, t.system, t.idle),
            (50583, 698, 5646, 17700)
        );
        assert_eq!(
            (t.iowait, t.irq, t.softirq, t.steal, t.states),
            (346, 0, 60, 51, 10)
        );
        assert_eq!(t.total(), 50583 + 698 + 5646 + 17700 + 346 + 60 + 51);
        assert_eq!(t.jiffies(CpuShare::System), 5646 + 60);
    }

    #[test]
    fn linux_24_lines_have_four_states() {
        let t = CpuTimes::parse("cpu 10 0 5 85\n").unwrap();
        assert_eq!(t.total(), 100);
        assert_eq!(t.jiffies(CpuShare::System), 5);
        assert_eq!(t.jiffies(CpuShare::Wio), 0);
    }

    #[test]
    fn rejects_files_without_a_cpu_line() {
        assert!(CpuTimes::parse("intr 1\n").is_err());
        assert!(CpuTimes::parse("cpu 1 2\n").is_err());
        assert!(CpuTimes::parse("cpu 1 2 x 4\n").is_err());
        assert!(CpuTimes::parse("").is_err());
    }

    #[test]
    fn aidle_is_the_idle_share_since_boot() {
        let t = CpuTimes::parse("cpu 25 0 0 75 0 0 0 0\n").unwrap();
        assert_eq!(t.idle_since_boot(), 75.0);
    }

    fn times(user: u64, system: u64, idle: u64, irq: u64) -> CpuTimes {
        CpuTimes {
            user,
            system,
            idle,
            irq,
            states: 10,
            ..CpuTimes::default()
        }
    }

    #[test]
    fn share_is_measured_since_the_last_update() {
        let mut user = ShareTracker::new(CpuShare::User, times(100, 0, 300, 0));
        assert_eq!(
            user.update(times(100, 0, 300, 0)),
            25.0,
            "no time passed: share since boot"
        );
        assert_eq!(user.update(times(130, 10, 360, 0)), 30.0);
        assert_eq!(user.update(times(130, 10, 460, 0)), 0.0);
        let mut system = ShareTracker::new(CpuShare::System, times(0, 0, 0, 0));
        assert_eq!(
            system.update(times(50, 20, 20, 10)),
            30.0,
            "irq counts as system time"
        );
    }

    #[test]
    fn counters_going_backwards_do_not_go_negative() {
        let mut idle = ShareTracker::new(CpuShare::Idle, times(100, 0, 900, 0));
        let value = idle.update(times(200, 0, 800, 0));
        assert!((0.0..=100.0).contains(&value), "{value}");
    }

    #[test]
    fn reads_btime() {
        assert_eq!(boot_time(STAT_6X).unwrap(), 1795935402);
        assert!(boot_time("cpu 1 2 3 4\n").is_err());
    }

    #[test]
    fn counts_online_cpus() {
        assert_eq!(online_cpus("0-1\n").unwrap(), 2);
        assert_eq!(online_cpus("0\n").unwrap(), 1);
        assert_eq!(online_cpus("0-3,6,8-9\n").unwrap(), 7);
        assert!(online_cpus("").is_err());
        assert!(online_cpus("3-1").is_err());
        assert!(online_cpus("0-99999999").is_err());
        assert_eq!(cpu_lines(STAT_6X), 2);
    }

    #[test]
    fn speed_prefers_cpufreq_then_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Some CPU\ncpu MHz\t\t: 2599.998\n";
        assert_eq!(speed_mhz(None, cpuinfo), 2599);
        assert_eq!(speed_mhz(Some("3400000\n"), cpuinfo), 3400);
        assert_eq!(speed_mhz(Some("garbage"), cpuinfo), 2599);
        assert_eq!(speed_mhz(None, "processor : 0\n"), 0);
    }
}
