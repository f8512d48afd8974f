//! Reading files and expanding `include ("dir/*.conf")`, as gmond's
//! `Ganglia_cfg_include` does: a pattern with `*`, `?` or `[` is globbed (dot
//! files excluded, matches sorted by name where gmond takes readdir order), a
//! plain path must exist. Relative paths are taken from the including file's
//! directory (gmond takes them from its working directory, which made them
//! useless). File access goes through `FileSource` so that tests and the fuzz
//! target run without touching the disk.
//!
//! Only regular files are read, and never with a blocking open: an include of a
//! FIFO, a device (`/dev/zero`) or a directory is an error at the include. Each file
//! is capped at [`MAX_FILE_BYTES`], all files together at [`MAX_TOTAL_BYTES`] and
//! [`MAX_FILES`]; a count or total cap skips the include that crosses it (a warning
//! at that include) and the rest of the configuration is used.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, Location};
use super::fields::Diagnostics;
use super::raw::{Item, Scalar, parse_partial};

/// How the loader reaches files.
pub trait FileSource {
    /// The text of a regular file of at most `max_bytes` bytes; anything else (a FIFO,
    /// a device, a directory, a longer file) is an error, found without blocking.
    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<String>;
    /// The files matching a glob pattern, sorted by path.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    fn is_file(&self, path: &Path) -> bool;
    /// A name that is the same for two paths to the same file (for cycle detection).
    fn identity(&self, path: &Path) -> PathBuf;
    /// Who owns a file and who may write it, for the operator/tenant trust checks;
    /// `None` where the source has no owners (in-memory files).
    fn ownership(&self, _path: &Path) -> Option<Ownership> {
        None
    }
}

/// A file's owner and modes, its directory's mode, and the daemon's own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub mode: u32,
    pub dir_mode: u32,
    /// The effective user of the daemon reading the file.
    pub daemon_uid: u32,
}

/// The real file system.
pub struct RealFs;

impl FileSource for RealFs {
    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<String> {
        use std::io::Read;
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        // The type is then taken from the open file (fstat), not from the path, so a
        // file swapped between a check and the open cannot slip through.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        let kind = meta.file_type();
        let not = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}, not a regular file"),
            ))
        };
        if kind.is_dir() {
            return not("a directory");
        } else if kind.is_fifo() {
            return not("a FIFO");
        } else if kind.is_char_device() || kind.is_block_device() {
            return not("a device");
        } else if kind.is_socket() {
            return not("a socket");
        } else if !kind.is_file() {
            return not("not a plain file");
        }
        if meta.len() > max_bytes {
            return Err(too_long(max_bytes));
        }
        // A regular file may still grow while it is read: read one byte past the cap.
        let mut src = String::new();
        file.take(max_bytes + 1).read_to_string(&mut src)?;
        if src.len() as u64 > max_bytes {
            return Err(too_long(max_bytes));
        }
        Ok(src)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..Default::default()
        };
        let paths = glob::glob_with(pattern, options).map_err(|e| e.to_string())?;
        // Not only regular files: a FIFO or device matched is refused when it is read,
        // with an error, rather than passed over in silence.
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| !p.is_dir())
            .collect();
        files.sort();
        Ok(files)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    fn ownership(&self, path: &Path) -> Option<Ownership> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::metadata(path).ok()?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = std::fs::metadata(dir.unwrap_or(Path::new("."))).ok()?;
        // The owner of /proc/self is the process's effective user.
        let daemon_uid = std::fs::metadata("/proc/self").ok()?.uid();
        Some(Ownership {
            uid: file.uid(),
            mode: file.mode(),
            dir_mode: dir.mode(),
            daemon_uid,
        })
    }
}

/// The error for a file longer than `max_bytes`.
pub(crate) fn too_long(max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("longer than {max_bytes} bytes, the most read of one configuration file"),
    )
}

/// Deepest chain of includes followed; real configs use one level.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Most files read for one configuration, at gmond's scale (it reads 10 000 includes).
/// A file may be included more than once, so without a cap a few files including each
/// other twice would be read 2^16 times.
pub(crate) const MAX_FILES: usize = 10_000;

/// Longest configuration file read: a stock gmond.conf is ~10 KB, a generated
/// `.pyconf` with thousands of metrics well under 1 MB.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;

/// Most bytes read for one configuration, all files together.
pub(crate) const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// The top-level items of the root file with every include spliced in place.
pub(crate) struct Expanded {
    pub items: Vec<Item>,
    /// Every file read, root first.
    pub files: Vec<PathBuf>,
    /// Whether any file had a syntax error (the typed config is then not built,
    /// since broken statements would cause misleading follow-up errors).
    pub syntax_errors: bool,
}

struct Expander<'a> {
    fs: &'a dyn FileSource,
    /// Identities of files not to read (tenants' files matched by an operator include).
    skip: &'a HashSet<PathBuf>,
    files: Vec<PathBuf>,
    /// Identities of the files being read, outermost first.
    stack: Vec<PathBuf>,
    syntax_errors: bool,
    /// Bytes read so far, all files together.
    bytes: u64,
    /// Whether a cap on all files together was reached.
    capped: bool,
}

