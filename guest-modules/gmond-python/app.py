"""wasmond's bundled Python interpreter: runs one gmond python module per instance.

Built once, in the repository's build, by componentize-py against the
``gmond-python`` world of ``wit/metric.wit``; every ``language = "python"``
module instantiates this same component. At ``init`` it asks the host for the
module's source (``python.module-source``), compiles it — the Python 3 text the host
kept for it, or else the source, translated from Python 2 first (:mod:`wasmond_py2`)
— runs it as the module ``NAME`` and exports it through the gmond helper
(:mod:`wasmond_gmond`), which calls ``metric_init``.

``translate`` makes that Python 3 text alone, and hands it to the host
(``python.keep-translation``): the host runs it first, in an instance it then drops,
so that the memory translation takes is not held by the instance that runs the
module (WebAssembly memory never shrinks).

Errors name the ``.py`` file and line: a syntax error, what the Python 2 fixers
could not translate (logged as warnings), and an exception while importing the
module or in ``metric_init`` (its innermost traceback frames).

Everything imported here is imported when componentize-py builds the component and
is kept in its memory snapshot: the fissix grammar and fixers, and the standard
library modules gmond modules import lazily (see :data:`STDLIB`). Last, the heap is
settled (:mod:`wasmond_snapshot`) so that each module's instance touches as little
of that snapshot as it can.
"""

import importlib
import logging
import sys
import types as pytypes

from componentize_py_types import Err
from wit_world.imports import python as host_python

import wasmond_gmond
import wasmond_py2
import wasmond_sandbox
import wasmond_snapshot

# Standard library modules imported now, at build time: at run time the component
# has no file system to import from, so a module imported lazily (inside a
# function) must already be loaded. This is the pure-Python standard library that
# WASI's CPython can run, less what a sandboxed metric module cannot use (GUIs,
# servers, package tools, test suites).
STDLIB = """
abc argparse array ast base64 binascii bisect bz2 calendar cmath codecs collections
collections.abc colorsys configparser contextlib copy copyreg csv dataclasses datetime
decimal difflib email email.parser email.utils enum errno fnmatch fractions functools
gc getopt gettext glob gzip hashlib heapq hmac html html.parser http http.client
inspect io ipaddress itertools json json.decoder json.encoder keyword linecache locale
logging logging.config logging.handlers lzma math mimetypes numbers operator optparse os
os.path pathlib pickle platform pprint queue quopri random re reprlib sched secrets
select selectors shlex shutil signal socket stat statistics string stringprep struct
subprocess sys tempfile textwrap threading time timeit token tokenize traceback types
typing unicodedata urllib urllib.error urllib.parse urllib.request uu uuid warnings
weakref xml xml.dom xml.dom.minidom xml.etree xml.etree.ElementTree zipfile zlib
""".split()

for _name in STDLIB:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass  # not built into WASI's CPython: it fails the same way natively

wasmond_sandbox.install()
_root = logging.getLogger()
_root.addHandler(wasmond_gmond.HostLogHandler())
_root.setLevel(logging.INFO)

_state = None


def _compile(source):
    """The module's code object, from the Python 3 text the host kept for its source,
    or else from the source (translated from Python 2 if need be)."""
    if source.translated is not None:
        translated = source.translated != source.text
        return _compile_checked(source.translated, source, translated)
    return _python3(source)[1]


def _python3(source):
    """The source's Python 3 text and its code object: the text itself when it
    compiles as Python 3, else its translation from Python 2 (what the fixers could
    not translate is logged)."""
    try:
        return source.text, compile(source.text, source.path, "exec", dont_inherit=True)
    except SyntaxError as python3_error:
        first = python3_error
    try:
        translated, warnings = wasmond_py2.translate(source.text, source.name)
    except wasmond_py2.TranslationError as error:
        raise Err(f"{source.path}:{first.lineno}: {first.msg} (as Python 3); "
                  f"as Python 2, line {error.line}: {error.reason}") from None
    log = logging.getLogger(source.name)
    for line, reason in warnings:
        log.warning("%s:%d: not translated from Python 2: %s", source.path, line, reason)
    return translated, _compile_checked(translated, source, translated=True)


def _compile_checked(text, source, translated):
    try:
        return compile(text, source.path, "exec", dont_inherit=True)
    except SyntaxError as error:
        how = " (after translation from Python 2)" if translated else ""
        raise Err(f"{source.path}:{error.lineno}:{error.offset}: {error.msg}{how}") from None


def _load(source):
    code = _compile(source)
    module = pytypes.ModuleType(source.name)
    module.__file__ = source.path
    # What translated Python 2 calls (`file`, the ordering helpers); harmless in
    # Python 3 source, which may define its own `file`.
    for name, value in wasmond_py2.BUILTINS.items():
        module.__dict__.setdefault(name, value)
    sys.modules[source.name] = module
    try:
        exec(code, module.__dict__)
    except Exception as error:  # noqa: BLE001 - an import failure is the module's error
        raise Err(f"importing {source.path} failed: {wasmond_gmond.describe(error)}") from None
    return module


class WitWorld:
    def init(self, params):
        global _state
        try:
            module = _load(host_python.module_source())
        except Err:
            raise
        except Exception as error:  # noqa: BLE001 - never trap: say what went wrong
            raise Err(f"loading the module failed: {wasmond_gmond.describe(error)}") from None
        _state = wasmond_gmond.GmondModule(module)
        return _state.init(params)

    def translate(self):
        try:
            text, _ = _python3(host_python.module_source())
        except Err:
            raise
        except Exception as error:  # noqa: BLE001 - never trap: say what went wrong
            raise Err(f"translating the module failed: {wasmond_gmond.describe(error)}") from None
        host_python.keep_translation(text)

    def handler(self, name):
        if _state is None:
            raise Err("the module is not initialized")
        return _state.handler(name)

    def handle_each(self, metrics):
        # Uninitialized, it answers nothing: the host counts each metric unanswered.
        if _state is not None:
            _state.handle_each(metrics)

    def cleanup(self):
        if _state is not None:
            _state.cleanup()


# Last, once everything is imported and defined: componentize-py snapshots the
# interpreter's memory right after this module's import.
wasmond_snapshot.settle()
