"""The numba toolkit the Occ2GS kernels share: the optional import (the torch renderer is
the fallback), and compiling a kernel twice, serially and with ``prange`` threads.

Why two builds: on idle cores the ``prange`` build is faster (the projection of 100K
Gaussians: ~12 -> ~8 ms on 2 cores), but where the cores are busy with other work every
parallel region waits for a time slice of each of its threads, and the serial build wins
(see docs/occupancy.md, "The numba tile renderer"); ``variant`` picks by
``numba.get_num_threads()``, so ``numba.set_num_threads(1)`` selects the serial builds.

Kernels read other modules' constants (record layout, tile size) as compile-time constants,
and numba's disk cache is invalidated only by edits to a kernel's own file: after changing
such a constant, delete the ``numba_*`` cache files (see docs/occupancy.md).
"""

from __future__ import annotations

import types

try:  # optional: the torch renderer is the fallback
    import numba
    from numba import njit

    NUMBA_IMPORT_ERROR: Exception | None = None
except ImportError as error:  # pragma: no cover - exercised only without numba
    numba = None
    NUMBA_IMPORT_ERROR = error


def numba_available() -> bool:
    return numba is not None


def require_numba():
    if numba is None:
        raise RuntimeError(f"backend 'numba' needs the numba package ({NUMBA_IMPORT_ERROR}); "
                           "pip install numba, or use backend='torch'")


def serial_and_parallel(function):
    """Compile ``function`` twice: serially (``prange`` runs as ``range``) and with ``parallel=True``.

    Returns the serial dispatcher with the parallel one as its ``.parallel`` attribute; callers
    pick by ``numba.get_num_threads()`` (see ``variant``). The parallel copy gets its own
    qualified name, so numba's on-disk cache keeps the two apart."""
    twin = types.FunctionType(function.__code__, function.__globals__, function.__name__ + "_parallel",
                              function.__defaults__, function.__closure__)
    twin.__qualname__ = function.__qualname__ + "_parallel"
    serial = njit(cache=True)(function)
    serial.parallel = njit(cache=True, parallel=True)(twin)
    return serial


def variant(kernel):
    """The parallel build of a ``serial_and_parallel`` kernel when numba may use more than one thread."""
    return kernel.parallel if numba.get_num_threads() > 1 else kernel
