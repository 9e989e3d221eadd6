"""`memkv bench --compare`: other stores and the loopback limit measured in the same run."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from memkv.bench.common import BenchConfig
from memkv.bench.runner import format_report, run_bench
from memkv.errors import InvalidArgument

HAVE_REDIS = shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
HAVE_IPERF3 = shutil.which("iperf3") is not None
SMALL = {"sizes": (256 * 1024,), "count": 4, "rounds": 2}


def test_unknown_peer_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown mooncake"):
        run_bench(BenchConfig(backend="file", directory=str(tmp_path), compare=("mooncake",), **SMALL))
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
