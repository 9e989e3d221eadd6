"""`memkv bench`: memkv put/get throughput and latency against the raw path, in the same run.

For `--backend file` the raw path is a plain preallocated file in the same directory, written
and read with os.pwritev/os.preadv in the store's own open mode (O_DIRECT when the store's
device uses it) from the same page-aligned buffers. Rounds alternate which path goes first;
throughput is the median over rounds, latencies are pooled over rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..blocks import MiB
from ..errors import InvalidArgument, Unsupported
from ..units import format_size
from .common import (
    OPS,
    TARGET_RATIO,
    TARGET_SIZE,
    BenchConfig,
    BlockSlots,
    Target,
    fill_store,
    memkv_op,
    remove_run_directory,
    run_directory,
)
from .cpu import CpuClocks, per_gib, roles_text, spent
from .peers import PEERS, ComparedTarget, check_compare, loopback_limit, start_peers
from .progress import Progress
from .rawfile import RawFile


class FileTarget(Target):
    """The embedded file backend versus pwritev/preadv on a file beside the store's device."""

    def __init__(self, config: BenchConfig) -> None:
        from ..store.embedded import FileTransport

        self.root = run_directory("memkv-bench-", config.directory)
        self.keep = config.keep
        largest = max(config.sizes)
        capacity = config.stored + config.count * largest + 4 * largest + 8 * MiB
        # One store per I/O engine compared (--io both: io_uring and the thread pool side by side).
        self.transports = {
            _memkv_path(io, config.io): FileTransport.open(os.path.join(self.root, _memkv_path(io, config.io)), "bench",
                                                           capacity=capacity, unit=MiB, io=io)
            for io in config.io
        }
        self.paths = (*self.transports, "raw")
        device = next(iter(self.transports.values())).engine.device
        self.direct = device.direct
        self.raw = RawFile(os.path.join(self.root, "raw.img"), config.count * largest)
        self.description = {"dir": self.root, "direct_io": self.direct, "store_capacity_bytes": capacity,
                            "io_engines": {path: t.engine.device.engine.describe()
                                           for path, t in self.transports.items()},
                            "raw": self.raw.describe()}
        self.slots = BlockSlots()

    def begin(self, size: int, count: int, round_no: int) -> None:
        self.slots.begin(size, count)

    def op(self, path: str, op: str, i: int) -> None:
        slots = self.slots
        if path != "raw":
            memkv_op(self.transports[path], op, slots.keys[i], slots.src(i), slots.dst(i))
        elif op == "put":
            self.raw.write(slots.src(i), i * slots.size)
        else:
            self.raw.read(slots.dst(i), i * slots.size)

    def end(self) -> None:
        for transport in self.transports.values():
            transport.invalidate_keys(self.slots.keys)

    def preload(self, stored: int, block: int) -> int:
        return sum(fill_store(transport, stored, block) for transport in self.transports.values())

    def close(self) -> None:
        try:
            for transport in self.transports.values():
                transport.close()
            self.raw.close()
        finally:
            if not self.keep:
                remove_run_directory(self.root)


def _memkv_path(io: str, compared: Sequence[str]) -> str:
    return "memkv" if len(compared) == 1 else f"memkv-{io}"


def _tcp_target(config: BenchConfig) -> Target:
    from .tcp import TcpTarget

    return TcpTarget(config)


def _nixl_target(config: BenchConfig) -> Target:
    from .nixl import NixlTarget

    return NixlTarget(config)


BACKENDS: dict[str, Callable[[BenchConfig], Target]] = {
    "file": FileTarget,
    "tcp": _tcp_target,
    "nixl": _nixl_target,
}
BATCHED = ("nixl",)  # the backends whose raw path moves a batch in one transfer (Target.ops)


def check_batch(config: BenchConfig, compare: Sequence[str]) -> None:
    """--batch N: a positive divisor of --count, on a backend with a batched raw path, with no peer
    that would still move one block per call beside it; refused before anything starts."""
    if config.batch <= 0 or config.count % config.batch:
        raise InvalidArgument(f"--batch must be a positive divisor of --count ({config.count}), not {config.batch}")
    if config.batch == 1:
        return
    if config.backend not in BATCHED:
        raise InvalidArgument(f"--batch applies to --backend {', '.join(BATCHED)} only (its raw path moves a "
                              "batch in one transfer)")
    unbatched = [name for name in compare if name in PEERS]
    if unbatched:
        raise InvalidArgument(f"--batch: --compare {', '.join(unbatched)} moves one block per call; "
                              "leave it out or run without --batch")


DEVICE_TAIL = 3.0  # with the store on a device, a p99 at most this many times the p50 (issue 16)

CpuRounds = list[tuple[dict[str, int], int]]  # per round: CPU ns by role, bytes moved


