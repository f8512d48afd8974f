//! core-metrics: gmond 3.7.2's built-in host metrics as a wasmond module.
//!
//! It offers the metrics of gmond's `cpu`, `load`, `mem`, `net`, `proc`, `sys` and
//! `disk` modules (and the `gexec` flag of its core module), with gmond's names,
//! types, units, slopes, formats, TMAX and groups (see [`catalog`]), and computes
//! them as gmond's `libmetrics/linux` does. It reads only kernel files, through
//! read-only grants of `/proc` and `/sys`:
//!
//! ```text
//! sandbox { allow_read = ("/proc", "/sys") }
//! ```
//!
//! The disk metrics (`disk_total`, `disk_free`, `part_max_used`) need each file
//! system's size and free space (`statvfs`), which no WASI 0.2 interface offers:
//! they come from the host's `filesystem` import, granted by
//! `allow_filesystem_usage = yes`.
//!
//! The parsers are pure and tested natively (`cargo test -p core-metrics`); this
//! file only reads the files and keeps the state that rates need between calls.

mod catalog;
mod cpu;
mod disk;
mod load;
mod memory;
mod network;
mod parse;
mod system;

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use catalog::{CATALOG, Id, Spec};
use cpu::{CpuShare, CpuTimes, ShareTracker};
use load::LoadAvg;
use network::{Link, RateTracker};
use wasmond_guest::{Metric, MetricValue, Module, Params};

const PROC_STAT: &str = "/proc/stat";
const PROC_MEMINFO: &str = "/proc/meminfo";
const PROC_LOADAVG: &str = "/proc/loadavg";
const PROC_NET_DEV: &str = "/proc/net/dev";
const PROC_NET_VLAN: &str = "/proc/net/vlan/config";
const PROC_CPUINFO: &str = "/proc/cpuinfo";
const PROC_MOUNTS: &str = "/proc/mounts";
const KERNEL_OSTYPE: &str = "/proc/sys/kernel/ostype";
const KERNEL_OSRELEASE: &str = "/proc/sys/kernel/osrelease";
const KERNEL_ARCH: &str = "/proc/sys/kernel/arch";
const CPUS_ONLINE: &str = "/sys/devices/system/cpu/online";
const CPU0_MAX_FREQ: &str = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq";
const NET_LINKS: &str = "/sys/class/net";

/// The `cpu_*` metrics measured over an interval, and the share each one reports.
const SHARES: [(Id, CpuShare); 8] = [
    (Id::CpuUser, CpuShare::User),
    (Id::CpuNice, CpuShare::Nice),
    (Id::CpuSystem, CpuShare::System),
    (Id::CpuIdle, CpuShare::Idle),
    (Id::CpuWio, CpuShare::Wio),
    (Id::CpuIntr, CpuShare::Intr),
    (Id::CpuSintr, CpuShare::Sintr),
    (Id::CpuSteal, CpuShare::Steal),
];

struct CoreMetrics {
    /// One tracker per `cpu_*` metric: gmond measures each since its own last call.
    shares: HashMap<Id, ShareTracker>,
    net: RateTracker,
    /// The clock of the network rates.
    started: Instant,
}

impl Module for CoreMetrics {
    fn init(params: &Params) -> Result<(Self, Vec<Metric>), String> {
        if let Some((name, _)) = params.iter().next() {
            return Err(format!("core-metrics takes no params, got {name:?}"));
        }
        let baseline = CpuTimes::parse(&read(PROC_STAT)?)?;
        let shares = SHARES
            .iter()
            .map(|&(id, share)| (id, ShareTracker::new(share, baseline)))
            .collect();
        let started = Instant::now();
        let net = RateTracker::new(counted_interfaces()?, 0.0);
        let metrics = CATALOG.iter().map(descriptor).collect();
        Ok((
            CoreMetrics {
                shares,
                net,
                started,
            },
            metrics,
        ))
    }

