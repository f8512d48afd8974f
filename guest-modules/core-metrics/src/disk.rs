//! Disk space as gmond's `mod_disk` computes it (`libmetrics/linux`'s
//! `find_disk_space`): the file systems listed in `/proc/mounts` that are mounted
//! read-write, are local and sit on a `/dev/` device, each device counted once.
//! `disk_total` and `disk_free` sum their sizes and the space free for users in
//! GB (1e9 bytes); `part_max_used` is the fullest one's used share.
//!
//! The sizes come from the host's `filesystem.usage` import (statvfs), which WASI
//! 0.2 lacks; this file only chooses the mounts and does the arithmetic.

/// A file system gmond counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
}

/// The parts of a file system's statvfs that gmond uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// statvfs `f_bsize`, which gmond multiplies block counts by.
    pub block_size: u64,
    /// `f_blocks`: the size in blocks.
    pub blocks: u64,
    /// `f_bavail`: blocks free for unprivileged users.
    pub blocks_available: u64,
}

/// The three disk metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiskSpace {
    pub total_gb: f64,
    pub free_gb: f64,
    pub max_used_percent: f32,
}

/// The mounts of `/proc/mounts` that gmond counts, in file order.
pub fn counted_mounts(proc_mounts: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in proc_mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, mount_point, fs_type, options, ..] = fields[..] else {
            continue;
        };
        let counted = !options.starts_with("ro")
            && !is_remote(device, fs_type)
            && (device.starts_with("/dev/") || device.starts_with("/dev2/"));
        if counted && !mounts.iter().any(|mount| mount.device == device) {
            mounts.push(Mount {
                device: device.to_string(),
                mount_point: unescape_octal(mount_point),
            });
        }
    }
    mounts
}

/// gmond's `remote_mount` (from coreutils' ME_REMOTE).
fn is_remote(device: &str, fs_type: &str) -> bool {
    device.contains(':')
        || (fs_type == "smbfs" && device.starts_with("//"))
        || fs_type.starts_with("nfs")
        || matches!(fs_type, "autofs" | "gfs" | "none")
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sums the counted file systems as gmond does; a file system whose statvfs
/// failed is left out, as gmond's "funky devices" are.
pub fn disk_space(usages: impl IntoIterator<Item = Usage>) -> DiskSpace {
    const GB: f64 = 1e9;
    let mut space = DiskSpace::default();
    for usage in usages {
        let block_size = usage.block_size as f64;
        space.total_gb += usage.blocks as f64 * block_size / GB;
        space.free_gb += usage.blocks_available as f64 * block_size / GB;
        let used_percent = if usage.blocks == 0 {
            0.0
        } else {
            (usage.blocks as f64 - usage.blocks_available as f64) / usage.blocks as f64 * 100.0
        };
        space.max_used_percent = space.max_used_percent.max(used_percent as f32);
    }
    space
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vdb /mnt/my\\040data xfs rw,relatime 0 0
/dev/vda /var/lib/docker ext4 rw,relatime 0 0
/dev/vdc /boot ext4 ro,relatime 0 0
server:/export /home nfs4 rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/sr0 /media/cdrom iso9660 ro 0 0
";

    #[test]
    fn counts_local_read_write_devices_once() {
        let mounts = counted_mounts(MOUNTS);
        let points: Vec<&str> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/mnt/my data"]);
        assert_eq!(mounts[0].device, "/dev/vda");
    }

    #[test]
    fn sums_sizes_in_gb_and_keeps_the_fullest_share() {
        let space = disk_space([
            Usage { block_size: 4096, blocks: 1_000_000, blocks_available: 250_000 },
            Usage { block_size: 1024, blocks: 2_000_000, blocks_available: 1_800_000 },
        ]);
        assert!((space.total_gb - (4.096 + 2.048)).abs() < 1e-9);
        assert!((space.free_gb - (1.024 + 1.8432)).abs() < 1e-9);
        assert_eq!(space.max_used_percent, 75.0);
    }

    #[test]
    fn no_file_system_gives_zeros() {
        assert_eq!(disk_space([]), DiskSpace::default());
        let empty = Usage { block_size: 4096, blocks: 0, blocks_available: 0 };
        assert_eq!(disk_space([empty]).max_used_percent, 0.0);
    }
}
