"""The numba decorator of the compiled kernels (one place for how they are compiled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numba

F = TypeVar("F", bound=Callable)


def jit(fn: F) -> F:
    """numba-compiled ``fn``, its machine code cached on disk where a folder is writable."""
    try:  # next to the source, else under NUMBA_CACHE_DIR or the user's cache folder
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location: compile once per process
        return numba.njit(nogil=True)(fn)
