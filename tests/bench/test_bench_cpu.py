"""CPU seconds per GiB in `memkv bench` (memkv.bench.cpu): present, positive and consistent; no timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memkv.bench.common import BenchConfig
from memkv.bench.cpu import CpuClocks, GiB, per_gib, spent
from memkv.bench.runner import format_report, run_bench

KiB = 1024

# A child that spends at least 0.2 s of CPU time (whatever the load), says so, then idles until EOF.
_BURNER = """
import sys, time
while time.process_time() < 0.2:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def test_per_gib_is_the_median_over_rounds_per_role_and_in_total() -> None:
    rounds = [({"client": 1_000_000_000, "server": 2_000_000_000}, GiB),
              ({"client": 1_000_000_000, "server": 1_000_000_000}, 2 * GiB),
              ({"client": 3_000_000_000, "server": 3_000_000_000}, GiB)]
    assert per_gib(rounds) == {"client": 1.0, "server": 2.0, "total": 3.0}
    assert spent({"client": 5, "server": 7}, {"client": 8, "server": 17}) == {"client": 3, "server": 10}


def test_another_process_cpu_time_is_read_from_its_clock() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"burnt\n"
        clocks = CpuClocks({"client": os.getpid(), "server": child.pid})
        first = clocks.read()
        assert first["server"] >= 200_000_000  # the child's 0.2 s, counted in nanoseconds
        sum(range(100_000))  # some CPU of this process between the readings
        second = clocks.read()
        assert second["client"] > first["client"]
        assert second["server"] - first["server"] < 100_000_000  # the idle child spends next to none
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def _check_cpu_rows(report: dict[str, object], roles: set[str]) -> None:
    rows = report["results"]
    assert isinstance(rows, list) and rows
    for row in rows:
        for path in ("memkv", "raw"):
            cpu = row[path]["cpu_s_per_gib"]
            assert set(cpu) == roles | {"total"}
            assert all(cpu[role] > 0 for role in roles)
            # one round: the total is the sum of the roles
            assert cpu["total"] == pytest.approx(sum(cpu[role] for role in roles))
        assert row["cpu_ratio"] == pytest.approx(row["memkv"]["cpu_s_per_gib"]["total"]
                                                 / row["raw"]["cpu_s_per_gib"]["total"])
    text = format_report(report)  # type: ignore[arg-type]
    assert "CPU seconds per GiB moved" in text and "cpu memkv/raw" in text


def test_tcp_bench_reports_client_and_server_cpu_for_both_paths(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="tcp", sizes=(256 * KiB,), count=4, rounds=1, directory=str(tmp_path)))
    _check_cpu_rows(report, {"client", "server"})


def test_file_bench_has_only_the_client_process(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="file", sizes=(64 * KiB,), count=2, rounds=1, directory=str(tmp_path)))
    _check_cpu_rows(report, {"client"})