    fn handle(&mut self, name: &str) -> Result<MetricValue, String> {
        let spec =
            catalog::find(name).ok_or_else(|| format!("core-metrics has no metric {name:?}"))?;
        match spec.id {
            Id::CpuNum => cpu_num().map(MetricValue::Uint16),
            Id::CpuSpeed => {
                let max_freq = read_if_present(CPU0_MAX_FREQ);
                Ok(MetricValue::Uint32(cpu::speed_mhz(
                    max_freq.as_deref(),
                    &read(PROC_CPUINFO)?,
                )))
            }
            Id::CpuAidle => Ok(MetricValue::Float(
                CpuTimes::parse(&read(PROC_STAT)?)?.idle_since_boot(),
            )),
            Id::CpuUser
            | Id::CpuNice
            | Id::CpuSystem
            | Id::CpuIdle
            | Id::CpuWio
            | Id::CpuIntr
            | Id::CpuSintr
            | Id::CpuSteal => self.cpu_share(spec.id).map(MetricValue::Float),
            Id::LoadOne => load(|l| l.one),
            Id::LoadFive => load(|l| l.five),
            Id::LoadFifteen => load(|l| l.fifteen),
            Id::ProcRun => Ok(MetricValue::Uint32(
                LoadAvg::parse(&read(PROC_LOADAVG)?)?.running_others(),
            )),
            Id::ProcTotal => Ok(MetricValue::Uint32(
                LoadAvg::parse(&read(PROC_LOADAVG)?)?.total,
            )),
            Id::MemTotal => meminfo("MemTotal"),
            Id::MemFree => meminfo("MemFree"),
            Id::MemBuffers => meminfo("Buffers"),
            Id::MemCached => meminfo("Cached"),
            Id::SwapFree => meminfo("SwapFree"),
            Id::SwapTotal => meminfo("SwapTotal"),
            Id::MemSreclaimable => meminfo("SReclaimable"),
            Id::MemShared => mem_shared(),
            Id::BytesIn => self.net_rate(|r| r.bytes_in),
            Id::BytesOut => self.net_rate(|r| r.bytes_out),
            Id::PktsIn => self.net_rate(|r| r.pkts_in),
            Id::PktsOut => self.net_rate(|r| r.pkts_out),
            Id::Boottime => Ok(MetricValue::Uint32(cpu::boot_time(&read(PROC_STAT)?)?)),
            Id::SysClock => sys_clock().map(MetricValue::Uint32),
            Id::MachineType => machine_type().map(MetricValue::String),
            Id::OsName => one_line(KERNEL_OSTYPE),
            Id::OsRelease => one_line(KERNEL_OSRELEASE),
            Id::Mtu => min_mtu().map(MetricValue::Uint32),
            Id::DiskTotal => disk_space().map(|space| MetricValue::Double(space.total_gb)),
            Id::DiskFree => disk_space().map(|space| MetricValue::Double(space.free_gb)),
            Id::PartMaxUsed => disk_space().map(|space| MetricValue::Float(space.max_used_percent)),
            Id::Gexec => Ok(MetricValue::String("OFF".to_string())),
        }
    }
}

impl CoreMetrics {
    fn cpu_share(&mut self, id: Id) -> Result<f32, String> {
        let now = CpuTimes::parse(&read(PROC_STAT)?)?;
        let tracker = self
            .shares
            .get_mut(&id)
            .ok_or_else(|| format!("no CPU tracker for {id:?}"))?;
        Ok(tracker.update(now))
    }

    fn net_rate(&mut self, pick: fn(&network::Rates) -> f32) -> Result<MetricValue, String> {
        let at = self.started.elapsed().as_secs_f64();
        let sample = if self.net.wants_sample(at) {
            counted_interfaces()?
        } else {
            Vec::new()
        };
        Ok(MetricValue::Float(pick(&self.net.update(sample, at))))
    }
}

fn descriptor(spec: &Spec) -> Metric {
    Metric::new(spec.name, spec.value_type)
        .units(spec.units)
        .slope(spec.slope)
        .format(spec.format)
        .time_max(spec.time_max)
        .description(spec.description)
        .group(spec.group)
}

