"""Python 2 to Python 3, at load time, inside the sandbox.

gmond's public python modules are Python 2. Source that does not compile as
Python 3 is translated with fissix (a maintained fork of lib2to3, from PyPI) and
every default fixer of ``2to3`` (print, ``except X, e``, ``iteritems``,
``has_key``, ``StandardError``, octal literals, ...), after indentation tabs are
expanded the way Python 2 read them (to the next multiple of 8 columns: Python 3
refuses a mix of tabs and spaces). What the fixers flag but cannot change comes
back as ``(line, reason)`` warnings.

One fixer of our own, :class:`FixOrdering`, keeps Python 2's ordering of values of
different types, which no 2to3 fixer can (it depends on the values at run time):
``a < b`` becomes ``_py2_lt(a, b)``, which compares as Python 3 does and, where
Python 3 raises TypeError, as Python 2 did (:data:`BUILTINS`). gmond's own
``netstats.py`` depends on it: it keeps a field when ``value >= 0``, ``value``
being the field's text, which Python 2 ordered after every number.

The grammar tables and the fixers are built when this module is imported, which
componentize-py does once at build time (the interpreter's memory is snapshot
after its imports), so a load only pays for the translation itself.
"""

import io
import tokenize

import fissix
from fissix.pgen2 import pgen

# fissix caches grammar tables as pickles in the user's cache directory; inside the
# sandbox there is none, and the tables are built once, at build time, anyway.
fissix.pgen2.driver.load_grammar = lambda gt="Grammar.txt", *args, **kwargs: pgen.generate_grammar(gt)

import operator  # noqa: E402

from fissix import fixer_base, refactor  # noqa: E402 - needs the patch above
from fissix.fixer_util import Call, Comma, Name  # noqa: E402
from fissix.pgen2.parse import ParseError  # noqa: E402

_ORDERINGS = {"<": "_py2_lt", "<=": "_py2_le", ">": "_py2_gt", ">=": "_py2_ge"}


def _python2_rank(value):
    """Where Python 2 put a value among values of other types: None first, then
    numbers, then everything else by the name of its type (then by identity)."""
    if value is None:
        return (0, "", 0)
    if isinstance(value, (int, float)):
        return (1, "", 0)
    return (2, type(value).__name__, id(value))


def _python2_ordering(compare):
    """``compare`` as Python 3 does it, and where that refuses values of two
    different types, as Python 2 did."""
    def ordered(a, b):
        try:
            return compare(a, b)
        except TypeError:
            if type(a) is type(b):
                raise  # the same type: what failed is inside (e.g. lists' items)
            return compare(_python2_rank(a), _python2_rank(b))

    return ordered


# What translated source needs in its namespace: the ordering helpers, and Python 2's
# builtin ``file``, which no fixer renames (it was ``open``).
BUILTINS = {
    "file": open,
    "_py2_lt": _python2_ordering(operator.lt),
    "_py2_le": _python2_ordering(operator.le),
    "_py2_gt": _python2_ordering(operator.gt),
    "_py2_ge": _python2_ordering(operator.ge),
}


class FixOrdering(fixer_base.BaseFix):
    """``a < b`` (``<=``, ``>``, ``>=``) to ``_py2_lt(a, b)`` and so on. Chains
    (``a < b < c``) are left alone: rewriting them would evaluate ``b`` twice."""

    PATTERN = "comparison< left=any op=('<' | '<=' | '>' | '>=') right=any >"

    def transform(self, node, results):
        left, right = results["left"].clone(), results["right"].clone()
        left.prefix = ""
        right.prefix = " "
        op = results["op"]
        op = op[0] if isinstance(op, list) else op  # an alternative matches as a list
        return Call(Name(_ORDERINGS[op.value]), [left, Comma(), right], prefix=node.prefix)


class _Tool(refactor.RefactoringTool):
    def get_fixers(self):
        pre_order, post_order = super().get_fixers()
        post_order.append(FixOrdering(self.options, self.fixer_log))
        return pre_order, post_order


# Every fixer 2to3 runs by default (the package's fixers but the explicit-only ones).
FIXERS = sorted(refactor.get_fixers_from_package("fissix.fixes"))
_TOOL = _Tool(FIXERS)


class TranslationError(Exception):
    """Source that is neither Python 3 nor Python 2 that fissix can read."""

    def __init__(self, line, reason):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def expand_indentation_tabs(text):
    """Expands tabs in indentation to Python 2's 8-column stops; lines that
    continue a multi-line string are left as they are (their tabs are data)."""
    inside_string = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                inside_string.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # the parser reports it with its line, after translation
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if number in inside_string or "\t" not in line:
            continue
        body = line.lstrip(" \t")
        indent = line[: len(line) - len(body)]
        lines[number - 1] = indent.expandtabs(8) + body
    return "".join(lines)


def translate(text, name):
    """Returns ``(python3_text, warnings)``; raises TranslationError when the text
    cannot be parsed as Python 2 either."""
    source = expand_indentation_tabs(text)
    if not source.endswith("\n"):
        source += "\n"
    del _TOOL.fixer_log[:]  # the fixers hold this very list
    try:
        tree = _TOOL.refactor_string(source, name)
    except ParseError as error:
        line = error.context[1][0] if error.context else 0
        raise TranslationError(line, f"cannot parse as Python 2 or 3 ({error.msg}: {error.value!r})") from None
    except Exception as error:  # noqa: BLE001 - fissix's own TokenError, IndentationError, ...
        raise TranslationError(_line_of(error), f"{type(error).__name__}: {error}") from None
    return str(tree), _warnings(_TOOL.fixer_log)


def _line_of(error):
    args = getattr(error, "args", ())
    if len(args) > 1 and isinstance(args[1], tuple) and args[1]:
        return args[1][0]
    return getattr(error, "lineno", 0) or 0


def _warnings(log):
    """fissix's fixers log ``"Line N: what"``, and a line-less reason after a
    ``could not convert``: one ``(N, "what: reason")`` each."""
    warnings = []
    for entry in log:
        if entry.startswith("### In file"):
            continue  # the tool's per-file header
        head, _, what = entry.partition(": ")
        if head.startswith("Line ") and head[5:].isdigit():
            warnings.append((int(head[5:]), what))
        elif warnings:
            line, what = warnings[-1]
            warnings[-1] = (line, f"{what} ({entry})")
        else:
            warnings.append((0, entry))
    return warnings
