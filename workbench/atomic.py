"""Atomic file writes: a temporary file beside the target, fsync, then `os.replace`.

A crash, a kill or a full disk never leaves a half-written file where a good one was: either the
old file or the complete new one is in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

PathLike = str | os.PathLike[str]

# mkstemp creates files readable only by their owner; results are shared on a cluster, so give
# the final file the permissions a plain open() would have. Read once: os.umask can only be
# read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside `path`, then move it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # Flush to disk before the rename, or a crash could leave an empty file in place.
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: the old file stays, the temp file goes.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically, making parent directories as needed."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (figures, weights and other binary outputs)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)
