"""Writing a file so that a reader sees the old content or the new, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o644, make_parents: bool = False
) -> None:
    """Replace the file at ``path`` by ``data``: a temporary file in the same directory,
    written, fsynced and renamed over it, then the directory fsynced.  The file keeps its
    permission bits (``mode`` for a new one); a symlink is followed and its target
    replaced.  Raises OSError."""
    target = path.resolve()
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    bits = target.stat().st_mode & 0o7777 if target.exists() else mode
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, bits)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
