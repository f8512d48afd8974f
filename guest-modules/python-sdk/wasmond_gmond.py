"""Run a module written for gmond's python host under wasmond.

A gmond python module defines ``metric_init(params)``, which returns a list of
descriptor dicts (``name``, ``call_back``, ``value_type``, ``units``, ``slope``,
``format``, ``time_max``, ``description``, ``groups``, and any extra keys), and
optionally ``metric_cleanup()``. This helper turns such a module into the
``metric-module`` world of wasmond's WIT contract, so the module itself needs no
edit: a three-line entry file exports it::

    import diskstats
    from wasmond_gmond import export
    WitWorld = export(diskstats)

and ``componentize-py -d wit -w metric-module-each componentize app -p . -p <this dir>``
builds the component (world ``metric-module-each``: the host asks for a collection
group's metrics in one ``handle-each`` call; built for ``metric-module``, the module
gets one ``handler`` call per metric). What gmond does, this does too: params arrive
as a dict of strings (the last ``param`` block of a name wins), ``groups`` may be a
comma-separated string, unknown descriptor keys become extra metadata, and a
call_back that raises or returns None yields no value (an error for that metric,
logged by the host). Records from the ``logging`` module go to the host's log,
attributed to the module.
"""

import gc
import logging
import traceback

from componentize_py_types import Err, Ok
from wit_world.imports import log as host_log
from wit_world.imports import types

try:
    from wit_world.imports import collect as host_collect
except ImportError:  # built for world metric-module: no handle-each
    host_collect = None

# gmond's python host knows uint, int, float, double and string; the sized names
# are wasmond's (the WIT contract has every gmond wire type).
VALUE_TYPES = {
    "string": types.ValueType.STRING,
    "int8": types.ValueType.INT8,
    "uint8": types.ValueType.UINT8,
    "int16": types.ValueType.INT16,
    "short": types.ValueType.INT16,
    "uint16": types.ValueType.UINT16,
    "ushort": types.ValueType.UINT16,
    "int": types.ValueType.INT32,
    "int32": types.ValueType.INT32,
    "uint": types.ValueType.UINT32,
    "uint32": types.ValueType.UINT32,
    "float": types.ValueType.FLOAT,
    "double": types.ValueType.DOUBLE,
}

SLOPES = {
    "zero": types.Slope.ZERO,
    "positive": types.Slope.POSITIVE,
    "negative": types.Slope.NEGATIVE,
    "both": types.Slope.BOTH,
    "derivative": types.Slope.DERIVATIVE,
    "unspecified": types.Slope.UNSPECIFIED,
}

# The printf formats wasmond's Rust SDK uses when a descriptor names none.
DEFAULT_FORMATS = {
    types.ValueType.STRING: "%s",
    types.ValueType.INT8: "%d",
    types.ValueType.INT16: "%d",
    types.ValueType.INT32: "%d",
    types.ValueType.UINT8: "%u",
    types.ValueType.UINT16: "%u",
    types.ValueType.UINT32: "%u",
    types.ValueType.FLOAT: "%.3f",
    types.ValueType.DOUBLE: "%.3f",
}

# Descriptor keys with a field of their own; every other key is extra metadata.
KNOWN_KEYS = {"name", "call_back", "value_type", "units", "slope", "format",
              "time_max", "description", "groups"}

# (wrapper case, bits, signed) for the integer types: gmond stores a callback's
# number into a C integer of that width, so out-of-range values wrap like a C cast.
INTEGER_CASES = {
    types.ValueType.INT8: (types.MetricValue_Int8, 8, True),
    types.ValueType.UINT8: (types.MetricValue_Uint8, 8, False),
    types.ValueType.INT16: (types.MetricValue_Int16, 16, True),
    types.ValueType.UINT16: (types.MetricValue_Uint16, 16, False),
    types.ValueType.INT32: (types.MetricValue_Int32, 32, True),
    types.ValueType.UINT32: (types.MetricValue_Uint32, 32, False),
}

LOG_LEVELS = [
    (logging.ERROR, host_log.Level.ERROR),
    (logging.WARNING, host_log.Level.WARN),
    (logging.INFO, host_log.Level.INFO),
    (logging.DEBUG, host_log.Level.DEBUG),
]


# How many of a failure's innermost traceback frames an error message names.
TRACEBACK_FRAMES = 3