def _summary(seconds: list[float], round_rates: list[float], cpu: CpuRounds | None) -> dict[str, Any]:
    lat = np.array(seconds) * 1000.0
    out = {"gb_per_s": statistics.median(round_rates), "rounds_gb_per_s": round_rates,
           "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "ops": len(seconds)}
    if cpu:
        out["cpu_s_per_gib"] = per_gib(cpu)
    return out


def _cpu_clocks(target: Target) -> dict[str, CpuClocks] | None:
    """Each path's CPU clocks, or None where processes have none (then the report has no CPU)."""
    try:
        return {path: CpuClocks(target.cpu_processes(path)) for path in target.paths}
    except Unsupported:
        return None


def run_bench(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    factory = BACKENDS.get(config.backend)
    if factory is None:
        raise InvalidArgument(f"unknown backend {config.backend!r}; known: {', '.join(sorted(BACKENDS))}")
    if config.count <= 0 or config.rounds <= 0:
        raise InvalidArgument("--count and --rounds must be positive")
    compare = check_compare(config.compare, config.backend)
    check_batch(config, compare)
    target = factory(config)
    try:
        peers = start_peers(compare, config)
    except BaseException:
        target.close()
        raise
    if peers:
        target = ComparedTarget(target, peers)
    try:
        stored_blocks = target.preload(config.stored, max(config.sizes)) if config.stored else 0
    except BaseException:
        target.close()
        raise
    lat: dict[tuple[int, str, str], list[float]] = {}
    rates: dict[tuple[int, str, str], list[float]] = {}
    cpu: dict[tuple[int, str, str], CpuRounds] = {}
    clocks = _cpu_clocks(target)
    steps = config.rounds * len(config.sizes)
    started = time.perf_counter()
    try:
        for round_no in range(config.rounds):
            for s_index, size in enumerate(config.sizes):
                target.begin(size, config.count, round_no)
                order = target.paths if round_no % 2 == 0 else target.paths[::-1]
                for path in order:
                    for op in OPS:
                        times = lat.setdefault((size, path, op), [])
                        cpu_before = clocks[path].read() if clocks else {}
                        t_phase = time.perf_counter()
                        for first in range(0, config.count, config.batch):
                            t0 = time.perf_counter()
                            target.ops(path, op, first, config.batch)
                            times.append(time.perf_counter() - t0)
                        phase = time.perf_counter() - t_phase
                        rates.setdefault((size, path, op), []).append(size * config.count / phase / 1e9)
                        if clocks:
                            cpu.setdefault((size, path, op), []).append(
                                (spent(cpu_before, clocks[path].read()), size * config.count))
                target.end()
                if progress is not None:
                    progress.update(round_no * len(config.sizes) + s_index + 1,
                                    f"round {round_no + 1}/{config.rounds}, {format_size(size)}")
    finally:
        description, paths = target.description, target.paths
        memory = target.server_memory()
        target.close()
    limit = loopback_limit() if "iperf3" in compare else None
    if progress is not None:
        progress.finish()
    results = []
    for size in config.sizes:
        for op in OPS:
            for path in paths[:-1]:
                memkv = _summary(lat[(size, path, op)], rates[(size, path, op)], cpu.get((size, path, op)))
                raw = _summary(lat[(size, "raw", op)], rates[(size, "raw", op)], cpu.get((size, "raw", op)))
                row = {"size": size, "op": op, "path": path, "memkv": memkv, "raw": raw,
                       "ratio": memkv["gb_per_s"] / raw["gb_per_s"], "peer": path in compare}
                if "cpu_s_per_gib" in memkv:
                    row["cpu_ratio"] = memkv["cpu_s_per_gib"]["total"] / raw["cpu_s_per_gib"]["total"]
                if limit is not None:
                    row["of_limit"] = memkv["gb_per_s"] / limit["gb_per_s"]
                results.append(row)
    target_rows = [r for r in results if r["size"] == TARGET_SIZE and not r["peer"]]
    return {
        "backend": config.backend, **description, "sizes": list(config.sizes), "count": config.count,
        "batch": config.batch, "rounds": config.rounds, "steps": steps, "wall_s": time.perf_counter() - started,
        "results": results,
        "physical_limit": limit, "stored_bytes": config.stored, "stored_blocks": stored_blocks,
        "server_memory": memory,
        "target": {"size": TARGET_SIZE, "min_ratio": TARGET_RATIO,
                   "met": all(r["ratio"] >= TARGET_RATIO for r in target_rows) if target_rows else None},
        "device_target": _device_target(results),
    }


def _device_target(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """With `--compare disk`: memkv at TARGET_SIZE against the slower of its two raw paths (the
    socket or transfer, and the device alone), and its tail (p99 / p50), per op."""
    disk = {(r["size"], r["op"]): r["memkv"] for r in results if r["path"] == "disk"}
    if not disk:
        return None
    rows = []
    for r in results:
        if r["peer"] or r["size"] != TARGET_SIZE:
            continue
        raw, device = r["raw"]["gb_per_s"], disk[(r["size"], r["op"])]["gb_per_s"]
        rows.append({"op": r["op"], "path": r["path"], "bound": "raw" if raw <= device else "disk",
                     "bound_gb_per_s": min(raw, device), "ratio": r["memkv"]["gb_per_s"] / min(raw, device),
                     "tail": r["memkv"]["p99_ms"] / r["memkv"]["p50_ms"]})
    met = all(row["ratio"] >= TARGET_RATIO and row["tail"] <= DEVICE_TAIL for row in rows) if rows else None
    return {"size": TARGET_SIZE, "min_ratio": TARGET_RATIO, "max_tail": DEVICE_TAIL, "rows": rows, "met": met}


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"memkv bench --backend {report['backend']}: {report['rounds']} rounds x {report['count']} blocks per size"
        + (f" in calls of {report['batch']} (latencies per call)" if report.get("batch", 1) > 1 else "")
        + f", {'O_DIRECT' if report.get('direct_io') else 'buffered'}, {report['dir']}",
        f"raw path: {report.get('raw', '')}",
        f"{'size':>8} {'op':>4} {'memkv GB/s':>11} {'raw GB/s':>9} {'ratio':>6}  "
        f"{'memkv p50/p99 ms':>17}  {'raw p50/p99 ms':>15}",
    ]
    for r in report["results"]:
        m, w = r["memkv"], r["raw"]
        label = "" if r["path"] == "memkv" else f"  {r['path']}"
        lines.append(f"{format_size(r['size']):>8} {r['op']:>4} {m['gb_per_s']:>11.2f} {w['gb_per_s']:>9.2f} "
                     f"{r['ratio']:>6.2f}  {m['p50_ms']:>8.2f}/{m['p99_ms']:<8.2f}  "
                     f"{w['p50_ms']:>7.2f}/{w['p99_ms']:<7.2f}{label}")
    lines.extend(_cpu_lines(report["results"]))
    if report.get("stored_bytes"):
        lines.append(f"held in the store throughout: {format_size(report['stored_bytes'])} "
                     f"({report['stored_blocks']} other blocks)")
    memory = report.get("server_memory")
    if memory:
        lines.append(f"server memory: {format_size(memory['rss_bytes'])} resident, "
                     f"{format_size(memory['peak_rss_bytes'])} at its peak; {format_size(memory['private_bytes'])} "
                     f"its own (sampled peak {format_size(memory['private_peak_bytes'])}: "
                     + ("within" if memory["within_bound"] else "OVER")
                     + f" its buffer pool {format_size(memory['buffer_memory_bytes'])} + "
                     f"{format_size(memory['bound_bytes'] - memory['buffer_memory_bytes'])}), "
                     f"{format_size(memory['mapped_bytes'])} mapped files (libraries; a store on tmpfs too)")
    limit = report.get("physical_limit")
    if limit:
        lines.append(f"physical limit: {limit['gb_per_s']:.2f} GB/s ({limit['what']}); of it: "
                     + ", ".join(f"{format_size(r['size'])} {r['op']} {r['path']} {r['of_limit']:.2f}"
                                 for r in report["results"]))
    t = report["target"]
    if t["met"] is not None:
        lines.append(f"target: memkv >= {t['min_ratio']:.0%} of raw at {format_size(t['size'])}: "
                     + ("met" if t["met"] else "NOT met"))
    device = report.get("device_target")
    if device and device["met"] is not None:
        lines.append(f"target with the store on a device: memkv >= {device['min_ratio']:.0%} of min(raw, disk) and "
                     f"p99 <= {device['max_tail']:.0f}x p50 at {format_size(device['size'])}: "
                     + ("met" if device["met"] else "NOT met") + " ("
                     + ", ".join(f"{row['op']} {row['ratio']:.2f} of {row['bound']}, p99/p50 {row['tail']:.1f}"
                                 for row in device["rows"]) + ")")
    lines.append(f"wall time: {report['wall_s']:.1f} s (both paths, every round)")
    return "\n".join(lines)


def _cpu_lines(results: list[dict[str, Any]]) -> list[str]:
    """The CPU table: seconds of CPU per GiB moved, beside the wall-clock ratio of the same rows."""
    if not any("cpu_ratio" in r for r in results):
        return []
    lines = ["CPU seconds per GiB moved, client+server (this process + the far end's process; "
             "median over rounds):",
             f"{'size':>8} {'op':>4} {'ratio':>6}  {'memkv cpu s/GiB':>16}  {'raw cpu s/GiB':>14}  "
             f"{'cpu memkv/raw':>13}"]
    for r in results:
        if "cpu_ratio" not in r:
            continue
        label = "" if r["path"] == "memkv" else f"  {r['path']}"
        lines.append(f"{format_size(r['size']):>8} {r['op']:>4} {r['ratio']:>6.2f}  "
                     f"{roles_text(r['memkv']['cpu_s_per_gib']):>16}  {roles_text(r['raw']['cpu_s_per_gib']):>14}  "
                     f"{r['cpu_ratio']:>13.2f}{label}")
    return lines


__all__ = [
    "BACKENDS", "BATCHED", "FileTarget", "check_batch", "format_report", "run_bench",
]
