"""Atomic file writes: a temporary file beside the target, fsync, then `os.replace`.

A crash, a kill or a full disk never leaves a half-written file where a good one was: either the
old file or the complete new one is in place. Temporary files are named
``.<name>.<host>.<pid>.<random>.tmp``; one left by a process that was killed (`kill -9` cannot be
caught) is removed by the next write to the same target from the same host.

A write that the operating system refuses (read-only directory, a file where a directory should
be, a full disk) raises `OutputError`, an `InputError` that names the path, so the CLI reports it
as one line with exit status 2 and the old file stays.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from workbench.errors import InputError

__all__ = [
    "OutputError",
    "atomic_savefig",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "check_writable_dir",
    "output_error",
]

PathLike = str | os.PathLike[str]

# mkstemp creates files readable only by their owner; results are shared on a cluster, so give
# the final file the permissions a plain open() would have. Read once: os.umask can only be
# read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = socket.gethostname().split(".")[0].replace(".", "_") or "host"


class OutputError(InputError, OSError):
    """An output path that cannot be written (permissions, read-only or full disk, not a directory).

    An InputError for the CLI (one line, exit 2) and still an OSError for code that catches those.
    """


def output_error(path: PathLike, error: OSError) -> OutputError:
    """One line naming the path and the operating system's reason."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return OutputError(f"cannot write {path}: {reason}")


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside `path`, then move it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
    except OSError as error:
        raise output_error(path, error) from None
    try:
        write(tmp)
        # Flush to disk before the rename, or a crash could leave an empty file in place.
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as error:
        # Also on KeyboardInterrupt: the old file stays, the temp file goes.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError) and not isinstance(error, InputError):
            raise output_error(path, error) from None
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temp files of `path` left by dead processes of this host (a `kill -9` mid-write)."""
    prefix = f".{path.name}.{_HOST}."
    try:
        candidates = [entry for entry in os.scandir(path.parent) if entry.name.startswith(prefix)]
    except OSError:
        return
    for entry in candidates:
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and entry.name.endswith(".tmp"):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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


def atomic_savefig(fig, path: PathLike, **savefig_kwargs) -> None:
    """Render a matplotlib figure in memory (format from the suffix), then write it atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def check_writable(path: PathLike, what: str = "output", *, suffixes: tuple[str, ...] = ()) -> Path:
    """Fail early, before any work, when `path` could not be written later.

    Creates the missing parent directories, then writes and removes a probe file in the
    directory. With `suffixes`, the file name must end in one of them (``.nc``, ``.png``).
    Returns the path. Raises OutputError naming `what` and the reason.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {path}: the file name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"{what} {path} cannot be written: {error.strerror or error}") from None
    return path


def check_writable_dir(path: PathLike, what: str = "output directory", *, create: bool = True) -> Path:
    """Like `check_writable` for a directory that will receive files (created if missing).

    With create=False nothing is made (a dry run): the nearest existing ancestor must be a
    directory this process may write to.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a directory")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {path} cannot be made: {existing} is a file, not a directory")
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {path} cannot be written: {existing} is not writable")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=f".probe.{_HOST}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"{what} {path} cannot be written: {error.strerror or error}") from None
    return path
