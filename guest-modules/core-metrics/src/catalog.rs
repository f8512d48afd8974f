//! The metrics this module offers, described exactly as gmond 3.7.2's built-in
//! modules describe them (`mod_cpu.c`, `mod_load.c`, `mod_mem.c`, `mod_net.c`,
//! `mod_proc.c`, `mod_sys.c`, `mod_disk.c` and the `gexec` metric of its core
//! module): name, value type, units, slope, printf format, TMAX, description and
//! group. Checked against `gmond -m` and the XML real gmond served on this
//! machine (`reference/ganglia-3.7.2/captures/stock/`).
//!
//! gmond's `heartbeat` and `location` are not here: they describe the daemon
//! (its start time, its `host { location }`), not the host, so the daemon owns them.

use wasmond_guest::{Slope, ValueType};

/// Which value a metric reports; the handler dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Id {
    CpuNum,
    CpuSpeed,
    CpuUser,
    CpuNice,
    CpuSystem,
    CpuIdle,
    CpuAidle,
    CpuWio,
    CpuIntr,
    CpuSintr,
    CpuSteal,
    LoadOne,
    LoadFive,
    LoadFifteen,
    ProcRun,
    ProcTotal,
    MemTotal,
    MemFree,
    MemShared,
    MemBuffers,
    MemCached,
    SwapFree,
    SwapTotal,
    MemSreclaimable,
    BytesOut,
    BytesIn,
    PktsIn,
    PktsOut,
    Boottime,
    SysClock,
    MachineType,
    OsName,
    OsRelease,
    Mtu,
    DiskTotal,
    DiskFree,
    PartMaxUsed,
    Gexec,
}

/// One metric's descriptor, as gmond declares it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub id: Id,
    pub name: &'static str,
    pub value_type: ValueType,
    pub units: &'static str,
    pub slope: Slope,
    pub format: &'static str,
    /// gmond's `tmax` for the metric, shown as TMAX in its XML.
    pub time_max: u32,
    pub description: &'static str,
    pub group: &'static str,
}

// One row of gmond's table reads best positionally, as in gmond's own
// `Ganglia_25metric` initialisers.
#[allow(clippy::too_many_arguments)]
const fn spec(
    id: Id,
    name: &'static str,
    value_type: ValueType,
    units: &'static str,
    slope: Slope,
    format: &'static str,
    time_max: u32,
    description: &'static str,
    group: &'static str,
) -> Spec {
    Spec {
        id,
        name,
        value_type,
        units,
        slope,
        format,
        time_max,
        description,
        group,
    }
}

use Slope::{Both, Zero};
use ValueType::{Double, Float, String as Str, Uint16, Uint32};

