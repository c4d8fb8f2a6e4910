"""Run tiny dense linear algebra on one BLAS thread.

scipy's L-BFGS-B calls BLAS/LAPACK on matrices of a few rows per iteration. A threaded OpenBLAS wakes
its worker threads for each of those calls; on a small shared machine that made L-BFGS-B's own
bookkeeping cost ~2 ms per iteration, more than solving the model with its sensitivities. The fits
therefore run inside `single_blas_thread()`, which sets every loaded OpenBLAS to one thread and
restores the previous count afterwards (what threadpoolctl does, without the dependency). Where no
OpenBLAS can be found (another BLAS, another platform) it does nothing.
"""
from __future__ import annotations

import ctypes
import importlib
import sys
from contextlib import contextmanager

# (get, set) symbol pairs of the OpenBLAS builds numpy and scipy ship, and of a system OpenBLAS
_SYMBOLS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"))


def _openblas_controls() -> list[tuple]:
    """(get, set) functions of every OpenBLAS library loaded in this process (Linux only)."""
    if not sys.platform.startswith("linux"):
        return []
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1] if line.strip() else ""
                if "openblas" in path.lower() and ".so" in path:
                    paths.add(path)
    except OSError:
        return []
    controls = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                controls.append((get, set_))
                break
    return controls


@contextmanager
def single_blas_thread():
    """Context in which every loaded OpenBLAS uses one thread (restored on exit)."""
    importlib.import_module("scipy.optimize")  # load scipy's OpenBLAS before looking for it
    controls = _openblas_controls()
    previous = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, previous):
            set_(n)
