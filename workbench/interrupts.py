"""A Ctrl-C that cannot be lost.

Python raises KeyboardInterrupt in whatever Python code runs when SIGINT arrives. When that code
is a weakref callback, a ``__del__`` or a garbage-collector hook, the interpreter prints
"Exception ignored in ..." and carries on: the interrupt is gone, and a sweep run in this process
would train to its last step. Inside `ctrl_c_noted()` the handler also notes the interrupt, so
the training loop (`workbench.callbacks.InterruptCheck`) and the sweep that runs it can act on it
after the exception itself was swallowed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ctrl_c_noted", "raise_if_requested", "requested"]

_noted = threading.Event()


def requested() -> bool:
    """Whether a Ctrl-C arrived inside the current `ctrl_c_noted()` block."""
    return _noted.is_set()


def raise_if_requested() -> None:
    if _noted.is_set():
        raise KeyboardInterrupt


def _note_and_interrupt(signum, frame) -> None:
    _noted.set()
    raise KeyboardInterrupt


@contextmanager
def ctrl_c_noted() -> Iterator[None]:
    """Within the block a Ctrl-C raises KeyboardInterrupt as usual and is also noted (`requested`).

    Only in the main thread (signal handlers live there), and not where SIGINT is ignored (a
    command started in the background by a shell without job control); there the block changes
    nothing. The previous handler comes back at the end, also when Lightning set SIGINT to be
    ignored during its own shutdown.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, _note_and_interrupt)
    _noted.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _noted.clear()
