"""Ctrl-C as a request to stop at the next clean point, not an exception in the middle of a step.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the interpreter happens to be, for
example half-way through ``optimizer.step()``, which leaves no state that a resumed run could
continue bit-for-bit. :func:`stop_on_sigint` installs, for the duration of a ``with`` block, a
handler that only records the request; the loop checks :attr:`StopRequest.requested` at its
mini-batch boundaries, saves a consistent checkpoint and returns. A second Ctrl-C raises
``KeyboardInterrupt`` at once (the user insists). The previous handler is restored on exit.

Nested blocks share one request, so a caller (the start search, a workflow stage) that wraps many
:func:`dynbcdi.reconstruct.reconstruct` calls sees the Ctrl-C that stopped one of them. Outside the
main thread no handler can be installed (Python delivers signals to the main thread only), and
where SIGINT is ignored (``nohup``, background jobs) it stays ignored; the request then never
fires and Ctrl-C behaves as the surrounding program decides.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StopRequest", "stop_on_sigint"]


class StopRequest:
    """The Ctrl-C request of one :func:`stop_on_sigint` block (``requested`` is read by the loop)."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: Any) -> None:
        """SIGINT handler: the first press records the request, the second raises KeyboardInterrupt."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def stop_on_sigint() -> Iterator[StopRequest]:
    """Context manager: Ctrl-C sets ``requested`` of the yielded :class:`StopRequest` instead of
    raising; a second Ctrl-C raises KeyboardInterrupt. Inside an enclosing block the enclosing
    request is yielded (one Ctrl-C, one request). Restores the previous SIGINT handler on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield StopRequest()  # never set: signals reach the main thread only
        return
    previous = signal.getsignal(signal.SIGINT)
    owner = getattr(previous, "__self__", None)
    if isinstance(owner, StopRequest):  # nested: share the outer request
        yield owner
        return
    request = StopRequest()
    if previous is signal.SIG_IGN or previous is None:  # ignored (nohup) or set outside Python: leave it
        yield request
        return
    signal.signal(signal.SIGINT, request.handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
