"""Progress on stderr: one rewritten line on a terminal, a periodic plain line otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(done, note)` as work advances; `finish()` once. Never writes to stdout."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True,
                 interval_s: float | None = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 5.0)
        self.started = time.perf_counter()
        self._last = float("-inf")
        self._width = 0
        self._done = 0
        self._note = ""
        self._shown = ""

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        pct = f"{100.0 * self._done / self.total:5.1f}%" if self.total else ""
        bar = ""
        if self.tty and self.total:
            filled = int(20 * self._done / self.total)
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        note = f"  {self._note}" if self._note else ""
        return f"{self.label}: {bar}{self._done}/{self.total} {pct} {elapsed:6.1f}s{note}"

    def update(self, done: int, note: str = "") -> None:
        self._done, self._note = done, note
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < self.interval_s and done < self.total:
            return
        self._last = now
        self._emit()

    def _emit(self, final: bool = False) -> None:
        line = self._line()
        if not self.tty and final and self._shown.split("%")[0] == line.split("%")[0]:
            return  # the last periodic line already said "done"
        self._shown = line
        if self.tty:
            pad = " " * max(0, self._width - len(line))
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, note: str | None = None) -> None:
        if note is not None:
            self._note = note
        if self.enabled:
            self._emit(final=True)
        self.enabled = False


__all__ = ["Progress"]
