"""The memory of the server process a benchmark talks to: read from /proc, and sampled through the
run, so that the peak of the server's own memory is known (the kernel keeps a peak of the
resident set only, which on tmpfs includes the mapped store)."""

from __future__ import annotations

import threading
from typing import Any

from ..blocks import MiB

SAMPLE_S = 0.02
# What `memkv serve` holds beside its configured pools: interpreter, libraries' heaps, the index's
# page cache, connection state (docs/server.md, "Memory"); the bench checks the sampled peak.
OWN_MEMORY_ALLOWANCE = 64 * MiB


def process_memory(pid: int) -> dict[str, int]:
    """Resident and peak resident bytes of a process (Linux /proc), and how much of the resident
    memory is the process's own (anonymous: heap, buffers) and how much is mapped files and shared
    memory (for a server whose store is on tmpfs: the mapped store, i.e. the stored data itself)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[name] = int(value.split()[0]) * 1024
    return {"rss_bytes": fields.get("VmRSS", 0), "peak_rss_bytes": fields.get("VmHWM", 0),
            "private_bytes": fields.get("RssAnon", 0),
            "mapped_bytes": fields.get("RssFile", 0) + fields.get("RssShmem", 0)}


class MemorySampler:
    """Samples a process's memory every SAMPLE_S seconds until `stop`; its own memory is bounded by
    `pools` (the configured buffer pools) plus OWN_MEMORY_ALLOWANCE."""

    def __init__(self, pid: int, pools: int) -> None:
        self.pid, self.pools = pid, pools
        self.peak = process_memory(pid)["private_bytes"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memkv-bench-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self.peak = max(self.peak, process_memory(self.pid)["private_bytes"])
            except OSError:  # the process is gone
                return

    def halt(self) -> None:
        self._stop.set()
        self._thread.join()

    def stop(self) -> dict[str, Any]:
        """The last reading, the sampled peak of the process's own memory and the bound it must keep."""
        self.halt()
        now = process_memory(self.pid)
        peak = max(self.peak, now["private_bytes"])
        bound = self.pools + OWN_MEMORY_ALLOWANCE
        return {**now, "private_peak_bytes": peak, "buffer_memory_bytes": self.pools, "bound_bytes": bound,
                "within_bound": peak <= bound}
