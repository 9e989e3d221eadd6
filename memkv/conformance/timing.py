"""Time limits of the suite that stretch with how busy the machine is.

A check whose only reason to fail would be a slow machine (a child process that must finish, a
server that must become ready) waits `scaled(seconds)`: the limit times a factor of at least 1.
The factor is MEMKV_CONFORMANCE_TIME_FACTOR when set, else measured once per process from the
run queue: the 1-minute load average per CPU (a 2-core machine running 6 busy processes waits
3 times as long). Limits only ever grow, so a fast machine keeps the stated ones.
"""

from __future__ import annotations

import functools
import os

FACTOR_ENV = "MEMKV_CONFORMANCE_TIME_FACTOR"
MAX_FACTOR = 10.0


@functools.cache
def factor() -> float:
    """How much longer than stated a timing-only limit waits here (1.0 to MAX_FACTOR)."""
    configured = os.environ.get(FACTOR_ENV)
    if configured:
        try:
            return min(MAX_FACTOR, max(1.0, float(configured)))
        except ValueError:
            raise ValueError(f"{FACTOR_ENV} must be a number, not {configured!r}") from None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return min(MAX_FACTOR, max(1.0, load / (os.cpu_count() or 1)))


def scaled(seconds: float) -> float:
    return seconds * factor()


__all__ = ["FACTOR_ENV", "factor", "scaled"]
