"""What a gmond python module expects of its interpreter, made true in the sandbox.

CPython built for WASI answers some questions about the machine from inside the
sandbox, and wrongly for a metric module: its page is WebAssembly's 64 KiB, it sees
one CPU, and it has no ``os.statvfs``. :func:`install` replaces those with the
host's answers (the ``python`` and ``filesystem`` imports of ``wit/metric.wit``):

- ``os.sysconf`` (and ``os.sysconf_names``) for the page size, clock ticks and CPU
  counts; ``os.cpu_count``, ``multiprocessing.cpu_count`` and
  ``resource.getpagesize`` alike;
- ``os.statvfs`` from the granted ``filesystem`` import, with inode counts; it
  answers for the mount points of local file systems (``allow_filesystem_usage``);
- ``logging``: records of every logger reach the host's log through the root
  handler, and a handler that would write a file (``basicConfig(filename=...)``,
  ``FileHandler``, the rotating ones) writes to the host's log instead;
- threads: a module cannot start one (WASI has none); ``Thread.start`` raises an
  error that says so, which fails the module's ``metric_init`` with that message;
- denials are visible: an ``open``, ``os.listdir`` or ``os.scandir`` of a path outside
  the module's grants (with the grant that would allow it), a subprocess, a socket, a
  name lookup and a thread are reported to the host (``python.refused``, once each),
  which logs them and has ``wasmond check`` and ``wasmond module run`` list them as
  errors, so a module that catches ``IOError`` and serves a fallback does not hide a
  missing grant.
"""

import builtins
import io
import logging
import logging.handlers
import os
import threading

from wit_world.imports import filesystem as host_filesystem
from wit_world.imports import python as host_python

import wasmond_gmond

# The sysconf names gmond modules ask about, with Linux's numbers.
SYSCONF_NAMES = {
    "SC_CLK_TCK": 2,
    "SC_PAGESIZE": 30,
    "SC_PAGE_SIZE": 30,
    "SC_NPROCESSORS_CONF": 83,
    "SC_NPROCESSORS_ONLN": 84,
}

_wasi_sysconf = getattr(os, "sysconf", None)


def _facts():
    return host_python.facts()


def sysconf(name):
    """``os.sysconf`` with the host's page size, clock ticks and CPU count."""
    number = SYSCONF_NAMES.get(name, name) if isinstance(name, str) else name
    facts = _facts()
    if number == 30:
        return facts.page_size
    if number == 2:
        return facts.clock_ticks
    if number in (83, 84):
        return facts.cpu_count
    if _wasi_sysconf is None:
        raise ValueError(f"unrecognized configuration name {name!r}")
    return _wasi_sysconf(name)


def cpu_count():
    return _facts().cpu_count


