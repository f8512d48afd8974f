//! What the daemon process itself may do: gmond's `setuid`/`user`, then Landlock.
//!
//! As gmond does (`become_a_nobody`): with `globals { setuid = yes user = NAME }` the
//! daemon opens what needs privilege first (its sockets, with buffer sizes only root may
//! force), then calls `setgroups` (NAME's groups), `setgid` and `setuid`; a user that
//! does not exist is a clear error before anything starts, and so is `setuid = yes`
//! without root for another user (gmond: "Must be root to setuid"). Its compile cache
//! then lives under NAME's home (`~NAME/.cache/wasmond`), created for NAME.
//!
//! Before any thread starts (so every thread inherits it), the process restricts its
//! own file system access with Landlock ([`restrict`]) to:
//! - read: the directories of every configuration file read (so a reload finds new
//!   files beside them) and of every tenant's `files` (a tenant's first file may come
//!   on a reload), every module's `.wasm` directory and the module directories,
//!   every directory a module is granted (`allow_read`), and the few files the
//!   resolver reads for host names (`/etc/hosts`, `/etc/resolv.conf`, ...) plus
//!   `/proc/sys/kernel/hostname`;
//! - read and write: the compile cache;
//! - read and execute: the daemon's own program file and the shared libraries it runs
//!   with (and `/etc/ld.so.cache`), so that it can start the child processes it compiles
//!   modules in (`runtime::compiler`), which restrict themselves further to no file at all;
//! - nothing else, anywhere: a sandbox escape finds a process that cannot read
//!   `/etc/shadow` or write outside its cache. A file outside the set (an include added
//!   on reload) fails with "permission denied".
//!
//! A kernel without Landlock gets a logged warning, not a failure. Privilege-less
//! operations (sockets, `statvfs`) are not file accesses and are not restricted.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};

use crate::config::{Loaded, ModuleSource};

/// The Landlock ABI whose file system rights are handled (Linux 6.10+ knows them all;
/// an older kernel enforces what it knows).
const LANDLOCK_ABI: ABI = ABI::V5;

/// Files the C library's resolver reads to name hosts (reverse DNS of senders).
const RESOLVER_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/proc/sys/kernel/hostname",
];

/// A user to switch to, resolved while `/etc/passwd` can still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Its supplementary groups (`initgroups`).
    pub groups: Vec<libc::gid_t>,
    pub home: PathBuf,
}

/// What [`plan`] decided for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The user to become once the sockets are open; `None` to stay as started.
    pub switch_to: Option<User>,
    /// Where compiled modules are cached (owned by the user the daemon runs as).
    pub cache_dir: Option<PathBuf>,
}

/// Decides, from `globals { setuid user }`, which user the daemon becomes and where its
/// cache lives; fails as gmond does on a missing user or a switch it cannot make.
pub(crate) fn plan(loaded: &Loaded) -> anyhow::Result<Plan> {
    let globals = &loaded.config.globals;
    if !globals.setuid {
        return Ok(Plan {
            switch_to: None,
            cache_dir: crate::runtime::default_cache_dir(),
        });
    }
    let user = lookup_user(&globals.user)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == user.uid {
        return Ok(Plan {
            switch_to: None,
            cache_dir: crate::runtime::default_cache_dir(),
        });
    }
    if uid != 0 {
        bail!(
            "`setuid = yes` with `user = {}`: only root can switch to another user (running as uid {uid}); set `setuid = no` or start wasmond as root",
            user.name
        );
    }
    let cache_dir = Some(user.home.join(".cache").join("wasmond"));
    Ok(Plan {
        switch_to: Some(user),
        cache_dir,
    })
}

/// Looks `name` up in the user database, with its groups.
pub fn lookup_user(name: &str) -> anyhow::Result<User> {
    let c_name = CString::new(name).with_context(|| format!("user {name:?}"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is given.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc))
            .with_context(|| format!("looking up user {name:?}"));
    }
    if found.is_null() {
        bail!("user {name:?} (globals {{ user }}) does not exist; create it, or set `setuid = no`");
    }
    // SAFETY: getpwnam_r succeeded: pw_dir points to a C string in `buffer`.
    let home = unsafe { CStr::from_ptr(entry.pw_dir) };
    let home = PathBuf::from(home.to_string_lossy().into_owned());
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: the buffer holds `count` gids; getgrouplist updates `count`.
    let rc = unsafe {
        libc::getgrouplist(
            c_name.as_ptr(),
            entry.pw_gid,
            groups.as_mut_ptr(),
            &mut count,
        )
    };
    if rc < 0 {
        bail!("user {name:?} is in more than {} groups", groups.len());
    }
    groups.truncate(count.max(0) as usize);
    Ok(User {
        name: name.to_owned(),
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        groups,
        home,
    })
}

/// Creates the compile cache for the user the daemon will run as, so that it exists
/// (Landlock rules name existing paths) and belongs to that user.
pub(crate) fn prepare_cache(plan: &Plan) -> io::Result<()> {
    let Some(dir) = &plan.cache_dir else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut at = dir.as_path();
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    for created in missing.iter().rev() {
        std::fs::DirBuilder::new().mode(0o700).create(created)?;
        if let Some(user) = &plan.switch_to {
            std::os::unix::fs::chown(created, Some(user.uid), Some(user.gid))?;
        }
    }
    Ok(())
}

