"""The interpreter's last step before componentize-py snapshots its memory.

Every Python module's instance maps that snapshot copy-on-write: a page it only
reads stays shared, a page it writes becomes its own. But the kernel maps a read
page together with the 64 KiB around it (fault-around), and VmRSS counts each
mapped page once per instance, so what one more module costs is the number of
64 KiB stretches of the snapshot its instance touches at all. :func:`settle`
leaves the heap so that a running module touches few of them:

- ``gc.collect()`` frees what the imports left for the cycle collector and empties
  CPython's free lists (the dicts, lists, tuples and floats it keeps for reuse):
  their blocks lie all over the heap, and a module's first objects would be made
  in them.
- :func:`_fill_free_chunks` takes every free chunk of the heap, so that an
  instance allocates past the snapshot, in pages of its own.
- ``gc.freeze()`` moves the snapshot's objects out of the collector's sight:
  CPython 3.14's incremental collector otherwise scans the old generation, the
  whole snapshot, a slice at each young collection, and so touches every page
  that holds a container within a minute of running.

Measured with ten bench modules (``tools/bench-python-modules``' module), resident
per instance in the snapshot's mapping after ten seconds: 14.7 MB before, 12.6 MB
after; without the freeze it grows to 13.3 MB within a minute (12.0 with it).
"""

import gc

# Filler sizes, largest first: big free chunks are taken by few fillers, and what
# is left of them by the smaller ones. ``None`` is ``object()``, the smallest
# allocation (dlmalloc's minimum chunk).
_FILLER_SIZES = (1 << 16, 1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 32, 16, 8, 2, None)

# Larger than any free chunk left after the collection, so it comes from the top
# of the heap: its address is where the top begins.
_PROBE_SIZE = 1 << 20

# The fillers: referenced for the life of the instance, and never touched.
_fillers = []


def _fill_free_chunks():
    """Allocates filler objects until the heap has no free chunk left.

    This CPython has no pymalloc: every object is a chunk of wasi-libc's malloc
    (dlmalloc), which serves a request from a free chunk that fits, wherever it
    lies, before it carves one from the top of the heap. After the imports, about
    ten thousand small free chunks lie between the snapshot's objects; an instance
    would copy a page, and map the 64 KiB around it, for each one it used. A filler
    carved from the top means no free chunk of its size or larger is left; the
    smallest filler's doing so means none is left at all. The lists that collect
    the fillers grow and free chunks of their own, so this repeats until a round
    finds nothing but the top.
    """
    probe = bytes(_PROBE_SIZE)
    top = id(probe)
    del probe
    for _round in range(8):
        found = []
        for size in _FILLER_SIZES:
            while True:
                filler = object() if size is None else bytes(size)
                found.append(filler)
                if id(filler) >= top:
                    break
        _fillers.append(tuple(found))
        if len(found) == len(_FILLER_SIZES):
            return


def settle():
    """Collects, fills the heap's free chunks and freezes what is left (see the
    module docs). The interpreter calls it last, once everything is imported."""
    gc.collect()
    _fill_free_chunks()
    gc.freeze()
