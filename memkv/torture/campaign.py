"""The scenarios of `memkv torture`, their short (CI) and full (on demand) settings, and one JSON report."""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ..store.fault_sweep import sweep
from ..store.io_engines import uring_status
from ..store.powercut import simulate
from . import live
from .fuzz import fuzz

SCENARIOS = ("faults", "powercut", "crash", "fuzz", "socket-fuzz", "soak")


@dataclasses.dataclass
class Settings:
    crash_cycles: int = 3
    power_cuts: int = 10
    fuzz_inputs: int = 20_000
    socket_frames: int = 300
    connections: int = 32
    soak_seconds: float = 3.0
    seed: int = 0

    @classmethod
    def full(cls) -> Settings:
        """The campaign's figures: 50 crash cycles, 1M parser inputs, 256 connections for 7 minutes."""
        return cls(crash_cycles=50, power_cuts=200, fuzz_inputs=1_000_000, socket_frames=20_000,
                   connections=256, soak_seconds=420.0)


def _failures(result: dict[str, Any]) -> int:
    keys = ("lost", "resurrected", "corrupt", "wrong_bytes", "space_accounting_errors", "crashes", "hangs")
    return sum(int(result.get(k, 0)) for k in keys) + len(result.get("violations", []))


def run(scenarios: list[str], settings: Settings, workdir: str | None = None,
        progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="memkv-torture-", dir=workdir)
    engines = ["threads"] + (["uring"] if uring_status()[0] else [])
    steps: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "faults": lambda: [_sweep_result(io) for io in engines],
        "powercut": lambda: [_powercut_result(root, io, settings) for io in engines],
        "crash": lambda: [live.crash_loop(settings.crash_cycles, root, settings.seed)],
        "fuzz": lambda: [fuzz(settings.fuzz_inputs, settings.seed)],
        "socket-fuzz": lambda: [live.socket_fuzz(settings.socket_frames, root, settings.seed)],
        "soak": lambda: [live.soak(settings.connections, settings.soak_seconds, root, settings.seed)],
    }
    results: list[dict[str, Any]] = []
    try:
        for name in scenarios:
            started = time.monotonic()
            for result in steps[name]():
                result["step_seconds"] = round(time.monotonic() - started, 1)  # since the step began
                result["failures"] = _failures(result)
                results.append(result)
                progress(f"{result['scenario']}: {result['failures']} failures ({result['step_seconds']} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"schema": "memkv.torture/1", "settings": dataclasses.asdict(settings), "scenarios": scenarios,
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "io_engines": engines},
            "results": results, "failures": sum(r["failures"] for r in results)}


def _sweep_result(io: str) -> dict[str, Any]:
    report = sweep(io)
    return {"scenario": "fault-sweep", **dataclasses.asdict(report)}


def _powercut_result(root: str, io: str, settings: Settings) -> dict[str, Any]:
    directory = os.path.join(root, f"powercut-{io}")
    report = simulate(directory, settings.power_cuts, settings.seed, io)
    return {"scenario": "power-cut", "io": io, **dataclasses.asdict(report)}