class DescriptorError(ValueError):
    """A descriptor dict that cannot be expressed in the WIT contract."""


def params_dict(pairs):
    """The ``param`` blocks as gmond hands them to ``metric_init``: a dict."""
    return {key: value for key, value in pairs}


def to_descriptor(entry):
    """Converts one gmond descriptor dict; raises DescriptorError when it is unusable."""
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise DescriptorError("a descriptor has no name")
    if not callable(entry.get("call_back")):
        raise DescriptorError(f"{name}: call_back is not callable")
    value_type = _lookup(VALUE_TYPES, entry.get("value_type", "uint"), name, "value_type")
    slope = _lookup(SLOPES, entry.get("slope", "both"), name, "slope")
    return types.MetricDescriptor(
        name=name,
        value_type=value_type,
        units=str(entry.get("units", "")),
        slope=slope,
        format=str(entry.get("format", DEFAULT_FORMATS[value_type])),
        time_max=_time_max(entry.get("time_max", 60), name),
        description=str(entry.get("description", "")),
        groups=_groups(entry.get("groups", "")),
        extra=[(str(key), str(value)) for key, value in entry.items() if key not in KNOWN_KEYS],
    )


def _lookup(table, key, name, field):
    try:
        return table[str(key).strip().lower()]
    except KeyError:
        raise DescriptorError(f"{name}: unknown {field} {key!r}") from None


def _time_max(value, name):
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise DescriptorError(f"{name}: time_max {value!r} is not a number") from None
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise DescriptorError(f"{name}: time_max {seconds} out of range")
    return seconds


def _groups(groups):
    """gmond splits ``"a, b"`` on commas and strips leading blanks; a list is taken as is."""
    if isinstance(groups, str):
        return [group.strip() for group in groups.split(",") if group.strip()]
    return [str(group) for group in groups]


def value_of(name, call_back, plain):
    """What ``call_back`` returns for metric ``name``, made a value of the metric's
    type by ``plain``, or ``Err`` saying what failed. ``handle_each`` does the same
    inline: it runs for every value."""
    try:
        value = call_back(name)
    except Exception as error:  # noqa: BLE001
        raise Err(call_back_failed(name, error)) from None
    if value is None:
        raise Err(no_value(name))
    try:
        return plain(value)
    except (TypeError, ValueError) as error:
        raise Err(not_a_value(name, value, error)) from None


def call_back_failed(name, error):
    return f"{name}: call_back failed: {describe(error)}"


def no_value(name):
    return f"{name}: call_back returned no value"


def not_a_value(name, value, error):
    return f"{name}: call_back returned {value!r}: {error}"


def plain_converter(value_type):
    """The function that makes a call_back's result a Python value of
    ``value_type`` (``str``, ``float``, or an ``int`` wrapped like a C cast), chosen
    once per metric: it runs for every value."""
    if value_type == types.ValueType.STRING:
        return str
    if value_type in (types.ValueType.FLOAT, types.ValueType.DOUBLE):
        return float
    _, bits, signed = INTEGER_CASES[value_type]
    mask = (1 << bits) - 1
    if not signed:
        return lambda value: int(value) & mask
    # The low bits, read as two's complement.
    sign = 1 << (bits - 1)
    return lambda value: ((int(value) & mask) ^ sign) - sign


def plain_answer(value_type):
    """The ``collect`` import that answers a plain value of ``value_type`` (none in a
    module built for world ``metric-module``, which has no ``handle-each``)."""
    if host_collect is None:
        return None
    if value_type == types.ValueType.STRING:
        return host_collect.answer_text
    return host_collect.answer_number


def case_of(value_type):
    """The WIT case of ``value_type``'s values."""
    if value_type == types.ValueType.STRING:
        return types.MetricValue_String
    if value_type == types.ValueType.FLOAT:
        return types.MetricValue_Float
    if value_type == types.ValueType.DOUBLE:
        return types.MetricValue_Double
    return INTEGER_CASES[value_type][0]


def describe(error):
    """``Type: message``, then where it happened: the innermost frames of its
    traceback (at most TRACEBACK_FRAMES), as ``file:line in function``."""
    frames = traceback.extract_tb(error.__traceback__)[-TRACEBACK_FRAMES:]
    text = f"{type(error).__name__}: {error}"
    if frames:
        where = " <- ".join(f"{frame.filename}:{frame.lineno} in {frame.name}"
                            for frame in reversed(frames))
        text += f" (at {where})"
    return text