/// Restricts the calling thread (and every thread it starts from now on) to what the
/// daemon needs for `loaded` (see the module docs). Call it before any other thread
/// exists. Returns how far the kernel enforces it; without Landlock, logs a warning.
pub(crate) fn restrict(
    loaded: &Loaded,
    module_dirs: &[PathBuf],
    plan: &Plan,
) -> anyhow::Result<RulesetStatus> {
    let read = readable_paths(loaded, module_dirs);
    let read_access = AccessFs::from_read(LANDLOCK_ABI);
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(path_beneath_rules(&read, read_access))?
        .add_rules(path_beneath_rules(
            plan.cache_dir.iter(),
            AccessFs::from_all(LANDLOCK_ABI),
        ))?
        .add_rules(path_beneath_rules(
            program_files(),
            AccessFs::Execute | AccessFs::ReadFile,
        ))?
        .restrict_self()
        .context("applying the Landlock ruleset")?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => tracing::info!(
            paths = read.len(),
            "Landlock: file access limited to configuration, modules, granted directories and the compile cache"
        ),
        RulesetStatus::PartiallyEnforced => tracing::warn!(
            "Landlock is only partly enforced by this kernel (an older ABI): file access is limited to what it knows"
        ),
        RulesetStatus::NotEnforced => tracing::warn!(
            "this kernel does not enforce Landlock: the daemon's file access is not restricted"
        ),
    }
    Ok(status.ruleset)
}

/// Every path the daemon reads (see the module docs), those that exist.
fn readable_paths(loaded: &Loaded, module_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let config = &loaded.config;
    // A tenant's directories even without a file yet: a file added there is read on
    // reload.
    let tenant_dirs: Vec<PathBuf> = config
        .tenants
        .iter()
        .flat_map(|t| t.directories())
        .collect();
    let config_dirs = loaded
        .files
        .iter()
        .filter_map(|file| file.parent())
        .chain(tenant_dirs.iter().map(PathBuf::as_path));
    let module_dirs = config
        .modules
        .iter()
        .flat_map(|module| match &module.source {
            ModuleSource::Wasm { path } => vec![path.parent()],
            ModuleSource::Python {
                source,
                interpreter,
            } => vec![source.parent(), interpreter.parent()],
            ModuleSource::Native { .. } | ModuleSource::DisabledMissing { .. } => vec![],
        })
        .flatten()
        .chain(config.globals.module_dir.as_deref())
        .chain(module_dirs.iter().map(PathBuf::as_path));
    let granted = config
        .modules
        .iter()
        .flat_map(|module| module.sandbox.allow_read.iter().map(PathBuf::as_path));
    let mut paths: Vec<PathBuf> = config_dirs
        .chain(module_dirs)
        .chain(granted)
        .chain(RESOLVER_FILES.iter().map(Path::new))
        .filter(|path| path.exists())
        .map(Path::to_path_buf)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The files a new process of this program needs: the program itself and what the
/// dynamic loader maps into it (read from this process's own executable mappings), and
/// the loader's cache.
fn program_files() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut files: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let executable = fields.nth(1).is_some_and(|perms| perms.contains('x'));
            let path = fields.nth(3)?;
            (executable && path.starts_with('/')).then(|| PathBuf::from(path))
        })
        .chain(std::env::current_exe().ok())
        .chain(Some(PathBuf::from("/etc/ld.so.cache")))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Becomes `user`: supplementary groups, group, then user, as gmond does; checks that
/// there is no way back to root.
pub(crate) fn switch_user(user: &User) -> anyhow::Result<()> {
    let fail = |what: &str| {
        let error = io::Error::last_os_error();
        anyhow::anyhow!("switching to user {}: {what}: {error}", user.name)
    };
    // SAFETY: plain system calls on valid buffers. glibc applies set*id to every thread.
    unsafe {
        if libc::setgroups(user.groups.len(), user.groups.as_ptr()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(user.gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(user.uid) != 0 {
            return Err(fail("setuid"));
        }
        if libc::setuid(0) == 0 {
            bail!("switching to user {}: root could be regained", user.name);
        }
    }
    tracing::info!(user = %user.name, uid = user.uid, gid = user.gid, "running as user {}", user.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_user_is_a_clear_error() {
        let error = lookup_user("no-such-user-wasmond").unwrap_err();
        assert!(
            format!("{error:#}")
                .contains("\"no-such-user-wasmond\" (globals { user }) does not exist"),
            "{error:#}"
        );
    }

    #[test]
    fn a_tenants_directory_is_readable_before_it_holds_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let acme = dir.path().join("tenants").join("acme");
        std::fs::create_dir_all(&acme).unwrap();
        let conf = dir.path().join("gmond.conf");
        let text = format!(
            "tenant {{ name = \"acme\" files = (\"{}/*.pyconf\") }}\n",
            acme.display()
        );
        std::fs::write(&conf, text).unwrap();
        let loaded = crate::config::load(&conf).unwrap();
        let paths = readable_paths(&loaded, &[]);
        assert!(paths.contains(&acme), "{paths:?}");
    }

    #[test]
    fn the_program_and_its_libraries_may_be_executed() {
        let files = program_files();
        let exe = std::env::current_exe().unwrap();
        assert!(files.contains(&exe), "{files:?}");
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("libc.so")),
            "{files:?}"
        );
    }

    #[test]
    fn root_is_found_with_its_groups() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
    }
}