/// Reads a kernel file the module needs; the error says which grant is missing.
/// gmond's `find_disk_space`: the counted mounts' statvfs, asked of the host. A
/// file system whose statvfs fails is left out, as gmond does, unless all fail
/// (e.g. the grant is missing): then the error says why.
fn disk_space() -> Result<disk::DiskSpace, String> {
    let mounts = disk::counted_mounts(&read(PROC_MOUNTS)?);
    let mut usages = Vec::with_capacity(mounts.len());
    let mut first_error = None;
    for mount in &mounts {
        match wasmond_guest::filesystem_usage(&mount.mount_point) {
            Ok(usage) => usages.push(disk::Usage {
                block_size: usage.block_size,
                blocks: usage.blocks,
                blocks_available: usage.blocks_available,
            }),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if usages.is_empty() => Err(error),
        _ => Ok(disk::disk_space(usages)),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| {
        format!("cannot read {path}: {error} (core-metrics needs sandbox {{ allow_read = (\"/proc\", \"/sys\") }})")
    })
}

/// Reads a file that only some kernels or machines have.
fn read_if_present(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn cpu_num() -> Result<u16, String> {
    match read_if_present(CPUS_ONLINE) {
        Some(list) => Ok(cpu::online_cpus(&list)?),
        None => Ok(cpu::cpu_lines(&read(PROC_STAT)?)),
    }
}

fn load(pick: fn(&LoadAvg) -> f32) -> Result<MetricValue, String> {
    Ok(MetricValue::Float(pick(&LoadAvg::parse(&read(
        PROC_LOADAVG,
    )?)?)))
}

fn meminfo(label: &str) -> Result<MetricValue, String> {
    Ok(MetricValue::Float(memory::required_kilobytes(
        &read(PROC_MEMINFO)?,
        label,
    )?))
}

/// gmond reads `MemShared`, which Linux dropped in 2.5.52, and reports 0 without it.
fn mem_shared() -> Result<MetricValue, String> {
    Ok(MetricValue::Float(
        memory::kilobytes(&read(PROC_MEMINFO)?, "MemShared")?.unwrap_or(0.0),
    ))
}

/// From `/proc/sys/kernel/arch` (Linux 6.1 and later), else from `/proc/cpuinfo`.
fn machine_type() -> Result<String, String> {
    if let Some(arch) = read_if_present(KERNEL_ARCH) {
        return Ok(system::machine_type(&arch));
    }
    system::machine_type_from_cpuinfo(&read(PROC_CPUINFO)?).ok_or_else(|| {
        format!("no {KERNEL_ARCH} (Linux before 6.1) and no architecture in {PROC_CPUINFO}")
    })
}

fn one_line(path: &str) -> Result<MetricValue, String> {
    Ok(MetricValue::String(
        system::first_line(&read(path)?).to_string(),
    ))
}

fn sys_clock() -> Result<u32, String> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?;
    u32::try_from(since_epoch.as_secs()).map_err(|_| "clock past 2106".to_string())
}

/// The interfaces gmond adds up, with their counters.
fn counted_interfaces() -> Result<Vec<(String, network::Counters)>, String> {
    let vlans = read_if_present(PROC_NET_VLAN)
        .map(|config| network::vlan_interfaces(&config))
        .unwrap_or_default();
    let mut all = network::parse_net_dev(&read(PROC_NET_DEV)?)?;
    all.retain(|(name, _)| network::is_counted(name, &vlans));
    Ok(all)
}

/// The smallest MTU of the links that are up, from `/sys/class/net/*/{flags,mtu}`.
fn min_mtu() -> Result<u32, String> {
    let entries =
        std::fs::read_dir(NET_LINKS).map_err(|e| format!("cannot list {NET_LINKS}: {e}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let dir = entry
            .map_err(|e| format!("cannot list {NET_LINKS}: {e}"))?
            .path();
        let flags = read(&format!("{}/flags", dir.display()))?;
        let mtu = read(&format!("{}/mtu", dir.display()))?;
        files.push((flags, mtu));
    }
    let links = files.iter().map(|(flags, mtu)| Link { flags, mtu });
    network::min_mtu_of_up_links(links).ok_or_else(|| "no network link is up".to_string())
}

wasmond_guest::export_module!(CoreMetrics);

/// The whole module, run natively against this machine's `/proc` and `/sys`.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use wasmond_guest::ValueType;

    fn has_type(value: &MetricValue, value_type: ValueType) -> bool {
        matches!(
            (value, value_type),
            (MetricValue::String(_), ValueType::String)
                | (MetricValue::Uint16(_), ValueType::Uint16)
                | (MetricValue::Uint32(_), ValueType::Uint32)
                | (MetricValue::Float(_), ValueType::Float)
                | (MetricValue::Double(_), ValueType::Double)
        )
    }

    fn float(value: MetricValue) -> f32 {
        match value {
            MetricValue::Float(x) => x,
            other => panic!("not a float: {other:?}"),
        }
    }

    #[test]
    fn every_metric_answers_with_its_declared_type() {
        let (mut module, metrics) = CoreMetrics::init(&Params::default()).unwrap();
        assert_eq!(metrics.len(), CATALOG.len());
        for spec in CATALOG {
            // The disk metrics call the host's `filesystem` import, which exists only
            // in a wasm host: the runtime and interop tests check them there.
            if matches!(spec.id, Id::DiskTotal | Id::DiskFree | Id::PartMaxUsed) {
                continue;
            }
            match (spec.id, module.handle(spec.name)) {
                (_, Ok(value)) => assert!(
                    has_type(&value, spec.value_type),
                    "{}: {value:?}",
                    spec.name
                ),
                (_, Err(error)) => panic!("{}: {error}", spec.name),
            }
        }
    }

    #[test]
    fn values_agree_with_the_kernel() {
        let (mut module, _) = CoreMetrics::init(&Params::default()).unwrap();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let mem_total_line = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .unwrap();
        let mem_total: f32 = mem_total_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(float(module.handle("mem_total").unwrap()), mem_total);
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert!(
            matches!(module.handle("os_release").unwrap(), MetricValue::String(s) if s == release.trim())
        );
        assert!(
            matches!(module.handle("os_name").unwrap(), MetricValue::String(s) if s == "Linux")
        );
        // The fallback for kernels without /proc/sys/kernel/arch agrees with it.
        let cpuinfo = std::fs::read_to_string(PROC_CPUINFO).unwrap();
        if let Some(from_cpuinfo) = system::machine_type_from_cpuinfo(&cpuinfo) {
            let MetricValue::String(ours) = module.handle("machine_type").unwrap() else {
                panic!("machine_type type")
            };
            assert_eq!(ours, from_cpuinfo);
        }
        for name in [
            "cpu_user",
            "cpu_system",
            "cpu_idle",
            "cpu_aidle",
            "cpu_wio",
            "cpu_steal",
        ] {
            let percent = float(module.handle(name).unwrap());
            assert!((0.0..=100.0).contains(&percent), "{name} = {percent}");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let MetricValue::Uint32(clock) = module.handle("sys_clock").unwrap() else {
            panic!("sys_clock type")
        };
        assert!(now.abs_diff(u64::from(clock)) <= 2);
        let MetricValue::Uint32(boot) = module.handle("boottime").unwrap() else {
            panic!("boottime type")
        };
        assert!(u64::from(boot) < now);
    }

    #[test]
    fn refuses_params_and_unknown_metrics() {
        let params = Params::new(vec![("interval".into(), "5".into())]);
        assert!(CoreMetrics::init(&params).is_err());
        let (mut module, _) = CoreMetrics::init(&Params::default()).unwrap();
        assert!(
            module
                .handle("heartbeat")
                .unwrap_err()
                .contains("no metric")
        );
    }
}
