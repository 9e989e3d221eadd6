"""`memkv bench --compare`: other stores and the loopback limit measured in the same run."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from memkv.bench.common import TARGET_RATIO, TARGET_SIZE, BenchConfig
from memkv.bench.memory import OWN_MEMORY_ALLOWANCE
from memkv.bench.peers import start_peers
from memkv.bench.runner import DEVICE_TAIL, format_report, run_bench
from memkv.errors import InvalidArgument, Unsupported

HAVE_REDIS = shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
HAVE_IPERF3 = shutil.which("iperf3") is not None
HAVE_MOONCAKE = importlib.util.find_spec("mooncake") is not None
SMALL = {"sizes": (256 * 1024,), "count": 4, "rounds": 2}


def test_unknown_peer_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown memcached"):
        run_bench(BenchConfig(backend="file", directory=str(tmp_path), compare=("memcached",), **SMALL))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["file", "tcp"])
def test_the_nixl_floor_is_refused_for_other_backends_before_anything_starts(backend: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="--compare floor applies to --backend nixl only"):
        run_bench(BenchConfig(backend=backend, directory=str(tmp_path), compare=("floor",), **SMALL))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("changes", "refusal"), [
    ({"backend": "file", "batch": 2}, "--batch applies to --backend nixl only"),
    ({"backend": "tcp", "batch": 2}, "--batch applies to --backend nixl only"),
    ({"backend": "nixl", "batch": 3}, r"--batch must be a positive divisor of --count \(4\), not 3"),
    ({"backend": "nixl", "batch": 0}, "--batch must be a positive divisor"),
    ({"backend": "nixl", "batch": 2, "compare": ("floor", "redis")}, "--compare redis moves one block per call"),
])
def test_a_batch_without_a_batched_raw_path_is_refused_before_anything_starts(
        changes: dict[str, object], refusal: str, tmp_path: Path) -> None:
    """--batch N compares memkv's N-block calls with a raw path that moves N blocks at once; where
    the raw path (or a compared store) would still move one block per call, the run is refused."""
    with pytest.raises(InvalidArgument, match=refusal):
        run_bench(BenchConfig(directory=str(tmp_path), **{**SMALL, **changes}))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (HAVE_REDIS and HAVE_IPERF3), reason="needs redis-server, redis-py and iperf3")
def test_redis_and_the_loopback_limit_are_measured_beside_memkv(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="tcp", directory=str(tmp_path), compare=("redis", "iperf3"), **SMALL))
    by_path = {(r["path"], r["op"]): r for r in report["results"]}
    assert set(by_path) == {("memkv", "put"), ("memkv", "get"), ("redis", "put"), ("redis", "get")}
    for row in by_path.values():
        assert row["memkv"]["gb_per_s"] > 0 and row["memkv"]["ops"] == 8
        assert row["of_limit"] == pytest.approx(row["memkv"]["gb_per_s"] / report["physical_limit"]["gb_per_s"])
    assert by_path[("redis", "put")]["peer"] and not by_path[("memkv", "put")]["peer"]
    assert "redis-server" in report["peers"]["redis"]
    text = format_report(report)
    assert "physical limit" in text and "redis" in text


@pytest.mark.parametrize("backend", ["file", "tcp"])
def test_stored_blocks_stay_in_the_store_for_the_whole_run(backend: str, tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend=backend, directory=str(tmp_path), stored=3 * 256 * 1024 + 1, **SMALL))
    assert report["stored_bytes"] == 3 * 256 * 1024 + 1 and report["stored_blocks"] == 4
    assert report["store_capacity_bytes"] >= report["stored_bytes"]
    memory = report["server_memory"]
    if backend == "tcp":
        assert 0 < memory["rss_bytes"] <= memory["peak_rss_bytes"]
        assert 0 < memory["private_bytes"] <= memory["rss_bytes"]
        assert memory["private_bytes"] + memory["mapped_bytes"] == memory["rss_bytes"]
        assert memory["private_bytes"] <= memory["private_peak_bytes"]
        # the server's own memory stays within its pools plus the allowance docs/server.md states
        assert memory["bound_bytes"] == memory["buffer_memory_bytes"] + OWN_MEMORY_ALLOWANCE
        assert memory["private_peak_bytes"] <= memory["bound_bytes"] and memory["within_bound"]
        assert "server memory" in format_report(report)
    else:
        assert memory is None


def test_stored_is_refused_where_the_backend_cannot_hold_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from memkv.bench import runner
    from memkv.bench.common import Target

    class NoPreload(runner.FileTarget):
        preload = Target.preload

    monkeypatch.setitem(runner.BACKENDS, "file", NoPreload)
    with pytest.raises(Unsupported, match="--stored"):
        run_bench(BenchConfig(backend="file", directory=str(tmp_path), stored=1, **SMALL))


def test_the_device_alone_is_measured_beside_memkv_over_tcp(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="tcp", directory=str(tmp_path), compare=("disk",),
                                   sizes=(TARGET_SIZE,), count=2, rounds=1))
    rows = {(r["path"], r["op"]): r for r in report["results"]}
    assert set(rows) == {("memkv", "put"), ("memkv", "get"), ("disk", "put"), ("disk", "get")}
    assert rows[("disk", "get")]["peer"] and rows[("disk", "get")]["memkv"]["ops"] == 2
    assert "pwritev" in report["peers"]["disk"]
    device = report["device_target"]
    assert [row["op"] for row in device["rows"]] == ["put", "get"]
    for row in device["rows"]:
        memkv, raw = rows[("memkv", row["op"])]["memkv"], rows[("memkv", row["op"])]["raw"]
        disk = rows[("disk", row["op"])]["memkv"]
        bound = min(raw["gb_per_s"], disk["gb_per_s"])
        assert row["bound_gb_per_s"] == bound
        assert row["bound"] == ("raw" if raw["gb_per_s"] <= disk["gb_per_s"] else "disk")
        assert row["ratio"] == pytest.approx(memkv["gb_per_s"] / bound)
        assert row["tail"] == pytest.approx(memkv["p99_ms"] / memkv["p50_ms"])
    assert device["met"] == all(r["ratio"] >= TARGET_RATIO and r["tail"] <= DEVICE_TAIL for r in device["rows"])
    assert "of min(raw, disk)" in format_report(report)
    assert list(tmp_path.iterdir()) == []  # the store and the device file are removed


def test_without_the_device_there_is_no_device_target(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="file", directory=str(tmp_path), **SMALL))
    assert report["device_target"] is None


def mooncake_children() -> list[str]:
    """Mooncake processes started by this process and still running."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:  # ended meanwhile
            continue
        if not stat:
            continue
        name, _, rest = stat.rpartition(")")
        if int(rest.split()[1]) == os.getpid() and "mooncake" in name:
            found.append(name.partition("(")[2])
    return found


