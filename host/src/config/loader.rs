//! Reading files and expanding `include ("dir/*.conf")`, as gmond's
//! `Ganglia_cfg_include` does: a pattern with `*`, `?` or `[` is globbed (dot
//! files excluded, matches sorted by name where gmond takes readdir order), a
//! plain path must exist. Relative paths are taken from the including file's
//! directory (gmond takes them from its working directory, which made them
//! useless). File access goes through `FileSource` so that tests and the fuzz
//! target run without touching the disk.

use std::io;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, Location};
use super::fields::Diagnostics;
use super::raw::{Item, Scalar, parse_partial};

/// How the loader reaches files.
pub trait FileSource {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The files matching a glob pattern, sorted by path.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    fn is_file(&self, path: &Path) -> bool;
    /// A name that is the same for two paths to the same file (for cycle detection).
    fn identity(&self, path: &Path) -> PathBuf;
}

/// The real file system.
pub struct RealFs;

impl FileSource for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..Default::default()
        };
        let paths = glob::glob_with(pattern, options).map_err(|e| e.to_string())?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
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
}

/// Deepest chain of includes followed; real configs use one level.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Most files read for one configuration: a file may be included more than once,
/// so without a cap a few files including each other twice would be read 2^16 times.
const MAX_FILES: usize = 1000;

/// The top-level items of the root file with every include spliced in place.
pub struct Expanded {
    pub items: Vec<Item>,
    /// Every file read, root first.
    pub files: Vec<PathBuf>,
    /// Whether any file had a syntax error (the typed config is then not built,
    /// since broken statements would cause misleading follow-up errors).
    pub syntax_errors: bool,
}

struct Expander<'a> {
    fs: &'a dyn FileSource,
    files: Vec<PathBuf>,
    /// Identities of the files being read, outermost first.
    stack: Vec<PathBuf>,
    syntax_errors: bool,
    /// Whether `MAX_FILES` was reached.
    capped: bool,
}

/// Reads `root` and everything it includes.
pub fn expand(root: &Path, fs: &dyn FileSource, diag: &mut Diagnostics) -> Expanded {
    let mut expander = Expander {
        fs,
        files: Vec::new(),
        stack: Vec::new(),
        syntax_errors: false,
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
pub fn origin_of(path: &Path) -> String {
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
        if self.files.len() >= MAX_FILES {
            // Said once: the includes past the cap are not read at all.
            if !std::mem::replace(&mut self.capped, true) {
                let message = format!(
                    "more than {MAX_FILES} files included; not reading `{origin}` nor any later include"
                );
                diag.error(&at, ErrorKind::Include(message));
            }
            return;
        }
        let src = match self.fs.read(path) {
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
