"""Advisory file locks (flock) that say who holds them.

    with file_lock(sweep_dir / ".submit.lock"):        # waits: submissions into one sweep in turn
        ...
    with writer_lock(run_dir / ".writer.lock"):        # refuses: one trainer per run directory
        ...
    holder(run_dir / ".writer.lock")                   # "pid 123 on node1 (job 45)", or None

The kernel drops a flock when its holder dies, however it dies (`kill -9` included), so a lock
never outlives a crashed process and no stale-lock cleanup is needed. The lock file itself stays;
it holds the last holder's description, which is only read while the lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import InputError

__all__ = ["LockedError", "file_lock", "holder", "writer_lock"]

PathLike = str | os.PathLike[str]


class LockedError(InputError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def file_lock(path: PathLike, *, blocking: bool = True, description: str = "") -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the duration of the block.

    Non-blocking, a lock held elsewhere raises LockedError naming the holder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(f"{path} is held by {_read(fd) or 'another process'}") from None
        text = f"pid {os.getpid()} on {socket.gethostname()}" + (f" ({description})" if description else "")
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def writer_lock(path: PathLike, description: str = ""):
    """`file_lock` that refuses at once when another process holds it."""
    return file_lock(path, blocking=False, description=description)


def holder(path: PathLike) -> str | None:
    """Who holds the lock on `path` now ("pid 12 on node1 (...)"), or None when nobody does."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or "another process"
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 400, 0).decode(errors="replace").strip()
    except OSError:
        return ""
