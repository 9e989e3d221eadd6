"""`memkv bench --backend tcp --clients ... --shards ...` (docs/scale.md), run small: every cell is measured
against the raw peer of the same run, and the table states the target's verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memkv.bench.shards import format_scale, parse_counts
from memkv.errors import InvalidArgument


def _bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "memkv.cli.main", "bench", *extra, "--dir", str(tmp_path),
                           "--quiet"], capture_output=True, text=True, timeout=300)


def test_every_cell_of_clients_and_shards_is_measured_against_raw(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--backend", "tcp", "--clients", "1,2", "--shards", "1,2", "--sizes", "64KiB",
                  "--count", "2", "--rounds", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    cells = {(r["shards"], r["clients"], r["op"]) for r in rows}
    assert cells == {(s, c, op) for s in (1, 2) for c in (1, 2) for op in ("put", "get")} and len(rows) == 8
    first = {(r["clients"], r["op"]): r["memkv"]["gb_per_s"] for r in rows if r["shards"] == 1}
    for row in rows:
        memkv, raw = row["memkv"]["gb_per_s"], row["raw"]["gb_per_s"]
        assert row["size"] == 64 * 1024 and memkv > 0 and raw > 0
        assert row["ratio"] == pytest.approx(memkv / raw)
        assert row["shard_speedup"] == pytest.approx(memkv / first[(row["clients"], row["op"])])
    table = format_scale(rows)
    assert len(table.splitlines()) == 1 + 8 + 1 and "target: aggregate memkv >= 80% of raw" in table


def test_counts_and_backend_are_checked(tmp_path: Path) -> None:
    assert parse_counts("1,2,4", "clients") == [1, 2, 4]
    for bad in ("", "0", "1,x"):
        with pytest.raises(InvalidArgument):
            parse_counts(bad, "shards")
    proc = _bench(tmp_path, "--backend", "file", "--clients", "2")
    assert proc.returncode != 0 and "--backend tcp" in proc.stderr


def test_a_batch_is_refused_with_several_clients(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--backend", "tcp", "--clients", "2", "--batch", "2")
    assert proc.returncode == 2 and "--batch is measured with one client" in proc.stderr
    assert list(tmp_path.iterdir()) == []