@pytest.mark.skipif(not HAVE_MOONCAKE, reason="needs Mooncake Store (pip install 'memkv[compare]')")
def test_mooncake_is_measured_beside_memkv_and_stopped_afterwards(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(backend="tcp", directory=str(tmp_path), compare=("mooncake",), **SMALL))
    by_path = {(r["path"], r["op"]): r for r in report["results"]}
    assert set(by_path) == {("memkv", "put"), ("memkv", "get"), ("mooncake", "put"), ("mooncake", "get")}
    for op in ("put", "get"):
        row = by_path[("mooncake", op)]
        assert row["peer"] and row["memkv"]["gb_per_s"] > 0 and row["memkv"]["ops"] == 8
        cpu = row["memkv"]["cpu_s_per_gib"]
        assert cpu["server"] > 0  # the storage process did the other end's work
        # the master's CPU is counted too: with two rounds each median is a mean, so the roles add up
        assert cpu["total"] == pytest.approx(cpu["client"] + cpu["server"] + cpu["master"])
    description = report["peers"]["mooncake"]
    assert re.search(r"mooncake-transfer-engine\S* \d+\.\d+", description) and "put_from/get_into" in description
    assert "mooncake" in format_report(report)
    assert mooncake_children() == []


@pytest.mark.skipif(not HAVE_MOONCAKE, reason="needs Mooncake Store (pip install 'memkv[compare]')")
def test_a_mooncake_get_of_a_missing_block_is_a_failure_not_a_rate() -> None:
    from memkv.bench.mooncake_peer import MooncakePeer

    peer = MooncakePeer(256 * 1024, 2)
    try:
        assert sorted(mooncake_children()) == ["mooncake_client", "mooncake_master"]
        peer.begin(256 * 1024, 2)
        peer.op("put", 0)
        peer.op("get", 0)
        with pytest.raises(Unsupported, match="get_into returned -"):
            peer.op("get", 1)
        peer.end()
    finally:
        peer.close()
    assert mooncake_children() == []


def test_mooncake_is_refused_with_an_install_hint_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mooncake", None)  # find_spec and import both see it missing
    with pytest.raises(Unsupported, match=r"--compare mooncake needs .*pip install 'memkv\[compare\]'"):
        start_peers(("mooncake",), BenchConfig(backend="tcp", **SMALL))
