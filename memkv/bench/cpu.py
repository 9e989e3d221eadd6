"""CPU time spent by the processes at each end of a benchmark path, per GiB moved.

On a machine whose cores are shared with other jobs, wall-clock rates swing with the load, but
the CPU seconds a process spends per byte it moves barely do: that is what limits how fast a
few cores can go. Each process's CPU time is read from its POSIX process CPU clock
(`clock_getcpuclockid`), which counts every thread, including threads that have exited, with
nanosecond resolution; /proc's utime/stime would count in 10 ms ticks, too coarse for one
phase of a benchmark.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import Unsupported

GiB = 1024**3
CLIENT = "client"  # the bench process itself: the client library, or the raw path's near end
SERVER = "server"  # the far end: a memkv server process, or the raw path's peer process
ROLES = (CLIENT, SERVER)

_libc: Any = None


def _clock_of(pid: int) -> int:
    """The CPU-time clock id of process `pid` (the whole process, every thread)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.clock_getcpuclockid  # noqa: B018 (only glibc-like C libraries have it)
        except (OSError, AttributeError):
            raise Unsupported("process CPU clocks need clock_getcpuclockid (Linux, glibc)") from None
    clock = ctypes.c_int()
    error = _libc.clock_getcpuclockid(pid, ctypes.byref(clock))
    if error:
        raise Unsupported(f"no CPU clock for process {pid}: {os.strerror(error)}")
    return clock.value


class CpuClocks:
    """Reads the CPU time of named processes (role -> pid), in nanoseconds."""

    def __init__(self, processes: Mapping[str, int]) -> None:
        self.processes = dict(processes)
        self._clocks = {role: _clock_of(pid) for role, pid in self.processes.items()}

    def read(self) -> dict[str, int]:
        return {role: time.clock_gettime_ns(clock) for role, clock in self._clocks.items()}


def spent(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {role: after[role] - before[role] for role in before}


def per_gib(rounds: Sequence[tuple[Mapping[str, int], int]]) -> dict[str, float]:
    """CPU seconds per GiB of each role, the median over rounds of (CPU ns spent, bytes moved),
    and `total`, the median of the roles' sum (the cost of the path on a machine's cores)."""
    out: dict[str, float] = {}
    for role in rounds[0][0]:
        out[role] = statistics.median(ns[role] / 1e9 / (moved / GiB) for ns, moved in rounds)
    out["total"] = statistics.median(sum(ns.values()) / 1e9 / (moved / GiB) for ns, moved in rounds)
    return out


def roles_text(cpu: Mapping[str, float]) -> str:
    """"0.31+0.45" (client+server), or "0.31" when the path has no process of its own at the far end."""
    return "+".join(f"{cpu[role]:.2f}" for role in ROLES if role in cpu)


__all__ = ["CLIENT", "GiB", "ROLES", "SERVER", "CpuClocks", "per_gib", "roles_text", "spent"]