/// Reads `root` and everything it includes, except the files whose identity is in `skip`.
pub(crate) fn expand(
    root: &Path,
    fs: &dyn FileSource,
    skip: &HashSet<PathBuf>,
    diag: &mut Diagnostics,
) -> Expanded {
    let mut expander = Expander {
        fs,
        skip,
        files: Vec::new(),
        stack: Vec::new(),
        syntax_errors: false,
        bytes: 0,
        capped: false,
    };
    let mut items = Vec::new();
    expander.file(root, None, &mut items, diag);
    Expanded {
        items,
        files: expander.files,
        syntax_errors: expander.syntax_errors,
    }
}

/// The name a file gets in locations: its path as given.
pub(crate) fn origin_of(path: &Path) -> String {
    path.display().to_string()
}

impl Expander<'_> {
    /// Reads one file into `out`. `included_at` is the `include` that named it.
    fn file(
        &mut self,
        path: &Path,
        included_at: Option<&Location>,
        out: &mut Vec<Item>,
        diag: &mut Diagnostics,
    ) {
        let origin = origin_of(path);
        let at = included_at
            .cloned()
            .unwrap_or_else(|| Location::whole_file(&origin));
        let identity = self.fs.identity(path);
        if self.skip.contains(&identity) {
            return;
        }
        if self.stack.contains(&identity) {
            let cycle: Vec<String> = self
                .stack
                .iter()
                .chain([&identity])
                .map(|p| p.display().to_string())
                .collect();
            return diag.error(
                &at,
                ErrorKind::Include(format!("include cycle: {}", cycle.join(" -> "))),
            );
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            let message =
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files at `{origin}`");
            return diag.error(&at, ErrorKind::Include(message));
        }
        if self.capped || self.files.len() >= MAX_FILES {
            return self.cap_reached(&at, &format!("{MAX_FILES} files"), &origin, diag);
        }
        let src = match self.fs.read(path, MAX_FILE_BYTES) {
            Ok(src) => src,
            Err(e) => {
                return diag.error(
                    &at,
                    ErrorKind::Read {
                        path: origin,
                        reason: e.to_string(),
                    },
                );
            }
        };
        if self.bytes + src.len() as u64 > MAX_TOTAL_BYTES {
            return self.cap_reached(&at, &format!("{MAX_TOTAL_BYTES} bytes"), &origin, diag);
        }
        self.bytes += src.len() as u64;
        self.files.push(path.to_path_buf());
        let (tree, mut errors) = parse_partial(&src, &origin);
        self.syntax_errors |= !errors.is_empty();
        diag.errors.append(&mut errors);
        self.stack.push(identity);
        for item in tree.items {
            self.top_level_item(path, item, out, diag);
        }
        self.stack.pop();
    }

    /// A cap on all files together is reached at `origin`: that file and every later
    /// include are not read. Not an error of the whole configuration: what was read is
    /// used, and the include that crossed the cap is named, once.
    fn cap_reached(&mut self, at: &Location, cap: &str, origin: &str, diag: &mut Diagnostics) {
        if !std::mem::replace(&mut self.capped, true) {
            let message = format!(
                "not reading `{origin}` nor any later include: the configuration reached {cap}, the most wasmond reads"
            );
            diag.warn(at, message);
        }
    }

    fn top_level_item(
        &mut self,
        path: &Path,
        item: Item,
        out: &mut Vec<Item>,
        diag: &mut Diagnostics,
    ) {
        match item {
            Item::Call { name, args } if name.text.eq_ignore_ascii_case("include") => {
                self.include(path, &name, &args, out, diag);
            }
            Item::Call { name, .. } => {
                diag.invalid(
                    &name.at,
                    format!(
                        "unknown function `{}`: gmond knows only `include`",
                        name.text
                    ),
                );
            }
            other => out.push(other),
        }
    }

    fn include(
        &mut self,
        including: &Path,
        name: &Scalar,
        args: &[Scalar],
        out: &mut Vec<Item>,
        diag: &mut Diagnostics,
    ) {
        let [arg] = args else {
            let kind = ErrorKind::Syntax {
                expected: "one path in `include (\"...\")`".into(),
                found: format!("{} arguments", args.len()),
            };
            return diag.error(&name.at, kind);
        };
        let base = including.parent().unwrap_or(Path::new(""));
        let target = base.join(&arg.text);
        if !has_wildcard(&arg.text) {
            return self.file(&target, Some(&arg.at), out, diag);
        }
        match self.fs.glob(&target.to_string_lossy()) {
            Ok(matches) if matches.is_empty() => {
                diag.warn(
                    &arg.at,
                    format!("`include` pattern `{}` matches no files", target.display()),
                );
            }
            Ok(matches) => {
                for file in matches {
                    self.file(&file, Some(&arg.at), out, diag);
                }
            }
            Err(e) => {
                diag.error(
                    &arg.at,
                    ErrorKind::Include(format!("bad `include` pattern `{}`: {e}", arg.text)),
                );
            }
        }
    }
}

/// gmond's `has_wildcard`: `*`, `?`, or a `[...]` class.
fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?']) || (pattern.contains('[') && pattern.contains(']'))
}
