//! The `filesystem` import: statvfs of the host's mounted file systems (sizes and
//! inode counts), which WASI 0.2 lacks and gmond's disk metrics (`disk_total`,
//! `disk_free`, `part_max_used`) and Python modules' `os.statvfs` need.
//!
//! Only a module granted `filesystem_usage` is answered, and only for a local file
//! system's mount point listed in `/proc/self/mounts`: a module cannot probe for
//! other paths, and a hung network mount cannot block the host past the module's
//! deadline (a host call is not interruptible).

use super::bindings::wasmond::metric::filesystem::{Host, InodeUsage, Usage};
use super::state::HostState;

/// The longest mount point a module may ask about (Linux's `PATH_MAX`).
pub(crate) const MAX_MOUNT_POINT_BYTES: usize = 4096;

const MOUNTS: &str = "/proc/self/mounts";

impl Host for HostState {
    fn statvfs(&mut self, mount_point: String) -> Result<Usage, String> {
        let stats = self.granted_statvfs(&mount_point)?;
        Ok(Usage {
            block_size: stats.f_bsize,
            fragment_size: stats.f_frsize,
            blocks: stats.f_blocks,
            blocks_free: stats.f_bfree,
            blocks_available: stats.f_bavail,
        })
    }

    fn inodes(&mut self, mount_point: String) -> Result<InodeUsage, String> {
        let stats = self.granted_statvfs(&mount_point)?;
        Ok(InodeUsage {
            files: stats.f_files,
            files_free: stats.f_ffree,
            files_available: stats.f_favail,
        })
    }
}

impl HostState {
    /// statvfs of `mount_point` if this module is granted file system usage and it
    /// names a local mount point (after [`normalize`]).
    fn granted_statvfs(&self, mount_point: &str) -> Result<rustix::fs::StatVfs, String> {
        if !self.filesystem_usage {
            return Err("file system usage is not granted to this module \
                        (sandbox { allow_filesystem_usage = yes })"
                .to_string());
        }
        if mount_point.len() > MAX_MOUNT_POINT_BYTES {
            return Err(format!(
                "mount point longer than {MAX_MOUNT_POINT_BYTES} bytes"
            ));
        }
        let path = normalize(mount_point);
        let mounts = std::fs::read_to_string(MOUNTS)
            .map_err(|error| format!("cannot read {MOUNTS}: {error}"))?;
        check_local_mount_point(&mounts, &path)?;
        rustix::fs::statvfs(path.as_str()).map_err(|error| format!("statvfs {path}: {error}"))
    }
}

/// The path the kernel would resolve `path` to before following links: repeated
/// slashes and `.` components dropped, no trailing slash (`//dev/shm/` is
/// `/dev/shm`). `..` is kept, so such a path matches no mount point.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if path.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

/// Accepts `path` if `mounts` (in `/proc/mounts` format) lists it as the mount
/// point of a local file system.
fn check_local_mount_point(mounts: &str, path: &str) -> Result<(), String> {
    let entry = mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (device, point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (unescape_octal(point) == path).then_some((device, fs_type))
    });
    match entry {
        None => Err(format!("{path} is not a mount point")),
        Some((device, fs_type)) if is_network(device, fs_type) => Err(format!(
            "{path} is a network file system ({fs_type}); only local ones are answered"
        )),
        Some(_) => Ok(()),
    }
}

/// Network file systems, whose statvfs may hang (gmond skips the same ones).
fn is_network(device: &str, fs_type: &str) -> bool {
    const NETWORK_TYPES: [&str; 10] = [
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
        "ceph",
        "glusterfs",
        "9p",
        "afs",
        "fuse.sshfs",
    ];
    device.contains(':') || device.starts_with("//") || NETWORK_TYPES.contains(&fs_type)
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match digits {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
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

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
/dev/vdb /mnt/my\\040data xfs rw 0 0
server:/export /home nfs4 rw 0 0
//nas/share /srv/share cifs rw 0 0
";

    #[test]
    fn answers_local_mount_points_only() {
        assert_eq!(check_local_mount_point(MOUNTS, "/"), Ok(()));
        assert_eq!(check_local_mount_point(MOUNTS, "/mnt/my data"), Ok(()));
        assert_eq!(check_local_mount_point(MOUNTS, "/proc"), Ok(()));
        let not_mounted = check_local_mount_point(MOUNTS, "/etc").unwrap_err();
        assert_eq!(not_mounted, "/etc is not a mount point");
        assert!(
            check_local_mount_point(MOUNTS, "/home")
                .unwrap_err()
                .contains("network file system (nfs4)")
        );
        assert!(
            check_local_mount_point(MOUNTS, "/srv/share")
                .unwrap_err()
                .contains("network")
        );
    }

    #[test]
    fn reads_the_root_file_system_by_any_spelling() {
        let grants = super::super::Grants {
            filesystem_usage: true,
            ..Default::default()
        };
        let mut state = HostState::new("t".into(), &Default::default(), &grants).unwrap();
        let usage = state.statvfs("//".into()).unwrap();
        assert!(usage.blocks > 0 && usage.block_size > 0);
        assert!(usage.blocks_available <= usage.blocks_free && usage.blocks_free <= usage.blocks);
        let inodes = state.inodes("/".into()).unwrap();
        assert!(inodes.files_available <= inodes.files_free && inodes.files_free <= inodes.files);
        state.filesystem_usage = false;
        assert!(
            state
                .inodes("/".into())
                .unwrap_err()
                .contains("not granted")
        );
    }

    #[test]
    fn paths_are_normalized_as_the_kernel_reads_them() {
        assert_eq!(normalize("//dev/shm"), "/dev/shm");
        assert_eq!(normalize("/dev/shm/"), "/dev/shm");
        assert_eq!(normalize("/./dev//shm"), "/dev/shm");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("///"), "/");
        assert_eq!(normalize("/proc/../etc"), "/proc/../etc");
    }
}
