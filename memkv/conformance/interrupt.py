"""Cut a run short (a timeout or SIGTERM) the way Ctrl-C does, so pytest still finishes cleanly.

pytest treats KeyboardInterrupt as "stop collecting results": it ends the session and runs every
teardown and `pytest_unconfigure`, which closes the target and removes its temporary stores; the
runner then writes the report of what ran, marked interrupted.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@dataclasses.dataclass
class Cut:
    reason: str | None = None


@contextlib.contextmanager
def interrupt_after(timeout: float | None) -> Iterator[Cut]:
    """Interrupt the main thread after `timeout` seconds or on SIGTERM; `Cut.reason` says which."""
    cut = Cut()

    def expire() -> None:
        cut.reason = f"timeout after {timeout} s"
        _thread.interrupt_main()

    def terminate(signum: int, frame: FrameType | None) -> None:
        cut.reason = "terminated (SIGTERM)"
        raise KeyboardInterrupt

    timer = threading.Timer(timeout, expire) if timeout else None
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield cut
    finally:
        if timer is not None:
            timer.cancel()
        if main:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["Cut", "interrupt_after"]