class HostLogHandler(logging.Handler):
    """Sends ``logging`` records to the host's log (the host caps size and rate)."""

    def emit(self, record):
        try:
            host_log.log(host_level(record.levelno), self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break a collection
            self.handleError(record)


def host_level(levelno):
    for threshold, level in LOG_LEVELS:
        if levelno >= threshold:
            return level
    return host_log.Level.TRACE


class GmondModule:
    """The state of one exported gmond module: its callbacks and their value types."""

    def __init__(self, module):
        self.module = module
        #: By name, then by position (as ``handle-each`` asks): what makes each value.
        self.metrics = {}
        self.positions = []

    def init(self, pairs):
        try:
            entries = list(self.module.metric_init(params_dict(pairs)))
        except Exception as error:  # noqa: BLE001 - any failure of the module is its error
            raise Err(f"metric_init failed: {describe(error)}") from None
        descriptors = []
        self.metrics = {}
        self.positions = []
        for entry in entries:
            try:
                descriptor = to_descriptor(entry)
            except DescriptorError as error:
                raise Err(f"metric_init returned a bad descriptor: {error}") from None
            if descriptor.name in self.metrics:
                # gmond keeps the first metric of a name and carries on.
                logging.getLogger(__name__).warning(
                    "metric %s is declared twice: the first declaration is kept", descriptor.name)
                continue
            value_type = descriptor.value_type
            metric = (descriptor.name, entry["call_back"], plain_converter(value_type),
                      case_of(value_type), plain_answer(value_type))
            self.metrics[descriptor.name] = metric
            self.positions.append(metric)
            descriptors.append(descriptor)
        return descriptors

    def handler(self, name):
        metric = self.metrics.get(name)
        if metric is None:
            raise Err(f"unknown metric {name}")
        name, call_back, plain, case, _ = metric
        return case(value_of(name, call_back, plain))

    def handle_each(self, spans):
        """Answers each metric asked (spans of positions in what ``init`` returned),
        in order, with what :meth:`handler` returns for it, as a plain number or
        string (``collect.answer-number``, ``answer-text``: componentize-py makes
        those far more cheaply than a ``metric-value``). ``value_of`` is inlined:
        a Python call per value is a tenth of what the loop costs."""
        answer = host_collect.answer
        positions = self.positions
        for span in spans:
            for position in range(span.first, span.first + span.count):
                try:
                    name, call_back, plain, _, answer_plain = positions[position]
                except IndexError:
                    answer(position, Err(f"no metric at position {position}"))
                    continue
                try:
                    value = call_back(name)
                except Exception as error:  # noqa: BLE001
                    answer(position, Err(call_back_failed(name, error)))
                    continue
                if value is None:
                    answer(position, Err(no_value(name)))
                    continue
                try:
                    value = plain(value)
                except (TypeError, ValueError) as error:
                    answer(position, Err(not_a_value(name, value, error)))
                    continue
                answer_plain(position, value)

    def cleanup(self):
        cleanup = getattr(self.module, "metric_cleanup", None)
        if cleanup is None:
            return
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - cleanup has no way to report an error
            logging.getLogger(__name__).exception("metric_cleanup failed")


def export(module):
    """Returns the ``WitWorld`` class componentize-py exports for a gmond module.

    componentize-py may build a fresh ``WitWorld`` per call, so the state lives in
    one ``GmondModule`` shared by every instance of the class.
    """
    root = logging.getLogger()
    if not any(isinstance(handler, HostLogHandler) for handler in root.handlers):
        root.addHandler(HostLogHandler())
    state = GmondModule(module)

    class WitWorld:
        def init(self, params):
            return state.init(params)

        def handler(self, name):
            return state.handler(name)

        def cleanup(self):
            state.cleanup()

    if host_collect is not None:
        WitWorld.handle_each = lambda self, metrics: state.handle_each(metrics)
    # componentize-py snapshots the interpreter once the entry file is imported, and
    # everything made by then (the standard library, the module, its imports) lives
    # as long as the instance. Frozen, the cyclic collector never walks it again: a
    # collection otherwise touches every object of the snapshot (a millisecond of CPU,
    # and a private copy of every page it writes a GC header on).
    gc.freeze()
    return WitWorld