/// Every metric, in gmond's module order.
#[rustfmt::skip]
pub const CATALOG: &[Spec] = &[
    // mod_cpu.c: group "cpu".
    spec(Id::CpuNum, "cpu_num", Uint16, "CPUs", Zero, "%hu", 1200, "Total number of CPUs", "cpu"),
    spec(Id::CpuSpeed, "cpu_speed", Uint32, "MHz", Zero, "%u", 1200, "CPU Speed in terms of MHz", "cpu"),
    spec(
        Id::CpuUser,
        "cpu_user",
        Float,
        "%",
        Both,
        "%.1f",
        90,
        "Percentage of CPU utilization that occurred while executing at the user level",
        "cpu",
    ),
    spec(
        Id::CpuNice,
        "cpu_nice",
        Float,
        "%",
        Both,
        "%.1f",
        90,
        "Percentage of CPU utilization that occurred while executing at the user level with nice priority",
        "cpu",
    ),
    spec(
        Id::CpuSystem,
        "cpu_system",
        Float,
        "%",
        Both,
        "%.1f",
        90,
        "Percentage of CPU utilization that occurred while executing at the system level",
        "cpu",
    ),
    spec(
        Id::CpuIdle,
        "cpu_idle",
        Float,
        "%",
        Both,
        "%.1f",
        90,
        "Percentage of time that the CPU or CPUs were idle and the system did not have an outstanding disk I/O request",
        "cpu",
    ),
    spec(Id::CpuAidle, "cpu_aidle", Float, "%", Both, "%.1f", 3800, "Percent of time since boot idle CPU", "cpu"),
    spec(
        Id::CpuWio,
        "cpu_wio",
        Float,
        "%",
        Both,
        "%.1f",
        90,
        "Percentage of time that the CPU or CPUs were idle during which the system had an outstanding disk I/O request",
        "cpu",
    ),
    spec(Id::CpuIntr, "cpu_intr", Float, "%", Both, "%.1f", 90, "cpu_intr", "cpu"),
    spec(Id::CpuSintr, "cpu_sintr", Float, "%", Both, "%.1f", 90, "cpu_sintr", "cpu"),
    spec(Id::CpuSteal, "cpu_steal", Float, "%", Both, "%.1f", 90, "cpu_steal", "cpu"),
    // mod_load.c: group "load"; gmond's units are one space.
    spec(Id::LoadOne, "load_one", Float, " ", Both, "%.2f", 70, "One minute load average", "load"),
    spec(Id::LoadFive, "load_five", Float, " ", Both, "%.2f", 325, "Five minute load average", "load"),
    spec(Id::LoadFifteen, "load_fifteen", Float, " ", Both, "%.2f", 950, "Fifteen minute load average", "load"),
    // mod_proc.c: group "process".
    spec(Id::ProcRun, "proc_run", Uint32, " ", Both, "%u", 950, "Total number of running processes", "process"),
    spec(Id::ProcTotal, "proc_total", Uint32, " ", Both, "%u", 950, "Total number of processes", "process"),
    // mod_mem.c: group "memory".
    spec(Id::MemTotal, "mem_total", Float, "KB", Zero, "%.0f", 1200, "Total amount of memory displayed in KBs", "memory"),
    spec(Id::MemFree, "mem_free", Float, "KB", Both, "%.0f", 180, "Amount of available memory", "memory"),
    spec(Id::MemShared, "mem_shared", Float, "KB", Both, "%.0f", 180, "Amount of shared memory", "memory"),
    spec(Id::MemBuffers, "mem_buffers", Float, "KB", Both, "%.0f", 180, "Amount of buffered memory", "memory"),
    spec(Id::MemCached, "mem_cached", Float, "KB", Both, "%.0f", 180, "Amount of cached memory", "memory"),
    spec(Id::SwapFree, "swap_free", Float, "KB", Both, "%.0f", 180, "Amount of available swap memory", "memory"),
    spec(
        Id::SwapTotal,
        "swap_total",
        Float,
        "KB",
        Zero,
        "%.0f",
        1200,
        "Total amount of swap space displayed in KBs",
        "memory",
    ),
    spec(
        Id::MemSreclaimable,
        "mem_sreclaimable",
        Float,
        "KB",
        Both,
        "%.0f",
        180,
        "Amount of reclaimable slab memory",
        "memory",
    ),
    // mod_net.c: group "network".
    spec(Id::BytesOut, "bytes_out", Float, "bytes/sec", Both, "%.2f", 300, "Number of bytes out per second", "network"),
    spec(Id::BytesIn, "bytes_in", Float, "bytes/sec", Both, "%.2f", 300, "Number of bytes in per second", "network"),
    spec(Id::PktsIn, "pkts_in", Float, "packets/sec", Both, "%.2f", 300, "Packets in per second", "network"),
    spec(Id::PktsOut, "pkts_out", Float, "packets/sec", Both, "%.2f", 300, "Packets out per second", "network"),
    // mod_sys.c: group "system".
    spec(Id::Boottime, "boottime", Uint32, "s", Zero, "%u", 1200, "The last time that the system was started", "system"),
    spec(Id::SysClock, "sys_clock", Uint32, "s", Zero, "%u", 1200, "Time as reported by the system clock", "system"),
    spec(Id::MachineType, "machine_type", Str, "", Zero, "%s", 1200, "System architecture", "system"),
    spec(Id::OsName, "os_name", Str, "", Zero, "%s", 1200, "Operating system name", "system"),
    spec(Id::OsRelease, "os_release", Str, "", Zero, "%s", 1200, "Operating system release date", "system"),
    spec(Id::Mtu, "mtu", Uint32, "", Both, "%u", 1200, "Network maximum transmission unit", "system"),
    // mod_disk.c: group "disk".
    spec(Id::DiskTotal, "disk_total", Double, "GB", Both, "%.3f", 1200, "Total available disk space", "disk"),
    spec(Id::DiskFree, "disk_free", Double, "GB", Both, "%.3f", 180, "Total free disk space", "disk"),
    spec(Id::PartMaxUsed, "part_max_used", Float, "%", Both, "%.1f", 180, "Maximum percent used for all partitions", "disk"),
    // gmond's core module: wasmond runs no gexec daemon, so this is always "OFF".
    spec(Id::Gexec, "gexec", Str, "", Zero, "%s", 300, "gexec available", "core"),
];