class StatvfsResult(tuple):
    """``os.statvfs_result``: a tuple of the ten fields, and the ``f_*`` attributes."""

    FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
              "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")

    def __new__(cls, values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        try:
            return self[self.FIELDS.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    @property
    def f_fsid(self):
        return 0


def statvfs(path):
    """``os.statvfs`` of a mount point, answered by the host (``allow_filesystem_usage``)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = path.decode()
    try:
        usage = host_filesystem.statvfs(path)
        inodes = host_filesystem.inodes(path)
    except Exception as error:  # noqa: BLE001 - the import's err(message)
        message = getattr(error, "value", str(error))
        raise OSError(f"statvfs {path}: {message}") from None
    return StatvfsResult((usage.block_size, usage.fragment_size, usage.blocks,
                          usage.blocks_free, usage.blocks_available, inodes.files,
                          inodes.files_free, inodes.files_available, 0, 255))


class HostFileHandler(wasmond_gmond.HostLogHandler):
    """Stands in for a handler that writes a file: the records go to the host's log."""

    def __init__(self, filename=None, *args, **kwargs):
        super().__init__()
        self.baseFilename = os.fspath(filename) if filename is not None else ""



class ThreadsUnavailable(RuntimeError):
    pass


def _refuse_thread(self, *args, **kwargs):
    refuse(f"thread {self.name!r}: wasmond runs python modules without threads")
    raise ThreadsUnavailable(
        f"thread {self.name!r} cannot start: wasmond runs python modules without "
        "threads (WASI has none); compute the values in the call_back instead")


# At most this many refused paths are reported per instance (and remembered).
MAX_REPORTED = 64

_granted = None
_reported = set()


def refuse(what):
    """Tells the host what the sandbox refused (it logs it and remembers it)."""
    host_python.refused(what)


def _granted_dirs():
    global _granted
    if _granted is None:
        _granted = [os.path.normpath(d) for d in host_python.readable_dirs()]
    return _granted


def grant_for(path):
    """The directory to grant for ``path``: /proc or /sys as a whole (their entries
    are symlinks into other parts of them), else the file's directory."""
    top = "/" + path.lstrip("/").split("/", 1)[0]
    if top in ("/proc", "/sys"):
        return top
    return os.path.dirname(path) or "/"


def report_refused(operation, path):
    """Logs, once per path, an access outside the grants, with the grant to add."""
    try:
        path = os.path.normpath(os.fsdecode(path))
    except TypeError:
        return  # a file descriptor, not a path
    if not path.startswith("/") or path in _reported or len(_reported) >= MAX_REPORTED:
        return
    if any(path == d or path.startswith(d.rstrip("/") + "/") for d in _granted_dirs()):
        return  # granted: the file is really missing
    _reported.add(path)
    refuse(f'{operation} {path}: not granted; allow it with sandbox {{ allow_read = ("{grant_for(path)}") }}')


def _watch(function, operation):
    def watched(path=".", *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except OSError:
            report_refused(operation, path)
            raise
    watched.__name__ = function.__name__
    watched.__doc__ = function.__doc__
    return watched


def _refuse_process(self, args, *rest, **kwargs):
    refuse(f"subprocess {args!r}: wasmond runs no processes")
    raise PermissionError(f"subprocess {args!r}: wasmond runs no processes (the sandbox has none)")


def install():
    """Applies every replacement above (once, at build time)."""
    os.sysconf = sysconf
    os.sysconf_names = dict(SYSCONF_NAMES)
    os.cpu_count = cpu_count
    os.statvfs = statvfs
    os.statvfs_result = StatvfsResult
    try:
        import resource
        resource.getpagesize = lambda: _facts().page_size
    except ImportError:
        pass
    try:
        import multiprocessing
        multiprocessing.cpu_count = cpu_count
    except ImportError:
        pass
    for name in ("FileHandler",):
        setattr(logging, name, HostFileHandler)
    for name in ("RotatingFileHandler", "TimedRotatingFileHandler", "WatchedFileHandler"):
        setattr(logging.handlers, name, HostFileHandler)
    threading.Thread.start = _refuse_thread
    watched_open = _watch(builtins.open, "open")
    builtins.open = watched_open
    io.open = watched_open
    os.listdir = _watch(os.listdir, "listdir")
    os.scandir = _watch(os.scandir, "scandir")
    try:
        import subprocess
        subprocess.Popen.__init__ = _refuse_process
    except ImportError:
        pass
    try:
        import socket
        socket.socket.__init__ = _refuse_socket
        socket.getaddrinfo = _refuse_lookup
        socket.gethostbyname = _refuse_lookup
    except (ImportError, AttributeError, TypeError):
        pass


def _refuse_socket(self, family=-1, type=-1, *args, **kwargs):
    # By name: WASI numbers them its own way (AF_INET is 1 there).
    family, type = (getattr(v, "name", v) for v in (family, type))
    refuse(f"socket ({family}, {type}): wasmond modules have no network")
    raise PermissionError("socket: wasmond modules have no network (the sandbox has none)")


def _refuse_lookup(host, *args, **kwargs):
    refuse(f"name lookup {host!r}: wasmond modules have no network")
    raise PermissionError(f"name lookup {host!r}: wasmond modules have no network")
