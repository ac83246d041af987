"""Keeping a long-running daemon's heap small after start-up and reloads."""

from __future__ import annotations

import gc
import sys

__all__ = ["settle"]


def settle(*, full: bool = True) -> None:
    """Move what start-up (or a reload) built - modules, plugins, the config, every job - out
    of the garbage collector's sight, then hand the memory its temporary objects used back
    to the system.

    ``gc.freeze``: what start-up built lives as long as the config, and every full
    collection would otherwise walk all of it, stalling the loop for tens of milliseconds
    at a few thousand targets (what a reload retires stays frozen garbage until the next
    freeze, which is small next to a config).  ``full=False`` (reloads) skips the oldest
    generation's collection, which would cost more than it saves.

    ``malloc_trim``: parsing and validating a config frees more than it keeps, and glibc
    keeps freed memory in the process unless asked (about 1.5 MB after start-up here).
    """
    gc.collect(2 if full else 1)
    gc.freeze()
    _trim()


def _trim() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return
    trim(0)