/// The spec of metric `name`, if this module offers it.
pub fn find(name: &str) -> Option<&'static Spec> {
    CATALOG.iter().find(|spec| spec.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_ids_are_unique() {
        let names: HashSet<_> = CATALOG.iter().map(|s| s.name).collect();
        let ids: HashSet<_> = CATALOG.iter().map(|s| s.id).collect();
        assert_eq!(names.len(), CATALOG.len());
        assert_eq!(ids.len(), CATALOG.len());
    }

    /// The rows of `captures/stock/gmond_stock_xml.xml` (plus the metrics the stock
    /// config does not collect, read from a gmond run that collected them):
    /// name, TYPE, UNITS, TMAX, SLOPE, GROUP.
    #[rustfmt::skip]
    const GMOND_XML: &[(&str, &str, &str, u32, &str, &str)] = &[
        ("cpu_num", "uint16", "CPUs", 1200, "zero", "cpu"),
        ("cpu_speed", "uint32", "MHz", 1200, "zero", "cpu"),
        ("cpu_user", "float", "%", 90, "both", "cpu"),
        ("cpu_nice", "float", "%", 90, "both", "cpu"),
        ("cpu_system", "float", "%", 90, "both", "cpu"),
        ("cpu_idle", "float", "%", 90, "both", "cpu"),
        ("cpu_aidle", "float", "%", 3800, "both", "cpu"),
        ("cpu_wio", "float", "%", 90, "both", "cpu"),
        ("cpu_intr", "float", "%", 90, "both", "cpu"),
        ("cpu_sintr", "float", "%", 90, "both", "cpu"),
        ("cpu_steal", "float", "%", 90, "both", "cpu"),
        ("load_one", "float", " ", 70, "both", "load"),
        ("load_five", "float", " ", 325, "both", "load"),
        ("load_fifteen", "float", " ", 950, "both", "load"),
        ("proc_run", "uint32", " ", 950, "both", "process"),
        ("proc_total", "uint32", " ", 950, "both", "process"),
        ("mem_total", "float", "KB", 1200, "zero", "memory"),
        ("mem_free", "float", "KB", 180, "both", "memory"),
        ("mem_shared", "float", "KB", 180, "both", "memory"),
        ("mem_buffers", "float", "KB", 180, "both", "memory"),
        ("mem_cached", "float", "KB", 180, "both", "memory"),
        ("swap_free", "float", "KB", 180, "both", "memory"),
        ("swap_total", "float", "KB", 1200, "zero", "memory"),
        ("mem_sreclaimable", "float", "KB", 180, "both", "memory"),
        ("bytes_out", "float", "bytes/sec", 300, "both", "network"),
        ("bytes_in", "float", "bytes/sec", 300, "both", "network"),
        ("pkts_in", "float", "packets/sec", 300, "both", "network"),
        ("pkts_out", "float", "packets/sec", 300, "both", "network"),
        ("boottime", "uint32", "s", 1200, "zero", "system"),
        ("sys_clock", "uint32", "s", 1200, "zero", "system"),
        ("machine_type", "string", "", 1200, "zero", "system"),
        ("os_name", "string", "", 1200, "zero", "system"),
        ("os_release", "string", "", 1200, "zero", "system"),
        ("mtu", "uint32", "", 1200, "both", "system"),
        ("disk_total", "double", "GB", 1200, "both", "disk"),
        ("disk_free", "double", "GB", 180, "both", "disk"),
        ("part_max_used", "float", "%", 180, "both", "disk"),
        ("gexec", "string", "", 300, "zero", "core"),
    ];

    fn type_name(value_type: ValueType) -> &'static str {
        match value_type {
            ValueType::String => "string",
            ValueType::Int8 => "int8",
            ValueType::Uint8 => "uint8",
            ValueType::Int16 => "int16",
            ValueType::Uint16 => "uint16",
            ValueType::Int32 => "int32",
            ValueType::Uint32 => "uint32",
            ValueType::Float => "float",
            ValueType::Double => "double",
        }
    }

    fn slope_name(slope: Slope) -> &'static str {
        match slope {
            Slope::Zero => "zero",
            Slope::Positive => "positive",
            Slope::Negative => "negative",
            Slope::Both => "both",
            Slope::Derivative => "derivative",
            Slope::Unspecified => "unspecified",
        }
    }

    #[test]
    fn every_metric_matches_what_gmond_served() {
        assert_eq!(CATALOG.len(), GMOND_XML.len());
        for &(name, ty, units, tmax, slope, group) in GMOND_XML {
            let spec = find(name).unwrap_or_else(|| panic!("{name} missing"));
            let ours = (
                type_name(spec.value_type),
                spec.units,
                spec.time_max,
                slope_name(spec.slope),
                spec.group,
            );
            assert_eq!(ours, (ty, units, tmax, slope, group), "{name}");
        }
    }

    #[test]
    fn formats_suit_their_types() {
        for spec in CATALOG {
            let ok = match spec.value_type {
                ValueType::String => spec.format == "%s",
                ValueType::Float | ValueType::Double => spec.format.ends_with('f'),
                _ => spec.format.ends_with('u'),
            };
            assert!(ok, "{} has format {}", spec.name, spec.format);
        }
    }
}
